//! The session's side of the slow log: logging the requests its reply queue found slow, and
//! the `SLOWLOG` command.
//!
//! A request is timed from its read to its reply being in (from its node, or from the proxy
//! for a command it answers itself): the reply queue stamps each place with the instant its
//! reply turns slow (read time + threshold) and compares when the reply arrives with its
//! request ([`super::ReplyQueue::take_slow`]), so a request costs the slow log one comparison
//! and no copy. Only a slow request is parsed
//! again, named and locked into the log. Requests run exclusively (blocking commands, WAIT,
//! EXEC, WATCH, SCAN), queued in a transaction or for subscriptions are not timed, as Redis
//! does not count time spent blocked; nor are AUTH and HELLO (they carry passwords).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::command::{self, split, Flags};
use crate::ops::slowlog::Entry;
use crate::resp::{encode, Frame};

use super::dispatch::error;
use super::local::Local;
use super::{Session, WorkerContext};
use crate::ops::clients::Client;

impl Session {
    /// Log the slow requests answered since the last call: one flag read when there are none.
    #[inline(always)]
    pub(super) fn log_slow_answered(&self) {
        if self.queue.kept_slow() {
            self.log_kept_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn log_kept_slow(&self) {
        for (took, request) in self.queue.take_slow() {
            log_slow(&self.worker, self.info.client(), took, &request);
        }
    }

    /// What logs this session's slow requests from where their replies arrive, for replies
    /// written there (`queue::direct`).
    pub(super) fn slow_logger(&self) -> super::queue::SlowLogger {
        let worker = std::rc::Rc::clone(&self.worker);
        let client = std::sync::Arc::clone(self.info.client());
        Box::new(move |took, request| log_slow(&worker, &client, took, request))
    }
}

/// The slow path: parse `client`'s request `raw` again, name its node and log it.
#[cold]
fn log_slow(worker: &WorkerContext, client: &Client, took: Duration, raw: &Bytes) {
    let Ok(Frame::Array(items)) = crate::resp::parse_frame(raw, &worker.settings().limits) else {
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
    let custom = || worker.custom_commands()?.lookup(&argv);
    let Some(spec) = command::lookup(&argv).or_else(custom) else {
        return;
    };
    let blocking = match spec.name {
        "xread" | "xreadgroup" => argv.iter().any(|a| a.eq_ignore_ascii_case(b"block")),
        _ => spec.is_blocking(),
    };
    if blocking || spec.flags.contains(Flags::SKIP_SLOWLOG) || matches!(spec.name, "auth" | "hello")
    {
        return;
    }
    let node = node_of(worker, spec, &argv);
    let addr = client.peer.map(|a| a.to_string()).unwrap_or_default();
    let name = client
        .name()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .unwrap_or_default();
    worker
        .ops()
        .slowlog
        .record(worker.index(), took, &argv, addr, name, node);
}

/// The node a request went to, as the slot table says now: its first key's master, `proxy`
/// for commands the proxy answers, `masters` for ones sent to every master.
fn node_of(worker: &WorkerContext, spec: &command::CommandSpec, argv: &[&[u8]]) -> String {
    if Local::of(spec).is_some() {
        return "proxy".into();
    }
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    let key = spec
        .routing_args(argv, &mut keys)
        .ok()
        .and_then(|()| keys.first().and_then(|&i| argv.get(i)));
    let table = worker.router().topology().table();
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

/// `SLOWLOG GET [count] | LEN | RESET | HELP`, in Redis' reply shapes.
pub(super) fn run(args: &[&[u8]], session: &Session) -> Bytes {
    let log = &session.worker.ops().slowlog;
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
            encode::help(&lines)
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
