//! Key-less introspection (FUNCTION STATS/DUMP/RESTORE, MEMORY …, LATENCY …, INFO's node
//! sections) answered over every master, compared with each master's own answer.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::q;
use redis::aio::MultiplexedConnection;
use redis::Value;

async fn direct(port: u16) -> MultiplexedConnection {
    common::client(format!("127.0.0.1:{port}").parse().unwrap()).await
}

/// `CONFIG SET name value` on every master.
async fn config_set_masters(setup: &common::Setup, name: &str, value: &str) {
    for port in setup.cluster.master_ports() {
        let _: () = q(&mut direct(port).await, &["CONFIG", "SET", name, value])
            .await
            .unwrap();
    }
}

/// Field `name` of an INFO text.
fn info_field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A flat name/value reply as a map of name → value.
fn pairs(value: Value) -> BTreeMap<String, Value> {
    let Value::Array(items) = value else {
        panic!("not pairs: {value:?}")
    };
    items
        .chunks(2)
        .map(|p| match &p[0] {
            Value::BulkString(name) => (String::from_utf8_lossy(name).into_owned(), p[1].clone()),
            other => panic!("not a name: {other:?}"),
        })
        .collect()
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

const SPIN: &str = "#!lua name=spinlib\n\
    redis.register_function{function_name='spin', \
    callback=function() while true do end end, flags={'no-writes'}}\n\
    redis.register_function('one', function() return 1 end)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_stats_dump_and_restore_over_every_master() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let ports = setup.cluster.master_ports();
    let name: String = q(c, &["FUNCTION", "LOAD", SPIN]).await.unwrap();
    assert_eq!(name, "spinlib");

    // Idle: FUNCTION STATS is each master's own.
    let stats: Value = q(c, &["FUNCTION", "STATS"]).await.unwrap();
    let own: Value = q(&mut direct(ports[0]).await, &["FUNCTION", "STATS"])
        .await
        .unwrap();
    assert_eq!(stats, own);
    let engines = pairs(pairs(stats)["engines"].clone());
    let lua = pairs(engines["LUA"].clone());
    assert_eq!(int(&lua["libraries_count"]), 1);
    assert_eq!(int(&lua["functions_count"]), 2);

    // FUNCTION DUMP: every master's payload, which RESTORE puts back on every master.
    let dump: Vec<u8> = q(c, &["FUNCTION", "DUMP"]).await.unwrap();
    for &port in &ports {
        let own: Vec<u8> = q(&mut direct(port).await, &["FUNCTION", "DUMP"])
            .await
            .unwrap();
        assert_eq!(own, dump, "master {port}");
    }
    assert_eq!(q::<String>(c, &["FUNCTION", "FLUSH"]).await.unwrap(), "OK");
    let mut restore = redis::cmd("FUNCTION");
    restore.arg("RESTORE").arg(&dump);
    let ok: String = restore.query_async(c).await.unwrap();
    assert_eq!(ok, "OK");
    for &port in &ports {
        let libs: Vec<Value> = q(&mut direct(port).await, &["FUNCTION", "LIST"])
            .await
            .unwrap();
        assert_eq!(libs.len(), 1, "library restored on {port}");
    }
    let err = restore.query_async::<String>(c).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let mut replace = redis::cmd("FUNCTION");
    replace.arg("RESTORE").arg(&dump).arg("REPLACE");
    assert_eq!(replace.query_async::<String>(c).await.unwrap(), "OK");

    // Masters that differ have no one dump.
    let _: () = q(
        &mut direct(ports[1]).await,
        &["FUNCTION", "DELETE", "spinlib"],
    )
    .await
    .unwrap();
    let err = q::<Vec<u8>>(c, &["FUNCTION", "DUMP"]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the masters hold different function libraries"),
        "{err}"
    );
    let _: String = replace.query_async(c).await.unwrap();

    // A function running on one master shows in FUNCTION STATS.
    config_set_masters(&setup, "busy-reply-threshold", "100").await;
    let mut runner = setup.client().await;
    let spinning =
        tokio::spawn(async move { q::<()>(&mut runner, &["FCALL_RO", "spin", "0"]).await });
    let running = common::eventually(
        "FUNCTION STATS to show the running function",
        Duration::from_secs(10),
        async || {
            let stats = pairs(q::<Value>(c, &["FUNCTION", "STATS"]).await.unwrap());
            match &stats["running_script"] {
                Value::Nil => Err("nothing running".to_string()),
                other => Ok(pairs(other.clone())),
            }
        },
    )
    .await;
    assert_eq!(running["name"], Value::BulkString(b"spin".to_vec()));
    assert_eq!(q::<String>(c, &["FUNCTION", "KILL"]).await.unwrap(), "OK");
    assert!(spinning.await.unwrap().is_err());
    let idle = pairs(q::<Value>(c, &["FUNCTION", "STATS"]).await.unwrap());
    assert_eq!(idle["running_script"], Value::Nil);
}

/// A Lua script that keeps its master busy for `ms` milliseconds (a latency event).
fn busy_script(ms: u32) -> String {
    format!(
        "local s = redis.call('TIME') \
         while true do local n = redis.call('TIME') \
         if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > {} then break end end return 1",
        ms * 1000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_latency_over_every_master() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let ports = setup.cluster.master_ports();
    let mut mset = redis::cmd("MSET");
    for i in 0..200 {
        mset.arg(format!("mem:{i}")).arg("x".repeat(100));
    }
    let _: () = mset.query_async(c).await.unwrap();

    // MEMORY STATS: keys counted and bytes summed over the masters.
    let stats = pairs(q::<Value>(c, &["MEMORY", "STATS"]).await.unwrap());
    let mut keys = 0;
    let mut allocated = 0;
    for &port in &ports {
        let own = pairs(
            q::<Value>(&mut direct(port).await, &["MEMORY", "STATS"])
                .await
                .unwrap(),
        );
        keys += int(&own["keys.count"]);
        allocated += int(&own["total.allocated"]);
    }
    assert_eq!(int(&stats["keys.count"]), 200);
    assert_eq!(keys, 200);
    let merged = int(&stats["total.allocated"]);
    assert!(
        merged > allocated * 8 / 10 && merged < allocated * 12 / 10,
        "{merged} vs {allocated}"
    );
    assert!(matches!(stats["fragmentation"], Value::BulkString(_)));
    assert!(matches!(stats["db.0"], Value::Array(_)));

    for (words, each) in [
        (&["MEMORY", "DOCTOR"][..], true),
        (&["MEMORY", "MALLOC-STATS"][..], true),
        (&["LATENCY", "DOCTOR"][..], true),
    ] {
        let text: String = q(c, words).await.unwrap();
        for &port in &ports {
            assert_eq!(
                text.contains(&format!("--- 127.0.0.1:{port} ---\n")),
                each,
                "{words:?}: {text}"
            );
        }
    }
    assert_eq!(q::<String>(c, &["MEMORY", "PURGE"]).await.unwrap(), "OK");
    assert!(q::<i64>(c, &["MEMORY", "USAGE", "mem:1"]).await.unwrap() > 100);

    // A latency event on every master.
    config_set_masters(&setup, "latency-monitor-threshold", "1").await;
    let script = busy_script(20);
    for &port in &ports {
        let key = common::key_on(&setup.cluster, port, "lat");
        let _: i64 = q(c, &["EVAL", &script, "1", &key]).await.unwrap();
    }
    let latest: Vec<(String, i64, i64, i64)> = q(c, &["LATENCY", "LATEST"]).await.unwrap();
    let mut own_latest = Vec::new();
    let mut own_history = BTreeMap::new();
    let mut own_calls = 0;
    for &port in &ports {
        let d = &mut direct(port).await;
        let mine: Vec<(String, i64, i64, i64)> = q(d, &["LATENCY", "LATEST"]).await.unwrap();
        own_latest.extend(mine);
        let history: Vec<(i64, i64)> = q(d, &["LATENCY", "HISTORY", "command"]).await.unwrap();
        for (time, latency) in history {
            let at = own_history.entry(time).or_insert(latency);
            *at = (*at).max(latency);
        }
        let histogram = pairs(
            q::<Value>(d, &["LATENCY", "HISTOGRAM", "eval"])
                .await
                .unwrap(),
        );
        own_calls += int(&pairs(histogram["eval"].clone())["calls"]);
    }
    let command: Vec<_> = own_latest.iter().filter(|e| e.0 == "command").collect();
    assert_eq!(command.len(), 3, "{own_latest:?}");
    let merged = latest.iter().find(|e| e.0 == "command").unwrap();
    assert_eq!(merged.1, command.iter().map(|e| e.1).max().unwrap());
    assert_eq!(merged.3, command.iter().map(|e| e.3).max().unwrap());
    let history: Vec<(i64, i64)> = q(c, &["LATENCY", "HISTORY", "command"]).await.unwrap();
    assert_eq!(history, own_history.into_iter().collect::<Vec<_>>());
    let histogram = pairs(
        q::<Value>(c, &["LATENCY", "HISTOGRAM", "eval"])
            .await
            .unwrap(),
    );
    let eval = pairs(histogram["eval"].clone());
    assert_eq!(int(&eval["calls"]), own_calls);
    assert_eq!(own_calls, 3);
    let buckets = pairs_of_ints(eval["histogram_usec"].clone());
    assert_eq!(buckets.last().map(|b| b.1), Some(3), "{buckets:?}");

    let graph: String = q(c, &["LATENCY", "GRAPH", "command"]).await.unwrap();
    for &port in &ports {
        assert!(
            graph.contains(&format!("--- 127.0.0.1:{port} ---\n")),
            "{graph}"
        );
    }
    let err = q::<String>(c, &["LATENCY", "GRAPH", "nosuchevent"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No samples available"), "{err}");

    // RESET: the event series reset on each master, summed.
    let reset: i64 = q(c, &["LATENCY", "RESET"]).await.unwrap();
    assert!(reset >= 3, "{reset}");
    let latest: Vec<Value> = q(c, &["LATENCY", "LATEST"]).await.unwrap();
    assert!(latest.is_empty(), "{latest:?}");
}

/// A RESP2 flat array of integer pairs.
fn pairs_of_ints(value: Value) -> Vec<(i64, i64)> {
    let Value::Array(items) = value else {
        panic!("{value:?}")
    };
    items.chunks(2).map(|p| (int(&p[0]), int(&p[1]))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_node_sections_sum_the_masters() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let ports = setup.cluster.master_ports();
    for i in 0..30 {
        let _: () = q(c, &["SET", &format!("inf:{i}"), "v"]).await.unwrap();
    }
    for i in 0..40 {
        let _: Option<String> = q(c, &["GET", &format!("inf:{i}")]).await.unwrap();
    }
    let proxy_stats: String = q(c, &["INFO", "stats"]).await.unwrap();
    let proxy_persistence: String = q(c, &["INFO", "persistence"]).await.unwrap();
    let (mut hits, mut misses, mut changes) = (0u64, 0u64, 0u64);
    let mut used = 0u64;
    for &port in &ports {
        let text: String = q(
            &mut direct(port).await,
            &["INFO", "stats", "persistence", "memory"],
        )
        .await
        .unwrap();
        let n = |name| info_field(&text, name).unwrap().parse::<u64>().unwrap();
        hits += n("keyspace_hits");
        misses += n("keyspace_misses");
        changes += n("rdb_changes_since_last_save");
        used += n("used_memory");
    }
    let n = |text: &str, name| info_field(text, name).unwrap().parse::<u64>().unwrap();
    assert_eq!((hits, misses), (30, 10));
    assert_eq!(n(&proxy_stats, "keyspace_hits"), hits, "{proxy_stats}");
    assert_eq!(n(&proxy_stats, "keyspace_misses"), misses);
    assert_eq!(
        n(&proxy_persistence, "rdb_changes_since_last_save"),
        changes
    );
    // The proxy's own counters stay: the client's connections and commands.
    assert!(n(&proxy_stats, "total_connections_received") >= 1);
    assert!(proxy_stats.contains("redirects_moved:"), "{proxy_stats}");
    assert_eq!(
        proxy_stats.matches("total_commands_processed:").count(),
        1,
        "{proxy_stats}"
    );
    let memory: String = q(c, &["INFO", "memory"]).await.unwrap();
    assert!(memory.starts_with("# Memory\r\n"), "{memory}");
    let merged = n(&memory, "used_memory");
    assert!(
        merged > used * 8 / 10 && merged < used * 12 / 10,
        "{merged} vs {used}"
    );
    assert!(info_field(&memory, "used_memory_human").is_some());
    assert_eq!(info_field(&memory, "maxmemory").as_deref(), Some("0"));
    assert_eq!(
        info_field(&memory, "maxmemory_policy").as_deref(),
        Some("noeviction")
    );
    assert!(
        !memory.contains("# Server"),
        "only what was asked: {memory}"
    );
    let cpu: String = q(c, &["INFO", "cpu"]).await.unwrap();
    assert!(info_field(&cpu, "used_cpu_sys").is_some(), "{cpu}");

    // Plain INFO: Redis' default sections in Redis' order, with what libraries read.
    let all: String = q(c, &["INFO"]).await.unwrap();
    let headers: Vec<&str> = all.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(
        headers,
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Proxy",
            "# Replication",
            "# CPU",
            "# Errorstats",
            "# Cluster",
            "# Keyspace"
        ],
        "{all}"
    );
    for field in [
        "redis_version:",
        "redis_mode:standalone",
        "role:master",
        "cluster_enabled:0",
        "db0:keys=30,",
    ] {
        assert!(all.contains(field), "INFO lacks {field}: {all}");
    }
    let everything: String = q(c, &["INFO", "everything"]).await.unwrap();
    assert!(everything.contains("# Commandstats\r\n") && everything.contains("# Latencystats\r\n"));
}

/// A RESP3 client gets RESP3 shapes: maps, doubles, verbatim text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_shapes() {
    let setup = common::start();
    let mut raw = common::Raw::connect(setup.addr());
    raw.send(b"HELLO 3\r\n");
    assert!(read_reply(&mut raw).starts_with(b"%"));
    for (command, first) in [
        ("MEMORY STATS", b'%'),
        ("FUNCTION STATS", b'%'),
        ("LATENCY HISTOGRAM set", b'%'),
        ("MEMORY DOCTOR", b'='),
        ("INFO memory", b'='),
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        let reply = read_reply(&mut raw);
        assert_eq!(
            reply.first(),
            Some(&first),
            "{command}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    raw.send(b"MEMORY STATS\r\n");
    let reply = String::from_utf8(read_reply(&mut raw)).unwrap();
    assert!(
        reply.contains("$13\r\nfragmentation\r\n,"),
        "a double: {reply}"
    );
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

/// A master that is down does not hold INFO up: the others' sections come at once, and the
/// missing master is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_does_not_wait_for_a_master_that_is_down() {
    let mut setup = common::start_with(
        slotgate::local_redis::ClusterOptions {
            node_timeout_ms: 60_000,
            ..Default::default()
        },
        |_| {},
    );
    let c = &mut setup.client().await;
    let ports = setup.cluster.master_ports();
    let mut keys = Vec::new();
    for &port in &ports {
        let key = common::key_on(&setup.cluster, port, "down");
        let _: () = q(c, &["SET", &key, "v"]).await.unwrap();
        keys.push(key);
    }
    let victim = common::node_index(&setup.cluster, ports[0]);
    setup.cluster.kill(victim).unwrap();
    let started = std::time::Instant::now();
    let info: String = q(c, &["INFO", "keyspace", "stats"]).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "INFO took {:?}",
        started.elapsed()
    );
    assert!(info.contains("db0:keys=2,"), "{info}");
    assert_eq!(
        info_field(&info, "info_masters_unanswered").as_deref(),
        Some("1"),
        "{info}"
    );
    assert!(info_field(&info, "keyspace_hits").is_some(), "{info}");
}
