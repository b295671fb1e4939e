//! Key-less admin commands the proxy answers about itself, where it owns the concept or
//! knows the one answer a single Redis would give for the whole keyspace:
//!
//! - `ROLE`: the standalone master the proxy presents (`INFO replication` says the same);
//!   `REPLICAOF NO ONE` is then a no-op, as on a master; making it a replica is refused.
//! - `ACL WHOAMI / USERS / CAT / GENPASS / DRYRUN / HELP` about the proxy's own `[auth]`
//!   users. The users are the configuration's: `ACL SETUSER / DELUSER / LIST / GETUSER / LOG
//!   / LOAD / SAVE` stay refused (a user made at run time would vanish at the next reload,
//!   and listing them would show password hashes the configuration does not hold).
//! - `CONFIG SET slowlog-log-slower-than / slowlog-max-len`: the proxy's slow log is the one
//!   `SLOWLOG` shows, so these two set the proxy's, never a node's (until restart, as in
//!   Redis; `[slowlog]` gives the start values).
//! - `MONITOR`: the commands of every client of the proxy (`crate::ops::monitor`).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::command::config_get::PROXY_OWNED;
use crate::command::{self, CommandSpec};
use crate::resp::encode;

use super::dispatch::{error, printable, Route};
use super::local::{bulk, OK};
use super::Session;

/// An admin command the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admin {
    Role,
    ReplicaOf,
    /// ACL WHOAMI / USERS / CAT / GENPASS / DRYRUN / HELP.
    Acl,
    /// CONFIG SET of the proxy's own settings only (see [`config_set_route`]).
    ConfigSet,
    Monitor,
}

impl Admin {
    /// The admin command `base` (`sub`: its subcommand, or empty) names, if the proxy
    /// answers it.
    pub(super) fn of(base: &str, sub: &str) -> Option<Admin> {
        Some(match (base, sub) {
            ("role", _) => Admin::Role,
            ("replicaof" | "slaveof", _) => Admin::ReplicaOf,
            ("monitor", _) => Admin::Monitor,
            ("acl", "whoami" | "users" | "cat" | "genpass" | "dryrun" | "help") => Admin::Acl,
            _ => return None,
        })
    }
}

/// The route of `CONFIG SET` (`args` passed its arity check): served by the proxy when every
/// setting is the proxy's own, refused when they are mixed with node settings (one command
/// cannot set some on the proxy and the rest on the nodes atomically), `None` when none is
/// (the nodes' settings: `commands.allow_admin`).
pub(super) fn config_set_route(args: &[&[u8]]) -> Option<Route> {
    let names = || args.iter().skip(2).step_by(2);
    let owned = names().filter(|n| proxy_owned(n).is_some()).count();
    if owned == 0 {
        return None;
    }
    if owned == names().count() {
        return Some(Route::Local(super::local::Local::Admin(Admin::ConfigSet)));
    }
    Some(Route::Refused(error(
        "ERR slotgate: slowlog-log-slower-than and slowlog-max-len are the proxy's own \
         settings; set them in a CONFIG SET of their own",
    )))
}

fn proxy_owned(name: &[u8]) -> Option<&'static str> {
    PROXY_OWNED
        .iter()
        .copied()
        .find(|own| name.eq_ignore_ascii_case(own.as_bytes()))
}

/// Answer `cmd`.
pub(super) fn run(cmd: Admin, args: &[&[u8]], session: &mut Session) -> Bytes {
    match cmd {
        Admin::Role => role(),
        Admin::ReplicaOf => match args {
            [_, no, one] if no.eq_ignore_ascii_case(b"no") && one.eq_ignore_ascii_case(b"one") => {
                Bytes::from_static(OK)
            }
            _ => error(
                "ERR slotgate: the proxy is a master (ROLE) and cannot replicate another \
                 server; its nodes' replication is configured on the nodes",
            ),
        },
        Admin::Acl => acl(args, session),
        Admin::ConfigSet => config_set(args, session),
        Admin::Monitor => monitor(session),
    }
}

/// `ROLE` of the standalone master the proxy presents: no replication stream of its own, so
/// offset 0, and no replicas (`INFO replication`: `role:master`, `connected_slaves:0`).
fn role() -> Bytes {
    Bytes::from_static(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")
}

/// `CONFIG SET` of the proxy's own settings: all checked first, then all set.
fn config_set(args: &[&[u8]], session: &Session) -> Bytes {
    if args.len() % 2 != 0 {
        return error("ERR wrong number of arguments for 'config|set' command");
    }
    let mut slower_than = None;
    let mut max_len = None;
    for pair in args[2..].chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        let Some(own) = proxy_owned(name) else {
            return error("ERR slotgate: not the proxy's own setting"); // config_set_route
        };
        let failed = |why: &str| {
            error(&format!(
                "ERR CONFIG SET failed (possibly related to argument '{own}') - {why}"
            ))
        };
        let slot = if own == "slowlog-max-len" {
            &mut max_len
        } else {
            &mut slower_than
        };
        if slot.is_some() {
            return failed("duplicate parameter");
        }
        let Some(n) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return failed("argument couldn't be parsed into an integer");
        };
        let (min, max) = if own == "slowlog-max-len" {
            (0, MAX_SLOWLOG_LEN)
        } else {
            (-1, i64::MAX)
        };
        if !(min..=max).contains(&n) {
            return failed(&format!(
                "argument must be between {min} and {max} inclusive"
            ));
        }
        *slot = Some(n);
    }
    let slowlog = &session.worker.ops().slowlog;
    if let Some(us) = slower_than {
        slowlog.set_log_slower_than_us(us);
    }
    if let Some(len) = max_len {
        slowlog.set_max_len(usize::try_from(len).unwrap_or(usize::MAX));
    }
    Bytes::from_static(OK)
}

/// The longest slow log (`slowlog.max_len`'s bound in the configuration).
const MAX_SLOWLOG_LEN: i64 = 1_000_000;

/// `MONITOR`: from now on the client gets every command of every client of the proxy.
fn monitor(session: &mut Session) -> Bytes {
    if session.monitor.is_none() {
        let (place, mut lines) = session.worker.ops().monitors.add(session.info.id);
        let queue = Rc::clone(&session.queue);
        let worker = Rc::clone(&session.worker);
        // Ends when the session drops its place (RESET, QUIT, hang-up, cut off).
        tokio::task::spawn_local(async move {
            while let Some(line) = lines.recv().await {
                queue.push_message(line, &worker.settings().client_limits.pubsub_output);
            }
        });
        session.monitor = Some(place);
    }
    Bytes::from_static(OK)
}

impl Session {
    /// Show this request to the monitors (someone monitors: the caller checked). Admin
    /// commands are not shown, as Redis does not show them; AUTH's and HELLO's credentials
    /// are redacted.
    #[cold]
    #[inline(never)]
    pub(super) fn feed_monitors(&self, spec: Option<&CommandSpec>, args: &[&[u8]]) {
        let Some(spec) = spec else { return };
        if spec.flags.contains(command::Flags::ADMIN) {
            return;
        }
        let redact_from = match spec.name {
            "auth" => 1,
            "hello" => args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"auth"))
                .map_or(usize::MAX, |at| at + 1),
            _ => usize::MAX,
        };
        let client = self
            .info
            .peer
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let line =
            crate::ops::monitor::line(std::time::SystemTime::now(), 0, &client, args, redact_from);
        self.worker.ops().monitors.feed(&line);
    }
}

/// `ACL <sub> …` about the proxy's users.
fn acl(args: &[&[u8]], session: &Session) -> Bytes {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match &sub[..] {
        b"whoami" => bulk(
            session
                .user
                .as_ref()
                .map_or("default", |u| u.name.as_str())
                .as_bytes(),
        ),
        b"users" => {
            let mut names = session.worker.users().names();
            names.sort_unstable();
            let mut out = BytesMut::new();
            encode::array_header(&mut out, names.len());
            for name in names {
                encode::bulk(&mut out, name.as_bytes());
            }
            out.freeze()
        }
        b"cat" => match args.get(2) {
            None => {
                let mut out = BytesMut::new();
                encode::array_header(&mut out, CATEGORIES.len());
                for category in CATEGORIES {
                    encode::bulk(&mut out, category.as_bytes());
                }
                out.freeze()
            }
            Some(category) => match category_commands(category) {
                Some(names) => {
                    let mut out = BytesMut::new();
                    encode::array_header(&mut out, names.len());
                    for name in names {
                        encode::bulk(&mut out, name.as_bytes());
                    }
                    out.freeze()
                }
                None => error(&format!(
                    "ERR Unknown category '{}'",
                    printable(&category[..category.len().min(128)])
                )),
            },
        },
        b"genpass" => {
            let bits =
                match args.get(2) {
                    None => 256,
                    Some(bits) => match std::str::from_utf8(bits)
                        .ok()
                        .and_then(|b| b.parse::<i64>().ok())
                    {
                        Some(bits) if (1..=4096).contains(&bits) => bits as usize,
                        Some(_) => return error(
                            "ERR ACL GENPASS argument must be the number of bits for the output \
                             password, a positive number up to 4096",
                        ),
                        None => return error("ERR value is not an integer or out of range"),
                    },
                };
            match genpass(bits) {
                Some(password) => bulk(password.as_bytes()),
                None => error("ERR slotgate: the system's random source failed"),
            }
        }
        b"dryrun" => dryrun(args, session),
        b"help" => encode::help(&[
            "ACL <subcommand> [<arg> [value] [opt] ...]. Served by slotgate about its own \
             [auth] users:",
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the",
            "    command.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "USERS",
            "    List all the registered usernames (the default user and [[auth.users]]).",
            "WHOAMI",
            "    Return the current connection username.",
            "The users are slotgate's configuration ([auth], changed by a reload):",
            "SETUSER, DELUSER, GETUSER, LIST, LOG, LOAD and SAVE are not served.",
        ]),
        _ => error("ERR slotgate: this ACL subcommand is not served"),
    }
}

/// Redis 7.0's ACL categories, in `ACL CAT`'s order.
const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The commands and subcommands (`container|sub`) of ACL category `category` (without
/// `@`, any case), or `None` when there is no such category.
fn category_commands(category: &[u8]) -> Option<Vec<&'static str>> {
    let category = std::str::from_utf8(category).ok()?.to_ascii_lowercase();
    let category = *CATEGORIES.iter().find(|c| **c == category)?;
    let tagged = |spec: &CommandSpec| {
        spec.acl_categories
            .iter()
            .any(|c| c.strip_prefix('@') == Some(category))
    };
    let mut names = Vec::new();
    for spec in command::all() {
        if tagged(spec) {
            names.push(spec.name);
        }
        names.extend(
            spec.subcommands
                .iter()
                .filter(|s| tagged(s))
                .map(|s| s.name),
        );
    }
    Some(names)
}

/// A random password of `bits` bits in lower-case hex, as ACL GENPASS gives it (from the
/// system's secure random source, through the TLS crypto provider's).
/// `None` if that source failed (never answered with a weaker password).
fn genpass(bits: usize) -> Option<String> {
    let chars = bits.div_ceil(4);
    let mut random = vec![0u8; chars.div_ceil(2)];
    let provider = rustls::crypto::ring::default_provider();
    provider.secure_random.fill(&mut random).ok()?;
    let mut out: String = random.iter().map(|b| format!("{b:02x}")).collect();
    out.truncate(chars);
    Some(out)
}

/// `ACL DRYRUN user command [arg …]`: whether the proxy would let the user run it.
fn dryrun(args: &[&[u8]], session: &Session) -> Bytes {
    let (Some(name), Some(_)) = (args.get(2), args.get(3)) else {
        return error("ERR wrong number of arguments for 'acl|dryrun' command");
    };
    let users = session.worker.users();
    let user = if &name[..] == b"default" {
        None
    } else {
        match users.user(name) {
            Some(user) => Some(user),
            None => return error(&format!("ERR User '{}' not found", printable(name))),
        }
    };
    let request = &args[3..];
    let Some(spec) = command::lookup(request).or_else(|| {
        session
            .worker
            .custom_commands()
            .and_then(|c| c.lookup(request))
    }) else {
        return error(&format!(
            "ERR Command '{}' not found",
            printable(request[0])
        ));
    };
    if !spec.arity_ok(request.len()) {
        return error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    let Some(user) = user else {
        return Bytes::from_static(OK); // The default user may run everything.
    };
    if !user.may_run(spec) {
        return bulk(
            format!(
                "This user has no permissions to run the '{}' command",
                spec.name
            )
            .as_bytes(),
        );
    }
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    if spec.routing_args(request, &mut keys).is_ok() {
        if let Some(key) = keys
            .iter()
            .filter_map(|&i| request.get(i))
            .find(|k| !user.may_access(k))
        {
            return bulk(
                format!(
                    "This user has no permissions to access the '{}' key",
                    printable(key)
                )
                .as_bytes(),
            );
        }
    }
    Bytes::from_static(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_of_the_table_is_listed_and_only_those() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in command::all() {
            for s in std::iter::once(spec).chain(spec.subcommands) {
                seen.extend(s.acl_categories.iter().map(|c| c.trim_start_matches('@')));
            }
        }
        let listed: std::collections::BTreeSet<&str> = CATEGORIES.iter().copied().collect();
        assert_eq!(seen, listed);
    }

    #[test]
    fn categories_list_their_commands() {
        let read = category_commands(b"READ").unwrap();
        assert!(read.contains(&"get") && !read.contains(&"config|get"));
        assert!(!read.contains(&"set"));
        assert!(category_commands(b"admin").unwrap().contains(&"config|set"));
        assert!(category_commands(b"nosuch").is_none());
    }

    #[test]
    fn genpass_gives_hex_of_the_asked_bits() {
        let genpass = |bits| genpass(bits).unwrap();
        assert_eq!(genpass(256).len(), 64);
        assert_eq!(genpass(555).len(), 139);
        assert_eq!(genpass(1).len(), 1);
        assert!(genpass(64).bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(genpass(128), genpass(128));
    }

    #[test]
    fn config_set_is_the_proxy_s_only_for_its_own_settings() {
        let args = |words: &[&'static str]| -> Vec<&'static [u8]> {
            words.iter().map(|w| w.as_bytes()).collect()
        };
        assert_eq!(
            config_set_route(&args(&["CONFIG", "SET", "SLOWLOG-MAX-LEN", "5"])),
            Some(Route::Local(super::super::local::Local::Admin(
                Admin::ConfigSet
            )))
        );
        assert!(matches!(
            config_set_route(&args(&[
                "CONFIG",
                "SET",
                "slowlog-max-len",
                "5",
                "timeout",
                "1"
            ])),
            Some(Route::Refused(_))
        ));
        assert_eq!(
            config_set_route(&args(&["CONFIG", "SET", "timeout", "1"])),
            None
        );
    }

    #[test]
    fn role_is_a_master_without_replicas() {
        assert_eq!(&role()[..], b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    }
}
