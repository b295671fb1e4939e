//! The on-touch move, pure: which keys a request touches, the `MIGRATE` that moves them from
//! the source pool to the destination (in a script that first checks none is a big key, to
//! be copied in steps instead: `migration::stepped`; from a cluster node, in a script that
//! declares them, so the node redirects it while their slot is resharded), and what its
//! reply means.
//!
//! `MIGRATE … REPLACE KEYS k…` runs on the source as one command: it copies the keys to the
//! destination, waits for the destination's `OK`, then deletes them from the source. The
//! source serves nobody in between, so at every moment each key lives in exactly one place
//! as seen by any request that first asks the source to move it.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::backend::redirect::Redirect;
use crate::backend::Credentials;
use crate::command::custom::CustomCommands;
use crate::command::LookupCache;
use crate::placement::Unit;
use crate::resp::{Limits, RequestDecoder};
use crate::slot::Slot;
use crate::topology::{SlotTable, Toward};

/// The keys of the request(s) encoded in `payload` (one request, or a MULTI … EXEC batch),
/// as the command table (and `[commands.custom]`) finds them. Requests that do not decode or
/// have no keys add none.
pub fn keys_of(payload: &[u8], custom: Option<&'static CustomCommands>) -> Vec<Bytes> {
    let mut buf = bytes::BytesMut::from(payload);
    let mut decoder = RequestDecoder::new(Limits {
        max_request_len: payload.len().max(1),
        ..Limits::default()
    });
    let mut lookup = LookupCache::with_custom(custom);
    let mut keys = Vec::new();
    let mut at: SmallVec<[usize; 8]> = SmallVec::new();
    while let Ok(Some(request)) = decoder.decode(&mut buf) {
        let args = request.args();
        let Some((spec, _)) = lookup.lookup_counted(&args) else {
            continue;
        };
        if spec.routing_args(&args, &mut at).is_ok() {
            for &i in &at {
                let key = Bytes::copy_from_slice(args[i]);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// The script a request's move runs when big keys are copied in steps: one `MEMORY USAGE`
/// per key (Redis' sampled estimate: constant work), and the `MIGRATE` only if none is big
/// and of a kind copied in steps (`migration::stepped`; streams and module types move
/// whole) — else the error `BIGKEY i` naming the first big one (1-based), and nothing moved.
const GUARDED_MIGRATE: &str = "local stepped = {list=1, hash=1, set=1, zset=1, string=1} \
    for i, k in ipairs(KEYS) do \
    local n = redis.call('MEMORY', 'USAGE', k) \
    if n and n >= tonumber(ARGV[1]) and stepped[redis.call('TYPE', k)['ok']] then \
    return redis.error_reply('BIGKEY ' .. i) end \
    end return redis.call('MIGRATE', unpack(ARGV, 2))";

/// The script a move back from a cluster node onto a pool runs: the same `MIGRATE`, with its
/// keys declared (all of one slot), so the node checks them as it checks any keyed command
/// first — `MOVED` if it does not own their slot; while the slot is being resharded, `ASK`
/// when none of them is on it any more (moved on to the importing node) and `TRYAGAIN` when
/// some are. A bare `MIGRATE` runs on either node of a slot being resharded and answers
/// `NOKEY` for keys the reshard already took away: the request would then miss them.
const DECLARED_MIGRATE: &str = "return redis.call('MIGRATE', unpack(ARGV))";

/// `MIGRATE host port "" db timeout REPLACE [AUTH …] KEYS keys…` for the destination `dest`
/// (`HOST:PORT`), which takes `auth`; the keys land in database `db` there (the one they are
/// in on the source: the connection sending it must be in it too). With `big_key_bytes`
/// above 0, the `MIGRATE` is run by a script that first checks no key is that big
/// ([`Outcome::Big`] otherwise). `None` when `dest` is not `HOST:PORT` or no key is given.
pub fn migrate_request(
    dest: &str,
    auth: Option<&Credentials>,
    db: u32,
    timeout_ms: u64,
    keys: &[Bytes],
    big_key_bytes: u64,
) -> Option<Bytes> {
    let mut args = migrate_args(dest, auth, db, timeout_ms, keys)?;
    if big_key_bytes > 0 {
        let threshold = Bytes::from(big_key_bytes.to_string());
        args = in_script(GUARDED_MIGRATE, keys, Some(threshold), args);
    }
    Some(crate::resp::Request::from_args(args).raw().clone())
}

/// The arguments of [`migrate_request`]'s `MIGRATE`, its name first.
fn migrate_args(
    dest: &str,
    auth: Option<&Credentials>,
    db: u32,
    timeout_ms: u64,
    keys: &[Bytes],
) -> Option<Vec<Bytes>> {
    let (host, port) = dest.rsplit_once(':')?;
    if keys.is_empty() {
        return None;
    }
    let mut args: Vec<Bytes> = vec![
        Bytes::from_static(b"MIGRATE"),
        Bytes::copy_from_slice(host.as_bytes()),
        Bytes::copy_from_slice(port.as_bytes()),
        Bytes::new(),
        Bytes::from(db.to_string()),
        Bytes::from(timeout_ms.to_string()),
        Bytes::from_static(b"REPLACE"),
    ];
    if let Some(auth) = auth {
        args.extend(auth.migrate_args());
    }
    args.push(Bytes::from_static(b"KEYS"));
    args.extend(keys.iter().cloned());
    Some(args)
}

/// `EVAL script numkeys keys… [first] MIGRATE's arguments (without its name)`.
fn in_script(
    script: &'static str,
    keys: &[Bytes],
    first: Option<Bytes>,
    migrate: Vec<Bytes>,
) -> Vec<Bytes> {
    let mut eval = vec![
        Bytes::from_static(b"EVAL"),
        Bytes::from_static(script.as_bytes()),
        Bytes::from(keys.len().to_string()),
    ];
    eval.extend(keys.iter().cloned());
    eval.extend(first);
    eval.extend(migrate.into_iter().skip(1));
    eval
}

/// The move of `keys` (all of one slot) back from the cluster node that owns their slot onto
/// the pool `dest` (`HOST:PORT`, which takes `auth`), database 0 (a cluster's only one): the
/// same `MIGRATE` in a script declaring the keys ([`DECLARED_MIGRATE`]). `None` when `dest`
/// is not `HOST:PORT` or no key is given.
pub fn migrate_back_request(
    dest: &str,
    auth: Option<&Credentials>,
    timeout_ms: u64,
    keys: &[Bytes],
) -> Option<Bytes> {
    let args = migrate_args(dest, auth, 0, timeout_ms, keys)?;
    let eval = in_script(DECLARED_MIGRATE, keys, None, args);
    Some(crate::resp::Request::from_args(eval).raw().clone())
}

/// What a `MIGRATE` reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK`: the keys that existed are on the destination now.
    Moved,
    /// `+NOKEY`: none of them was on the source (already moved, or never written).
    NoKey,
    /// `-BIGKEY i`: the `i`th key (0-based here) is too big to move whole; nothing moved.
    Big(usize),
    /// An error: the keys stay where they were (the source deletes only after the
    /// destination's `OK`). The node's error line, without `-` and CRLF.
    Failed(String),
}

impl Outcome {
    /// The outcome a raw RESP reply to `MIGRATE` gives.
    pub fn of(reply: &[u8]) -> Outcome {
        let line = reply.strip_suffix(b"\r\n").unwrap_or(reply);
        match line {
            b"+OK" => Outcome::Moved,
            b"+NOKEY" => Outcome::NoKey,
            _ if line.starts_with(b"-BIGKEY ") => std::str::from_utf8(&line[8..])
                .ok()
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|&i| i > 0)
                .map_or_else(
                    || Outcome::Failed(String::from_utf8_lossy(&line[1..]).into_owned()),
                    |i| Outcome::Big(i - 1),
                ),
            _ => {
                let text = String::from_utf8_lossy(line.strip_prefix(b"-").unwrap_or(line));
                // An error raised inside the size-checking script carries Redis' note of
                // where (" script: SHA, on @user_script:1."): the MIGRATE's own error is
                // what the client and the log need.
                let text = match text.find(" script: ") {
                    Some(at) if text[at..].contains("@user_script") => &text[..at],
                    _ => &text[..],
                };
                Outcome::Failed(text.to_string())
            }
        }
    }
}

/// The keys of `keys` grouped by where on `source` (the other side of a move between the
/// pools and a cluster: the pools' table, whose placement put them there, or the cluster's)
/// they may still be: `(that shard's index, the keys)`, one group per routing unit (a pool,
/// or a cluster slot: a `MIGRATE` on a cluster node names keys of one slot), in shard order.
/// Keys whose unit has no shard (none: both sides cover every unit) are left out.
pub fn by_source(source: &SlotTable, keys: &[Bytes]) -> Vec<(usize, Vec<Bytes>)> {
    let mut groups: Vec<(usize, Unit, Vec<Bytes>)> = Vec::new();
    for key in keys {
        let unit = source.placement().unit_of(key);
        let Some(shard) = source.shard_of(unit) else {
            continue;
        };
        match groups.iter_mut().find(|(_, u, _)| *u == unit) {
            Some((_, _, group)) => group.push(key.clone()),
            None => groups.push((shard, unit, vec![key.clone()])),
        }
    }
    groups.sort_by_key(|(shard, unit, _)| (*shard, unit.get()));
    groups
        .into_iter()
        .map(|(shard, _, keys)| (shard, keys))
        .collect()
}

/// True when every key of `keys` is placed on `unit` by `table` (a request routed by it can
/// run where that unit lives). A request split by the other side's placement (held across
/// the phase change that turned the move around) may not be.
pub fn all_on(table: &SlotTable, unit: Unit, keys: &[Bytes]) -> bool {
    keys.iter().all(|k| table.placement().unit_of(k) == unit)
}

/// A cluster node's refusal of keys a `MIGRATE` brought it (the keys stay on the source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `MOVED`: the slot's owner is another node now.
    Moved {
        /// The slot.
        slot: Slot,
        /// Its owner.
        addr: std::sync::Arc<str>,
    },
    /// `ASK` (the slot is being resharded inside the cluster: a non-cluster source's
    /// `RESTORE` cannot follow it), `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`: try
    /// again later.
    Wait,
}

/// What a failed `MIGRATE` between the pools and a cluster means when a cluster node refused
/// it: the destination (keys moving onto the cluster: `Target instance replied with error:
/// MOVED …` / `ASK …` …) or the source (keys moving back: the node's own `MOVED …` / `ASK …`
/// / `TRYAGAIN …` to the script that runs the `MIGRATE`, [`migrate_back_request`]); `None`
/// for other errors.
pub fn cluster_refusal(error: &str) -> Option<Refusal> {
    let rest = match error.split_once("Target instance replied with error: ") {
        Some((_, rest)) => rest,
        None => error,
    };
    refusal(rest.trim_end().as_bytes())
}

/// What a cluster node's own error line (without `-`) means for keys sent to it: a
/// [`Refusal`] for `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`; `None`
/// for other errors.
pub fn refusal(error: &[u8]) -> Option<Refusal> {
    match Redirect::classify(error)? {
        Redirect::Moved { slot, addr } => Some(Refusal::Moved { slot, addr }),
        Redirect::Ask { .. }
        | Redirect::TryAgain
        | Redirect::ClusterDown
        | Redirect::Loading
        | Redirect::MasterDown => Some(Refusal::Wait),
        Redirect::NoScript => None,
    }
}

/// Whether a failed `MIGRATE`'s error passes with time: `IOERR` (the destination did not
/// answer within the `MIGRATE`'s timeout, as under load). The keys the source did not hear
/// back about stay on it (Redis deletes a key only after reading the destination's `OK`),
/// so the move may simply be tried again; a copy the destination kept is replaced then.
pub fn is_passing(error: &str) -> bool {
    error.starts_with("IOERR")
}

/// Moving back, the node a cluster node sent a move of keys it does not hold to with `ASK`
/// (their slot is being resharded to it): they are there, or nowhere on the cluster. `None`
/// for any other error (a `MIGRATE` target's `ASK`, wrapped, is not followed: see
/// [`cluster_refusal`]).
pub fn ask_target(error: &str) -> Option<std::sync::Arc<str>> {
    match Redirect::classify(error.trim_end().as_bytes())? {
        Redirect::Ask { addr, .. } => Some(addr),
        _ => None,
    }
}

/// The error a client gets when its keys could not be moved between the pools and the
/// cluster, `toward` one of them (the cluster refused them past the request's deadline, or
/// another error): it did not run.
pub fn cluster_move_failure_reply(toward: Toward, unit: u16, error: &str) -> Bytes {
    Bytes::from(match toward {
        Toward::Cluster => format!(
            "-TRYAGAIN slot {unit}: its keys are moving from the pools onto the cluster and could not be moved: {error}\r\n"
        ),
        Toward::Pools => format!(
            "-TRYAGAIN slot {unit}: its keys are moving back from the cluster onto the pools and could not be moved: {error}\r\n"
        ),
    })
}

/// The error a client gets when its keys could not be moved: the request did not run.
pub fn failure_reply(unit: u16, error: &str) -> Bytes {
    Bytes::from(format!(
        "-TRYAGAIN slot {unit} is moving between pools and its keys could not be moved: {error}\r\n"
    ))
}

/// The error a client gets when a key of its request was still being copied in steps when
/// the request's deadline passed (`migration::stepped`; between pools, or from the pools
/// onto a cluster): the request did not run.
pub fn stepping_reply(unit: u16) -> Bytes {
    Bytes::from(format!(
        "-TRYAGAIN slot {unit} is moving and a key of the request is being copied in steps; try again\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(args: &[&str]) -> Bytes {
        crate::resp::Request::from_args(args.iter().map(|a| a.as_bytes()))
            .raw()
            .clone()
    }

    #[test]
    fn an_io_error_passes_and_a_refusal_of_the_destination_does_not() {
        assert!(is_passing(
            "IOERR error or timeout reading to target instance"
        ));
        assert!(!is_passing(
            "ERR Target instance replied with error: OOM command not allowed when used memory > 'maxmemory'."
        ));
        assert!(!is_passing("BUSYKEY Target key name already exists."));
    }

    #[test]
    fn keys_of_one_request_and_of_a_transaction() {
        assert_eq!(keys_of(&raw(&["SET", "a", "1"]), None), ["a"]);
        assert_eq!(
            keys_of(&raw(&["MSET", "a", "1", "b", "2"]), None),
            ["a", "b"]
        );
        assert_eq!(
            keys_of(&raw(&["EVAL", "x", "2", "k", "j", "v"]), None),
            ["k", "j"]
        );
        let batch = [
            raw(&["MULTI"]),
            raw(&["INCR", "n"]),
            raw(&["LPUSH", "q", "x"]),
            raw(&["INCR", "n"]),
            raw(&["EXEC"]),
        ]
        .concat();
        assert_eq!(keys_of(&batch, None), ["n", "q"]);
        assert!(keys_of(&raw(&["PING"]), None).is_empty());
        assert!(keys_of(b"garbage", None).is_empty());
    }

    #[test]
    fn migrate_names_the_destination_its_login_and_the_keys() {
        let keys = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let plain = migrate_request("127.0.0.1:7002", None, 0, 5000, &keys, 0).unwrap();
        assert_eq!(
            plain,
            raw(&[
                "MIGRATE",
                "127.0.0.1",
                "7002",
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
                "a",
                "b"
            ])
        );
        let auth = Credentials::new(Some("u".into()), "p");
        let with_user = migrate_request("h:1", Some(&auth), 3, 9, &keys[..1], 0).unwrap();
        assert_eq!(
            with_user,
            raw(&["MIGRATE", "h", "1", "", "3", "9", "REPLACE", "AUTH2", "u", "p", "KEYS", "a"])
        );
        assert!(migrate_request("nohost", None, 0, 1, &keys, 0).is_none());
        assert!(migrate_request("h:1", None, 0, 1, &[], 0).is_none());
        // Big keys guarded: a script checks each key's size before the same MIGRATE.
        let guarded = migrate_request("h:1", None, 0, 9, &keys, 1024).unwrap();
        assert_eq!(
            guarded,
            raw(&[
                "EVAL",
                GUARDED_MIGRATE,
                "2",
                "a",
                "b",
                "1024",
                "h",
                "1",
                "",
                "0",
                "9",
                "REPLACE",
                "KEYS",
                "a",
                "b"
            ])
        );
    }

    #[test]
    fn a_cluster_target_s_refusal_says_move_on_or_wait() {
        let moved =
            cluster_refusal("ERR Target instance replied with error: MOVED 12182 127.0.0.1:7003");
        assert!(
            matches!(moved, Some(Refusal::Moved { slot, ref addr }) if slot.get() == 12182 && &**addr == "127.0.0.1:7003")
        );
        for waits in [
            "ERR Target instance replied with error: ASK 12182 127.0.0.1:7001",
            "ERR Target instance replied with error: TRYAGAIN Multiple keys request during rehashing of slot",
            "ERR Target instance replied with error: CLUSTERDOWN The cluster is down",
        ] {
            assert_eq!(cluster_refusal(waits), Some(Refusal::Wait), "{waits}");
        }
        assert_eq!(
            cluster_refusal("ERR Target instance replied with error: OOM command not allowed"),
            None
        );
        assert_eq!(
            cluster_refusal("IOERR error or timeout reading to target instance"),
            None
        );
        // Moving back, the source is the cluster node: its own redirects.
        assert!(matches!(
            cluster_refusal("MOVED 3999 127.0.0.1:7002"),
            Some(Refusal::Moved { slot, .. }) if slot.get() == 3999
        ));
        assert_eq!(
            cluster_refusal("ASK 3999 127.0.0.1:7002"),
            Some(Refusal::Wait)
        );
        assert_eq!(
            cluster_refusal("TRYAGAIN Multiple keys request during rehashing of slot"),
            Some(Refusal::Wait)
        );
        assert_eq!(
            cluster_refusal("ERR Target instance replied with error: NOAUTH"),
            None
        );
        assert_eq!(
            ask_target("ASK 3999 127.0.0.1:7002").as_deref(),
            Some("127.0.0.1:7002")
        );
        assert_eq!(
            ask_target("ERR Target instance replied with error: ASK 3999 127.0.0.1:7002"),
            None,
            "a MIGRATE target's ASK is not followed"
        );
        assert_eq!(ask_target("MOVED 3999 127.0.0.1:7002"), None);
        // A node's own reply to a step of a copy in steps.
        assert!(matches!(
            refusal(b"MOVED 3999 127.0.0.1:7002"),
            Some(Refusal::Moved { slot, .. }) if slot.get() == 3999
        ));
        assert_eq!(refusal(b"ASK 3999 127.0.0.1:7002"), Some(Refusal::Wait));
        assert_eq!(
            refusal(b"CLUSTERDOWN The cluster is down"),
            Some(Refusal::Wait)
        );
        assert_eq!(refusal(b"ERR wrong number of arguments"), None);
    }

    #[test]
    fn keys_are_grouped_by_the_pool_that_placed_them() {
        let config = crate::config::Config::parse(
            "[placement]\ndistribution = \"ketama\"\nhash = \"md5\"\n\
             [pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n",
        )
        .unwrap();
        let pools = crate::topology::pools::table_from_config(&config).unwrap();
        let keys: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("k{i}"))).collect();
        let groups = by_source(&pools, &keys);
        assert_eq!(groups.len(), 2, "50 keys land on both pools");
        assert_eq!(groups.iter().map(|(_, g)| g.len()).sum::<usize>(), 50);
        for (shard, group) in &groups {
            for key in group {
                assert_eq!(pools.shard_of(pools.placement().unit_of(key)), Some(*shard));
            }
        }
        let first = pools.placement().unit_of(&groups[0].1[0]);
        assert!(all_on(&pools, first, &groups[0].1));
        assert!(
            !all_on(&pools, first, &keys),
            "the other pool's keys are elsewhere"
        );
    }

    #[test]
    fn keys_moving_back_from_a_cluster_are_grouped_by_slot() {
        // Two masters in a slot table: one group per slot, each on its owner.
        let config = crate::config::Config::parse(
            "[pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n\
             [slots]\n\"0-8191\" = \"a\"\n\"8192-16383\" = \"b\"\n",
        )
        .unwrap();
        let cluster = crate::topology::pools::table_from_config(&config).unwrap();
        let keys: Vec<Bytes> = ["{x}1", "{x}2", "{y}1", "z"]
            .iter()
            .map(|k| Bytes::from_static(k.as_bytes()))
            .collect();
        let groups = by_source(&cluster, &keys);
        assert_eq!(groups.len(), 3, "{groups:?}");
        for (shard, group) in &groups {
            let slot = Slot::of(&group[0]);
            assert!(group.iter().all(|k| Slot::of(k) == slot), "{group:?}");
            assert_eq!(cluster.shard_of(slot.into()), Some(*shard));
        }
        assert!(
            groups.iter().any(|(_, g)| g.len() == 2),
            "the {{x}} keys together"
        );
    }

    #[test]
    fn a_move_back_declares_its_keys_around_the_same_migrate() {
        let keys = [Bytes::from_static(b"{t}a"), Bytes::from_static(b"{t}b")];
        let auth = Credentials::new(None, "p");
        let back = migrate_back_request("h:1", Some(&auth), 9, &keys).unwrap();
        assert_eq!(
            back,
            raw(&[
                "EVAL",
                DECLARED_MIGRATE,
                "2",
                "{t}a",
                "{t}b",
                "h",
                "1",
                "",
                "0",
                "9",
                "REPLACE",
                "AUTH",
                "p",
                "KEYS",
                "{t}a",
                "{t}b"
            ])
        );
        assert!(migrate_back_request("h:1", None, 9, &[]).is_none());
    }

    #[test]
    fn replies_become_outcomes() {
        assert_eq!(Outcome::of(b"+OK\r\n"), Outcome::Moved);
        assert_eq!(Outcome::of(b"+NOKEY\r\n"), Outcome::NoKey);
        assert_eq!(
            Outcome::of(b"-IOERR error or timeout reading to target instance\r\n"),
            Outcome::Failed("IOERR error or timeout reading to target instance".into())
        );
        assert_eq!(Outcome::of(b"-BIGKEY 2\r\n"), Outcome::Big(1));
        assert_eq!(
            Outcome::of(
                b"-ERR Target instance replied with error: OOM command not allowed. \
                  script: d466b575174fad2dc1b5aa9e8cb5be465e30816c, on @user_script:1.\r\n"
            ),
            Outcome::Failed(
                "ERR Target instance replied with error: OOM command not allowed.".into()
            )
        );
        assert_eq!(
            Outcome::of(b"-BIGKEY x\r\n"),
            Outcome::Failed("BIGKEY x".into())
        );
    }
}
