//! `MONITOR`: every command the proxy's clients send, streamed to the clients that asked,
//! in Redis' line format (`1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`), from every
//! worker. The proxy sees every client's commands, so its stream is the one a single Redis
//! would give; the nodes' own streams would show the proxy's traffic instead.
//!
//! The request path asks [`Monitors::any`] — one relaxed load — and does nothing more while
//! nobody monitors. With monitors, a command's line is formatted once and sent to each
//! monitor's channel (a lock per command, as MONITOR costs a Redis server too); each
//! monitor's session moves the lines into its reply queue under the pub/sub output limit,
//! which cuts off a monitor that does not read.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The clients monitoring the proxy.
#[derive(Debug, Default)]
pub struct Monitors {
    /// How many monitor: read on the request path.
    count: AtomicUsize,
    /// Each monitor's client id and the channel to its session.
    monitors: Mutex<Vec<(u64, UnboundedSender<Bytes>)>>,
}

/// A client's place among the monitors: leaves them when dropped (RESET, QUIT, hang-up).
#[derive(Debug)]
pub struct Monitoring {
    monitors: Arc<Monitors>,
    id: u64,
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        self.monitors.remove(self.id);
    }
}

impl Monitors {
    /// Whether anyone monitors: one relaxed load, for the request path.
    #[inline(always)]
    pub fn any(&self) -> bool {
        self.count.load(Relaxed) != 0
    }

    /// Make client `id` a monitor: the lines come on the receiver until the [`Monitoring`]
    /// is dropped. A client monitors once (the session keeps its place).
    pub fn add(self: &Arc<Self>, id: u64) -> (Monitoring, UnboundedReceiver<Bytes>) {
        let (tx, rx) = unbounded_channel();
        let mut monitors = self.lock();
        monitors.push((id, tx));
        self.count.store(monitors.len(), Relaxed);
        let place = Monitoring {
            monitors: Arc::clone(self),
            id,
        };
        (place, rx)
    }

    fn remove(&self, id: u64) {
        let mut monitors = self.lock();
        monitors.retain(|(other, _)| *other != id);
        self.count.store(monitors.len(), Relaxed);
    }

    /// Send `line` to every monitor.
    pub fn feed(&self, line: &Bytes) {
        let mut monitors = self.lock();
        // A monitor whose session ended and has not yet dropped its place: left out.
        monitors.retain(|(_, tx)| tx.send(line.clone()).is_ok());
        self.count.store(monitors.len(), Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, UnboundedSender<Bytes>)>> {
        self.monitors.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One MONITOR line as a status reply, in Redis' format: the time with microseconds, the
/// database and client address in brackets, then each argument quoted and escaped as Redis
/// escapes them (`sdscatrepr`). `args[redact_from..]` are shown as `(redacted)` (AUTH's
/// password), as Redis 7 shows them.
pub fn line(at: SystemTime, db: u32, client: &str, args: &[&[u8]], redact_from: usize) -> Bytes {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = BytesMut::with_capacity(48 + args.iter().map(|a| a.len() + 3).sum::<usize>());
    out.put_u8(b'+');
    out.extend_from_slice(
        format!(
            "{}.{:06} [{db} {client}]",
            since.as_secs(),
            since.subsec_micros()
        )
        .as_bytes(),
    );
    for (i, arg) in args.iter().enumerate() {
        out.put_u8(b' ');
        if i >= redact_from {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            quoted(&mut out, arg);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// `arg` in double quotes, escaped as Redis' `sdscatrepr` does.
fn quoted(out: &mut BytesMut, arg: &[u8]) {
    out.put_u8(b'"');
    for &b in arg {
        match b {
            b'\\' | b'"' => {
                out.put_u8(b'\\');
                out.put_u8(b);
            }
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.put_u8(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_look_like_redis_ones() {
        let at = UNIX_EPOCH + Duration::from_micros(1_339_518_083_107_412);
        let line = line(at, 0, "127.0.0.1:60866", &[b"keys", b"*"], usize::MAX);
        assert_eq!(
            &line[..],
            b"+1339518083.107412 [0 127.0.0.1:60866] \"keys\" \"*\"\r\n"
        );
        let at = UNIX_EPOCH + Duration::from_micros(5_000_001);
        let odd: &[u8] = b"a\"b\\c\n\r\t\x07\x08\x00\xff ";
        let line = super::line(at, 3, "[::1]:1", &[b"SET", odd], usize::MAX);
        assert_eq!(
            &line[..],
            &b"+5.000001 [3 [::1]:1] \"SET\" \"a\\\"b\\\\c\\n\\r\\t\\a\\b\\x00\\xff \"\r\n"[..]
        );
    }

    #[test]
    fn passwords_are_redacted() {
        let line = line(UNIX_EPOCH, 0, "c", &[b"AUTH", b"user", b"secret"], 1);
        assert_eq!(
            &line[..],
            b"+0.000000 [0 c] \"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"
        );
    }

    #[test]
    fn monitors_come_and_go() {
        let monitors = Arc::new(Monitors::default());
        assert!(!monitors.any());
        let (place, mut rx) = monitors.add(7);
        let (other, mut rx2) = monitors.add(9);
        assert!(monitors.any());
        monitors.feed(&Bytes::from_static(b"+x\r\n"));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"+x\r\n"));
        assert_eq!(rx2.try_recv().unwrap(), Bytes::from_static(b"+x\r\n"));
        drop(place);
        assert!(monitors.any());
        drop(other);
        assert!(!monitors.any());
        let (_place, rx) = monitors.add(8);
        drop(rx);
        monitors.feed(&Bytes::from_static(b"+y\r\n"));
        assert!(!monitors.any(), "a gone receiver is left out");
    }
}
