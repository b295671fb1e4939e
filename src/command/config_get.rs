//! `CONFIG GET` through the proxy: every master is asked and the answers are merged into the
//! one answer a single Redis would give. Pure.
//!
//! For each setting the masters report:
//! - `port` is the proxy's own port (the one the client connected to) and `cluster-enabled`
//!   is `no`: what a client sees is one Redis, not a cluster node; `slowlog-log-slower-than`
//!   and `slowlog-max-len` are the proxy's own slow log's ([`Own`]; `CONFIG SET` of them
//!   changes the proxy's, see [`PROXY_OWNED`]);
//! - a value every master agrees on is the answer;
//! - settings that always differ per node (its files, directory, addresses and ports, its
//!   cluster identity, its replication source — [`PER_NODE`]) are answered with the first
//!   master's value (masters in address order), so `CONFIG GET *` stays useful;
//! - any other setting the masters disagree on is an error when it was asked for by its
//!   exact name (`CONFIG GET maxmemory-policy`: the reply names the values and how many
//!   masters have each), and the first master's value within a pattern (`CONFIG GET *`,
//!   `CONFIG GET max*`), where one disagreement must not cost the whole reply.

use bytes::{Bytes, BytesMut};

use crate::resp::{encode, parse_frame, Frame, Limits};

/// Settings that differ from node to node by nature: the first master's value is given.
pub const PER_NODE: &[&str] = &[
    "bind",
    "bind-source-addr",
    "cluster-announce-bus-port",
    "cluster-announce-hostname",
    "cluster-announce-ip",
    "cluster-announce-port",
    "cluster-announce-tls-port",
    "cluster-config-file",
    "cluster-port",
    "dbfilename",
    "dir",
    "logfile",
    "masterauth",
    "masteruser",
    "pidfile",
    "replica-announce-ip",
    "replica-announce-port",
    "replicaof",
    "slaveof",
    "syslog-ident",
    "tls-cluster",
    "tls-port",
    "tls-replication",
    "unixsocket",
    "unixsocketperm",
];

/// Settings the proxy owns: `CONFIG SET` of them changes the proxy's own (its slow log),
/// never a node's, and `CONFIG GET` answers the proxy's values.
pub const PROXY_OWNED: &[&str] = &["slowlog-log-slower-than", "slowlog-max-len"];

/// The values of the settings the proxy answers itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Own {
    /// The proxy port the client is connected to (`port`).
    pub port: u16,
    /// The slow log's threshold in µs, negative when off (`slowlog-log-slower-than`).
    pub slowlog_log_slower_than: i64,
    /// The slow log's length (`slowlog-max-len`).
    pub slowlog_max_len: u64,
}

/// True when `pattern` names one setting (no glob characters).
pub fn is_exact_name(pattern: &[u8]) -> bool {
    !pattern
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// Merge the masters' replies (address order) to `CONFIG GET`. `exact`: every pattern was an
/// exact name. `own`: the proxy's own values (its port, its slow log's settings). The reply
/// is a flat array (RESP2) or a map (RESP3), like the masters'.
pub fn merge(replies: &[Bytes], exact: bool, own: Own, limits: &Limits) -> Bytes {
    let mut resp3 = false;
    // Settings in the first reply's order, then any only later masters have.
    let mut settings: Vec<(Bytes, Vec<Option<Bytes>>)> = Vec::new();
    let mut index: std::collections::HashMap<Bytes, usize> = std::collections::HashMap::new();
    for (master, reply) in replies.iter().enumerate() {
        let Some((pairs, map)) = parse_frame(reply, limits).ok().and_then(Frame::into_pairs) else {
            return unexpected(reply);
        };
        resp3 |= map;
        for pair in pairs.chunks(2) {
            let (Some(name), Some(value)) = (
                pair.first().and_then(Frame::as_bytes),
                pair.get(1).and_then(Frame::as_bytes),
            ) else {
                return unexpected(reply);
            };
            let at = *index.entry(name.clone()).or_insert_with(|| {
                settings.push((name.clone(), vec![None; replies.len()]));
                settings.len() - 1
            });
            if let Some(slot) = settings[at].1.get_mut(master) {
                *slot = Some(value.clone());
            }
        }
    }
    let mut out = BytesMut::new();
    if resp3 {
        encode::map_header(&mut out, settings.len());
    } else {
        encode::array_header(&mut out, settings.len() * 2);
    }
    for (name, values) in &settings {
        let value = match answer(name, values, own) {
            Ok(value) => value,
            Err(()) if exact => return disagreement(name, values),
            // Within a pattern: the first master's value (documented).
            Err(()) => first(values),
        };
        encode::bulk(&mut out, name);
        encode::bulk(&mut out, &value);
    }
    out.freeze()
}

/// The value the proxy answers for setting `name`, or `Err` when the masters disagree on a
/// setting that should be the same everywhere.
fn answer(name: &[u8], values: &[Option<Bytes>], own: Own) -> Result<Bytes, ()> {
    match name {
        b"port" => return Ok(Bytes::from(own.port.to_string())),
        b"slowlog-log-slower-than" => {
            return Ok(Bytes::from(own.slowlog_log_slower_than.to_string()))
        }
        b"slowlog-max-len" => return Ok(Bytes::from(own.slowlog_max_len.to_string())),
        b"cluster-enabled" => return Ok(Bytes::from_static(b"no")),
        _ => {}
    }
    let agreed = values.windows(2).all(|pair| pair[0] == pair[1]);
    let per_node = std::str::from_utf8(name).is_ok_and(|n| PER_NODE.contains(&n));
    if agreed || per_node {
        Ok(first(values))
    } else {
        Err(())
    }
}

/// The first master's value (empty if it has none).
fn first(values: &[Option<Bytes>]) -> Bytes {
    values.iter().flatten().next().cloned().unwrap_or_default()
}

/// `-ERR` naming setting `name`'s values and how many masters have each.
fn disagreement(name: &[u8], values: &[Option<Bytes>]) -> Bytes {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for value in values {
        let text = value.as_ref().map_or_else(
            || "(not set)".to_string(),
            |v| format!("'{}'", String::from_utf8_lossy(v)),
        );
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    let listed: Vec<String> = counts
        .iter()
        .map(|(text, n)| format!("{text} on {n} of {}", values.len()))
        .collect();
    let mut out = BytesMut::new();
    encode::error(
        &mut out,
        &format!(
            "ERR slotgate: the masters differ on '{}': {} (CONFIG SET it alike on every node)",
            String::from_utf8_lossy(name),
            listed.join(", ")
        ),
    );
    out.freeze()
}

fn unexpected(reply: &Bytes) -> Bytes {
    let mut out = BytesMut::new();
    encode::error(
        &mut out,
        &format!(
            "ERR slotgate: unexpected CONFIG GET reply from a master: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(64)]).trim_end()
        ),
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RESP2 CONFIG GET reply of `pairs`.
    fn reply(pairs: &[(&str, &str)]) -> Bytes {
        let mut out = BytesMut::new();
        encode::array_header(&mut out, pairs.len() * 2);
        for (name, value) in pairs {
            encode::bulk(&mut out, name.as_bytes());
            encode::bulk(&mut out, value.as_bytes());
        }
        out.freeze()
    }

    fn merged(replies: &[Bytes], exact: bool) -> Vec<(String, String)> {
        let own = Own {
            port: 6380,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
        };
        let raw = merge(replies, exact, own, &Limits::default());
        match parse_frame(&raw, &Limits::default()) {
            Ok(Frame::Array(items) | Frame::Map(items)) => items
                .chunks(2)
                .map(|p| {
                    let text = |f: &Frame| String::from_utf8_lossy(f.as_bytes().unwrap()).into();
                    (text(&p[0]), text(&p[1]))
                })
                .collect(),
            other => panic!("not a CONFIG GET reply: {other:?} ({raw:?})"),
        }
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.into(), value.into())
    }

    #[test]
    fn agreed_settings_are_answered_once() {
        let r = reply(&[("maxmemory-policy", "noeviction")]);
        let got = merged(&[r.clone(), r.clone(), r], true);
        assert_eq!(got, [pair("maxmemory-policy", "noeviction")]);
    }

    #[test]
    fn the_proxy_answers_its_own_port_and_is_no_cluster() {
        let a = reply(&[
            ("port", "7000"),
            ("cluster-enabled", "yes"),
            ("dir", "/n/a"),
            ("slowlog-log-slower-than", "0"),
            ("slowlog-max-len", "5"),
        ]);
        let b = reply(&[
            ("port", "7001"),
            ("cluster-enabled", "yes"),
            ("dir", "/n/b"),
            ("slowlog-log-slower-than", "7"),
            ("slowlog-max-len", "5"),
        ]);
        assert_eq!(
            merged(&[a, b], true),
            [
                pair("port", "6380"),
                pair("cluster-enabled", "no"),
                pair("dir", "/n/a"),
                pair("slowlog-log-slower-than", "10000"),
                pair("slowlog-max-len", "128"),
            ]
        );
    }

    #[test]
    fn a_disagreement_asked_by_name_is_an_error_naming_the_values() {
        let a = reply(&[("maxmemory-policy", "allkeys-lru")]);
        let b = reply(&[("maxmemory-policy", "noeviction")]);
        let raw = merge(&[a.clone(), b, a], true, Own::default(), &Limits::default());
        assert_eq!(
            &raw[..],
            &b"-ERR slotgate: the masters differ on 'maxmemory-policy': 'allkeys-lru' on 2 of 3, \
               'noeviction' on 1 of 3 (CONFIG SET it alike on every node)\r\n"[..]
        );
    }

    #[test]
    fn within_a_pattern_a_disagreement_gives_the_first_master_s_value() {
        let a = reply(&[("maxmemory", "0"), ("maxmemory-policy", "allkeys-lru")]);
        let b = reply(&[("maxmemory", "0"), ("maxmemory-policy", "noeviction")]);
        assert_eq!(
            merged(&[a, b], false),
            [
                pair("maxmemory", "0"),
                pair("maxmemory-policy", "allkeys-lru")
            ]
        );
    }

    #[test]
    fn resp3_maps_stay_maps_and_settings_only_some_report_are_kept() {
        let mut a = BytesMut::new();
        encode::map_header(&mut a, 1);
        encode::bulk(&mut a, b"save");
        encode::bulk(&mut a, b"");
        let mut b = BytesMut::new();
        encode::map_header(&mut b, 0);
        let raw = merge(
            &[a.freeze(), b.freeze()],
            false,
            Own::default(),
            &Limits::default(),
        );
        assert!(raw.starts_with(b"%1\r\n"), "{raw:?}");
        assert!(is_exact_name(b"maxmemory") && !is_exact_name(b"max*"));
    }
}
