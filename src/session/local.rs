//! Commands the proxy answers itself: connection handling (PING, ECHO, QUIT, SELECT, HELLO,
//! CLIENT … in `client.rs`), introspection (COMMAND, INFO, SLOWLOG in `slowlog.rs`), TIME,
//! and the admin commands about the proxy itself (ROLE, ACL …, MONITOR in `admin.rs`).
//! Nothing here touches a backend.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::command::{introspect, CommandSpec};
use crate::resp::encode;

use super::dispatch::{error, printable};
use super::Session;

/// A command served by the proxy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Hello,
    Auth,
    Client,
    Command,
    Info,
    Slowlog,
    Time,
    /// CLUSTER KEYSLOT/INFO/MYID/SLOTS/SHARDS/NODES: slotgate as a one-node cluster, or the fleet.
    Cluster,
    /// READONLY / READWRITE: cluster-aware clients send them; harmless here.
    Ok,
    /// ROLE, REPLICAOF, ACL …, CONFIG SET of the proxy's own settings, MONITOR: key-less
    /// admin commands the proxy answers about itself (`admin.rs`).
    Admin(super::admin::Admin),
}

impl Local {
    /// The local command `spec` names, if it is one.
    pub(super) fn of(spec: &CommandSpec) -> Option<Local> {
        let (base, sub) = spec.name.split_once('|').unwrap_or((spec.name, ""));
        Some(match base {
            // CLIENT about the proxy's own clients; the rest (PAUSE, TRACKING, REPLY …) are
            // about a Redis server's internals and refused.
            "client"
                if !matches!(
                    sub,
                    "" | "setname"
                        | "getname"
                        | "id"
                        | "info"
                        | "help"
                        | "list"
                        | "kill"
                        | "no-evict"
                        | "pause"
                        | "unpause"
                        | "getredir"
                        | "trackinginfo"
                        | "tracking"
                        | "caching"
                        | "reply"
                ) =>
            {
                return None
            }
            "ping" => Local::Ping,
            "echo" => Local::Echo,
            "quit" => Local::Quit,
            "select" => Local::Select,
            "hello" => Local::Hello,
            "auth" => Local::Auth,
            "client" => Local::Client,
            "command" => Local::Command,
            "info" => Local::Info,
            "slowlog" => Local::Slowlog,
            "time" => Local::Time,
            "cluster" if super::cluster_view::serves(sub) => Local::Cluster,
            "readonly" | "readwrite" => Local::Ok,
            _ => return super::admin::Admin::of(base, sub).map(Local::Admin),
        })
    }
}

/// The `+OK` reply.
pub(super) const OK: &[u8] = b"+OK\r\n";

/// Redis' answer to `PING` with more than one argument (its table arity, -1, lets it by; the
/// command itself refuses).
pub(super) fn ping_arity_error() -> Bytes {
    Bytes::from_static(b"-ERR wrong number of arguments for 'ping' command\r\n")
}

/// Answer a local command. `args` passed the command table's arity check.
pub(super) fn run(cmd: Local, args: &[&[u8]], session: &mut Session) -> Bytes {
    let arg = |i: usize| args.get(i).map(|a| &a[..]).unwrap_or_default();
    match cmd {
        Local::Ping => match args {
            [_] => Bytes::from_static(b"+PONG\r\n"),
            [_, msg] => bulk(msg),
            _ => ping_arity_error(),
        },
        Local::Echo => bulk(arg(1)),
        Local::Quit => {
            session.closing = true;
            Bytes::from_static(OK)
        }
        // Checked by `databases::select_route` before it came here.
        Local::Select => super::databases::select(args, session),
        Local::Auth => auth(args, session),
        Local::Hello => hello(args, session),
        Local::Client => super::client::run(args, session),
        Local::Slowlog => super::slow_requests::run(args, session),
        Local::Command => {
            let mut out = BytesMut::new();
            introspect::command_reply(args, session.worker.custom_commands(), &mut out);
            out.freeze()
        }
        Local::Info => {
            let text = super::info::render(args.get(1..).unwrap_or_default(), &session.worker);
            text_reply(text.as_bytes(), session.resp3)
        }
        Local::Time => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let mut out = BytesMut::new();
            encode::array_header(&mut out, 2);
            encode::bulk(&mut out, now.as_secs().to_string().as_bytes());
            encode::bulk(&mut out, now.subsec_micros().to_string().as_bytes());
            out.freeze()
        }
        Local::Cluster => {
            let sub = args
                .get(1)
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_default();
            let sub = std::str::from_utf8(&sub).unwrap_or_default();
            let view = cluster_view_of(session);
            let reply = super::cluster_view::reply(sub, args, &view, session.resp3);
            match sub {
                // Text replies are verbatim strings in RESP3, as Redis sends them.
                "info" | "nodes" if session.resp3 && reply.starts_with(b"$") => {
                    match crate::resp::parse_frame(&reply, &session.worker.settings().limits) {
                        Ok(crate::resp::Frame::Bulk(text)) => text_reply(&text, true),
                        _ => reply,
                    }
                }
                _ => reply,
            }
        }
        Local::Ok => Bytes::from_static(OK),
        Local::Admin(cmd) => super::admin::run(cmd, args, session),
    }
}

/// What `CLUSTER SLOTS` … show `session`: the fleet view (with `proxy.announce`), or this
/// proxy alone at the address the client connected to.
fn cluster_view_of(session: &Session) -> std::sync::Arc<crate::fleet::FleetView> {
    session.worker.ops().fleet.view().unwrap_or_else(|| {
        let local = session
            .info
            .local
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        std::sync::Arc::new(crate::fleet::FleetView::alone_at(local))
    })
}

/// The null reply: `$-1` in RESP2, `_` in RESP3.
pub(super) fn null(resp3: bool) -> Bytes {
    Bytes::from_static(if resp3 { b"_\r\n" } else { b"$-1\r\n" })
}

/// A text reply (INFO, CLIENT INFO …): a bulk string, or in RESP3 a verbatim `txt` string.
pub(super) fn text_reply(text: &[u8], resp3: bool) -> Bytes {
    if !resp3 {
        return bulk(text);
    }
    let mut out = BytesMut::with_capacity(text.len() + 24);
    crate::resp::Frame::Verbatim(Bytes::from_static(b"txt"), Bytes::copy_from_slice(text))
        .encode(&mut out);
    out.freeze()
}

/// A bulk string reply.
pub(super) fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    encode::bulk(&mut out, data);
    out.freeze()
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: RESP2 or RESP3.
fn hello(args: &[&[u8]], session: &mut Session) -> Bytes {
    let mut rest = args.iter().skip(1);
    let mut resp3 = session.resp3;
    if let Some(version) = rest.next() {
        match std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => return error("NOPROTO unsupported protocol version"),
            None => return error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut name = None;
    let mut credentials = None;
    while let Some(option) = rest.next() {
        if option.eq_ignore_ascii_case(b"AUTH") {
            let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                return error("ERR Syntax error in HELLO option 'AUTH'");
            };
            credentials = Some((*user, *password));
        } else if option.eq_ignore_ascii_case(b"SETNAME") {
            match rest.next() {
                Some(n) if valid_name(n) => name = Some(Bytes::copy_from_slice(n)),
                Some(_) => return error(BAD_NAME),
                None => return error("ERR Syntax error in HELLO option 'SETNAME'"),
            }
        } else {
            return error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                printable(option)
            ));
        }
    }
    match credentials {
        Some((user, password)) => {
            let reply = login(session, Some(user), password);
            if reply.starts_with(b"-") {
                return reply;
            }
        }
        None if !session.authenticated => {
            return error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            )
        }
        None => {}
    }
    if name.is_some() {
        session.info.set_name(name);
    }
    session.resp3 = resp3;
    let mut out = BytesMut::new();
    // Eight fields: Redis' seven and `proxy`.
    if resp3 {
        encode::length_header(&mut out, b'%', 8);
    } else {
        encode::array_header(&mut out, 16);
    }
    for (key, value) in [
        ("server", "redis"),
        ("version", super::info::REDIS_VERSION),
        ("proxy", concat!("slotgate ", env!("CARGO_PKG_VERSION"))),
    ] {
        encode::bulk(&mut out, key.as_bytes());
        encode::bulk(&mut out, value.as_bytes());
    }
    encode::bulk(&mut out, b"proto");
    encode::integer(&mut out, if resp3 { 3 } else { 2 });
    encode::bulk(&mut out, b"id");
    encode::integer(&mut out, session.info.id as i64);
    // "standalone": the whole point is that clients need no cluster support.
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        encode::bulk(&mut out, key.as_bytes());
        encode::bulk(&mut out, value.as_bytes());
    }
    encode::bulk(&mut out, b"modules");
    encode::array_header(&mut out, 0);
    out.freeze()
}

/// `AUTH [user] password`.
fn auth(args: &[&[u8]], session: &mut Session) -> Bytes {
    match args {
        [_, password] => login(session, None, password),
        [_, user, password] => login(session, Some(user), password),
        _ => error("ERR syntax error"),
    }
}

/// Check credentials and, if they are right, make the session that user's.
fn login(session: &mut Session, user: Option<&[u8]>, password: &[u8]) -> Bytes {
    let users = &session.worker.users();
    let default_user = user.is_none_or(|u| u == b"default");
    if !users.required() {
        // Redis' `nopass` default user: AUTH with a password is a configuration mistake;
        // `AUTH default anything` succeeds.
        return match user {
            None => error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ),
            Some(_) if default_user => Bytes::from_static(OK),
            Some(_) => wrong_pass(session),
        };
    }
    match users.authenticate(user, password) {
        Ok(user) => {
            session.authenticated = true;
            session
                .info
                .set_user(user.as_ref().map(|u| u.name.as_str()));
            session.user = user;
            Bytes::from_static(OK)
        }
        Err(()) => wrong_pass(session),
    }
}

fn wrong_pass(session: &Session) -> Bytes {
    session.worker.stats().auth_failed();
    error("WRONGPASS invalid username-password pair or user is disabled.")
}

/// Redis' error for a bad client name.
pub(super) const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Redis' rule for client names: printable ASCII without spaces.
pub(super) fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}
