//! Pool mode: slotgate in front of standalone redis-servers (no cluster), placed by a slot
//! map. The same router, split/merge and fan-out code as cluster mode; proven here with the
//! `redis` crate through the proxy, and by reading the backends directly.

use crate::common;

use std::collections::HashSet;

use common::{start_pools, PoolSetup};
use redis::AsyncCommands;
use slotgate::slot::Slot;

/// The pool index (`p{i}`) the map `[("0-5000","p0"),("5001-12000","p1"),("12001-16383","p2")]`
/// names for `key`.
fn expected_pool(key: &str) -> usize {
    match Slot::of(key.as_bytes()).get() {
        0..=5000 => 0,
        5001..=12000 => 1,
        _ => 2,
    }
}

const MAP: &[(&str, &str)] = &[
    ("0-5000", "p0"),
    ("5001-12000", "p1"),
    ("12001-16383", "p2"),
];

async fn direct_get(setup: &PoolSetup, server: usize, key: &str) -> Option<String> {
    let mut c = setup.direct(server).await;
    c.get(key).await.expect("direct GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_pool_the_slot_map_names() {
    let setup = start_pools(3, MAP, |_| {});
    let mut c = setup.client().await;
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    for key in &keys {
        let _: () = c
            .set(key, format!("v-{key}"))
            .await
            .expect("SET through slotgate");
    }
    let mut per_pool = [0usize; 3];
    for key in &keys {
        let want = expected_pool(key);
        per_pool[want] += 1;
        for server in 0..3 {
            let found = direct_get(&setup, server, key).await;
            if server == want {
                assert_eq!(found.as_deref(), Some(format!("v-{key}").as_str()), "{key}");
            } else {
                assert_eq!(found, None, "{key} also found on pool p{server}");
            }
        }
        let back: String = c.get(key).await.expect("GET through slotgate");
        assert_eq!(back, format!("v-{key}"));
    }
    assert!(per_pool.iter().all(|&n| n > 30), "{per_pool:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_slot_map_slots_are_split_evenly_in_name_order() {
    let setup = start_pools(2, &[], |_| {});
    let mut c = setup.client().await;
    for i in 0..100 {
        let key = format!("k{i}");
        let _: () = c.set(&key, i).await.unwrap();
        let want = usize::from(Slot::of(key.as_bytes()).get() >= 8192);
        let found = direct_get(&setup, want, &key).await;
        assert_eq!(found, Some(i.to_string()), "{key} not on p{want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_fan_out_scan_and_local_commands_work_unchanged() {
    let setup = start_pools(3, MAP, |_| {});
    let mut c = setup.client().await;
    let keys: Vec<String> = (0..60).map(|i| format!("multi:{i}")).collect();
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("={k}"))).collect();

    // MSET across all three pools, MGET back in key order (with a missing key in the middle).
    let _: () = redis::cmd("MSET")
        .arg(&pairs)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut asked = keys.clone();
    asked.insert(10, "missing".into());
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&asked)
        .query_async(&mut c)
        .await
        .unwrap();
    for (key, value) in asked.iter().zip(&got) {
        match key.as_str() {
            "missing" => assert_eq!(value, &None),
            k => assert_eq!(value.as_deref(), Some(format!("={k}").as_str())),
        }
    }
    // Every pool got its share, straight from the backends.
    let mut total = 0;
    for server in 0..3 {
        let mut d = setup.direct(server).await;
        let n: usize = redis::cmd("DBSIZE").query_async(&mut d).await.unwrap();
        assert!(n > 0, "pool p{server} got no key");
        total += n;
    }
    assert_eq!(total, keys.len());

    // Fan-out: DBSIZE summed, KEYS concatenated; SCAN walks every pool once.
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, keys.len());
    let listed: Vec<String> = c.keys("multi:*").await.unwrap();
    assert_eq!(listed.iter().collect::<HashSet<_>>(), keys.iter().collect());
    let mut scanned = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(7)
            .query_async(&mut c)
            .await
            .unwrap();
        scanned.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(scanned, keys.iter().cloned().collect());

    // EXISTS / DEL split and summed.
    let n: usize = redis::cmd("EXISTS")
        .arg(&keys[..20])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 20);
    let n: usize = redis::cmd("DEL")
        .arg(&keys[..20])
        .arg("missing")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 20);

    // Atomic multi-key commands across pools stay refused, as on a cluster node.
    let err = redis::cmd("MSETNX")
        .arg(&keys[30])
        .arg(1)
        .arg(&keys[31])
        .arg(2)
        .query_async::<i64>(&mut c)
        .await;
    let err = err.unwrap_err().to_string();
    assert!(err.contains("don't hash to the same slot"), "{err}");

    // Local commands.
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO")
        .arg("hi")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(echo, "hi");

    // Hash-tagged keys stay together on one pool and work with one-pool commands.
    let _: () = redis::cmd("MSET")
        .arg("{t}a")
        .arg(1)
        .arg("{t}b")
        .arg(2)
        .query_async(&mut c)
        .await
        .unwrap();
    let moved: i64 = redis::cmd("SMOVE")
        .arg("{t}s1")
        .arg("{t}s2")
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(moved, 0);

    // FLUSHDB fans out to every pool.
    let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await.unwrap();
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_master_is_down_fails_its_slots_only() {
    let mut setup = start_pools(2, &[], |c| {
        c.cluster.when_node_down = slotgate::config::WhenNodeDown::FailFast
    });
    let mut c = setup.client().await;
    let on = |pool: usize| {
        (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| usize::from(Slot::of(k.as_bytes()).get() >= 8192) == pool)
            .unwrap()
    };
    let (k0, k1) = (on(0), on(1));
    let _: () = c.set(&k0, 1).await.unwrap();
    let _: () = c.set(&k1, 1).await.unwrap();
    setup.servers[1].kill().unwrap();
    let err = c.get::<_, Option<String>>(&k1).await.unwrap_err();
    assert!(err.to_string().contains("slotgate"), "{err}");
    // The other pool keeps serving, and nothing was silently remapped to it.
    let v: Option<String> = c.get(&k0).await.unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

#[test]
fn cluster_and_pool_mode_are_exclusive_and_errors_name_their_keys() {
    let mut config = common::pool_config(&[], &[("0-16383", "nope")]);
    config.cluster.seeds = vec!["127.0.0.1:7000".into()];
    config.pools.insert(
        "a".into(),
        slotgate::config::PoolConfig {
            master: "127.0.0.1:1".into(),
            ..Default::default()
        },
    );
    let err = match slotgate::Proxy::start(config) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an invalid pool config started"),
    };
    assert!(err.contains("cluster.seeds: cluster mode"), "{err}");
    assert!(err.contains("slots.0-16383: names pool \"nope\""), "{err}");
}

#[test]
fn check_config_accepts_the_pools_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/pools.toml");
    common::binary::check_config_passes(path, &[]);
}

/// WAIT after a write split over two pools waits on both masters and answers the smaller
/// count: with one pool's replica frozen (SIGSTOP), that is 0; a single-key write to the other
/// pool still gets its 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_after_a_split_write_counts_the_slowest_pool() {
    use std::time::{Duration, Instant};

    let servers = common::standalone_servers(2);
    let replicas: Vec<_> = servers.iter().map(|m| common::replicas_of(m, 1)).collect();
    let config = common::pool_config(&servers, &[("0-8191", "p0"), ("8192-16383", "p1")]);
    let proxy = slotgate::Proxy::start(config).expect("start slotgate");
    let c = &mut common::client(proxy.local_addr()).await;
    let key_in = |low: bool| {
        (0..)
            .map(|i| format!("w{i}"))
            .find(|k| (Slot::of(k.as_bytes()).get() < 8192) == low)
            .unwrap()
    };
    let (k0, k1) = (key_in(true), key_in(false));
    let signal = |sig: &str| {
        let pid = replicas[1][0].pid().expect("replica pid").to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {pid}");
    };

    let _: () = c.mset(&[(&k0, "1"), (&k1, "1")]).await.unwrap();
    let n: i64 = common::q(c, &["WAIT", "1", "5000"]).await.unwrap();
    assert_eq!(n, 1, "both replicas acknowledge the split MSET");

    signal("-STOP");
    let _: () = c.mset(&[(&k0, "2"), (&k1, "2")]).await.unwrap();
    let started = Instant::now();
    let n: i64 = common::q(c, &["WAIT", "1", "300"]).await.unwrap();
    let waited = started.elapsed();
    // A single-key write to p0 waits on p0 only.
    let _: () = c.set(&k0, "3").await.unwrap();
    let alone: i64 = common::q(c, &["WAIT", "1", "5000"]).await.unwrap();
    signal("-CONT");
    assert_eq!(
        n, 0,
        "p1's replica is frozen: not every part of the MSET is replicated"
    );
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert_eq!(alone, 1);
    let _: () = c.mset(&[(&k0, "4"), (&k1, "4")]).await.unwrap();
    let n: i64 = common::q(c, &["WAIT", "1", "5000"]).await.unwrap();
    assert_eq!(n, 1, "the thawed replica catches up");
}
