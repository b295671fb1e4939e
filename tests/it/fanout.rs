//! Key-less commands about the whole keyspace: asked of every master, answers merged as one
//! Redis would give them.

use crate::common;

use common::q;

use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_commands_cover_every_master() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let keys: Vec<String> = (0..300).map(|i| format!("fan:{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg("v");
    }
    let _: () = mset.query_async(c).await.unwrap();

    // The keys really are spread: every master holds some.
    for port in setup.cluster.master_ports() {
        let mut direct = common::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let n: i64 = q(&mut direct, &["DBSIZE"]).await.unwrap();
        assert!(n > 0, "master {port} holds no key");
    }

    assert_eq!(q::<i64>(c, &["DBSIZE"]).await.unwrap(), 300);
    let listed: BTreeSet<String> = q::<Vec<String>>(c, &["KEYS", "fan:*"])
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, keys.iter().cloned().collect::<BTreeSet<_>>());
    assert!(q::<Vec<String>>(c, &["KEYS", "nomatch:*"])
        .await
        .unwrap()
        .is_empty());

    let sha: String = q(c, &["SCRIPT", "LOAD", "return KEYS[1]"]).await.unwrap();
    // Loaded on every master: EVALSHA works whichever node the key lives on.
    for k in keys.iter().take(30) {
        let got: String = q(c, &["EVALSHA", &sha, "1", k]).await.unwrap();
        assert_eq!(&got, k);
    }
    let exists: Vec<i64> = q(
        c,
        &[
            "SCRIPT",
            "EXISTS",
            &sha,
            "0000000000000000000000000000000000000000",
        ],
    )
    .await
    .unwrap();
    assert_eq!(exists, [1, 0]);
    assert_eq!(q::<String>(c, &["SCRIPT", "FLUSH"]).await.unwrap(), "OK");
    let exists: Vec<i64> = q(c, &["SCRIPT", "EXISTS", &sha]).await.unwrap();
    assert_eq!(exists, [0]);

    // RANDOMKEY finds keys on every master, one at a time.
    let mut picked = BTreeSet::new();
    for _ in 0..60 {
        let key: String = q(c, &["RANDOMKEY"]).await.unwrap();
        assert!(keys.contains(&key), "{key}");
        picked.insert(slotgate::slot::Slot::of(key.as_bytes()).get());
    }
    let masters: BTreeSet<u16> = picked
        .iter()
        .filter_map(|&slot| setup.cluster.port_of_slot(slot))
        .collect();
    assert_eq!(
        masters.len(),
        3,
        "RANDOMKEY only ever answered from {masters:?}"
    );

    assert_eq!(q::<String>(c, &["FLUSHDB"]).await.unwrap(), "OK");
    assert_eq!(q::<Option<String>>(c, &["RANDOMKEY"]).await.unwrap(), None);
    assert_eq!(q::<i64>(c, &["DBSIZE"]).await.unwrap(), 0);
    let _: () = q(c, &["SET", "again", "1"]).await.unwrap();
    assert_eq!(q::<String>(c, &["FLUSHALL", "ASYNC"]).await.unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["DBSIZE"]).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_walks_every_master_with_one_cursor() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let mut mset = redis::cmd("MSET");
    for i in 0..500 {
        mset.arg(format!("scan:{i}")).arg(i);
    }
    let _: () = mset.query_async(c).await.unwrap();
    let _: () = q(c, &["SET", "other", "x"]).await.unwrap();

    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let (next, keys): (String, Vec<String>) =
            q(c, &["SCAN", &cursor, "MATCH", "scan:*", "COUNT", "50"])
                .await
                .unwrap();
        seen.extend(keys);
        calls += 1;
        assert!(calls < 1_000, "SCAN never finished");
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let want: BTreeSet<String> = (0..500).map(|i| format!("scan:{i}")).collect();
    assert_eq!(seen, want);
    assert!(calls > 3, "one call per master at least, got {calls}");

    let err = q::<(String, Vec<String>)>(c, &["SCAN", "notanumber"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid cursor"), "{err}");
    // A cursor made for another slot assignment (here: fingerprint 0) starts over.
    let (_, keys): (String, Vec<String>) =
        q(c, &["SCAN", "1023", "MATCH", "scan:*", "COUNT", "1000"])
            .await
            .unwrap();
    assert!(
        !keys.is_empty(),
        "a stale cursor scans from the first master again"
    );
}

/// CONFIG GET is served by default: one answer where the masters agree, the proxy's own port,
/// per-node settings from the first master, and a clear error for a disagreement asked by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_answers_as_one_redis() {
    use std::collections::HashMap;
    let setup = common::start();
    let c = &mut setup.client().await;
    let get = |pairs: Vec<String>| -> HashMap<String, String> {
        pairs
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect()
    };
    let one: Vec<String> = q(c, &["CONFIG", "GET", "maxmemory-policy"]).await.unwrap();
    assert_eq!(one, ["maxmemory-policy", "noeviction"]);
    let several = get(q(c, &["CONFIG", "GET", "maxmemory", "port"]).await.unwrap());
    assert_eq!(several["maxmemory"], "0");
    assert_eq!(
        several["port"],
        setup.addr().port().to_string(),
        "the proxy's own port"
    );

    // What RedisInsight sends: every setting, none an error, the proxy seen as one Redis.
    let all = get(q(c, &["CONFIG", "GET", "*"]).await.unwrap());
    assert!(all.len() > 100, "{} settings", all.len());
    assert_eq!(all["port"], setup.addr().port().to_string());
    assert_eq!(all["cluster-enabled"], "no");
    assert!(
        !all["dir"].is_empty(),
        "a per-node setting has the first master's value"
    );

    // The masters disagree: by name, an error that says so; within a pattern, an answer.
    let port = setup.cluster.master_ports()[0];
    let mut direct = common::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let _: () = q(
        &mut direct,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .await
    .unwrap();
    let err = q::<Vec<String>>(c, &["CONFIG", "GET", "maxmemory-policy"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the masters differ on 'maxmemory-policy': 'noeviction' on 2 of 3, 'allkeys-lru' on 1 of 3")
            || err.contains("the masters differ on 'maxmemory-policy': 'allkeys-lru' on 1 of 3, 'noeviction' on 2 of 3"),
        "{err}"
    );
    let pattern = get(q(c, &["CONFIG", "GET", "maxmemory-*"]).await.unwrap());
    assert!(
        ["noeviction", "allkeys-lru"].contains(&pattern["maxmemory-policy"].as_str()),
        "{pattern:?}"
    );
    // CONFIG SET stays opt-in.
    let refused = q::<()>(c, &["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("commands.allow_admin"), "{refused}");
}

/// Allowed by `commands.allow_admin`, CONFIG SET reaches every master and replica (a replica
/// promoted later has the same settings), and a refusal names the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_config_set_reaches_every_master_and_replica() {
    let setup = common::start_with(Default::default(), |config| {
        config.commands.allow_admin = vec!["CONFIG SET".into()];
        config.cluster.refresh_interval_ms = 200;
        common::with_admin(config);
    });
    let nodes = setup.cluster.nodes();
    assert!(nodes.len() > 3, "the cluster has replicas");
    // Replicas join the proxy's table once a refresh has seen them synced.
    let admin = setup.proxy.admin_addr().unwrap();
    common::eventually_blocking(
        "every replica in the table",
        Duration::from_secs(20),
        || {
            let known = common::http_json(admin, "/topology")["nodes"]
                .as_array()
                .map_or(0, Vec::len);
            if known == nodes.len() {
                Ok(())
            } else {
                Err(known)
            }
        },
    );
    let c = &mut setup.client().await;
    let ok: String = q(c, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"])
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    for node in nodes {
        let mut direct = common::client(format!("127.0.0.1:{}", node.port).parse().unwrap()).await;
        let got: Vec<String> = q(&mut direct, &["CONFIG", "GET", "maxmemory-policy"])
            .await
            .unwrap();
        assert_eq!(got[1], "allkeys-lfu", "node {}", node.port);
    }
    let err = q::<String>(c, &["CONFIG", "SET", "maxmemory-policy", "no-such-policy"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "{} of {} nodes refused (127.0.0.1:",
            nodes.len(),
            nodes.len()
        )),
        "{err}"
    );
}

/// INFO commandstats and errorstats are the masters' summed, as one Redis would count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_commandstats_and_errorstats_sum_the_masters() {
    let setup = common::start();
    let c = &mut setup.client().await;
    for i in 0..30 {
        let _: () = q(c, &["SET", &format!("is:{i}"), "v"]).await.unwrap();
    }
    for i in 0..3 {
        let _ = q::<()>(c, &["LPUSH", &format!("is:{i}"), "x"])
            .await
            .unwrap_err();
    }
    // The masters' own counts, summed by hand.
    let field = |text: &str, line: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let (mut sets, mut wrongtype) = (0, 0);
    for port in setup.cluster.master_ports() {
        let mut direct = common::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let text: String = q(&mut direct, &["INFO", "commandstats", "errorstats"])
            .await
            .unwrap();
        sets += field(&text, "cmdstat_set:", "calls");
        wrongtype += field(&text, "errorstat_WRONGTYPE:", "count");
    }
    assert!(sets >= 30 && wrongtype >= 3, "{sets} {wrongtype}");
    let info: String = q(c, &["INFO", "commandstats", "errorstats"]).await.unwrap();
    assert_eq!(field(&info, "cmdstat_set:", "calls"), sets, "{info}");
    assert_eq!(
        field(&info, "errorstat_WRONGTYPE:", "count"),
        wrongtype,
        "{info}"
    );
    assert!(info.contains("# Commandstats\r\n") && info.contains("# Errorstats\r\n"));
    assert!(!info.contains("# Keyspace"), "only what was asked: {info}");
    // Plain INFO has errorstats and keyspace, not commandstats (as Redis).
    let plain: String = q(c, &["INFO"]).await.unwrap();
    assert!(plain.contains("# Errorstats") && plain.contains("# Keyspace"));
    assert!(!plain.contains("# Commandstats"));
}

/// SINTERCARD across slots: the size of the intersection, capped by LIMIT; Redis' errors for
/// a bad LIMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sintercard_across_slots_counts_as_one_redis() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let (a, b) = ("sic:a", "sic:b");
    assert_ne!(
        slotgate::slot::Slot::of(a.as_bytes()),
        slotgate::slot::Slot::of(b.as_bytes())
    );
    let _: i64 = q(c, &["SADD", a, "1", "2", "3", "4"]).await.unwrap();
    let _: i64 = q(c, &["SADD", b, "2", "3", "4", "5"]).await.unwrap();
    assert_eq!(q::<i64>(c, &["SINTERCARD", "2", a, b]).await.unwrap(), 3);
    assert_eq!(
        q::<i64>(c, &["SINTERCARD", "2", a, b, "LIMIT", "2"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        q::<i64>(c, &["SINTERCARD", "3", a, b, "sic:none"])
            .await
            .unwrap(),
        0
    );
    let err = q::<i64>(c, &["SINTERCARD", "2", a, b, "LIMIT", "-1"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("LIMIT can't be negative"), "{err}");
    let err = q::<i64>(c, &["SINTERCARD", "2", a, b, "NOPE"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("syntax error"), "{err}");
}

/// LASTSAVE is the oldest of the masters' (the last time all the data was saved); LOLWUT is
/// answered by a master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lastsave_and_lolwut_are_answered_by_the_masters() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let mut oldest = i64::MAX;
    for master in setup.masters() {
        let n = &mut common::client(master).await;
        let t: i64 = common::q(n, &["LASTSAVE"]).await.unwrap();
        oldest = oldest.min(t);
    }
    let got: i64 = common::q(c, &["LASTSAVE"]).await.unwrap();
    assert_eq!(got, oldest);
    let art: String = common::q(c, &["LOLWUT", "VERSION", "5"]).await.unwrap();
    assert!(art.contains("Redis ver."), "{art}");
}
