//! Multi-key commands checked against an oracle: every command goes to slotgate (in front of a
//! 3-master/3-replica Redis Cluster) and to one standalone `redis-server`, the "one Redis" a
//! legacy app was written for, and the two replies must be identical, errors included.
//!
//! MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span slots are split per slot and merged
//! back in the client's key order; SUNION, SINTER, SDIFF, SINTERCARD merge the slots' sets.
//! ZUNION, ZINTER, ZDIFF, ZINTERCARD, LCS and PFCOUNT fetch each key's value and compute the
//! answer in the proxy. Atomic multi-key commands (MSETNX, RENAME, SMOVE, …) stay refused with
//! CROSSSLOT unless their keys share a slot.
//!
//! Environment:
//! - `MULTIKEY_SEED=N` replays the random tests with seed `N` (every run prints its seed).
//! - `MULTIKEY_SAME_SLOT_ONLY=1` keeps the keys of every multi-key command in one slot (random
//!   ones drawn from one slot, fixed ones given one `{tag}`): a check of the oracle and harness
//!   that needs no cross-slot support in the proxy.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::Value;
use slotgate::local_redis::{RedisServer, ServerOptions};
use slotgate::slot::Slot;

/// The text a cluster node (and slotgate) gives with `-CROSSSLOT`.
const CROSSSLOT: &str = "Keys in request don't hash to the same slot";

/// Longer than the proxy's test `request_timeout_ms`, so a hang shows as a failure, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Commands, replies and the oracle
// ---------------------------------------------------------------------------------------------

/// One command as the client sends it; printable on a mismatch.
#[derive(Clone)]
struct Command(Vec<Vec<u8>>);

impl Command {
    fn new(name: &str) -> Command {
        Command(vec![name.as_bytes().to_vec()])
    }

    /// A command from plain string arguments, name first.
    fn of(args: &[&str]) -> Command {
        Command(args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    fn arg(mut self, arg: impl AsRef<[u8]>) -> Command {
        self.0.push(arg.as_ref().to_vec());
        self
    }

    fn args<A: AsRef<[u8]>>(mut self, args: impl IntoIterator<Item = A>) -> Command {
        self.0.extend(args.into_iter().map(|a| a.as_ref().to_vec()));
        self
    }

    fn to_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::Cmd::new();
        for arg in &self.0 {
            cmd.arg(arg.as_slice());
        }
        cmd
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 24;
        for (i, arg) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            const LONG: usize = 40;
            let text = String::from_utf8_lossy(&arg[..arg.len().min(LONG)]);
            let plain = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
            if plain {
                f.write_str(&text)?;
            } else {
                write!(f, "{text:?}")?;
            }
            if arg.len() > LONG {
                write!(f, "…({} bytes)", arg.len())?;
            }
        }
        if self.0.len() > SHOWN {
            write!(f, " … ({} arguments in all)", self.0.len())?;
        }
        Ok(())
    }
}

/// What a target answered: a RESP value (server errors included, as `Value::ServerError`), or
/// a client-side failure (connection lost, no reply in time).
type Reply = Result<Value, String>;

/// A value the way `redis-cli` would show it, long arrays cut short.
fn render(value: &Value) -> String {
    const SHOWN: usize = 12;
    match value {
        Value::Nil => "(nil)".into(),
        Value::Int(n) => format!("(integer) {n}"),
        Value::BulkString(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        Value::Okay => "OK".into(),
        Value::SimpleString(s) => format!("+{s}"),
        Value::ServerError(e) => format!("(error) {} {}", e.code(), e.details().unwrap_or("")),
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().take(SHOWN).map(render).collect();
            let more = if items.len() > SHOWN { ", …" } else { "" };
            format!("[{}{more}] ({} items)", shown.join(", "), items.len())
        }
        other => format!("{other:?}"),
    }
}

/// `reply` with its members sorted when `command` answers a set (SMEMBERS, SUNION, SINTER):
/// a set's order is the server's business, and differs between one Redis and several.
fn unordered(command: &Command, reply: Reply) -> Reply {
    let name = command.0.first().map(|n| n.to_ascii_uppercase());
    let is_set = matches!(
        name.as_deref(),
        Some(b"SMEMBERS" | b"SUNION" | b"SINTER" | b"SDIFF")
    );
    match reply {
        Ok(Value::Array(mut members)) if is_set => {
            members.sort_by_key(render);
            Ok(Value::Array(members))
        }
        other => other,
    }
}

/// `"CODE detail"` of an error reply, as a client would print it.
fn error_line(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(e) => Some(format!("{} {}", e.code(), e.details().unwrap_or(""))),
        _ => None,
    }
}

fn render_reply(reply: &Reply) -> String {
    match reply {
        Ok(value) => render(value),
        Err(e) => format!("<client failure: {e}>"),
    }
}

/// For two arrays: where they first differ (the full arrays may be thousands long).
fn first_difference(a: &Reply, b: &Reply) -> String {
    let (Ok(Value::Array(a)), Ok(Value::Array(b))) = (a, b) else {
        return String::new();
    };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "\n  first difference at item {i}: slotgate {} vs redis {}",
            render(&a[i]),
            render(&b[i])
        ),
        None => format!(
            "\n  lengths differ: slotgate {} vs redis {}",
            a.len(),
            b.len()
        ),
    }
}

async fn send(conn: &mut MultiplexedConnection, command: &Command) -> Reply {
    // `req_packed_command` keeps a server error as a value, so error text compares like data.
    match tokio::time::timeout(REPLY_TIMEOUT, conn.req_packed_command(&command.to_cmd())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no reply within {REPLY_TIMEOUT:?}")),
    }
}

/// The two targets every command goes to: slotgate, and the standalone server it must imitate.
struct Oracle {
    proxy: MultiplexedConnection,
    single: MultiplexedConnection,
}

impl Oracle {
    async fn connect(setup: &common::Setup, single: &RedisServer) -> Oracle {
        Oracle {
            proxy: setup.client().await,
            single: common::client(single.addr().parse().expect("server address")).await,
        }
    }

    /// Sends `command` to both; panics, naming `context`, unless the replies are identical.
    /// Returns the (common) reply.
    async fn check(&mut self, command: &Command, context: &str) -> Value {
        let proxy = unordered(command, send(&mut self.proxy, command).await);
        let single = unordered(command, send(&mut self.single, command).await);
        assert!(
            proxy == single,
            "slotgate and a single Redis disagree ({context})\n  command:  {command}\n  \
             slotgate: {}\n  redis:    {}{}",
            render_reply(&proxy),
            render_reply(&single),
            first_difference(&proxy, &single),
        );
        single.expect("both replied")
    }

    /// Sends `commands` as one pipeline to each target; every reply must match, in order.
    async fn check_pipeline(&mut self, commands: &[Command], context: &str) -> Vec<Value> {
        let mut pipe = redis::pipe();
        for command in commands {
            pipe.add_command(command.to_cmd());
        }
        let n = commands.len();
        // Raw replies, so one error reply does not hide the rest of the pipeline.
        let proxy =
            tokio::time::timeout(REPLY_TIMEOUT, self.proxy.req_packed_commands(&pipe, 0, n))
                .await
                .expect("slotgate answered the pipeline in time")
                .expect("slotgate answered the pipeline");
        let single =
            tokio::time::timeout(REPLY_TIMEOUT, self.single.req_packed_commands(&pipe, 0, n))
                .await
                .expect("redis answered the pipeline in time")
                .expect("redis answered the pipeline");
        assert_eq!(single.len(), n, "redis gave one reply per command");
        assert_eq!(
            proxy.len(),
            n,
            "slotgate gave one reply per command ({context})"
        );
        let sorted = |replies: Vec<Value>| -> Vec<Value> {
            replies
                .into_iter()
                .zip(commands)
                .map(|(reply, command)| unordered(command, Ok(reply)).expect("a reply"))
                .collect()
        };
        let (proxy, single) = (sorted(proxy), sorted(single));
        let differing: Vec<usize> = (0..n).filter(|&i| proxy[i] != single[i]).collect();
        if let Some(&i) = differing.first() {
            panic!(
                "pipeline replies differ at {} of {n} positions ({context}); the first:\n  \
                 position: {i}\n  command:  {}\n  slotgate: {}\n  redis:    {}",
                differing.len(),
                commands[i],
                render(&proxy[i]),
                render(&single[i]),
            );
        }
        single
    }
}

/// The seed for the random tests: `MULTIKEY_SEED`, or a fresh one.
fn seed() -> u64 {
    match std::env::var("MULTIKEY_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("MULTIKEY_SEED={s:?} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

fn same_slot_only() -> bool {
    std::env::var("MULTIKEY_SAME_SLOT_ONLY").is_ok_and(|v| v == "1")
}

fn slot(key: &str) -> u16 {
    Slot::of(key.as_bytes()).get()
}

fn distinct_slots<S: AsRef<str>>(keys: &[S]) -> usize {
    keys.iter()
        .map(|k| slot(k.as_ref()))
        .collect::<BTreeSet<_>>()
        .len()
}

// ---------------------------------------------------------------------------------------------
// The key pool and the random command generator
// ---------------------------------------------------------------------------------------------

/// What a pool key may hold. Only the writers respect it: a `Str` key may become a list (LPUSH
/// after a DEL) and a `List` key a string (SET/MSET overwrite), both rarely.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Written by SET and MSET.
    Str,
    /// Written by LPUSH: MGET answers nil for it, DEL/EXISTS/TOUCH count it.
    List,
    /// Written by SADD; SUNION and SINTER read it (and meet the other kinds: WRONGTYPE, or
    /// a missing key's empty set).
    Set,
    /// Written by ZADD; ZUNION, ZINTER, ZDIFF and ZINTERCARD read it, with sets.
    Zset,
    /// Written by PFADD; PFCOUNT reads it.
    Hll,
    /// Never written: always missing.
    Ghost,
}

struct PoolKey {
    name: String,
    kind: Kind,
}

/// ~60 keys: plain ones over many slots, and `{tag}` groups that share a slot.
struct Pool {
    keys: Vec<PoolKey>,
    /// Indices into `keys`, one entry per slot used.
    groups: Vec<Vec<usize>>,
}

impl Pool {
    fn new() -> Pool {
        let mut keys = Vec::new();
        let mut add = |name: String, kind| keys.push(PoolKey { name, kind });
        for i in 0..24 {
            add(format!("mk:{i}"), Kind::Str);
        }
        for i in 0..4 {
            add(format!("mk:list:{i}"), Kind::List);
        }
        for i in 0..6 {
            add(format!("mk:ghost:{i}"), Kind::Ghost);
        }
        for i in 0..6 {
            add(format!("mk:set:{i}"), Kind::Set);
        }
        for i in 0..6 {
            add(format!("mk:zset:{i}"), Kind::Zset);
        }
        for i in 0..5 {
            add(format!("mk:hll:{i}"), Kind::Hll);
        }
        for tag in 0..5 {
            for s in 0..3 {
                add(format!("{{mk-t{tag}}}s{s}"), Kind::Str);
            }
            add(format!("{{mk-t{tag}}}list"), Kind::List);
            add(format!("{{mk-t{tag}}}set"), Kind::Set);
            add(format!("{{mk-t{tag}}}zset"), Kind::Zset);
            add(format!("{{mk-t{tag}}}hll"), Kind::Hll);
            add(format!("{{mk-t{tag}}}ghost"), Kind::Ghost);
        }
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_slot.entry(slot(&key.name)).or_default().push(i);
        }
        Pool {
            keys,
            groups: by_slot.into_values().collect(),
        }
    }

    /// The keys must land on every master, and on many slots, or the test proves little.
    fn assert_spread(&self, cluster: &slotgate::local_redis::LocalCluster) {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        let masters: BTreeSet<u16> = names
            .iter()
            .filter_map(|k| cluster.port_of_slot(slot(k)))
            .collect();
        assert_eq!(masters.len(), 3, "pool keys reach every master");
        assert!(
            distinct_slots(&names) >= 35,
            "pool keys span many slots: {}",
            distinct_slots(&names)
        );
    }

    /// `n` keys whose kind passes `accept`, drawn with replacement (and some deliberate
    /// repeats); all from one slot when `one_slot`.
    fn draw(
        &self,
        rng: &mut StdRng,
        n: usize,
        one_slot: bool,
        accept: impl Fn(Kind) -> bool,
    ) -> Vec<String> {
        let ok = |i: &usize| accept(self.keys[*i].kind);
        let candidates: Vec<usize> = if one_slot {
            let groups: Vec<&Vec<usize>> =
                self.groups.iter().filter(|g| g.iter().any(ok)).collect();
            let group = groups.choose(rng).expect("some slot holds such a key");
            group.iter().copied().filter(ok).collect()
        } else {
            (0..self.keys.len()).filter(ok).collect()
        };
        let mut out: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let key = match out.choose(rng) {
                Some(earlier) if rng.gen_bool(0.15) => earlier.clone(),
                _ => {
                    let i = *candidates.choose(rng).expect("candidates");
                    self.keys[i].name.clone()
                }
            };
            out.push(key);
        }
        out
    }
}

/// Random commands over a [`Pool`], reproducible from a seed.
struct Generator {
    pool: Pool,
    rng: StdRng,
    same_slot_only: bool,
    values: u64,
    /// Multi-key commands generated, and how many of them spanned more than one slot.
    multi_key: usize,
    cross_slot: usize,
    /// Draw commands that write keys of several slots too (the proxy under test serves them:
    /// `commands.non_atomic_cross_slot_writes`).
    writes: bool,
}

impl Generator {
    fn new(seed: u64, same_slot_only: bool) -> Generator {
        Generator {
            pool: Pool::new(),
            rng: StdRng::seed_from_u64(seed),
            same_slot_only,
            values: 0,
            multi_key: 0,
            cross_slot: 0,
            writes: false,
        }
    }

    /// A command that writes keys of several slots (the first key drawn is the destination):
    /// the *STORE forms, SMOVE, RENAME(NX), COPY, MSETNX, LMOVE, RPOPLPUSH, PFMERGE, BITOP.
    fn cross_slot_write(&mut self) -> Command {
        let pick = self.rng.gen_range(0..12);
        let member = format!("m{}", self.rng.gen_range(0..8));
        let side = |rng: &mut StdRng| if rng.gen_bool(0.5) { "LEFT" } else { "RIGHT" };
        match pick {
            0..=2 => {
                let name = ["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"][pick];
                self.multi(name, 5, |k| matches!(k, Kind::Set | Kind::Ghost))
            }
            3 | 4 => {
                let name = ["ZUNIONSTORE", "ZINTERSTORE"][pick - 3];
                let mut command = self.multi(name, 4, |k| {
                    matches!(k, Kind::Zset | Kind::Set | Kind::Ghost)
                });
                let numkeys = command.0.len() - 2;
                command.0.insert(2, numkeys.to_string().into_bytes());
                if self.rng.gen_bool(0.4) {
                    let how = ["SUM", "MIN", "MAX"][self.rng.gen_range(0..3)];
                    command = command.arg("AGGREGATE").arg(how);
                }
                command
            }
            5 => self
                .multi("SMOVE", 2, |k| matches!(k, Kind::Set | Kind::Ghost))
                .arg(member),
            6 => {
                let name = if self.rng.gen_bool(0.5) {
                    "RENAME"
                } else {
                    "RENAMENX"
                };
                self.multi(name, 2, |_| true)
            }
            7 => {
                let command = self.multi("COPY", 2, |_| true);
                if self.rng.gen_bool(0.5) {
                    command.arg("REPLACE")
                } else {
                    command
                }
            }
            8 => {
                let n = self.rng.gen_range(1..=4);
                let one_slot = self.same_slot_only || self.rng.gen_bool(0.2);
                let keys = self
                    .pool
                    .draw(&mut self.rng, n, one_slot, |k| k == Kind::Str);
                self.count(&keys);
                let mut command = Command::new("MSETNX");
                for key in keys {
                    let value = self.value();
                    command = command.arg(key).arg(value);
                }
                command
            }
            9 => {
                let (from, to) = (side(&mut self.rng), side(&mut self.rng));
                self.multi("LMOVE", 2, |k| matches!(k, Kind::List | Kind::Ghost))
                    .arg(from)
                    .arg(to)
            }
            10 => self.multi("PFMERGE", 4, |k| matches!(k, Kind::Hll | Kind::Ghost)),
            _ => {
                let op = ["AND", "OR", "XOR"][self.rng.gen_range(0..3)];
                let keys = self.multi("x", 4, |k| matches!(k, Kind::Str | Kind::Ghost));
                let mut command = Command::new("BITOP").arg(op);
                for key in keys.0.iter().skip(1) {
                    command = command.arg(key.clone());
                }
                command
            }
        }
    }

    /// A fresh value: mostly short text, sometimes empty or binary (CR LF, NUL, invalid UTF-8).
    fn value(&mut self) -> Vec<u8> {
        self.values += 1;
        match self.rng.gen_range(0..10) {
            0 => Vec::new(),
            1 => {
                let mut v = format!("bin{}", self.values).into_bytes();
                v.extend_from_slice(b"\r\n\0\xff");
                v
            }
            _ => format!("v{}", self.values).into_bytes(),
        }
    }

    /// `name` with 1..=`max` keys; one slot in a fifth of them even in cross-slot mode.
    fn multi(&mut self, name: &str, max: usize, accept: impl Fn(Kind) -> bool) -> Command {
        let n = self.rng.gen_range(1..=max);
        let one_slot = self.same_slot_only || self.rng.gen_bool(0.2);
        let keys = self.pool.draw(&mut self.rng, n, one_slot, accept);
        self.count(&keys);
        Command::new(name).args(&keys)
    }

    /// Counts a multi-key command, and whether it spans slots.
    fn count(&mut self, keys: &[String]) {
        self.multi_key += 1;
        if distinct_slots(keys) > 1 {
            self.cross_slot += 1;
        }
    }

    /// One key for a single-key command.
    fn one_key(&mut self, accept: impl Fn(Kind) -> bool) -> String {
        let mut keys = self.pool.draw(&mut self.rng, 1, false, accept);
        keys.pop().expect("one key")
    }

    /// ZUNION, ZINTER, ZDIFF or ZINTERCARD over sorted sets, sets and missing keys (rarely a
    /// string: WRONGTYPE), with random options (rarely a bad one).
    fn sorted_set_read(&mut self) -> Command {
        let name = ["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"][self.rng.gen_range(0..4)];
        let others = self.rng.gen_bool(0.1);
        let mut command = self.multi(name, 4, |k| {
            matches!(k, Kind::Zset | Kind::Set | Kind::Ghost) || (others && k == Kind::Str)
        });
        let numkeys = command.0.len() - 1;
        command.0.insert(1, numkeys.to_string().into_bytes());
        let mut options: Vec<Vec<String>> = Vec::new();
        let rng = &mut self.rng;
        match name {
            "ZUNION" | "ZINTER" => {
                if rng.gen_bool(0.5) {
                    let mut weights = vec!["WEIGHTS".to_string()];
                    for _ in 0..numkeys {
                        let bad = rng.gen_bool(0.03);
                        let weight = if bad {
                            "x"
                        } else {
                            WEIGHTS.choose(rng).expect("w")
                        };
                        weights.push(weight.to_string());
                    }
                    options.push(weights);
                }
                if rng.gen_bool(0.4) {
                    let how = ["SUM", "MIN", "MAX", "min", "AVG"][rng.gen_range(0..5)];
                    options.push(vec!["AGGREGATE".into(), how.into()]);
                }
                if rng.gen_bool(0.5) {
                    options.push(vec!["WITHSCORES".into()]);
                }
            }
            "ZDIFF" => {
                if rng.gen_bool(0.5) {
                    options.push(vec!["WITHSCORES".into()]);
                }
            }
            _ => {
                if rng.gen_bool(0.5) {
                    let limit = rng.gen_range(-1..=3i32);
                    options.push(vec!["LIMIT".into(), limit.to_string()]);
                }
            }
        }
        if rng.gen_bool(0.04) {
            options.push(vec!["NOPE".into()]);
        }
        options.shuffle(rng);
        for option in options {
            command = command.args(option);
        }
        command
    }

    /// LCS of two strings (or missing keys, rarely a list), with random options.
    fn lcs(&mut self) -> Command {
        let lists = self.rng.gen_bool(0.1);
        let one_slot = self.same_slot_only || self.rng.gen_bool(0.2);
        let keys = self.pool.draw(&mut self.rng, 2, one_slot, |k| {
            k == Kind::Str || k == Kind::Ghost || (lists && k == Kind::List)
        });
        self.count(&keys);
        let n = self.rng.gen_range(0..4).to_string();
        let options: Vec<&str> = match self.rng.gen_range(0..9) {
            0 | 1 => vec![],
            2 => vec!["LEN"],
            3 => vec!["IDX"],
            4 => vec!["IDX", "WITHMATCHLEN"],
            5 => vec!["idx", "MINMATCHLEN", &n],
            6 => vec!["MINMATCHLEN", &n, "IDX", "WITHMATCHLEN"],
            7 => vec!["LEN", "IDX"],
            _ => vec!["MINMATCHLEN"],
        };
        Command::new("LCS").args(&keys).args(options)
    }

    fn next_command(&mut self) -> Command {
        let any = |_: Kind| true;
        if self.writes && self.rng.gen_bool(0.2) {
            return self.cross_slot_write();
        }
        match self.rng.gen_range(0..150) {
            112..=119 => {
                let key = self.one_key(|k| k == Kind::Zset);
                let mut command = Command::new("ZADD").arg(key);
                for _ in 0..self.rng.gen_range(1..=4) {
                    let score = *SCORES.choose(&mut self.rng).expect("scores");
                    let member = format!("m{}", self.rng.gen_range(0..8));
                    command = command.arg(score).arg(member);
                }
                command
            }
            120..=133 => self.sorted_set_read(),
            134..=137 => self.lcs(),
            138..=142 => {
                let key = self.one_key(|k| k == Kind::Hll);
                // Mostly a few elements; sometimes many, so some HLLs turn dense.
                let n = if self.rng.gen_bool(0.05) {
                    600
                } else {
                    self.rng.gen_range(1..=5)
                };
                let mut command = Command::new("PFADD").arg(key);
                for _ in 0..n {
                    command = command.arg(format!("e{}", self.rng.gen_range(0..20_000)));
                }
                command
            }
            143..=149 => {
                // Mostly HLLs; rarely a string that is not one, or a list (WRONGTYPE).
                let others = self.rng.gen_bool(0.1);
                self.multi("PFCOUNT", 4, |k| {
                    k == Kind::Hll
                        || k == Kind::Ghost
                        || (others && matches!(k, Kind::Str | Kind::List))
                })
            }
            100..=103 => {
                let key = self.one_key(|k| k == Kind::Set);
                let mut command = Command::new("SADD").arg(key);
                // Few distinct members, so unions overlap and intersections are not empty.
                for _ in 0..self.rng.gen_range(1..=4) {
                    command = command.arg(format!("m{}", self.rng.gen_range(0..8)));
                }
                command
            }
            104..=111 => {
                let name = ["SUNION", "SINTER", "SDIFF", "SINTERCARD"][self.rng.gen_range(0..4)];
                // Mostly sets; sometimes a missing key, rarely another type (WRONGTYPE).
                let others = self.rng.gen_bool(0.15);
                let mut command = self.multi(name, 5, |k| {
                    k == Kind::Set || k == Kind::Ghost || (others && k == Kind::Str)
                });
                if name == "SINTERCARD" {
                    // numkeys, then sometimes a LIMIT (rarely a negative one: Redis' error).
                    let numkeys = (command.0.len() - 1).to_string();
                    command.0.insert(1, numkeys.into_bytes());
                    if self.rng.gen_bool(0.5) {
                        let limit = self.rng.gen_range(-1..=3i32);
                        command = command.arg("LIMIT").arg(limit.to_string());
                    }
                }
                command
            }
            0..=21 => self.multi("MGET", 12, any),
            22..=35 => {
                // Mostly string keys; sometimes a list gets overwritten, as MSET may do.
                let lists = self.rng.gen_bool(0.1);
                let n = self.rng.gen_range(1..=8);
                let one_slot = self.same_slot_only || self.rng.gen_bool(0.2);
                let keys = self.pool.draw(&mut self.rng, n, one_slot, |k| {
                    k == Kind::Str || (lists && k == Kind::List)
                });
                self.count(&keys);
                let mut command = Command::new("MSET");
                for key in keys {
                    let value = self.value();
                    command = command.arg(key).arg(value);
                }
                command
            }
            36..=41 => self.multi("DEL", 6, any),
            42..=45 => self.multi("UNLINK", 6, any),
            46..=57 => self.multi("EXISTS", 10, any),
            58..=62 => self.multi("TOUCH", 8, any),
            63..=75 => {
                let lists = self.rng.gen_bool(0.1);
                let key = self.one_key(|k| k == Kind::Str || (lists && k == Kind::List));
                let value = self.value();
                Command::new("SET").arg(key).arg(value)
            }
            76..=87 => {
                let key = self.one_key(any);
                Command::new("GET").arg(key)
            }
            _ => {
                // Mostly lists; sometimes a string key, for WRONGTYPE (or a new list).
                let strings = self.rng.gen_bool(0.15);
                let want = if strings { Kind::Str } else { Kind::List };
                let key = self.one_key(|k| k == want);
                let mut command = Command::new("LPUSH").arg(key);
                for _ in 0..self.rng.gen_range(1..=3) {
                    command = command.arg(self.value());
                }
                command
            }
        }
    }
}

/// Scores ZADD writes: integers, halves, inf, -0, and fractions printed with 17 digits.
const SCORES: &[&str] = &[
    "0", "1", "-1", "2", "0.5", "-2.5", "3", "inf", "-inf", "0.1", "1e20", "-0", "7",
];

/// Weights: the scores' kinds and forms Redis' `strtod` reads (`+1.5`, `1e1`, hex).
const WEIGHTS: &[&str] = &[
    "1", "2", "-1", "0", "0.5", "inf", "-inf", "3", "0x2", "+1.5", "1e1",
];

/// Every pool key, one at a time: same type, same content on both.
async fn compare_state(oracle: &mut Oracle, pool: &Pool, context: &str) {
    for key in &pool.keys {
        let name = key.name.as_str();
        let kind = oracle.check(&Command::of(&["TYPE", name]), context).await;
        match kind {
            Value::SimpleString(t) if t == "string" => {
                oracle.check(&Command::of(&["GET", name]), context).await;
            }
            Value::SimpleString(t) if t == "list" => {
                oracle
                    .check(&Command::of(&["LRANGE", name, "0", "-1"]), context)
                    .await;
            }
            Value::SimpleString(t) if t == "set" => {
                oracle
                    .check(&Command::of(&["SMEMBERS", name]), context)
                    .await;
            }
            Value::SimpleString(t) if t == "zset" => {
                oracle
                    .check(
                        &Command::of(&["ZRANGE", name, "0", "-1", "WITHSCORES"]),
                        context,
                    )
                    .await;
            }
            Value::SimpleString(t) if t == "none" => {}
            other => panic!("unexpected TYPE {} for {name}", render(&other)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_multikey_sequences_match_a_single_redis() {
    const STEPS: usize = 2_000;
    let seed = seed();
    let same_slot_only = same_slot_only();
    println!("random multi-key sequence: MULTIKEY_SEED={seed} same_slot_only={same_slot_only}");
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let mut generator = Generator::new(seed, same_slot_only);
    generator.pool.assert_spread(&setup.cluster);

    let started = Instant::now();
    for step in 0..STEPS {
        let command = generator.next_command();
        let context = format!("MULTIKEY_SEED={seed}, step {step}");
        oracle.check(&command, &context).await;
        if step % 500 == 499 {
            compare_state(&mut oracle, &generator.pool, &context).await;
        }
    }
    compare_state(
        &mut oracle,
        &generator.pool,
        &format!("MULTIKEY_SEED={seed}, end"),
    )
    .await;
    println!(
        "{STEPS} commands in {:?}: {} multi-key, {} of them across slots",
        started.elapsed(),
        generator.multi_key,
        generator.cross_slot
    );
    if same_slot_only {
        assert_eq!(generator.cross_slot, 0);
    } else {
        assert!(
            generator.cross_slot >= STEPS / 4,
            "too few cross-slot commands to prove anything: {}",
            generator.cross_slot
        );
    }
}

/// The same with the commands that write keys of several slots, served in steps under
/// `commands.non_atomic_cross_slot_writes`: every reply and, now and then, every key's value
/// must equal one Redis'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_with_cross_slot_writes_match_a_single_redis() {
    const STEPS: usize = 1_000;
    let seed = seed();
    println!("random multi-key sequence with writes: MULTIKEY_SEED={seed}");
    let setup = common::start_with(Default::default(), |c| {
        c.commands.non_atomic_cross_slot_writes = true
    });
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let mut generator = Generator::new(seed, same_slot_only());
    generator.writes = true;
    for step in 0..STEPS {
        let command = generator.next_command();
        let context = format!("MULTIKEY_SEED={seed} (with writes), step {step}");
        oracle.check(&command, &context).await;
        if step % 250 == 249 {
            compare_state(&mut oracle, &generator.pool, &context).await;
        }
    }
    compare_state(
        &mut oracle,
        &generator.pool,
        &format!("MULTIKEY_SEED={seed} (with writes), end"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_multikey_keeps_order() {
    const COMMANDS: usize = 500;
    let seed = seed();
    let same_slot_only = same_slot_only();
    println!("pipelined multi-key: MULTIKEY_SEED={seed} same_slot_only={same_slot_only}");
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let mut generator = Generator::new(seed, same_slot_only);

    // Twice, so the second pipeline starts from the state the first one left.
    for round in 0..2 {
        let commands: Vec<Command> = (0..COMMANDS).map(|_| generator.next_command()).collect();
        let context = format!("MULTIKEY_SEED={seed}, pipeline {round}");
        let started = Instant::now();
        oracle.check_pipeline(&commands, &context).await;
        println!(
            "pipeline {round}: {COMMANDS} commands in {:?}",
            started.elapsed()
        );
        compare_state(&mut oracle, &generator.pool, &context).await;
    }
    if !same_slot_only {
        assert!(
            generator.cross_slot >= COMMANDS / 2,
            "enough cross-slot commands"
        );
    }
}

/// Asserts `reply` is slotgate's `-CROSSSLOT Keys in request don't hash to the same slot`.
fn assert_crossslot(reply: &Reply, command: &Command) {
    let refused = match reply {
        Ok(Value::ServerError(e)) => e.code() == "CROSSSLOT" && e.details() == Some(CROSSSLOT),
        _ => false,
    };
    assert!(
        refused,
        "{command}: expected -CROSSSLOT {CROSSSLOT}, got {}",
        render_reply(reply)
    );
    // What a client sees: the redis crate's own wording for it.
    if let Ok(Value::ServerError(e)) = reply {
        let shown = redis::RedisError::from(e.clone()).to_string();
        assert!(
            shown.contains(&format!("CrossSlot: {CROSSSLOT}")),
            "{shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_multikey_commands_stay_crossslot() {
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let masters = setup.cluster.master_ports();
    let on = |master: usize, prefix: &str| common::key_on(&setup.cluster, masters[master], prefix);

    // Pairs on two masters, and a pair on one master but in two slots (still CROSSSLOT).
    let (s1, s2) = (on(0, "mk:at:str"), on(1, "mk:at:str"));
    let s1_near = on(0, "mk:at:near");
    let (fresh1, fresh2) = (on(1, "mk:at:fresh"), on(2, "mk:at:fresh"));
    let (t1, t2, t3) = (on(0, "mk:at:set"), on(1, "mk:at:set"), on(2, "mk:at:set"));
    let (l1, l2) = (on(1, "mk:at:list"), on(2, "mk:at:list"));
    assert_ne!(slot(&s1), slot(&s1_near), "same master, two slots");

    let c = &mut oracle.proxy;
    for setup_command in [
        Command::of(&["SET", &s1, "one"]),
        Command::of(&["SET", &s2, "two"]),
        Command::of(&["SET", &s1_near, "near"]),
        Command::of(&["SADD", &t1, "m"]),
        Command::of(&["SADD", &t2, "m", "n"]),
        Command::of(&["RPUSH", &l1, "x", "y"]),
        Command::of(&["RPUSH", &l2, "z"]),
    ] {
        let reply = send(c, &setup_command).await;
        assert!(
            matches!(reply, Ok(Value::Okay | Value::Int(_))),
            "{setup_command}: {}",
            render_reply(&reply)
        );
    }

    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])";
    let refused = [
        Command::of(&["MSETNX", &fresh1, "a", &fresh2, "b"]),
        Command::of(&["MSETNX", &s1, "new", &s1_near, "new"]),
        Command::of(&["MSETNX", &fresh1, "a", &fresh1, "b", &s2, "c"]),
        Command::of(&["RENAME", &s1, &s2]),
        Command::of(&["RENAME", &s1, &s1_near]),
        Command::of(&["SMOVE", &t1, &t2, "m"]),
        Command::of(&["SINTERSTORE", &t3, &t1, &t2]),
        Command::of(&["LMOVE", &l1, &l2, "LEFT", "RIGHT"]),
        Command::of(&["EVAL", script, "2", &s1, &s2, "evil"]),
    ];
    for command in &refused {
        let reply = send(c, command).await;
        assert_crossslot(&reply, command);
    }

    // Refused means not applied, not even in part.
    let unchanged = [
        (
            Command::of(&["GET", &s1]),
            Value::BulkString(b"one".to_vec()),
        ),
        (
            Command::of(&["GET", &s2]),
            Value::BulkString(b"two".to_vec()),
        ),
        (
            Command::of(&["GET", &s1_near]),
            Value::BulkString(b"near".to_vec()),
        ),
        (Command::of(&["EXISTS", &fresh1]), Value::Int(0)),
        (Command::of(&["EXISTS", &fresh2]), Value::Int(0)),
        (Command::of(&["SCARD", &t1]), Value::Int(1)),
        (Command::of(&["SCARD", &t2]), Value::Int(2)),
        (Command::of(&["EXISTS", &t3]), Value::Int(0)),
        (Command::of(&["LLEN", &l1]), Value::Int(2)),
        (Command::of(&["LLEN", &l2]), Value::Int(1)),
    ];
    for (command, want) in unchanged {
        let reply = send(c, &command).await;
        assert_eq!(reply, Ok(want), "{command} after the refused commands");
    }

    // The same commands within one slot are served, exactly as one Redis serves them.
    let same_slot = [
        &["SET", "{mk-at}a", "1"][..],
        &["SADD", "{mk-at}s1", "m", "n"],
        &["SADD", "{mk-at}s2", "n", "o"],
        &["RPUSH", "{mk-at}l1", "x", "y"],
        &["MSETNX", "{mk-at}b", "2", "{mk-at}c", "3"],
        &["MSETNX", "{mk-at}a", "9", "{mk-at}d", "4"],
        &["MGET", "{mk-at}a", "{mk-at}b", "{mk-at}c", "{mk-at}d"],
        &["RENAME", "{mk-at}a", "{mk-at}e"],
        &["MGET", "{mk-at}a", "{mk-at}e"],
        &["SMOVE", "{mk-at}s1", "{mk-at}s2", "m"],
        &["SMOVE", "{mk-at}s1", "{mk-at}s2", "m"],
        &["SINTERSTORE", "{mk-at}d2", "{mk-at}s1", "{mk-at}s2"],
        &["SMEMBERS", "{mk-at}d2"],
        &["SCARD", "{mk-at}s2"],
        &["SISMEMBER", "{mk-at}s2", "m"],
        &["LMOVE", "{mk-at}l1", "{mk-at}l2", "LEFT", "RIGHT"],
        &["LRANGE", "{mk-at}l1", "0", "-1"],
        &["LRANGE", "{mk-at}l2", "0", "-1"],
        &["EVAL", script, "2", "{mk-at}e", "{mk-at}f", "lua"],
        &["MGET", "{mk-at}e", "{mk-at}f"],
        &[
            "EVAL",
            "return {KEYS[1], KEYS[2]}",
            "2",
            "{mk-at}e",
            "{mk-at}f",
        ],
    ];
    for (i, args) in same_slot.iter().enumerate() {
        let command = Command::of(args);
        let reply = oracle
            .check(&command, &format!("same slot, step {i}"))
            .await;
        assert!(
            !matches!(reply, Value::ServerError(_)),
            "{command}: {}",
            render(&reply)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_and_errors_match() {
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let masters = setup.cluster.master_ports();
    let on = |master: usize, prefix: &str| common::key_on(&setup.cluster, masters[master], prefix);
    // Three masters; one tag under MULTIKEY_SAME_SLOT_ONLY=1 (the harness check).
    let (text, list, missing, never) = if same_slot_only() {
        let tagged = |name: &str| format!("{{mk-wt2}}{name}");
        (
            tagged("str"),
            tagged("list"),
            tagged("none"),
            tagged("never"),
        )
    } else {
        let never = "mk:wt:never".to_string();
        (
            on(0, "mk:wt:str"),
            on(1, "mk:wt:list"),
            on(2, "mk:wt:none"),
            never,
        )
    };
    let arity = |name: &str| format!("wrong number of arguments for '{name}' command");
    let mut step = 0;
    let mut check = async |oracle: &mut Oracle, args: &[&str]| {
        step += 1;
        oracle
            .check(&Command::of(args), &format!("errors, step {step}"))
            .await
    };

    check(&mut oracle, &["SET", &text, "hello"]).await;
    check(&mut oracle, &["RPUSH", &list, "a", "b"]).await;
    check(&mut oracle, &["SET", "{mk-wt}s", "tagged"]).await;
    check(&mut oracle, &["RPUSH", "{mk-wt}l", "a"]).await;

    // First what needs no splitting. MGET answers nil for a key of another type, where GET is
    // a WRONGTYPE error.
    let got = check(
        &mut oracle,
        &["MGET", "{mk-wt}s", "{mk-wt}l", "{mk-wt}x", "{mk-wt}s"],
    )
    .await;
    let want = Value::Array(vec![
        Value::BulkString(b"tagged".to_vec()),
        Value::Nil,
        Value::Nil,
        Value::BulkString(b"tagged".to_vec()),
    ]);
    assert_eq!(got, want, "a single Redis: MGET gives nil for a list");
    let got = check(&mut oracle, &["GET", &list]).await;
    assert!(error_line(&got).is_some_and(|e| e.starts_with("WRONGTYPE ")));

    // Arity errors, with Redis' own text (the command's name in lower case, whatever its case
    // in the request).
    let got = check(&mut oracle, &["MSET", &text]).await;
    assert_eq!(
        error_line(&got),
        Some(format!("ERR {}", arity("mset"))),
        "a single Redis: MSET with odd arguments"
    );
    let got = check(&mut oracle, &["EXISTS"]).await;
    assert_eq!(
        error_line(&got),
        Some(format!("ERR {}", arity("exists"))),
        "a single Redis: EXISTS with no key"
    );
    for name in [
        "MSET", "MGET", "DEL", "UNLINK", "TOUCH", "mget", "Exists", "mSeT",
    ] {
        check(&mut oracle, &[name]).await;
    }
    check(&mut oracle, &["mset", &text]).await;
    check(&mut oracle, &["MSETNX", &text]).await;
    // MSET's arity is "at least 3": an odd count past that is MSET's own check, in Redis.
    check(&mut oracle, &["MSET", "{mk-wt}s", "1", "{mk-wt}l"]).await;

    // Across slots: the same answers.
    let got = check(&mut oracle, &["MGET", &text, &list, &missing, &text]).await;
    let want = Value::Array(vec![
        Value::BulkString(b"hello".to_vec()),
        Value::Nil,
        Value::Nil,
        Value::BulkString(b"hello".to_vec()),
    ]);
    assert_eq!(got, want, "MGET across slots gives nil for a list");
    let got = check(&mut oracle, &["MSET", &text, "1", &list]).await;
    assert_eq!(
        error_line(&got),
        Some(format!("ERR {}", arity("mset"))),
        "odd MSET across slots: Redis' arity error, nothing written"
    );
    check(&mut oracle, &["mset", &text, "1", &list, "2", &missing]).await;
    // Nothing above wrote anything.
    check(&mut oracle, &["MGET", &text, &list, &missing]).await;

    // Counting commands count a list like any key, and duplicates as Redis does.
    check(&mut oracle, &["EXISTS", &text, &list, &missing, &list]).await;
    check(&mut oracle, &["TOUCH", &text, &list, &missing, &text]).await;
    check(&mut oracle, &["UNLINK", &missing, &missing]).await;
    // MSET overwrites a key of another type.
    check(&mut oracle, &["MSET", &list, "now-a-string", &missing, "x"]).await;
    check(&mut oracle, &["TYPE", &list]).await;
    check(&mut oracle, &["MGET", &text, &list, &missing]).await;
    check(&mut oracle, &["DEL", &text, &list, &missing, &text, &never]).await;
    check(&mut oracle, &["MGET", &text, &list, &missing]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_mget_and_mset() {
    const KEYS: usize = 5_000;
    let seed = seed();
    println!("large MGET/MSET: MULTIKEY_SEED={seed}");
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let mut rng = StdRng::seed_from_u64(seed);

    // One tag for all keys under MULTIKEY_SAME_SLOT_ONLY=1: the harness check.
    let same_slot_only = same_slot_only();
    let prefix = if same_slot_only {
        "{mk-big}"
    } else {
        "mk:big:"
    };
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{prefix}{i}")).collect();
    let masters: BTreeSet<u16> = keys
        .iter()
        .filter_map(|k| setup.cluster.port_of_slot(slot(k)))
        .collect();
    assert_eq!(masters.len(), if same_slot_only { 1 } else { 3 });
    println!("{KEYS} keys over {} slots", distinct_slots(&keys));

    let body = async {
        let timed = async |oracle: &mut Oracle, what: &str, command: Command| {
            let started = Instant::now();
            let reply = oracle.check(&command, what).await;
            println!("{what}: {:?}", started.elapsed());
            reply
        };
        let mut mset = Command::new("MSET");
        for (i, key) in keys.iter().enumerate() {
            let value = if i % 7 == 0 {
                format!("{i}:").repeat(100)
            } else {
                format!("value-{i}")
            };
            mset = mset.arg(key).arg(value);
        }
        let reply = timed(&mut oracle, "MSET of 5000 keys", mset).await;
        assert_eq!(reply, Value::Okay);

        let reply = timed(
            &mut oracle,
            "MGET of 5000 keys",
            Command::new("MGET").args(&keys),
        )
        .await;
        assert!(matches!(reply, Value::Array(ref v) if v.len() == KEYS));

        // Another order, with 1000 duplicates and 200 keys that do not exist.
        let mut order = keys.clone();
        order.extend((0..1_000).map(|_| keys.choose(&mut rng).expect("keys").clone()));
        order.extend((0..200).map(|j| format!("{prefix}missing:{j}")));
        order.shuffle(&mut rng);
        timed(
            &mut oracle,
            "MGET shuffled",
            Command::new("MGET").args(&order),
        )
        .await;
        timed(
            &mut oracle,
            "EXISTS shuffled",
            Command::new("EXISTS").args(&order),
        )
        .await;
        timed(
            &mut oracle,
            "TOUCH shuffled",
            Command::new("TOUCH").args(&order),
        )
        .await;

        // Delete a random part (with duplicates), then read everything back.
        let reply = timed(
            &mut oracle,
            "DEL 3000",
            Command::new("DEL").args(&order[..3_000]),
        )
        .await;
        assert!(matches!(reply, Value::Int(n) if n > 0));
        timed(
            &mut oracle,
            "MGET after DEL",
            Command::new("MGET").args(&keys),
        )
        .await;
        timed(
            &mut oracle,
            "UNLINK all",
            Command::new("UNLINK").args(&order),
        )
        .await;
        timed(
            &mut oracle,
            "EXISTS after UNLINK",
            Command::new("EXISTS").args(&keys),
        )
        .await;
    };
    tokio::time::timeout(Duration::from_secs(20), body)
        .await
        .expect("large MGET/MSET done within 20 s");
}

/// Keys on three masters (one tag under `MULTIKEY_SAME_SLOT_ONLY=1`), named after `names`.
fn spread_keys(setup: &common::Setup, names: &[&str]) -> Vec<String> {
    let masters = setup.cluster.master_ports();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if same_slot_only() {
                format!("{{mk-z}}{name}")
            } else {
                common::key_on(&setup.cluster, masters[i % 3], &format!("mk:z:{name}"))
            }
        })
        .collect()
}

/// Commands that fill the keys of [`sorted_sets_lcs_and_hll_match`] and the RESP3 test:
/// sorted sets with every kind of score, a set, strings, a list, sparse and dense HLLs, and
/// strings that only look like HLLs.
fn zset_fixture(k: &[String]) -> Vec<Command> {
    fn many(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }
    let mut text = String::new();
    let mut other = String::new();
    for i in 0..300 {
        text.push(b"abc d"[i * 7 % 5] as char);
        other.push(b"ab dc"[i * 11 % 5] as char);
    }
    vec![
        Command::of(&[
            "ZADD", &k[0], "1", "a", "2", "b", "3", "c", "0.1", "d", "-0", "e",
        ]),
        Command::of(&[
            "ZADD", &k[1], "inf", "a", "2", "b", "0.2", "d", "5", "f", "-inf", "g",
        ]),
        Command::of(&["SADD", &k[2], "a", "b", "x", "1"]),
        Command::of(&["SET", &k[3], "ohmytext"]),
        Command::of(&["SET", &k[4], "mynewtext"]),
        Command::of(&["RPUSH", &k[5], "x"]),
        Command::new("PFADD").arg(&k[6]).args(["a", "b", "c"]),
        Command::new("PFADD").arg(&k[7]).args(many("e", 1_000)),
        Command::new("PFADD").arg(&k[8]).args(many("e", 30_000)),
        Command::of(&["SET", &k[9], "HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x40\x00"]),
        Command::of(&["SET", &k[10], &text]),
        Command::of(&["SET", &k[11], &other]),
        Command::of(&["SADD", &k[12], "a", "x", "y"]),
        Command::of(&["ZADD", &k[13], "1.5", "b", "-3", "x", "1e300", "c"]),
    ]
}

/// The commands of [`sorted_sets_lcs_and_hll_match`] over the keys of [`zset_fixture`].
fn zset_checks(k: &[String]) -> Vec<Vec<String>> {
    let (z1, z2, s3, t1, t2, list) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5]);
    let (h1, h2, h3, bad, long1, long2) = (&k[6], &k[7], &k[8], &k[9], &k[10], &k[11]);
    let (s4, z5, none) = (&k[12], &k[13], "mk:z:none");
    let raw: Vec<Vec<&str>> = vec![
        vec!["ZUNION", "3", z1, z2, s3],
        vec!["ZUNION", "3", z1, z2, s3, "WITHSCORES"],
        vec![
            "ZUNION",
            "4",
            z1,
            z2,
            s3,
            z5,
            "WEIGHTS",
            "0",
            "1",
            "inf",
            "-1",
            "WITHSCORES",
        ],
        vec![
            "ZUNION",
            "2",
            z1,
            z2,
            "WEIGHTS",
            "0",
            "0",
            "AGGREGATE",
            "MIN",
            "WITHSCORES",
        ],
        vec![
            "ZUNION",
            "2",
            z1,
            z2,
            "AGGREGATE",
            "max",
            "WITHSCORES",
            "WEIGHTS",
            "-1",
            "2",
        ],
        vec![
            "ZUNION",
            "3",
            z1,
            z1,
            z2,
            "WEIGHTS",
            "0.1",
            "0.2",
            "0.3",
            "WITHSCORES",
        ],
        vec!["ZUNION", "2", z1, none, "WITHSCORES", "WITHSCORES"],
        vec!["ZUNION", "2", none, "mk:z:none2"],
        vec!["ZINTER", "3", z1, z2, s3, "WITHSCORES"],
        vec!["ZINTER", "3", z1, z2, s3, "AGGREGATE", "MAX", "WITHSCORES"],
        vec![
            "ZINTER",
            "2",
            z1,
            z2,
            "WEIGHTS",
            "-1",
            "0x1p1",
            "WITHSCORES",
        ],
        vec![
            "ZINTER",
            "2",
            z2,
            z5,
            "WEIGHTS",
            "0",
            "1",
            "AGGREGATE",
            "min",
            "WITHSCORES",
        ],
        vec!["ZINTER", "2", z1, none, "WITHSCORES"],
        vec!["ZINTER", "2", s3, s4],
        vec!["ZDIFF", "3", z1, z2, s3, "WITHSCORES"],
        vec!["ZDIFF", "2", z2, z1],
        vec!["ZDIFF", "2", none, z1],
        vec!["ZDIFF", "3", z1, none, z1],
        vec!["ZINTERCARD", "3", z1, z2, s3],
        vec!["ZINTERCARD", "2", z1, z2, "LIMIT", "1"],
        vec!["ZINTERCARD", "2", z1, z2, "LIMIT", "0"],
        vec!["ZINTERCARD", "2", z1, z2, "limit", "1", "LIMIT", "5"],
        vec!["ZINTERCARD", "2", z1, none],
        // Errors: a key's type first, then the options, as one Redis checks them.
        vec!["ZUNION", "2", z1, t1],
        vec!["ZUNION", "2", z1, t1, "WEIGHTS", "x", "y"],
        vec!["ZINTER", "3", z1, z2, list, "NOPE"],
        vec!["ZUNION", "2", z1, z2, "WEIGHTS", "1", "x"],
        vec!["ZUNION", "2", z1, z2, "WEIGHTS", "1", "nan"],
        vec!["ZUNION", "2", z1, z2, "WEIGHTS", "1", "1e999"],
        vec!["ZUNION", "2", z1, z2, "WEIGHTS", "1"],
        vec!["ZUNION", "2", z1, z2, "AGGREGATE", "avg"],
        vec!["ZUNION", "2", z1, z2, "AGGREGATE"],
        vec!["ZUNION", "3", z1, z2],
        vec!["ZUNION", "0", z1, z2],
        vec!["ZUNION", "x", z1, z2],
        vec!["ZDIFF", "2", z1, z2, "WEIGHTS", "1", "1"],
        vec!["ZDIFF", "2", z1, z2, "AGGREGATE", "SUM"],
        vec!["ZINTERCARD", "2", z1, list, "LIMIT", "-1"],
        vec!["ZINTERCARD", "2", z1, z2, "LIMIT", "-1"],
        vec!["ZINTERCARD", "2", z1, z2, "LIMIT", "x"],
        vec!["ZINTERCARD", "2", z1, z2, "WITHSCORES"],
        vec!["ZINTERCARD", "2", z1, z2, "LIMIT"],
        vec!["SINTERCARD", "2", s3, s4, "LIMIT", "1", "LIMIT", "0"],
        vec!["SINTERCARD", "2", s3, s4, "LIMIT", "+1"],
        // LCS.
        vec!["LCS", t1, t2],
        vec!["LCS", t1, t2, "LEN"],
        vec!["LCS", t1, t2, "IDX"],
        vec!["LCS", t1, t2, "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
        vec!["LCS", t1, t2, "WITHMATCHLEN", "idx", "minmatchlen", "-5"],
        vec!["LCS", long1, long2],
        vec!["LCS", long1, long2, "IDX", "WITHMATCHLEN"],
        vec!["LCS", long1, long2, "IDX", "MINMATCHLEN", "3"],
        vec!["LCS", long2, long1, "LEN"],
        vec!["LCS", t1, none],
        vec!["LCS", none, t2, "IDX"],
        vec!["LCS", t1, list],
        vec!["LCS", list, t1, "NOPE"],
        vec!["LCS", t1, z1],
        vec!["LCS", t1, t2, "LEN", "IDX"],
        vec!["LCS", t1, t2, "NOPE"],
        vec!["LCS", t1, t2, "MINMATCHLEN"],
        vec!["LCS", t1, t2, "MINMATCHLEN", "x"],
        vec!["LCS", t1, h1],
        // PFCOUNT: sparse and dense, missing keys, strings that are not HLLs, a corrupt one.
        vec!["PFCOUNT", h1, h2],
        vec!["PFCOUNT", h1, h2, h3],
        vec!["PFCOUNT", h3, h2, none],
        vec!["PFCOUNT", h1, none],
        vec!["PFCOUNT", h1, t1],
        vec!["PFCOUNT", h1, list],
        vec!["PFCOUNT", t1, list],
        vec!["PFCOUNT", list, t1],
        vec!["PFCOUNT", h1, bad],
        vec!["PFCOUNT", bad, t1],
        vec!["PFCOUNT", none, "mk:z:none2"],
    ];
    raw.into_iter()
        .map(|c| c.into_iter().map(str::to_string).collect())
        .collect()
}

/// Every option and error of ZUNION, ZINTER, ZDIFF, ZINTERCARD, LCS and PFCOUNT with keys on
/// three masters, against one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_sets_lcs_and_hll_match() {
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let mut oracle = Oracle::connect(&setup, &single).await;
    let names = [
        "z1", "z2", "s3", "t1", "t2", "list", "h1", "h2", "h3", "bad", "long1", "long2", "s4", "z5",
    ];
    let keys = spread_keys(&setup, &names);
    for (i, command) in zset_fixture(&keys).iter().enumerate() {
        oracle.check(command, &format!("fixture {i}")).await;
    }
    // The fixture has a sparse and a dense HLL.
    let encoding = |key: &str| Command::of(&["GETRANGE", key, "4", "4"]);
    let sparse = oracle.check(&encoding(&keys[7]), "h2 encoding").await;
    assert_eq!(sparse, Value::BulkString(vec![1]));
    let dense = oracle.check(&encoding(&keys[8]), "h3 encoding").await;
    assert_eq!(dense, Value::BulkString(vec![0]));
    for (i, words) in zset_checks(&keys).iter().enumerate() {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        oracle
            .check(&Command::of(&words), &format!("check {i}"))
            .await;
    }
}

/// One whole reply read from `raw`: bytes until they parse as one RESP frame.
fn read_reply(raw: &mut common::Raw) -> Vec<u8> {
    use std::io::Read;
    let limits = slotgate::resp::Limits::default();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let whole = bytes::Bytes::from(out.clone());
        if !out.is_empty() && slotgate::resp::parse_frame(&whole, &limits).is_ok() {
            return out;
        }
        match raw.stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `command` as a RESP array of bulk strings.
fn encode_command(command: &Command) -> Vec<u8> {
    let mut out = format!("*{}\r\n", command.0.len()).into_bytes();
    for arg in &command.0 {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The same commands from a RESP3 client (HELLO 3): byte for byte the replies one Redis gives
/// (WITHSCORES pairs as arrays, scores as doubles, LCS IDX as a map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_sets_lcs_and_hll_match_in_resp3() {
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let names = [
        "z1", "z2", "s3", "t1", "t2", "list", "h1", "h2", "h3", "bad", "long1", "long2", "s4", "z5",
    ];
    let keys = spread_keys(&setup, &names);
    let mut proxy = common::Raw::connect(setup.addr());
    let mut one = common::Raw::connect(single.addr().parse().expect("address"));
    let hello = Command::of(&["HELLO", "3"]);
    for raw in [&mut proxy, &mut one] {
        raw.send(&encode_command(&hello));
        assert!(read_reply(raw).starts_with(b"%"), "HELLO 3 answers a map");
    }
    let fixture = zset_fixture(&keys);
    let checks = zset_checks(&keys)
        .into_iter()
        .map(|words| Command(words.into_iter().map(String::into_bytes).collect()));
    for (i, command) in fixture.iter().cloned().chain(checks).enumerate() {
        let request = encode_command(&command);
        proxy.send(&request);
        one.send(&request);
        let (got, want) = (read_reply(&mut proxy), read_reply(&mut one));
        assert!(
            got == want,
            "RESP3 step {i}: {command}\n  slotgate: {:?}\n  redis:    {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}
