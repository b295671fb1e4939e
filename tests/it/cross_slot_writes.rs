//! Commands that write keys of several slots, with `commands.non_atomic_cross_slot_writes` on:
//! the same commands go to slotgate (in front of a 3-master cluster) and to one standalone
//! Redis, and every reply — results, counts, errors — must be equal. Off (the default), they
//! answer CROSSSLOT as a cluster node does.

use crate::common;

use common::q;
use redis::Value;
use slotgate::local_redis::{RedisServer, ServerOptions};
use slotgate::slot::Slot;

/// Data both targets start from: every type the commands below read.
const SETUP: &[&str] = &[
    "SADD s1 a b c",
    "SADD s2 b c d",
    "ZADD z1 1 a 2 b",
    "ZADD z2 3 b 4 c",
    "RPUSH l1 x y z",
    "SET str v",
    "PFADD h1 a b c",
    "PFADD h2 c d e",
    "SET bits1 ab",
    "SET bits2 cd",
    "SET ttlkey val PX 100000",
    "GEOADD geo 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
];

/// Each step and how its answer is read back (sets through SORT, so order does not matter).
const STEPS: &[&str] = &[
    "SUNIONSTORE dst1 s1 s2",
    "SORT dst1 ALPHA",
    // A destination that hashes whole and holds a `}`: its sources gathered under names
    // tagged with its slot's short tag.
    "SUNIONSTORE d}1 s1 s2",
    "SORT d}1 ALPHA",
    "ZUNIONSTORE z}d 2 z1 z2",
    "ZRANGE z}d 0 -1 WITHSCORES",
    "SINTERSTORE dst2 s1 s2 nokey",
    "EXISTS dst2",
    "SDIFFSTORE dst3 s1 s2",
    "SORT dst3 ALPHA",
    "SUNIONSTORE dst4 s1 str",
    "ZUNIONSTORE zd 2 z1 z2 WEIGHTS 2 3 AGGREGATE MAX",
    "ZRANGE zd 0 -1 WITHSCORES",
    "ZINTERSTORE zd2 2 z1 z2",
    "ZRANGE zd2 0 -1 WITHSCORES",
    "ZDIFFSTORE zd3 2 z1 z2",
    "ZRANGE zd3 0 -1 WITHSCORES",
    "ZUNIONSTORE zd4 2 z1 z2 WEIGHTS 1",
    "ZRANGESTORE zr z2 0 -1",
    "ZRANGE zr 0 -1 WITHSCORES",
    "PFMERGE hm h1 h2",
    "PFCOUNT hm",
    "BITOP AND bd bits1 bits2",
    "GET bd",
    "BITOP NOT bd2 bits1",
    "GET bd2",
    "COPY s1 scopy",
    "SORT scopy ALPHA",
    "COPY s1 scopy",
    "COPY l1 scopy REPLACE",
    "LRANGE scopy 0 -1",
    "SORT l1 ALPHA STORE sorted",
    "LRANGE sorted 0 -1",
    "GEOSEARCHSTORE gs geo FROMLONLAT 15 37 BYRADIUS 200 km ASC",
    "ZRANGE gs 0 -1",
    "SMOVE s1 s2 a",
    "SORT s1 ALPHA",
    "SORT s2 ALPHA",
    "SMOVE s1 s2 zz",
    "SMOVE nokey s2 a",
    "SMOVE str s2 a",
    "SMOVE s1 str b",
    "RENAME ttlkey renamed",
    "GET renamed",
    "EXISTS ttlkey",
    "RENAME nokey other",
    "RENAMENX renamed str",
    "RENAMENX renamed fresh",
    "GET fresh",
    "LMOVE l1 l2 LEFT RIGHT",
    "RPOPLPUSH l1 l2",
    "LRANGE l2 0 -1",
    "LRANGE l1 0 -1",
    "LMOVE str l2 LEFT LEFT",
    "LMOVE l1 str LEFT LEFT",
    "LMOVE nokey l2 LEFT LEFT",
    "RPUSH l3 p q r",
    "ZADD z3 1 x 2 y",
    "LMPOP 3 nokey l3 l2 RIGHT COUNT 2",
    "LMPOP 2 nokey nokey2 LEFT",
    "ZMPOP 2 nokey z3 MAX",
    "BLMOVE l3 l4 LEFT LEFT 1",
    "LRANGE l4 0 -1",
    "BRPOPLPUSH nokey l4 0.1",
    "BLMOVE nokey l4 LEFT LEFT 0.1",
    "MSETNX n1 1 n2 2",
    "MSETNX n1 1 n3 3",
    "MGET n1 n2 n3",
];

async fn run(c: &mut redis::aio::MultiplexedConnection, line: &str) -> Result<Value, String> {
    let words: Vec<&str> = line.split(' ').collect();
    q::<Value>(c, &words).await.map_err(|e| {
        // The error's code and text, without the client's own wrapping.
        format!("{:?} {}", e.code(), e.detail().unwrap_or_default())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_across_slots_answer_as_one_redis() {
    // The keys of each multi-key step are in several slots (else it would not test much).
    for (a, b) in [
        ("dst1", "s1"),
        ("s1", "s2"),
        ("zd", "z1"),
        ("hm", "h1"),
        ("renamed", "ttlkey"),
        ("d}1", "s1"),
        ("d}1", "s2"),
        ("z}d", "z1"),
        ("z}d", "z2"),
    ] {
        assert_ne!(Slot::of(a.as_bytes()), Slot::of(b.as_bytes()), "{a} {b}");
    }
    let setup = common::start_with(Default::default(), |c| {
        c.commands.non_atomic_cross_slot_writes = true
    });
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    for line in SETUP {
        run(proxy, line).await.unwrap();
        run(one, line).await.unwrap();
    }
    for line in STEPS {
        let (got, want) = (run(proxy, line).await, run(one, line).await);
        assert_eq!(got, want, "{line}");
    }
    // The TTL moved with the key (renamed twice: ttlkey, renamed, fresh).
    let ttl: i64 = q(proxy, &["PTTL", "fresh"]).await.unwrap();
    assert!(ttl > 0 && ttl <= 100_000, "{ttl}");
    // No temporary key is left on any master.
    for master in setup.masters() {
        let n = &mut common::client(master).await;
        let left: Vec<String> = q(n, &["KEYS", "*slotgate:tmp*"]).await.unwrap();
        assert!(left.is_empty(), "{master}: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_writes_across_slots_answer_crossslot() {
    let setup = common::start();
    let c = &mut setup.client().await;
    for line in [
        "SUNIONSTORE dst1 s1 s2",
        "RENAME s1 dst1",
        "MSETNX s1 1 s2 2",
    ] {
        let err = run(c, line).await.unwrap_err();
        assert!(err.contains("CROSSSLOT"), "{line}: {err}");
    }
}

/// A transaction over keys of several slots, with the setting on: one MULTI/EXEC per slot,
/// EXEC's array in the client's order; WATCH of keys in several slots is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_across_slots_run_one_part_per_slot() {
    let setup = common::start_with(Default::default(), |c| {
        c.commands.non_atomic_cross_slot_writes = true
    });
    assert_ne!(setup.node_of("ta"), setup.node_of("tb"), "two nodes");
    let mut raw = common::Raw::connect(setup.addr());
    let got = common::lines(
        &mut raw,
        &[
            "MULTI", "SET ta 1", "SET tb 2", "INCR ta", "PING", "GET tb", "EXEC",
        ],
    );
    assert_eq!(
        got[..6],
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n"
        ]
    );
    assert_eq!(got[6], "*5\r\n");
    let rest: Vec<String> = (0..6).map(|_| raw.read_line()).collect();
    assert_eq!(
        rest,
        [
            "+OK\r\n",
            "+OK\r\n",
            ":2\r\n",
            "+PONG\r\n",
            "$1\r\n",
            "2\r\n"
        ]
    );

    // WATCH over two slots (one command), nobody else writes: EXEC runs.
    let got = common::lines(
        &mut raw,
        &["WATCH ta tb", "MULTI", "INCR ta", "INCR tb", "EXEC"],
    );
    assert_eq!(
        got,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n"]
    );
    assert_eq!([raw.read_line(), raw.read_line()], [":3\r\n", ":3\r\n"]);

    // Another client changes a watched key of the second slot: EXEC answers null and no
    // part ran.
    let other = &mut setup.client().await;
    let got = common::lines(&mut raw, &["WATCH ta", "WATCH tb"]);
    assert_eq!(got, ["+OK\r\n", "+OK\r\n"]);
    let _: () = q(other, &["SET", "tb", "100"]).await.unwrap();
    let got = common::lines(&mut raw, &["MULTI", "INCR ta", "INCR tb", "EXEC"]);
    assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*-1\r\n"]);
    let a: i64 = q(other, &["GET", "ta"]).await.unwrap();
    assert_eq!(a, 3, "the part of the unchanged slot did not run either");

    // Without the setting, the command leaving the transaction's slot is CROSSSLOT.
    let plain = common::start();
    let mut raw = common::Raw::connect(plain.addr());
    let got = common::lines(&mut raw, &["MULTI", "SET ta 1", "SET tb 2", "EXEC"]);
    assert!(got[2].starts_with("-CROSSSLOT"), "{got:?}");
    assert!(got[3].starts_with("-EXECABORT"), "{got:?}");
}

/// Blocking pops over keys of several slots, with the setting on: served at once when a key
/// has data (the first key in order that has), and blocking until a push or the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pops_across_slots_block_and_serve() {
    let setup = common::start_with(Default::default(), |c| {
        c.commands.non_atomic_cross_slot_writes = true
    });
    assert_ne!(Slot::of(b"qa"), Slot::of(b"qb"));
    let c = &mut setup.client().await;
    let _: () = q(c, &["RPUSH", "qb", "b1", "b2"]).await.unwrap();
    let got: (String, String) = q(c, &["BLPOP", "qa", "qb", "1"]).await.unwrap();
    assert_eq!(got, ("qb".into(), "b1".into()));
    let got: Value = q(c, &["BLPOP", "qa", "qc", "0.2"]).await.unwrap();
    assert_eq!(got, Value::Nil, "timeout");
    let _: () = q(c, &["ZADD", "za", "5", "m"]).await.unwrap();
    let got: (String, String, String) = q(c, &["BZPOPMIN", "qa", "za", "1"]).await.unwrap();
    assert_eq!(got, ("za".into(), "m".into(), "5".into()));
    let got: Value = q(c, &["BLMPOP", "1", "2", "qa", "qb", "RIGHT", "COUNT", "5"])
        .await
        .unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"qb".to_vec()),
            Value::Array(vec![Value::BulkString(b"b2".to_vec())])
        ])
    );
    // Blocked until another client pushes.
    let mut waiter = setup.client().await;
    let blocked = tokio::spawn(async move {
        q::<(String, String)>(&mut waiter, &["BRPOP", "qa", "qb", "5"]).await
    });
    // A phase, not a sync: the pop usually waits here (were the push first, it is served at
    // once, which is right too).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _: () = q(c, &["LPUSH", "qa", "late"]).await.unwrap();
    let got = blocked.await.unwrap().unwrap();
    assert_eq!(got, ("qa".into(), "late".into()));
    // A key of the wrong type answers at once.
    let _: () = q(c, &["SET", "qs", "x"]).await.unwrap();
    let err = run(c, "BLPOP qa qs 1").await.unwrap_err();
    assert!(err.contains("WRONGTYPE"), "{err}");
}

/// SORT with BY and GET patterns (the cluster nodes refuse them): computed by slotgate with
/// the result one Redis gives; on by default, STORE only with the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_with_patterns_answers_as_one_redis() {
    let setup = common::start();
    let single = RedisServer::start(ServerOptions::default()).expect("start a standalone Redis");
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    let data = [
        "RPUSH ids 3 1 2 10",
        "SADD tags red blue green",
        "SET w_1 30",
        "SET w_2 20",
        "SET w_3 10",
        "SET w_10 40",
        "HSET o_1 name one",
        "HSET o_2 name two",
        "HSET o_3 name three",
        "SET name_red R",
        "SET name_blue B",
        "SET bad_1 notanumber",
    ];
    let steps = [
        "SORT ids BY w_*",
        "SORT ids BY w_* DESC LIMIT 1 2",
        "SORT ids BY w_* GET # GET o_*->name",
        "SORT ids BY nosort GET o_*->name",
        "SORT ids GET w_*",
        "SORT_RO ids BY w_* GET w_*",
        "SORT tags BY name_* ALPHA GET name_* GET #",
        "SORT tags ALPHA GET name_*",
        "SORT ids BY bad_*",
        "SORT ids BY w_* GET nostar",
        "SORT missing BY w_* GET #",
        "SORT w_1 BY w_*",
        "SORT ids BY w_* STORE out",
    ];
    for line in data {
        run(proxy, line).await.unwrap();
        run(one, line).await.unwrap();
    }
    for line in steps.iter().take(steps.len() - 1) {
        let (got, want) = (run(proxy, line).await, run(one, line).await);
        assert_eq!(got, want, "{line}");
    }
    // STORE writes where the patterns' keys are read: only with the setting.
    let err = run(proxy, "SORT ids BY w_* STORE out").await.unwrap_err();
    assert!(err.contains("non_atomic_cross_slot_writes"), "{err}");
    let writes = common::start_with(Default::default(), |c| {
        c.commands.non_atomic_cross_slot_writes = true
    });
    let w = &mut writes.client().await;
    for line in data {
        run(w, line).await.unwrap();
    }
    assert_eq!(
        run(w, "SORT ids BY w_* GET o_*->name STORE out").await,
        run(one, "SORT ids BY w_* GET o_*->name STORE out").await
    );
    assert_eq!(
        run(w, "LRANGE out 0 -1").await,
        run(one, "LRANGE out 0 -1").await
    );
}
