//! Multi-key commands checked against an oracle: every command goes to slotgate (in front of a
//! 3-master/3-replica Redis Cluster) and to one standalone `redis-server`, the "one Redis" a
//! legacy app was written for, and the two replies must be identical, errors included.
//!
//! MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span slots are split per slot and merged
//! back in the client's key order. Atomic multi-key commands (MSETNX, RENAME, SMOVE, …) stay
//! refused with CROSSSLOT unless their keys share a slot.
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
        for tag in 0..5 {
            for s in 0..3 {
                add(format!("{{mk-t{tag}}}s{s}"), Kind::Str);
            }
            add(format!("{{mk-t{tag}}}list"), Kind::List);
            add(format!("{{mk-t{tag}}}set"), Kind::Set);
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

    fn next_command(&mut self) -> Command {
        let any = |_: Kind| true;
        match self.rng.gen_range(0..112) {
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
