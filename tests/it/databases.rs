//! `SELECT n` and the commands about databases, against real servers and an oracle (one
//! standalone `redis-server`, which every reply must equal, errors included).
//!
//! - Pool mode: real databases on the shared backend connections (a `SELECT` only when a
//!   connection's database differs), clients of several databases interleaved on them, a
//!   reconnect (the new socket starts in database 0), SWAPDB on every pool.
//! - Cluster mode with `cluster.databases = 16`: databases emulated in key namespaces; the
//!   stored names keep the client's slot (hash tags or not) and never reach the client; off by
//!   default, with an error naming the setting.

use crate::common;

use std::collections::BTreeSet;

use common::q;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::Value;
use slotgate::local_redis::{RedisServer, ServerOptions};

/// A reply as text: server errors included (`"ERR …"`), arrays of keys sorted when `sorted`.
fn show(value: &Value, sorted: bool) -> String {
    match value {
        Value::Nil => "(nil)".into(),
        Value::Int(n) => format!("{n}"),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Okay => "OK".into(),
        Value::SimpleString(s) => format!("+{s}"),
        Value::ServerError(e) => format!("{} {}", e.code(), e.details().unwrap_or("")),
        Value::Array(items) => {
            let mut shown: Vec<String> = items.iter().map(|v| show(v, false)).collect();
            if sorted {
                shown.sort();
            }
            format!("[{}]", shown.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// Send `command` (words) on `c`; the reply as text (see [`show`]).
async fn send(c: &mut MultiplexedConnection, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    // `req_packed_command` keeps a server error as a value, so errors compare like data.
    match c.req_packed_command(&cmd).await {
        Ok(value) => show(&value, words[0].eq_ignore_ascii_case("keys")),
        Err(e) => format!("<client failure: {e}>"),
    }
}

/// Every key of the client's database, by a full SCAN (each page a call, cursor to 0).
async fn scan_all(c: &mut MultiplexedConnection, extra: &[&str]) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..10_000 {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor).arg(extra);
        let (next, page): (String, Vec<Vec<u8>>) = cmd.query_async(c).await.expect("SCAN");
        keys.extend(page);
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
    panic!("SCAN did not end");
}

/// A standalone server, the oracle.
fn oracle() -> RedisServer {
    RedisServer::start(ServerOptions::default()).expect("start the oracle redis-server")
}

/// Commands whose replies must be the oracle's, run on both in order. Keys sharing a `{t}`
/// tag keep MULTI and COPY in one slot (a cluster refuses them across slots).
const SCRIPT: &[&str] = &[
    "SET a zero",
    "SET {t}x zero-t",
    "SELECT 1",
    "GET a",
    "SET a one",
    "SET b one-b",
    "SET {t}x one-t",
    "SET {t}y one-ty",
    "MGET {t}x {t}y a b nothing",
    "DBSIZE",
    "KEYS *",
    "KEYS {t}*",
    "EXISTS a b c {t}x",
    "RPUSH list 1 2 3",
    "BLPOP list 0",
    "LRANGE list 0 -1",
    "MULTI",
    "INCR {t}counter",
    "SET {t}z 1",
    "EXEC",
    "EXPIRE b 1000",
    "TTL b",
    "MOVE a 2",
    "MOVE a 2",
    "SET a again",
    "MOVE a 2",
    "MOVE a 1",
    "MOVE a 99",
    "MOVE a x",
    "COPY {t}x {t}x2 DB 3",
    "COPY {t}x {t}x2 DB 3",
    "COPY {t}x {t}x2 DB 3 REPLACE",
    "COPY {t}x {t}x DB 1",
    "COPY {t}x {t}x3 DB 1",
    "COPY {t}x {t}x3 DB 16",
    "SELECT 2",
    "GET a",
    "DBSIZE",
    "KEYS *",
    "SELECT 3",
    "GET {t}x2",
    "RANDOMKEY",
    "DBSIZE",
    "SELECT 4",
    "RANDOMKEY",
    "DBSIZE",
    "KEYS *",
    "SELECT 0",
    "GET a",
    "GET {t}x",
    "DBSIZE",
    "KEYS *",
    "SELECT 1",
    "DBSIZE",
    "FLUSHDB",
    "DBSIZE",
    "KEYS *",
    "GET {t}x",
    "SELECT 0",
    "DBSIZE",
    "GET {t}x",
    "SELECT 2",
    "DBSIZE",
    "SELECT 16",
    "SELECT -1",
    "SELECT abc",
    "DBSIZE",
];

/// Run [`SCRIPT`] on `proxy` and on `single`, comparing every reply, then SCAN each database
/// on both.
async fn same_as_one_redis(proxy: &mut MultiplexedConnection, single: &mut MultiplexedConnection) {
    for command in SCRIPT {
        let (got, want) = (send(proxy, command).await, send(single, command).await);
        assert_eq!(got, want, "{command}: slotgate vs one redis");
    }
    for db in 0..5 {
        let select = format!("SELECT {db}");
        assert_eq!(send(proxy, &select).await, "OK");
        assert_eq!(send(single, &select).await, "OK");
        assert_eq!(
            scan_all(proxy, &[]).await,
            scan_all(single, &[]).await,
            "db {db}"
        );
        let matching = ["MATCH", "{t}*", "COUNT", "3"];
        assert_eq!(
            scan_all(proxy, &matching).await,
            scan_all(single, &matching).await,
            "db {db}, SCAN MATCH {{t}}*"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Pool mode: real databases
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_databases_answer_as_one_redis() {
    let setup = common::start_pools(2, &[], |_| {});
    let single = oracle();
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    same_as_one_redis(proxy, one).await;
    // SWAPDB reaches every pool (one Redis swaps atomically; the pools each do, in turn).
    for command in [
        "SELECT 2",
        "SWAPDB 2 3",
        "GET a",
        "GET {t}x2",
        "SELECT 3",
        "GET a",
    ] {
        assert_eq!(
            send(proxy, command).await,
            send(one, command).await,
            "{command}"
        );
    }
}

/// SELECT inside MULTI: the commands after it in its database, the client left in the last
/// one accepted; refusals inside EXEC's array (pool mode: run by the node; cluster mode with
/// emulated databases: answered by the proxy, the key spaces switched).
const TX_SELECT: &[&str] = &[
    "SET {t}a zero",
    "MULTI",
    "SET {t}a before",
    "SELECT 6",
    "SET {t}a six",
    "INCR {t}n",
    "EXEC",
    "GET {t}a",
    "GET {t}n",
    "SELECT 0",
    "GET {t}a",
    "GET {t}n",
    "MULTI",
    "SELECT 99",
    "SET {t}a still-zero",
    "EXEC",
    "GET {t}a",
    "MULTI",
    "SELECT abc",
    "EXEC",
    "MULTI",
    "SELECT 7",
    "DISCARD",
    "GET {t}a",
    "MULTI",
    "SELECT 6",
    "SELECT 99",
    "EXEC",
    "GET {t}a",
    "MULTI",
    "SELECT 6",
    "GET {t}a",
    "EXEC",
    "MULTI",
    "SELECT 0",
    "GET {t}a",
    "EXEC",
    "GET {t}a",
    // Replies that name keys, from two databases in one transaction.
    "MULTI",
    "SELECT 6",
    "RPUSH {t}l x",
    "BLPOP {t}l 0",
    "SELECT 0",
    "RPUSH {t}l y",
    "BLPOP {t}l 0",
    "EXEC",
    "WATCH {t}a",
    "MULTI",
    "SELECT 8",
    "SET {t}a eight",
    "EXEC",
    "GET {t}a",
    "SELECT 0",
    "GET {t}a",
    // Transactions after: on dedicated connections in the client's database again.
    "MULTI",
    "SET {t}q zero-q",
    "EXEC",
    "SELECT 6",
    "MULTI",
    "GET {t}q",
    "GET {t}a",
    "EXEC",
    "SELECT 0",
    "MULTI",
    "GET {t}q",
    "EXEC",
    "DBSIZE",
];

/// Run [`TX_SELECT`] on `proxy` and on `single`, comparing every reply.
async fn tx_select_as_one_redis(
    proxy: &mut MultiplexedConnection,
    single: &mut MultiplexedConnection,
) {
    for command in TX_SELECT {
        let (got, want) = (send(proxy, command).await, send(single, command).await);
        assert_eq!(got, want, "{command}: slotgate vs one redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_select_inside_multi_answers_as_one_redis() {
    let setup = common::start_pools(2, &[], |_| {});
    let single = oracle();
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    tx_select_as_one_redis(proxy, one).await;
    // The keys are where one Redis has them: database 8 holds `{t}a` on its pool.
    let mut eight = Vec::new();
    for i in 0..2 {
        let d = &mut setup.direct(i).await;
        let _: () = q(d, &["SELECT", "8"]).await.unwrap();
        let value: Option<String> = q(d, &["GET", "{t}a"]).await.unwrap();
        eight.extend(value);
    }
    assert_eq!(eight, ["eight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_select_inside_a_transaction_across_slots_is_refused_whole() {
    let setup = common::start_pools(2, &[], |c| c.commands.non_atomic_cross_slot_writes = true);
    select_across_slots_is_refused_whole(&mut setup.client().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_select_inside_a_transaction_across_slots_is_refused_whole() {
    let setup = common::start_with(Default::default(), |c| {
        sixteen(c);
        c.commands.non_atomic_cross_slot_writes = true;
    });
    select_across_slots_is_refused_whole(&mut setup.client().await).await;
}

/// With writes across slots on, a transaction across slots with a SELECT inside: EXEC
/// refuses it, nothing runs, and the client stays in database 0.
async fn select_across_slots_is_refused_whole(c: &mut MultiplexedConnection) {
    for (command, reply) in [
        ("MULTI", "OK"),
        ("SET x 1", "+QUEUED"),
        ("SELECT 1", "+QUEUED"),
        ("SET y 2", "+QUEUED"),
        (
            "EXEC",
            "ERR slotgate: SELECT inside a transaction across slots is not supported",
        ),
        // Nothing ran, and the client is still in database 0.
        ("GET x", "(nil)"),
        ("SELECT 1", "OK"),
        ("GET y", "(nil)"),
    ] {
        assert_eq!(send(c, command).await, reply, "{command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_keys_live_in_the_selected_database_of_their_pool() {
    let setup = common::start_pools(2, &[], |_| {});
    let c = &mut setup.client().await;
    assert_eq!(send(c, "SELECT 5").await, "OK");
    let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        assert_eq!(send(c, &format!("SET {key} five")).await, "OK");
    }
    // On the servers: every key in database 5 of one pool, none in database 0.
    let mut found = 0;
    for i in 0..2 {
        let d = &mut setup.direct(i).await;
        let zero: i64 = q(d, &["DBSIZE"]).await.unwrap();
        assert_eq!(zero, 0, "server {i}, database 0");
        let _: () = q(d, &["SELECT", "5"]).await.unwrap();
        let five: i64 = q(d, &["DBSIZE"]).await.unwrap();
        found += five;
    }
    assert_eq!(found, 40);
    // CLIENT INFO and CLIENT LIST say where the client is, as Redis does.
    let info: String = q(c, &["CLIENT", "INFO"]).await.unwrap();
    assert!(info.contains(" db=5 "), "{info}");
    // A database no server has: the server's own refusal, and the client stays where it was.
    let refused = send(c, "SELECT 16").await;
    assert_eq!(refused, "ERR DB index is out of range");
    assert_eq!(send(c, "GET key:1").await, "\"five\"");
    // RESET goes back to database 0.
    assert_eq!(send(c, "RESET").await, "+RESET");
    assert_eq!(send(c, "GET key:1").await, "(nil)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_clients_of_several_databases_share_the_backend_connections() {
    let setup = common::start_pools(2, &[], |_| {});
    // Four clients over the proxy's two workers: each worker's shared connections carry
    // requests of databases 0 and 7 interleaved.
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = setup.client().await;
        let db = if i % 2 == 0 { 0 } else { 7 };
        assert_eq!(send(&mut c, &format!("SELECT {db}")).await, "OK");
        clients.push((db, c));
    }
    let runs = clients.into_iter().map(|(db, mut c)| async move {
        for round in 0..50 {
            let mut pipe = redis::pipe();
            for k in 0..10 {
                pipe.cmd("SET").arg(format!("k{k}")).arg(format!("{db}"));
                pipe.cmd("GET").arg(format!("k{k}"));
            }
            let replies: Vec<Value> = pipe.query_async(&mut c).await.expect("pipeline");
            for pair in replies.chunks(2) {
                assert_eq!(
                    pair[1],
                    Value::BulkString(db.to_string().into_bytes()),
                    "database {db}, round {round}: a reply of another database"
                );
            }
        }
    });
    futures_util::future::join_all(runs).await;
    for i in 0..2 {
        let d = &mut setup.direct(i).await;
        for db in ["0", "7"] {
            let _: () = q(d, &["SELECT", db]).await.unwrap();
            let values: Vec<String> = q(d, &["KEYS", "*"]).await.unwrap();
            for key in values {
                let value: String = q(d, &["GET", &key]).await.unwrap();
                assert_eq!(value, db, "server {i}, database {db}, key {key}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_a_new_backend_connection_is_selected_again() {
    let setup = common::start_pools(1, &[], |_| {});
    let c = &mut setup.client().await;
    assert_eq!(send(c, "SELECT 3").await, "OK");
    assert_eq!(send(c, "SET k three").await, "OK");
    // Every connection of the proxy to the server is closed; the next ones start in db 0.
    let d = &mut setup.direct(0).await;
    let _: () = q(d, &["SET", "k", "zero"]).await.unwrap();
    let _: i64 = q(d, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .await
        .unwrap();
    // A read is routed again after its connection was lost; it must read database 3.
    let got = common::eventually(
        "GET k answers after the reconnect",
        std::time::Duration::from_secs(5),
        async || common::check(send(c, "GET k").await, |g| !g.starts_with("ERR")),
    )
    .await;
    assert_eq!(got, "\"three\"");
    // Blocking commands and transactions run on dedicated connections, in database 3 too.
    assert_eq!(send(c, "RPUSH q x").await, "1");
    assert_eq!(send(c, "BLPOP q 1").await, "[\"q\", \"x\"]");
    assert_eq!(send(c, "MULTI").await, "OK");
    assert_eq!(send(c, "GET k").await, "+QUEUED");
    assert_eq!(send(c, "EXEC").await, "[\"three\"]");
    let keys: Vec<String> = q(d, &["KEYS", "*"]).await.unwrap();
    assert_eq!(
        keys,
        ["k"],
        "database 0 holds only the key set straight on the server"
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster mode: emulated databases
// ---------------------------------------------------------------------------------------------

fn sixteen(config: &mut slotgate::config::Config) {
    config.cluster.databases = 16;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_emulated_databases_answer_as_one_redis() {
    let setup = common::start_with(Default::default(), sixteen);
    let single = oracle();
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    same_as_one_redis(proxy, one).await;
    // Atomic commands, as a cluster: SWAPDB cannot be.
    let swap = send(proxy, "SWAPDB 2 3").await;
    assert!(swap.contains("cluster.databases"), "{swap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_select_inside_multi_answers_as_one_redis() {
    let setup = common::start_with(Default::default(), sixteen);
    let single = oracle();
    let proxy = &mut setup.client().await;
    let one = &mut common::client(single.addr().parse().unwrap()).await;
    tx_select_as_one_redis(proxy, one).await;
    // Database 8's key is stored under its namespace, in `{t}`'s slot, on one master.
    let mut stored = Vec::new();
    for master in setup.masters() {
        let n = &mut common::client(master).await;
        let keys: Vec<Vec<u8>> = q(n, &["KEYS", "*{t}a"]).await.unwrap();
        stored.extend(keys);
    }
    assert_eq!(stored.len(), 3, "{stored:?}"); // databases 0, 6 and 8
    assert!(stored.contains(&b"{t}a".to_vec()), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_namespaced_keys_keep_their_slot_and_stay_hidden() {
    let setup = common::start_with(Default::default(), sixteen);
    let c = &mut setup.client().await;
    assert_eq!(send(c, "SELECT 9").await, "OK");
    for key in ["plain", "{tag}x", "a{tag}b", "{}x", "odd}{"] {
        assert_eq!(send(c, &format!("SET {key} nine")).await, "OK");
        // Stored on the node that owns the client's name's slot, under another name in the
        // same slot.
        let node = &mut common::client(setup.node_of(key)).await;
        let stored: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("*{key}").replace(['{', '}'], "?"))
            .query_async(node)
            .await
            .unwrap();
        let stored: Vec<Vec<u8>> = stored
            .into_iter()
            .filter(|s| s.ends_with(key.as_bytes()) && s.len() > key.len())
            .collect();
        assert_eq!(stored.len(), 1, "{key}: {stored:?}");
        assert!(stored[0].starts_with(b"\xff\xfedb9:"), "{:?}", stored[0]);
        let slot = |name: &[u8]| {
            let name = name.to_vec();
            let mut node = node.clone();
            async move {
                redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(name)
                    .query_async::<i64>(&mut node)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(slot(&stored[0]).await, slot(key.as_bytes()).await, "{key}");
    }
    // Database 0 sees none of them; the client of database 9 sees its own names only.
    let zero = &mut setup.client().await;
    assert_eq!(send(zero, "DBSIZE").await, "0");
    assert_eq!(send(zero, "KEYS *").await, "[]");
    assert_eq!(send(zero, "RANDOMKEY").await, "(nil)");
    assert!(scan_all(zero, &[]).await.is_empty());
    let mine = scan_all(c, &[]).await;
    let names: BTreeSet<Vec<u8>> = ["plain", "{tag}x", "a{tag}b", "{}x", "odd}{"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    assert_eq!(mine, names);
    // A key named in a blocking pop's reply is the client's.
    assert_eq!(send(c, "RPUSH {tag}q 1").await, "1");
    assert_eq!(send(c, "BLPOP {tag}q 1").await, "[\"{tag}q\", \"1\"]");
    // Each session's database is its own: a later SELECT does not change earlier replies.
    let mut raw = common::Raw::connect(setup.addr());
    let got = common::lines(&mut raw, &["SELECT 9", "DBSIZE", "SELECT 0", "DBSIZE"]);
    assert_eq!(got, ["+OK\r\n", ":5\r\n", "+OK\r\n", ":0\r\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_select_is_refused_by_default_naming_the_setting() {
    let setup = common::start();
    let c = &mut setup.client().await;
    assert_eq!(send(c, "SELECT 0").await, "OK");
    let refused = send(c, "SELECT 1").await;
    assert!(
        refused.starts_with("ERR DB index is out of range")
            && refused.contains("cluster.databases"),
        "{refused}"
    );
    assert_eq!(send(c, "SET k v").await, "OK");
    assert_eq!(send(c, "KEYS *").await, "[\"k\"]");
    // Inside MULTI: database 0 selected, another refused inside EXEC's array, as one Redis
    // with one database would answer.
    for command in ["MULTI", "SELECT 0", "SELECT 1", "SET k w"] {
        assert_eq!(
            send(c, command).await.replace("+QUEUED", "OK"),
            "OK",
            "{command}"
        );
    }
    let exec = send(c, "EXEC").await;
    assert!(
        exec.starts_with("[OK, ERR DB index is out of range") && exec.ends_with(", OK]"),
        "{exec}"
    );
    assert_eq!(send(c, "GET k").await, "\"w\"");
}
