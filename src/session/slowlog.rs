//! The session's side of the slow log: timing each request from its read to its reply being
//! ready to write ([`SlowWatch`]), logging the slow ones, and the `SLOWLOG` command.
//!
//! Per request the watch keeps the read time and a handle on the raw request (no copy, no
//! allocation once the queue has grown to the client's pipeline depth); per reply written it
//! makes one comparison. Only a slow request is parsed again, named and locked into the log.
//! Requests run exclusively (blocking commands, WAIT, EXEC, WATCH, SCAN) are not timed, as
//! Redis does not count time spent blocked; nor are AUTH and HELLO (they carry passwords).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::command::{self, split, Flags};
use crate::ops::slowlog::Entry;
use crate::resp::{encode, Frame};

use super::dispatch::error;
use super::local::Local;
use super::Session;

/// Requests of one session not yet answered, for the slow log.
#[derive(Debug, Default)]
pub(super) struct SlowWatch {
    /// `None`: the slow log is off and nothing is kept.
    threshold: Option<Duration>,
    /// (read at, raw request), oldest first.
    pending: VecDeque<(Instant, Bytes)>,
}

impl SlowWatch {
    /// A watch logging requests that take at least `threshold` (`None`: off).
    pub(super) fn new(threshold: Option<Duration>) -> SlowWatch {
        SlowWatch {
            threshold,
            pending: VecDeque::new(),
        }
    }

    /// A request was read at `at`.
    #[inline]
    pub(super) fn read(&mut self, at: Instant, raw: &Bytes) {
        if self.threshold.is_some() {
            self.pending.push_back((at, raw.clone()));
        }
    }

    /// The request just read runs exclusively: not timed.
    #[inline]
    pub(super) fn unread(&mut self) {
        self.pending.pop_back();
    }
}

impl Session {
    /// Replies were taken from the queue to be written: time the requests answered since the
    /// last call (those beyond the replies still owed) and log the slow ones.
    #[inline]
    pub(super) fn slow_written(&mut self) {
        let Some(threshold) = self.slow.threshold else {
            return;
        };
        let done = self
            .slow
            .pending
            .len()
            .saturating_sub(self.queue.outstanding());
        if done == 0 {
            return;
        }
        let now = Instant::now();
        // Read at or before this instant means slow: one comparison per request, the
        // duration is worked out only for a slow one.
        let slow_if_read_by = now.checked_sub(threshold);
        for _ in 0..done {
            let Some((at, raw)) = self.slow.pending.pop_front() else {
                break;
            };
            if slow_if_read_by.is_some_and(|by| at <= by) {
                self.log_slow(now.saturating_duration_since(at), &raw);
            }
        }
    }

    /// The slow path: parse the request again, name its node and log it.
    #[cold]
    fn log_slow(&self, took: Duration, raw: &Bytes) {
        let Ok(Frame::Array(items)) = crate::resp::parse_frame(raw, &self.worker.limits) else {
            return;
        };
        let owned: Vec<Bytes> = items
            .into_iter()
            .filter_map(|f| match f {
                Frame::Bulk(b) => Some(b),
                _ => None,
            })
            .collect();
        let argv: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
        let Some(spec) = command::lookup(&argv) else {
            return;
        };
        let blocking = match spec.name {
            "xread" | "xreadgroup" => argv.iter().any(|a| a.eq_ignore_ascii_case(b"block")),
            _ => spec.is_blocking(),
        };
        if blocking
            || spec.flags.contains(Flags::SKIP_SLOWLOG)
            || matches!(spec.name, "auth" | "hello")
        {
            return;
        }
        let node = self.node_of(spec, &argv);
        let addr = self.info.peer.map(|a| a.to_string()).unwrap_or_default();
        let name = self
            .info
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        self.worker
            .ops
            .slowlog
            .record(self.worker.index, took, &argv, addr, name, node);
    }

    /// The node a request went to, as the slot table says now: its first key's master,
    /// `proxy` for commands the proxy answers, `masters` for ones sent to every master.
    fn node_of(&self, spec: &command::CommandSpec, argv: &[&[u8]]) -> String {
        if Local::of(spec).is_some() {
            return "proxy".into();
        }
        let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
        let key = spec
            .routing_args(argv, &mut keys)
            .ok()
            .and_then(|()| keys.first().and_then(|&i| argv.get(i)));
        let table = self.worker.topology.table();
        match key {
            Some(key) => {
                let slot = table.placement().unit_of(key);
                table
                    .shard_of(slot)
                    .and_then(|i| table.shards().get(i))
                    .map(|s| s.master.to_string())
                    .unwrap_or_default()
            }
            None if split::fan_out_rule(spec.name).is_some() => "masters".into(),
            None => String::new(),
        }
    }
}

/// `SLOWLOG GET [count] | LEN | RESET | HELP`, in Redis' reply shapes.
pub(super) fn run(args: &[&[u8]], session: &Session) -> Bytes {
    let log = &session.worker.ops.slowlog;
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match (&sub[..], args.len()) {
        (b"get", 2 | 3) => {
            let count = match args.get(2) {
                None => 10,
                Some(n) => match std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse::<i64>().ok())
                {
                    Some(-1) => usize::MAX,
                    Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => return error("ERR count should be greater than or equal to -1"),
                },
            };
            get_reply(&log.get(count))
        }
        (b"len", 2) => Bytes::from(format!(":{}\r\n", log.len())),
        (b"reset", 2) => {
            log.reset();
            Bytes::from_static(b"+OK\r\n")
        }
        (b"help", 2) => {
            let lines = [
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ];
            let mut out = BytesMut::new();
            encode::array_header(&mut out, lines.len());
            for line in lines {
                encode::simple(&mut out, line);
            }
            out.freeze()
        }
        _ => error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
            super::dispatch::printable(&sub)
        )),
    }
}

/// The `SLOWLOG GET` reply: per entry id, unix time, µs, argv, `ip:port`, client name.
fn get_reply(entries: &[Entry]) -> Bytes {
    let mut out = BytesMut::new();
    encode::array_header(&mut out, entries.len());
    for e in entries {
        encode::array_header(&mut out, 6);
        encode::integer(&mut out, i64::try_from(e.id).unwrap_or(i64::MAX));
        encode::integer(&mut out, i64::try_from(e.unix_time).unwrap_or(i64::MAX));
        encode::integer(&mut out, i64::try_from(e.duration_us).unwrap_or(i64::MAX));
        encode::array_header(&mut out, e.argv.len());
        for arg in &e.argv {
            encode::bulk(&mut out, arg);
        }
        encode::bulk(&mut out, e.client_addr.as_bytes());
        encode::bulk(&mut out, e.client_name.as_bytes());
    }
    out.freeze()
}
