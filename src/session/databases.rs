//! Databases: `SELECT n` and the commands about a whole database.
//!
//! - **Pool mode**: real databases. A `SELECT` of another database is first tried on a
//!   dedicated connection to every master (so a database out of a server's range gets that
//!   server's own error, and the session's database is never one a node refuses); then the
//!   session's requests carry the database ([`Outbound::db`](crate::backend::conn::Outbound))
//!   and its dedicated connections are leased in it ([`Lease`](crate::backend::dedicated::Lease)).
//!   FLUSHDB, DBSIZE, KEYS, RANDOMKEY, SCAN and SWAPDB reach every master in it as usual.
//! - **Cluster mode** (`cluster.databases` > 1): database `n` > 0 is a key namespace
//!   ([`KeySpace`], renamed on the way in and out by the co-location machinery,
//!   `key_tags`). MOVE and COPY … DB become commands on the namespaced names; DBSIZE,
//!   FLUSHDB and RANDOMKEY of a database that shares the cluster with others walk the
//!   masters with SCAN (their cost grows with the whole keyspace, not the database's).

use bytes::{Bytes, BytesMut};

use crate::backend::dedicated::Lease;
use crate::backend::BackendError;
use crate::command::CommandSpec;
use crate::placement::namespace::MARKER;
use crate::placement::{Colocation, KeySpace, Unit};
use crate::resp::{encode, Frame, Request};

use super::context::Databases;
use super::dispatch::{error, Route};
use super::local::Local;
use super::pinned::{Exclusive, Pinned};
use super::{Session, WorkerContext};

/// Keys one SCAN step asks a master for, when DBSIZE / FLUSHDB / RANDOMKEY walk a database.
const WALK_COUNT: &[u8] = b"1000";

/// RANDOMKEY of database 0 beside emulated ones: `RANDOMKEY` asked this many times (each of a
/// master in turn) for a key that is not another database's, before a SCAN walk.
const RANDOM_TRIES: usize = 3;

/// A database operation the session runs alone (see [`Exclusive::Database`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Pool mode: switch to this database once every master accepted it.
    Select(u32),
    /// DBSIZE of a database sharing the cluster with emulated ones.
    Dbsize,
    /// FLUSHDB of such a database.
    Flushdb,
    /// RANDOMKEY of such a database.
    Randomkey,
}

/// How the proxy serves a database command (`docs/COMMANDS.md`), when it is one that
/// [`select_route`] or [`emulated`] treat specially.
pub(super) fn service(name: &str) -> Option<(&'static str, String)> {
    let why = match name {
        "select" => (
            "local",
            "pool mode: the servers' databases (checked on every master, then sent along with \
             each request; a `SELECT` goes to a shared connection only when its database \
             differs); cluster mode: database 0, and with `cluster.databases` others emulated \
             in hidden key namespaces",
        ),
        "swapdb" => (
            "fan-out",
            "pool mode: every pool swaps, in turn (not atomic across pools); cluster mode: the \
             nodes refuse it, and with emulated databases the proxy does",
        ),
        _ => return None,
    };
    Some((why.0, why.1.into()))
}

/// The route of `SELECT args[1]` for `session`: answered at once ([`Route::Local`]; the
/// session switches in [`switch`]), checked on the nodes first (pool mode, another
/// database), or refused.
pub(super) fn select_route(args: &[&[u8]], session: &Session) -> Route {
    let Some(db) = parse_db(args.get(1).copied()) else {
        return Route::Refused(error("ERR value is not an integer or out of range"));
    };
    let Ok(db) = u32::try_from(db) else {
        return Route::Refused(error("ERR DB index is out of range"));
    };
    match session.worker.settings().databases {
        _ if db == session.db => Route::Local(Local::Select),
        Databases::Real => Route::Pinned(Pinned::Exclusive(Exclusive::Database(Op::Select(db)))),
        Databases::Emulated(count) => match emulated_select(args.get(1).copied(), count) {
            Ok(_) => Route::Local(Local::Select),
            Err(reply) => Route::Refused(reply),
        },
    }
}

/// Cluster mode: the database `SELECT arg` names, when it is one of the `count` served
/// (database 0, and the emulated ones); else the error one Redis would give (naming
/// `cluster.databases` when none is emulated).
pub(super) fn emulated_select(arg: Option<&[u8]>, count: u32) -> Result<u32, Bytes> {
    let Some(db) = parse_db(arg) else {
        return Err(error("ERR value is not an integer or out of range"));
    };
    match u32::try_from(db) {
        Ok(db) if db < count => Ok(db),
        Ok(_) if count == 1 => Err(error(
            "ERR DB index is out of range (slotgate in front of a cluster serves database 0; \
             set cluster.databases to emulate more)",
        )),
        _ => Err(error("ERR DB index is out of range")),
    }
}

/// A database argument: an integer (negative ones included, which are out of range).
fn parse_db(arg: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

/// The session now uses database `db` (checked by [`select_route`] or on the nodes).
pub(super) fn switch(session: &mut Session, db: u32) {
    let databases = session.worker.settings().databases;
    session.db = db;
    session.backend_db = match databases {
        Databases::Real => db,
        Databases::Emulated(_) => 0,
    };
    session.space = databases.space(db);
    session.info.set_db(db);
}

/// `SELECT` answered locally: the database was checked by [`select_route`].
pub(super) fn select(args: &[&[u8]], session: &mut Session) -> Bytes {
    match parse_db(args.get(1).copied()).and_then(|db| u32::try_from(db).ok()) {
        Some(db) => {
            switch(session, db);
            Bytes::from_static(super::local::OK)
        }
        None => error("ERR value is not an integer or out of range"),
    }
}

/// What an emulated database (cluster mode, `space` shared) makes of a request, when it is
/// one about databases: sent as another request (names already stored: not to be tagged
/// again), served by the session, or refused. `None`: an ordinary request.
pub(super) enum Emulated {
    /// Send this instead.
    Instead(Request),
    /// Route it so.
    Route(Route),
}

/// See [`Emulated`]. `count`: databases there are; `tags`: co-location rules.
pub(super) fn emulated(
    spec: &CommandSpec,
    args: &[&[u8]],
    space: &KeySpace,
    count: u32,
    tags: &Colocation,
    allow_flush: bool,
) -> Option<Emulated> {
    let op = |op| {
        Some(Emulated::Route(Route::Pinned(Pinned::Exclusive(
            Exclusive::Database(op),
        ))))
    };
    let refuse = |text: &str| Some(Emulated::Route(Route::Refused(error(text))));
    match spec.name {
        "dbsize" => op(Op::Dbsize),
        // A disabled FLUSHDB is refused by the fan-out's own check.
        "flushdb" if allow_flush => op(Op::Flushdb),
        "randomkey" => op(Op::Randomkey),
        "swapdb" => refuse(
            "ERR slotgate: SWAPDB is not supported with emulated databases (cluster.databases): \
             swapping two key namespaces would rename every key of both",
        ),
        "move" if spec.arity_ok(args.len()) => {
            let (key, target) = (args.get(1)?, args.get(2)?);
            let target = match target_db(target, count) {
                Ok(target) if target == *space => Err(error(SAME_OBJECT)),
                other => other,
            };
            let target = match target {
                Ok(target) => target,
                Err(reply) => return Some(Emulated::Route(Route::Refused(reply))),
            };
            let from = tags
                .stored_key(space, key)
                .unwrap_or_else(|| Bytes::copy_from_slice(key));
            let to = tags
                .stored_key(&target, key)
                .unwrap_or_else(|| Bytes::copy_from_slice(key));
            // One slot (the prefix keeps it), so one script on one node does it atomically.
            Some(Emulated::Instead(Request::from_args([
                Bytes::from_static(b"EVAL"),
                Bytes::from_static(MOVE_SCRIPT),
                Bytes::from_static(b"2"),
                from,
                to,
            ])))
        }
        "copy" if spec.arity_ok(args.len()) => {
            let at = (3..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"db"))?;
            let target = match args.get(at + 1) {
                Some(db) => target_db(db, count),
                None => Err(error("ERR syntax error")),
            };
            let target = match target {
                Ok(target) if target == *space && args[1] == args[2] => Err(error(SAME_OBJECT)),
                other => other,
            };
            let target = match target {
                Ok(target) => target,
                Err(reply) => return Some(Emulated::Route(Route::Refused(reply))),
            };
            let stored = |space: &KeySpace, key: &[u8]| {
                tags.stored_key(space, key)
                    .unwrap_or_else(|| Bytes::copy_from_slice(key))
            };
            let mut sent = vec![
                Bytes::copy_from_slice(args[0]),
                stored(space, args[1]),
                stored(&target, args[2]),
            ];
            // The other options (REPLACE) as they are; DB is the prefix now.
            for (i, arg) in args.iter().enumerate().skip(3) {
                if i != at && i != at + 1 {
                    sent.push(Bytes::copy_from_slice(arg));
                }
            }
            Some(Emulated::Instead(Request::from_args(sent)))
        }
        _ => None,
    }
}

/// MOVE as one Redis answers it, on the namespaced names (`KEYS[1]` the key in this database,
/// `KEYS[2]` in the target's): 0 when the key is missing or already in the target.
const MOVE_SCRIPT: &[u8] = b"if redis.call('EXISTS', KEYS[2]) == 1 or \
redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
redis.call('RENAME', KEYS[1], KEYS[2]) return 1";

/// Redis' refusal of a MOVE to the key's own database, or a COPY onto itself.
const SAME_OBJECT: &str = "ERR source and destination objects are the same";

/// The key space of the database a MOVE or COPY names (of `count`), or Redis' refusal.
fn target_db(arg: &[u8], count: u32) -> Result<KeySpace, Bytes> {
    let db =
        parse_db(Some(arg)).ok_or_else(|| error("ERR value is not an integer or out of range"))?;
    let db = u32::try_from(db)
        .ok()
        .filter(|&db| db < count)
        .ok_or_else(|| error("ERR DB index is out of range"))?;
    Ok(KeySpace::of(db, true))
}

/// Run `op` for `session`; the reply.
pub(super) async fn run(session: &mut Session, op: Op) -> Bytes {
    let space = session.space.clone();
    match op {
        Op::Select(db) => {
            // Pool mode only (cluster mode switches at once): the real database.
            if let Err(reply) = check(&session.worker, db).await {
                return reply;
            }
            // A WATCH keeps its keys (Redis watches them in their own database); the
            // transaction runs on its connection, in the new database.
            let watches = session
                .watched
                .iter_mut()
                .map(|w| &mut **w)
                .chain(&mut session.watched_also);
            for conn in watches.filter_map(|w| w.conn.as_mut()) {
                if let Err(e) = conn.select(db).await {
                    return e.to_reply();
                }
            }
            switch(session, db);
            Bytes::from_static(super::local::OK)
        }
        Op::Dbsize => match dbsize(&session.worker, &space).await {
            Ok(n) => {
                let mut out = BytesMut::new();
                encode::integer(&mut out, n);
                out.freeze()
            }
            Err(reply) => reply,
        },
        Op::Flushdb => match flushdb(&session.worker, &space).await {
            Ok(()) => Bytes::from_static(super::local::OK),
            Err(reply) => reply,
        },
        Op::Randomkey => match randomkey(&session.worker, &space).await {
            Ok(Some(stored)) => {
                let tags = session
                    .worker
                    .settings()
                    .key_tags
                    .clone()
                    .unwrap_or_default();
                super::local::bulk(tags.client_key(&space, &stored).unwrap_or(&stored[..]))
            }
            Ok(None) => super::local::null(session.resp3),
            Err(reply) => reply,
        },
    }
}

/// Pool mode: whether every master has database `db` (its own refusal otherwise).
async fn check(worker: &WorkerContext, db: u32) -> Result<(), Bytes> {
    let router = worker.router();
    for (master, _) in router.table().serving_masters() {
        match router
            .lease_for(
                &master,
                Lease {
                    resp3: false,
                    db,
                    client: 0,
                },
            )
            .await
        {
            Ok(conn) => router.give_back(conn),
            Err(BackendError::Refused { reason, .. }) => return Err(error(&reason)),
            Err(e) => return Err(e.to_reply()),
        }
    }
    Ok(())
}

/// A walk over every master's keys that match a pattern, one SCAN page at a time.
struct Walk {
    /// The serving masters' units, the walk's start first.
    units: Vec<Unit>,
    /// The master being walked (index into `units`).
    at: usize,
    cursor: u64,
    pattern: Bytes,
}

impl Walk {
    /// Over the keys of `space` (every key for database 0, to be filtered), from the master
    /// `start` (modulo their number).
    fn new(worker: &WorkerContext, space: &KeySpace, start: usize) -> Walk {
        let mut units: Vec<Unit> = worker
            .router()
            .table()
            .serving_masters()
            .into_iter()
            .map(|(_, unit)| unit)
            .collect();
        let len = units.len().max(1);
        units.rotate_left(start % len);
        let pattern = match space {
            KeySpace::Db(prefix) => Bytes::from([&prefix[..], b"*"].concat()),
            _ => Bytes::from_static(b"*"),
        };
        Walk {
            units,
            at: 0,
            cursor: 0,
            pattern,
        }
    }

    /// The next page: the master's unit and the stored names found; `None` at the end.
    async fn next(&mut self, worker: &WorkerContext) -> Result<Option<(Unit, Vec<Bytes>)>, Bytes> {
        let Some(&unit) = self.units.get(self.at) else {
            return Ok(None);
        };
        let request: [&[u8]; 6] = [b"SCAN", b"0", b"MATCH", &self.pattern, b"COUNT", WALK_COUNT];
        let (next, keys) = super::scan::scan_master(worker, 0, unit, &request, self.cursor).await?;
        if next == 0 {
            self.at += 1;
        }
        self.cursor = next;
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Frame::Bulk(k) => Some(k),
                _ => None,
            })
            .collect();
        Ok(Some((unit, keys)))
    }
}

/// Whether the stored name `key` is in `space`.
fn holds(space: &KeySpace, key: &[u8]) -> bool {
    space.client(key).is_some()
}

/// DBSIZE of `space`: its keys counted by a walk; for database 0, every master's DBSIZE less
/// the namespaced keys.
async fn dbsize(worker: &WorkerContext, space: &KeySpace) -> Result<i64, Bytes> {
    let mut walk = Walk::new(worker, &KeySpace::Db(Bytes::from_static(MARKER)), 0);
    let mut total = 0i64;
    if let KeySpace::Db(_) = space {
        walk = Walk::new(worker, space, 0);
    } else {
        for &unit in &walk.units {
            let reply = super::scan::ask_master(worker, 0, unit, DBSIZE).await?;
            total += std::str::from_utf8(reply.raw().get(1..).unwrap_or_default())
                .ok()
                .and_then(|n| n.trim_end().parse::<i64>().ok())
                .ok_or_else(|| error("ERR slotgate: unexpected DBSIZE reply from a master"))?;
        }
    }
    let mut namespaced = 0i64;
    while let Some((_, keys)) = walk.next(worker).await? {
        namespaced += keys.len() as i64;
    }
    Ok(match space {
        KeySpace::Db(_) => namespaced,
        _ => total - namespaced,
    })
}

/// The bytes of `DBSIZE`.
const DBSIZE: &[u8] = b"*1\r\n$6\r\nDBSIZE\r\n";

/// FLUSHDB of `space`: every key of it found by a walk, unlinked on its master.
async fn flushdb(worker: &WorkerContext, space: &KeySpace) -> Result<(), Bytes> {
    let mut walk = Walk::new(worker, space, 0);
    while let Some((unit, keys)) = walk.next(worker).await? {
        let mut payload = BytesMut::new();
        let mut count = 0;
        for key in keys.iter().filter(|k| holds(space, k)) {
            encode::array_header(&mut payload, 2);
            encode::bulk(&mut payload, b"UNLINK");
            encode::bulk(&mut payload, key);
            count += 1;
        }
        if count > 0 {
            super::cross_slot::call(worker, Lease::default(), unit, &payload, count).await?;
        }
    }
    Ok(())
}

/// RANDOMKEY of `space`: the stored name of one of its keys, `None` when it has none. For
/// database 0, RANDOMKEY of the masters in turn, until one answers a key that is not
/// another database's; for an emulated database (or when that fails), a key picked from the
/// first page of a walk that finds any, from a master picked in turn. Not uniform: keys on a
/// master with fewer of the database's keys come up more often.
async fn randomkey(worker: &WorkerContext, space: &KeySpace) -> Result<Option<Bytes>, Bytes> {
    let pick = worker.stats().next_pick() as usize;
    let mut walk = Walk::new(worker, space, pick);
    if !space.renames() {
        for &unit in walk.units.iter().cycle().take(RANDOM_TRIES) {
            let reply = super::scan::ask_master(worker, 0, unit, RANDOMKEY).await?;
            let frame = crate::resp::parse_frame(reply.raw(), &worker.settings().limits).ok();
            if let Some(Frame::Bulk(key)) = frame {
                if holds(space, &key) {
                    return Ok(Some(key));
                }
            }
        }
    }
    while let Some((_, keys)) = walk.next(worker).await? {
        let mut keys: Vec<Bytes> = keys.into_iter().filter(|k| holds(space, k)).collect();
        if !keys.is_empty() {
            let at = pick % keys.len();
            return Ok(Some(keys.swap_remove(at)));
        }
    }
    Ok(None)
}

/// The bytes of `RANDOMKEY`.
const RANDOMKEY: &[u8] = b"*1\r\n$9\r\nRANDOMKEY\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::namespace::prefix;
    use crate::slot::Slot;

    fn emulate(words: &[&str], db: u32) -> Option<Emulated> {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let spec = crate::command::lookup(&args).unwrap();
        let space = KeySpace::of(db, true);
        emulated(spec, &args, &space, 16, &Colocation::NONE, true)
    }

    fn sent(emulated: Option<Emulated>) -> Vec<Vec<u8>> {
        match emulated {
            Some(Emulated::Instead(request)) => request.args().iter().map(|a| a.to_vec()).collect(),
            _ => panic!("not rewritten"),
        }
    }

    fn refusal(emulated: Option<Emulated>) -> Bytes {
        match emulated {
            Some(Emulated::Route(Route::Refused(reply))) => reply,
            _ => panic!("not refused"),
        }
    }

    #[test]
    fn move_is_a_script_over_the_two_names_of_one_slot() {
        let args = sent(emulate(&["MOVE", "k", "3"], 0));
        assert_eq!(args[0], b"EVAL");
        assert_eq!(args[2], b"2");
        assert_eq!(args[3], b"k", "database 0 keeps its names");
        assert_eq!(args[4], [&prefix(3)[..], b"k"].concat());
        assert_eq!(Slot::of(&args[3]), Slot::of(&args[4]));
        let args = sent(emulate(&["MOVE", "k", "0"], 5));
        assert_eq!(args[3], [&prefix(5)[..], b"k"].concat());
        assert_eq!(args[4], b"k");
    }

    #[test]
    fn copy_to_a_database_names_the_destination_there() {
        let args = sent(emulate(&["COPY", "a", "b", "DB", "2", "REPLACE"], 1));
        let names: Vec<Vec<u8>> = vec![
            b"COPY".to_vec(),
            [&prefix(1)[..], b"a"].concat(),
            [&prefix(2)[..], b"b"].concat(),
            b"REPLACE".to_vec(),
        ];
        assert_eq!(args, names);
        // Without DB, an ordinary request (the keys are tagged as any other).
        assert!(emulate(&["COPY", "a", "b"], 1).is_none());
        // Onto another name of its own database: allowed, as in Redis.
        assert_eq!(sent(emulate(&["COPY", "a", "b", "DB", "1"], 1)).len(), 3);
    }

    #[test]
    fn database_errors_are_redis_own() {
        let same = "-ERR source and destination objects are the same\r\n";
        assert_eq!(refusal(emulate(&["MOVE", "k", "4"], 4)), same);
        assert_eq!(refusal(emulate(&["COPY", "a", "a", "DB", "4"], 4)), same);
        let range = "-ERR DB index is out of range\r\n";
        assert_eq!(refusal(emulate(&["MOVE", "k", "16"], 0)), range);
        assert_eq!(refusal(emulate(&["MOVE", "k", "-1"], 0)), range);
        let integer = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(refusal(emulate(&["MOVE", "k", "x"], 0)), integer);
        assert!(refusal(emulate(&["SWAPDB", "0", "1"], 0)).starts_with(b"-ERR slotgate: SWAPDB"));
    }

    #[test]
    fn whole_database_commands_are_the_sessions() {
        let op = |words: &[&str]| match emulate(words, 2) {
            Some(Emulated::Route(Route::Pinned(Pinned::Exclusive(Exclusive::Database(op))))) => op,
            _ => panic!("{words:?} is not a database op"),
        };
        assert_eq!(op(&["DBSIZE"]), Op::Dbsize);
        assert_eq!(op(&["FLUSHDB"]), Op::Flushdb);
        assert_eq!(op(&["RANDOMKEY"]), Op::Randomkey);
        assert!(emulate(&["GET", "k"], 2).is_none());
    }
}
