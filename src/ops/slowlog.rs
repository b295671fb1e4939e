//! The slow log: requests whose reply took at least `slowlog.log_slower_than_us`, measured
//! from the proxy reading the request to its reply being ready to write to the client.
//!
//! Each worker appends to its own bounded ring (a mutex only that worker and `SLOWLOG`
//! readers take, and only when a request *was* slow); `SLOWLOG GET` merges the rings, newest
//! first. The per-request cost lives in the session ([`Pending`]): one comparison per reply.
//!
//! Entries keep Redis' shape (id, unix time, µs, argv, client address, client name); the
//! backend node is kept too, but only the admin `/slowlog` JSON shows it: Redis clients
//! (redis-py's `parse_slowlog_get`, redis-rs) read exactly six fields, so a seventh or a
//! node in the client-name field would confuse them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Most arguments kept per entry, the last one replaced by `... (N more arguments)` (Redis'
/// `SLOWLOG_ENTRY_MAX_ARGC`).
pub const MAX_ARGC: usize = 32;
/// Longest argument kept, longer ones end in `... (N more bytes)` (`SLOWLOG_ENTRY_MAX_STRING`).
pub const MAX_STRING: usize = 128;

/// One slow request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unique, increasing id (Redis resets it only on restart, not on RESET).
    pub id: u64,
    /// When it was logged, seconds since the Unix epoch.
    pub unix_time: u64,
    /// When it was logged, µs since the Unix epoch (merge order).
    pub logged_us: u64,
    /// From read to reply ready, in microseconds.
    pub duration_us: u64,
    /// The arguments, shortened like Redis does ([`truncate_argv`]).
    pub argv: Vec<Bytes>,
    /// `ip:port` of the client.
    pub client_addr: String,
    /// The client's name (empty when unset).
    pub client_name: String,
    /// The backend node that served it (`proxy` for commands the proxy answers, `masters`
    /// for ones sent to every master).
    pub node: String,
}

/// The slow logs of every worker. Its two settings start as configured (`[slowlog]`) and
/// change at run time through `CONFIG SET slowlog-log-slower-than / slowlog-max-len`, as
/// Redis' do (until the proxy restarts).
#[derive(Debug)]
pub struct SlowLog {
    /// µs; negative: off.
    log_slower_than_us: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    rings: Box<[Mutex<VecDeque<Entry>>]>,
}

impl SlowLog {
    /// A slow log for `workers` workers; `log_slower_than_us < 0` disables it.
    pub fn new(workers: usize, log_slower_than_us: i64, max_len: usize) -> SlowLog {
        SlowLog {
            log_slower_than_us: AtomicI64::new(log_slower_than_us),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            rings: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    /// Requests this slow or slower are logged; `None`: the slow log is off. Two relaxed
    /// loads (sessions ask once per read).
    #[inline]
    pub fn threshold(&self) -> Option<Duration> {
        let us = u64::try_from(self.log_slower_than_us.load(Relaxed)).ok()?;
        (self.max_len.load(Relaxed) > 0).then(|| Duration::from_micros(us))
    }

    /// The threshold in µs (negative: off): `slowlog.log_slower_than_us` or as last set.
    pub fn log_slower_than_us(&self) -> i64 {
        self.log_slower_than_us.load(Relaxed)
    }

    /// Entries kept at most.
    pub fn max_len(&self) -> usize {
        self.max_len.load(Relaxed)
    }

    /// Set the threshold (`CONFIG SET slowlog-log-slower-than`; negative: off). Sessions
    /// apply it from their next read.
    pub fn set_log_slower_than_us(&self, us: i64) {
        self.log_slower_than_us.store(us, Relaxed);
    }

    /// Set how many entries are kept (`CONFIG SET slowlog-max-len`); older ones go now.
    pub fn set_max_len(&self, max_len: usize) {
        self.max_len.store(max_len, Relaxed);
        let mut kept = self.get(max_len);
        // Each ring keeps its newest of the `max_len` newest overall.
        for ring in self.rings.iter() {
            lock(ring).retain(|e| kept.iter().any(|k| k.id == e.id));
        }
        kept.clear();
    }

    /// Log a slow request on `worker`'s ring. `argv` is shortened here.
    pub fn record(
        &self,
        worker: usize,
        duration: Duration,
        argv: &[&[u8]],
        client_addr: String,
        client_name: String,
        node: String,
    ) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let entry = Entry {
            id: self.next_id.fetch_add(1, Relaxed),
            unix_time: now.as_secs(),
            logged_us: u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
            duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            argv: truncate_argv(argv),
            client_addr,
            client_name,
            node,
        };
        let Some(ring) = self.rings.get(worker) else {
            return;
        };
        let mut ring = lock(ring);
        while ring.len() >= self.max_len().max(1) {
            ring.pop_back();
        }
        ring.push_front(entry);
    }

    /// Up to `count` entries, newest first, over all workers.
    pub fn get(&self, count: usize) -> Vec<Entry> {
        let mut all: Vec<Entry> = Vec::new();
        for ring in self.rings.iter() {
            let ring = lock(ring);
            all.extend(ring.iter().take(count.min(self.max_len())).cloned());
        }
        all.sort_by_key(|e| std::cmp::Reverse((e.logged_us, e.id)));
        all.truncate(count.min(self.max_len()));
        all
    }

    /// Entries kept (at most `max_len`).
    pub fn len(&self) -> usize {
        let total: usize = self.rings.iter().map(|r| lock(r).len()).sum();
        total.min(self.max_len())
    }

    /// True when nothing is logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every entry (ids keep increasing, as in Redis).
    pub fn reset(&self) {
        for ring in self.rings.iter() {
            lock(ring).clear();
        }
    }
}

/// Shorten `argv` like Redis' slow log: at most [`MAX_ARGC`] arguments, the last kept one
/// replaced by `... (N more arguments)`; each longer than [`MAX_STRING`] bytes cut there and
/// followed by `... (N more bytes)`.
pub fn truncate_argv(argv: &[&[u8]]) -> Vec<Bytes> {
    let kept = argv.len().min(MAX_ARGC);
    let mut out = Vec::with_capacity(kept);
    for (i, arg) in argv.iter().take(kept).enumerate() {
        if kept != argv.len() && i == kept - 1 {
            let more = argv.len() - kept + 1;
            out.push(Bytes::from(format!("... ({more} more arguments)")));
        } else if arg.len() > MAX_STRING {
            let mut s = arg[..MAX_STRING].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", arg.len() - MAX_STRING).as_bytes());
            out.push(Bytes::from(s));
        } else {
            // A copy: an entry must not pin the client's read buffer.
            out.push(Bytes::copy_from_slice(arg));
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| i.to_string().into_bytes()).collect()
    }

    fn refs(args: &[Vec<u8>]) -> Vec<&[u8]> {
        args.iter().map(|a| &a[..]).collect()
    }

    #[test]
    fn argv_is_truncated_like_redis() {
        let long = vec![b'x'; 200];
        let out = truncate_argv(&[&b"SET"[..], &long]);
        assert_eq!(out[1].len(), 128 + "... (72 more bytes)".len());
        assert!(out[1].ends_with(b"x... (72 more bytes)"));
        let out = truncate_argv(&refs(&args(40)));
        assert_eq!(out.len(), 32);
        assert_eq!(&out[31][..], b"... (9 more arguments)");
        assert_eq!(&out[30][..], b"30");
        assert_eq!(truncate_argv(&refs(&args(32))).len(), 32);
        assert_eq!(&truncate_argv(&refs(&args(32)))[31][..], b"31");
    }

    #[test]
    fn rings_are_bounded_and_merged_newest_first() {
        let log = SlowLog::new(2, 0, 3);
        for i in 0..5u64 {
            let worker = (i % 2) as usize;
            log.record(
                worker,
                Duration::from_micros(i),
                &refs(&args(1)),
                "a:1".into(),
                String::new(),
                "n".into(),
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(log.len(), 3);
        let ids: Vec<u64> = log.get(10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [4, 3, 2]);
        assert_eq!(log.get(1).len(), 1);
        log.reset();
        assert!(log.is_empty());
        log.record(
            0,
            Duration::ZERO,
            &refs(&args(1)),
            String::new(),
            String::new(),
            String::new(),
        );
        assert_eq!(log.get(1)[0].id, 5, "ids survive a reset");
    }

    #[test]
    fn settings_change_at_run_time() {
        let log = SlowLog::new(1, -1, 128);
        assert_eq!(log.threshold(), None);
        log.set_log_slower_than_us(0);
        assert_eq!(log.threshold(), Some(Duration::ZERO));
        assert_eq!(log.log_slower_than_us(), 0);
        for _ in 0..5 {
            log.record(
                0,
                Duration::ZERO,
                &[b"GET"],
                String::new(),
                String::new(),
                String::new(),
            );
        }
        log.set_max_len(2);
        assert_eq!(log.max_len(), 2);
        let ids: Vec<u64> = log.get(10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [4, 3], "the newest are kept");
        log.set_max_len(10);
        assert_eq!(log.len(), 2, "dropped entries do not come back");
    }

    #[test]
    fn negative_threshold_disables() {
        assert_eq!(SlowLog::new(1, -1, 128).threshold(), None);
        assert_eq!(SlowLog::new(1, 10, 0).threshold(), None);
        assert_eq!(
            SlowLog::new(1, 0, 128).threshold(),
            Some(Duration::from_micros(0))
        );
    }
}
