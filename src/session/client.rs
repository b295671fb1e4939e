//! `CLIENT …` for the proxy's own clients: the session's own name and id, and LIST / KILL
//! over every client of every worker (the shared [`crate::ops::clients::Registry`]).

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
        b"help" => help(),
        _ => error(&format!(
            "ERR slotgate: CLIENT {} is not supported by the proxy",
            printable(&sub).to_uppercase()
        )),
    }
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
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Accepted; not recorded.",
        "SETNAME <connection-name>",
        "    Assign the name <connection-name> to the current connection.",
    ];
    encode::help(&lines)
}
