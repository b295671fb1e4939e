//! `CLIENT …` for the proxy's own clients: the session's own name and id, LIST / KILL over
//! every client of every worker (the shared [`crate::ops::clients::Registry`]), PAUSE /
//! UNPAUSE of them all ([`crate::ops::pause`]), and the tracking state, which is always off.

use bytes::Bytes;

use crate::ops::clients::{Activity, Filter};
use crate::resp::encode;

use super::dispatch::{error, printable};
use super::local::{bulk, null, text_reply, valid_name, BAD_NAME, OK};
use super::Session;

impl Session {
    /// The registry id of the last command dispatched (0: none), looked up only when it
    /// differs from the previous one.
    pub(super) fn last_cmd_id(&mut self) -> u16 {
        let Some(spec) = self.last_spec else {
            return 0;
        };
        match self.published_cmd {
            Some((last, id)) if std::ptr::eq(last, spec) => id,
            _ => {
                let id = crate::command::id_of(spec);
                self.published_cmd = Some((spec, id));
                id
            }
        }
    }

    /// Whether CLIENT PAUSE holds `request` now (a pause may be in force): `Some(writes)`,
    /// `writes` saying if it may write (a WRITE pause holds only those, as Redis: writes,
    /// and the commands that may replicate — EVAL, FCALL, PUBLISH, PFCOUNT, WAIT — and
    /// EXEC). CLIENT PAUSE and UNPAUSE themselves are never held, so a pause can be lifted;
    /// unknown commands are not held (their error comes first, as in Redis).
    #[cold]
    #[inline(never)]
    pub(super) fn paused(&self, request: &crate::resp::Request) -> Option<bool> {
        use crate::command::Flags;
        let args = request.args();
        let custom = || self.worker.custom_commands()?.lookup(&args[..]);
        let spec = crate::command::lookup(&args[..]).or_else(custom)?;
        if matches!(spec.name, "client|pause" | "client|unpause") {
            return None;
        }
        let writes = spec
            .flags
            .intersects(Flags::WRITE.union(Flags::MAY_REPLICATE))
            || spec.name == "exec";
        let now = std::time::Instant::now();
        self.worker.ops().pause.holds(writes, now).then_some(writes)
    }

    /// Publish this session's activity to the registry (once per read batch, and before
    /// CLIENT LIST / INFO describe it). `last_cmd`: the command id, 0 to keep the last one.
    pub(super) fn publish_activity(&self, at: std::time::Instant, last_cmd: u16) {
        let subs = self.subscription_counts();
        let multi = self
            .tx
            .as_ref()
            .map_or(-1, |tx| i64::try_from(tx.queued()).unwrap_or(i64::MAX));
        self.info.active(
            at,
            Activity {
                last_cmd,
                subs,
                multi,
                resp: if self.resp3 { 3 } else { 2 },
            },
        );
    }
}

/// Serve `CLIENT <sub> …`.
pub(super) fn run(args: &[&[u8]], session: &mut Session) -> Bytes {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match &sub[..] {
        b"setname" => match args.get(2) {
            Some(name) if args.len() == 3 && valid_name(name) => {
                session
                    .info
                    .set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
                Bytes::from_static(OK)
            }
            Some(_) if args.len() == 3 => error(BAD_NAME),
            _ => wrong_args("client|setname"),
        },
        b"getname" => match session.info.name() {
            Some(name) => bulk(&name),
            None => null(session.resp3),
        },
        b"id" => Bytes::from(format!(":{}\r\n", session.info.id)),
        b"info" => {
            let mut line = own_line(session, args);
            line.push('\n');
            text_reply(line.as_bytes(), session.resp3)
        }
        b"list" => list(args, session),
        b"kill" => kill(args, session),
        b"no-evict" => match args.get(2) {
            Some(v) if v.eq_ignore_ascii_case(b"on") || v.eq_ignore_ascii_case(b"off") => {
                Bytes::from_static(OK)
            }
            _ => error("ERR syntax error"),
        },
        // Redis 7.2: client libraries announce themselves; accepted and forgotten.
        b"setinfo" => match (args.get(2), args.len()) {
            (Some(attr), 4)
                if attr.eq_ignore_ascii_case(b"lib-name")
                    || attr.eq_ignore_ascii_case(b"lib-ver") =>
            {
                Bytes::from_static(OK)
            }
            (Some(attr), 4) => error(&format!("ERR Unrecognized option '{}'", printable(attr))),
            _ => wrong_args("client|setinfo"),
        },
        b"pause" => pause(args, session),
        b"unpause" => {
            session.worker.ops().pause.unpause();
            Bytes::from_static(OK)
        }
        // Client-side caching is not offered: tracking is never on (see `service`).
        b"getredir" => Bytes::from_static(b":-1\r\n"),
        b"trackinginfo" => tracking_off(session.resp3),
        b"tracking" => match args.get(2) {
            Some(off) if off.eq_ignore_ascii_case(b"off") => Bytes::from_static(OK),
            Some(on) if on.eq_ignore_ascii_case(b"on") => error(
                "ERR slotgate: CLIENT TRACKING is not supported: the proxy shares its node \
                 connections between clients, so no node can track one client's keys",
            ),
            _ => error("ERR syntax error"),
        },
        b"caching" => error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        ),
        b"reply" => match args.get(2) {
            Some(on) if args.len() == 3 && on.eq_ignore_ascii_case(b"on") => Bytes::from_static(OK),
            Some(mode)
                if args.len() == 3
                    && (mode.eq_ignore_ascii_case(b"off")
                        || mode.eq_ignore_ascii_case(b"skip")) =>
            {
                error(&format!(
                    "ERR slotgate: CLIENT REPLY {} is not supported: the proxy answers every \
                     command",
                    printable(mode).to_uppercase()
                ))
            }
            _ => error("ERR syntax error"),
        },
        b"help" => help(),
        _ => error(&format!(
            "ERR slotgate: CLIENT {} is not supported by the proxy",
            printable(&sub).to_uppercase()
        )),
    }
}

/// `CLIENT PAUSE timeout [WRITE|ALL]`: every client of the proxy, on every worker, has its
/// commands (or only those that may write) held until the time is up or CLIENT UNPAUSE.
fn pause(args: &[&[u8]], session: &Session) -> Bytes {
    use crate::ops::pause::Mode;
    let Some(ms) = args
        .get(2)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<i64>().ok())
    else {
        return error("ERR timeout is not an integer or out of range");
    };
    let Ok(ms) = u64::try_from(ms) else {
        return error("ERR timeout is negative");
    };
    let mode = match args.get(3) {
        None => Mode::All,
        Some(m) if args.len() == 4 && m.eq_ignore_ascii_case(b"all") => Mode::All,
        Some(m) if args.len() == 4 && m.eq_ignore_ascii_case(b"write") => Mode::Write,
        Some(_) => return error("ERR syntax error"),
    };
    session.worker.ops().pause.pause(ms, mode);
    Bytes::from_static(OK)
}

/// `CLIENT TRACKINGINFO` of a client that does not track (none does through the proxy).
fn tracking_off(resp3: bool) -> Bytes {
    let mut out = bytes::BytesMut::new();
    if resp3 {
        encode::length_header(&mut out, b'%', 3);
    } else {
        encode::array_header(&mut out, 6);
    }
    encode::bulk(&mut out, b"flags");
    encode::array_header(&mut out, 1);
    encode::bulk(&mut out, b"off");
    encode::bulk(&mut out, b"redirect");
    encode::integer(&mut out, -1);
    encode::bulk(&mut out, b"prefixes");
    encode::array_header(&mut out, 0);
    out.freeze()
}

fn wrong_args(name: &str) -> Bytes {
    error(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// This session's line, with the command being run as `cmd`.
fn own_line(session: &Session, args: &[&[u8]]) -> String {
    let cmd = crate::command::lookup(args).map_or(0, crate::command::id_of);
    session.publish_activity(std::time::Instant::now(), cmd);
    session.info.line(
        &session.worker.ops().clients,
        Some(session.queue.outstanding()),
    )
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …]`.
fn list(args: &[&[u8]], session: &Session) -> Bytes {
    let mut filter = Filter::default();
    let mut rest = args.iter().skip(2);
    let mut only_none = false;
    while let Some(option) = rest.next() {
        if option.eq_ignore_ascii_case(b"type") {
            let Some(kind) = rest.next() else {
                return error("ERR syntax error");
            };
            match client_type(kind) {
                Ok(Some(pubsub)) => filter.pubsub = Some(pubsub),
                Ok(None) => only_none = true,
                Err(reply) => return reply,
            }
        } else if option.eq_ignore_ascii_case(b"id") {
            let mut ids = Vec::new();
            for id in rest.by_ref() {
                match parse_u64(id).filter(|&id| id > 0) {
                    Some(id) => ids.push(id),
                    None => return error("ERR Invalid client ID"),
                }
            }
            if ids.is_empty() {
                return error("ERR syntax error");
            }
            filter.ids = Some(ids);
        } else {
            return error("ERR syntax error");
        }
    }
    let own = own_line(session, args);
    let registry = &session.worker.ops().clients;
    let mut text = String::new();
    if !only_none {
        for client in registry.list() {
            if !filter.matches(&client) {
                continue;
            }
            if client.id == session.info.id {
                text.push_str(&own);
            } else {
                text.push_str(&client.line(registry, None));
            }
            text.push('\n');
        }
    }
    text_reply(text.as_bytes(), session.resp3)
}

/// `TYPE` of LIST and KILL: `Some(pubsub?)`, or `None` for master/replica (the proxy has no
/// such clients).
fn client_type(kind: &[u8]) -> Result<Option<bool>, Bytes> {
    let kind = kind.to_ascii_lowercase();
    match &kind[..] {
        b"normal" => Ok(Some(false)),
        b"pubsub" => Ok(Some(true)),
        b"master" | b"replica" | b"slave" => Ok(None),
        _ => Err(error(&format!(
            "ERR Unknown client type '{}'",
            printable(&kind)
        ))),
    }
}

fn parse_u64(arg: &[u8]) -> Option<u64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// `CLIENT KILL ip:port` (old form: `+OK` or an error) or `CLIENT KILL <filter> <value> …`
/// (new form: the number killed). The session's own connection, if named, is closed after
/// this reply, as Redis does.
fn kill(args: &[&[u8]], session: &mut Session) -> Bytes {
    let registry = std::sync::Arc::clone(&session.worker.ops().clients);
    if args.len() == 3 {
        let filter = Filter {
            addr: Some(String::from_utf8_lossy(args[2]).into_owned()),
            ..Filter::default()
        };
        let me = filter.matches(&session.info);
        let others = registry.kill(&Filter {
            skip: Some(session.info.id),
            ..filter
        });
        if me {
            session.closing = true;
        }
        return if me || others > 0 {
            Bytes::from_static(OK)
        } else {
            error("ERR No such client")
        };
    }
    let mut filter = Filter::default();
    let mut skip_me = true;
    let mut none = false;
    let mut rest = args.iter().skip(2);
    while let Some(option) = rest.next() {
        let Some(value) = rest.next() else {
            return error("ERR syntax error");
        };
        let text = || String::from_utf8_lossy(value).into_owned();
        match &option.to_ascii_lowercase()[..] {
            b"id" => match parse_u64(value).filter(|&id| id > 0) {
                Some(id) => filter.ids = Some(vec![id]),
                None => return error("ERR client-id should be greater than 0"),
            },
            b"type" => match client_type(value) {
                Ok(Some(pubsub)) => filter.pubsub = Some(pubsub),
                Ok(None) => none = true,
                Err(reply) => return reply,
            },
            b"addr" => filter.addr = Some(text()),
            b"laddr" => filter.laddr = Some(text()),
            b"user" => filter.user = Some(text()),
            b"maxage" => match parse_u64(value) {
                Some(secs) => filter.max_age_secs = Some(secs),
                None => return error("ERR syntax error"),
            },
            b"skipme" => {
                if value.eq_ignore_ascii_case(b"yes") {
                    skip_me = true;
                } else if value.eq_ignore_ascii_case(b"no") {
                    skip_me = false;
                } else {
                    return error("ERR syntax error");
                }
            }
            _ => return error("ERR syntax error"),
        }
    }
    if none {
        return Bytes::from_static(b":0\r\n");
    }
    let me = !skip_me && filter.matches(&session.info);
    let mut killed = registry.kill(&Filter {
        skip: Some(session.info.id),
        ..filter
    });
    if me {
        session.closing = true;
        killed += 1;
    }
    Bytes::from(format!(":{killed}\r\n"))
}

fn help() -> Bytes {
    let lines = [
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Served by slotgate for its own clients:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type.",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "    * ID <client-id>",
        "      Kill connections by client id.",
        "    * MAXAGE <maxage>",
        "      Kill connections older than the specified age.",
        "LIST [options ...]",
        "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Return clients of specified type.",
        "    * ID <client-id> [<client-id> ...]",
        "      Return clients of specified IDs only.",
        "NO-EVICT (ON|OFF)",
        "    Accepted; the proxy evicts no client.",
        "PAUSE <timeout> [WRITE|ALL]",
        "    Hold the commands of every client of the proxy (or those that may write) for",
        "    <timeout> milliseconds.",
        "UNPAUSE",
        "    Stop the pause.",
        "GETREDIR, TRACKINGINFO",
        "    Tracking is never on through the proxy: -1, and flags 'off'.",
        "REPLY ON",
        "    Accepted; OFF and SKIP are not supported.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Accepted; not recorded.",
        "SETNAME <connection-name>",
        "    Assign the name <connection-name> to the current connection.",
    ];
    encode::help(&lines)
}
