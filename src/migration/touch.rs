//! The on-touch move, pure: which keys a request touches, the `MIGRATE` that moves them from
//! the source pool to the destination, and what its reply means.
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
use crate::resp::{Limits, RequestDecoder};
use crate::slot::Slot;
use crate::topology::SlotTable;

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

/// `MIGRATE host port "" db timeout REPLACE [AUTH …] KEYS keys…` for the destination `dest`
/// (`HOST:PORT`), which takes `auth`; the keys land in database `db` there (the one they are
/// in on the source: the connection sending it must be in it too). `None` when `dest` is
/// not `HOST:PORT` or no key is given.
pub fn migrate_request(
    dest: &str,
    auth: Option<&Credentials>,
    db: u32,
    timeout_ms: u64,
    keys: &[Bytes],
) -> Option<Bytes> {
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
    Some(crate::resp::Request::from_args(args).raw().clone())
}

/// What a `MIGRATE` reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK`: the keys that existed are on the destination now.
    Moved,
    /// `+NOKEY`: none of them was on the source (already moved, or never written).
    NoKey,
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
            _ => Outcome::Failed(
                String::from_utf8_lossy(line.strip_prefix(b"-").unwrap_or(line)).into_owned(),
            ),
        }
    }
}

/// The keys of `keys` grouped by the pool of `pools` (a pool-mode table: the placement that
/// put them there) they may still be on: `(that pool's master, its credentials, the keys)`,
/// in pool order. Keys whose pool is not in the table (none: the pools cover every unit) are
/// left out.
pub fn by_pool(pools: &SlotTable, keys: &[Bytes]) -> Vec<(usize, Vec<Bytes>)> {
    let mut groups: Vec<(usize, Vec<Bytes>)> = Vec::new();
    for key in keys {
        let Some(shard) = pools.shard_of(pools.placement().unit_of(key)) else {
            continue;
        };
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push(key.clone()),
            None => groups.push((shard, vec![key.clone()])),
        }
    }
    groups.sort_by_key(|(shard, _)| *shard);
    groups
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

/// What a failed `MIGRATE` onto a cluster node means when the node refused the keys
/// (`Target instance replied with error: MOVED …` / `ASK …` …); `None` for other errors.
pub fn cluster_refusal(error: &str) -> Option<Refusal> {
    let rest = error.split_once("Target instance replied with error: ")?.1;
    match Redirect::classify(rest.trim_end().as_bytes())? {
        Redirect::Moved { slot, addr } => Some(Refusal::Moved { slot, addr }),
        Redirect::Ask { .. }
        | Redirect::TryAgain
        | Redirect::ClusterDown
        | Redirect::Loading
        | Redirect::MasterDown => Some(Refusal::Wait),
        Redirect::NoScript => None,
    }
}

/// The error a client gets when its keys could not be moved from the pools onto the cluster
/// (the cluster refused them past the request's deadline, or another error): it did not run.
pub fn onto_cluster_failure_reply(slot: u16, error: &str) -> Bytes {
    Bytes::from(format!(
        "-TRYAGAIN slot {slot}: its keys are moving from the pools onto the cluster and could not be moved: {error}\r\n"
    ))
}

/// The error a client gets when its keys could not be moved: the request did not run.
pub fn failure_reply(unit: u16, error: &str) -> Bytes {
    Bytes::from(format!(
        "-TRYAGAIN slot {unit} is moving between pools and its keys could not be moved: {error}\r\n"
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
        let plain = migrate_request("127.0.0.1:7002", None, 0, 5000, &keys).unwrap();
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
        let with_user = migrate_request("h:1", Some(&auth), 3, 9, &keys[..1]).unwrap();
        assert_eq!(
            with_user,
            raw(&["MIGRATE", "h", "1", "", "3", "9", "REPLACE", "AUTH2", "u", "p", "KEYS", "a"])
        );
        assert!(migrate_request("nohost", None, 0, 1, &keys).is_none());
        assert!(migrate_request("h:1", None, 0, 1, &[]).is_none());
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
        let groups = by_pool(&pools, &keys);
        assert_eq!(groups.len(), 2, "50 keys land on both pools");
        assert_eq!(groups.iter().map(|(_, g)| g.len()).sum::<usize>(), 50);
        for (shard, group) in &groups {
            for key in group {
                assert_eq!(pools.shard_of(pools.placement().unit_of(key)), Some(*shard));
            }
        }
    }

    #[test]
    fn replies_become_outcomes() {
        assert_eq!(Outcome::of(b"+OK\r\n"), Outcome::Moved);
        assert_eq!(Outcome::of(b"+NOKEY\r\n"), Outcome::NoKey);
        assert_eq!(
            Outcome::of(b"-IOERR error or timeout reading to target instance\r\n"),
            Outcome::Failed("IOERR error or timeout reading to target instance".into())
        );
    }
}
