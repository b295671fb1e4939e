//! Backend auth per pool and for a Redis Cluster: `AUTH password` (requirepass) and `AUTH
//! user password` (Redis 6 ACL) on every new backend connection; a refused password gives a
//! clear error that does not contain it.

use crate::common;

use std::time::{Duration, Instant};

use common::{client, http_get, pool_config, proxy_config, standalone_servers, with_admin, Raw};
use redis::AsyncCommands;
use slotgate::config::{PoolConfig, ReadPolicy, Secret};
use slotgate::local_redis::{ClusterOptions, LocalCluster, SentinelOptions, SentinelServer};
use slotgate::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_authenticate_with_password_or_acl_user() {
    let servers = standalone_servers(2);
    // p0: requirepass. p1: an ACL user, and a default user that needs another password.
    let mut d0 = client(servers[0].addr().parse().unwrap()).await;
    requirepass(&mut d0, "pass-zero").await;
    let mut d1 = client(servers[1].addr().parse().unwrap()).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">pass-one")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut d1)
        .await
        .unwrap();
    requirepass(&mut d1, "other").await;

    let mut config = pool_config(&servers, &[]);
    config.backend.reconnect_backoff_ms = 50;
    let pools: Vec<String> = config.pools.keys().cloned().collect();
    config.pools.get_mut(&pools[0]).unwrap().password = Some(Secret::new("pass-zero"));
    let p1 = config.pools.get_mut(&pools[1]).unwrap();
    p1.username = Some("app".into());
    p1.password = Some(Secret::new("pass-one"));
    let proxy = Proxy::start(config.clone()).expect("start slotgate");
    let mut c = client(proxy.local_addr()).await;
    for i in 0..50 {
        let key = format!("auth:{i}");
        let _: () = c
            .set(&key, i)
            .await
            .expect("SET through authenticated pools");
        let v: i64 = c.get(&key).await.unwrap();
        assert_eq!(v, i);
    }
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 50);

    // A wrong password (reloaded: new connections are opened with it) fails clearly, and
    // the error does not echo the password.
    let mut wrong = config.clone();
    wrong.pools.get_mut(&pools[0]).unwrap().password = Some(Secret::new("not-the-password"));
    proxy.reload(wrong).unwrap();
    let key0 = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| slotgate::slot::Slot::of(k.as_bytes()).get() < 8192)
        .unwrap();
    let err = c
        .get::<_, Option<String>>(&key0)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused authentication"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    // Back to the right password: served again once the short back-off has passed.
    proxy.reload(config).unwrap();
    common::eventually(
        "served after fixing the password",
        Duration::from_secs(5),
        async || c.get::<_, Option<String>>(&key0).await,
    )
    .await;
}

/// `CONFIG SET requirepass password` on the server `direct` is connected to.
async fn requirepass(direct: &mut redis::aio::MultiplexedConnection, password: &str) {
    let set = ["CONFIG", "SET", "requirepass", password];
    let _: () = redis::cmd(set[0])
        .arg(&set[1..])
        .query_async(direct)
        .await
        .unwrap();
}

/// Dedicated connections (blocking commands, transactions, pub/sub) authenticate too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_commands_authenticate_in_pool_mode() {
    let servers = standalone_servers(2);
    for server in &servers {
        let mut direct = client(server.addr().parse().unwrap()).await;
        requirepass(&mut direct, "pw").await;
    }
    let mut config = pool_config(&servers, &[]);
    for pool in config.pools.values_mut() {
        pool.password = Some(Secret::new("pw"));
    }
    let proxy = Proxy::start(config).expect("start slotgate");
    let mut c = client(proxy.local_addr()).await;

    pinned_commands_work(&mut c, proxy.local_addr(), "{a}", "auth-ch").await;
}

/// A cluster whose nodes all have `requirepass` (and `masterauth`): slotgate discovers it,
/// serves keys, split requests, transactions, blocking commands and pub/sub on it, reads from
/// its replicas (READONLY connections, health checks) and answers the admin probes, all with
/// `cluster.password`; with no or a wrong password start-up fails naming the cause. An ACL
/// user (`cluster.username`) works the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_with_requirepass() {
    let cluster = LocalCluster::start(ClusterOptions {
        password: Some("cluster-pw".into()),
        ..ClusterOptions::default()
    })
    .expect("start a Redis Cluster with requirepass");

    // No password: discovery is refused, and the error says which setting is missing.
    let err = start_error(proxy_config(cluster.seeds()));
    assert!(err.starts_with("cannot discover the cluster: "), "{err}");
    assert!(err.contains("NOAUTH"), "{err}");
    assert!(err.contains("set cluster.password"), "{err}");

    // A wrong password: every node is named with the node's own refusal; not echoed.
    let mut wrong = proxy_config(cluster.seeds());
    wrong.cluster.password = Some(Secret::new("not-the-password"));
    let err = start_error(wrong);
    for seed in cluster.seeds() {
        assert!(
            err.contains(&format!(
                "{seed}: backend {seed} refused authentication (WRONGPASS"
            )),
            "{seed} missing from {err}"
        );
    }
    assert!(!err.contains("not-the-password"), "{err}");

    // The right password.
    let mut config = proxy_config(cluster.seeds());
    config.cluster.password = Some(Secret::new("cluster-pw"));
    config.backend.read_policy = ReadPolicy::Replica;
    config.health.interval_ms = 100;
    // Replicas still syncing are left out of a discovered table; a refresh adds them.
    config.cluster.refresh_interval_ms = 200;
    with_admin(&mut config);
    let proxy = Proxy::start(config).expect("start slotgate with cluster.password");
    common::eventually(
        "3 replicas discovered",
        Duration::from_secs(10),
        async || {
            let replicas = common::info_value(proxy.local_addr(), "proxy", "backend_replicas");
            common::check(replicas, |r| r.as_deref() == Some("3"))
        },
    )
    .await;
    let mut c = client(proxy.local_addr()).await;

    let keys: Vec<String> = (0..30).map(|i| format!("cauth:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let _: () = c.set(key, i).await.expect("SET on an authenticated master");
    }
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("m-{k}"))).collect();
    let _: () = c.mset(&pairs).await.expect("MSET across slots");
    let want: Vec<String> = pairs.iter().map(|(_, v)| v.clone()).collect();
    // Reads go to replicas only (READONLY, authenticated, health-checked): poll until the
    // health checker has seen them and they caught up.
    let what = format!("the replicas serve {want:?}");
    common::eventually(&what, Duration::from_secs(10), async || {
        let got: Result<Vec<Option<String>>, _> = c.mget(&keys).await;
        common::check(got, |got| {
            got.as_ref()
                .is_ok_and(|got| got.iter().flatten().eq(want.iter()))
        })
        .map(drop)
    })
    .await;
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, keys.len(), "DBSIZE over every master");

    pinned_commands_work(&mut c, proxy.local_addr(), "{t}", "cauth-ch").await;
    // A sharded channel: its link goes to its slot's master.
    let mut sub = Raw::connect(proxy.local_addr());
    sub.send(b"SSUBSCRIBE cauth-sch\r\n");
    let confirmation = b"*3\r\n$10\r\nssubscribe\r\n$9\r\ncauth-sch\r\n:1\r\n";
    assert_eq!(sub.read_exactly(confirmation.len()), confirmation);
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg("cauth-sch")
        .arg("m2")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let message = b"*3\r\n$8\r\nsmessage\r\n$9\r\ncauth-sch\r\n$2\r\nm2\r\n";
    assert_eq!(sub.read_exactly(message.len()), message);

    // The admin probes authenticate too, and never show the password.
    let admin = proxy.admin_addr().expect("admin listener");
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(status, 200, "{body}");
    let (_, body) = http_get(admin, "/config");
    assert!(
        body.contains("<redacted>") && !body.contains("cluster-pw"),
        "{body}"
    );
    let what = "6 nodes, all healthy, in /topology";
    common::eventually(what, Duration::from_secs(5), async || {
        let view = common::http_json(admin, "/topology");
        let nodes = view["nodes"].as_array().unwrap();
        let healthy = nodes.len() == 6 && nodes.iter().all(|n| n["healthy"] == true);
        common::check(view, |_| healthy)
    })
    .await;
    drop(proxy);

    // An ACL user on every node, named by cluster.username.
    for node in cluster.nodes() {
        let mut direct =
            redis::Client::open(format!("redis://:cluster-pw@127.0.0.1:{}/", node.port))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all"][..])
            .query_async(&mut direct)
            .await
            .unwrap();
    }
    let mut config = proxy_config(cluster.seeds());
    config.cluster.username = Some("app".into());
    config.cluster.password = Some(Secret::new("app-pw"));
    let proxy = Proxy::start(config).expect("start slotgate as an ACL user");
    let mut c = client(proxy.local_addr()).await;
    let got: Vec<Option<String>> = c.mget(&keys).await.expect("MGET as the ACL user");
    assert!(got.iter().flatten().eq(want.iter()), "{got:?}");

    // The user's password changes on one master and its connections are cut: slotgate's
    // reconnect is refused, and the client gets an error naming that node, within the
    // request timeout (not a hang), never the password.
    let port = cluster.master_ports()[0];
    let key = common::key_on(&cluster, port, "rotated");
    let mut direct = redis::Client::open(format!("redis://:cluster-pw@127.0.0.1:{port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "resetpass", ">rotated-pw"][..])
        .query_async(&mut direct)
        .await
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "app"][..])
        .query_async(&mut direct)
        .await
        .unwrap();
    let started = Instant::now();
    let err = c
        .get::<_, Option<String>>(&key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "slotgate: backend 127.0.0.1:{port} refused authentication (WRONGPASS"
        )),
        "{err}"
    );
    assert!(
        !err.contains("app-pw") && !err.contains("rotated-pw"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The text of the error `Proxy::start(config)` fails with.
fn start_error(config: slotgate::config::Config) -> String {
    match Proxy::start(config) {
        Ok(_) => panic!("slotgate started with a missing or wrong backend password"),
        Err(e) => e.to_string(),
    }
}

/// Sentinels with `requirepass`: a pool's `sentinel_password` authenticates both the master
/// look-up and the `+switch-master` subscription; without it, or with a wrong one, start-up
/// fails naming the sentinel and the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_requirepass() {
    let servers = standalone_servers(1);
    let sentinel = SentinelServer::start(&SentinelOptions {
        master_name: "m".into(),
        master: servers[0].addr(),
        quorum: 1,
        down_after_ms: 5000,
        failover_timeout_ms: 10_000,
        password: Some("sentinel-pw".into()),
    })
    .expect("start a sentinel with requirepass");
    let sentinel_addr = sentinel.addr();
    let config_with = |password: Option<&str>| {
        let mut config = pool_config(&[], &[]);
        config.pools.insert(
            "p0".into(),
            PoolConfig {
                sentinels: vec![sentinel_addr.clone()],
                master_name: Some("m".into()),
                sentinel_password: password.map(Secret::new),
                ..PoolConfig::default()
            },
        );
        config
    };

    let err = start_error(config_with(None));
    assert!(
        err.contains(&format!(
            "pool \"p0\" (m): sentinel {sentinel_addr}: NOAUTH"
        )),
        "{err}"
    );
    assert!(err.contains("sentinel_password"), "{err}");
    let err = start_error(config_with(Some("not-the-password")));
    assert!(
        err.contains(&format!(
            "sentinel {sentinel_addr}: backend {sentinel_addr} refused authentication (WRONGPASS"
        )),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");

    let proxy = Proxy::start(config_with(Some("sentinel-pw"))).expect("start on Sentinel");
    let master = common::info_value(proxy.local_addr(), "proxy", "master0").unwrap_or_default();
    assert_eq!(master, servers[0].addr(), "resolved through the sentinel");
    let mut c = client(proxy.local_addr()).await;
    let _: () = c.set("sk", "v").await.unwrap();
    let v: String = c.get("sk").await.unwrap();
    assert_eq!(v, "v");

    // The +switch-master subscription authenticated too: the sentinel lists it.
    let mut direct = redis::Client::open(format!("redis://:sentinel-pw@{sentinel_addr}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    common::eventually(
        "a subscription on the sentinel",
        Duration::from_secs(5),
        async || {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut direct)
                .await
                .unwrap();
            common::check(clients, |c| c.lines().any(|l| l.contains("cmd=subscribe")))
        },
    )
    .await;
}

/// A transaction, a BLPOP and a pub/sub message through the proxy at `addr` (`c` is connected
/// to it): each runs on a dedicated backend connection, which must authenticate too. `tag`
/// keeps the keys in one slot; `channel` is the pub/sub channel to use.
async fn pinned_commands_work(
    c: &mut redis::aio::MultiplexedConnection,
    addr: std::net::SocketAddr,
    tag: &str,
    channel: &str,
) {
    let (ok, n): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(format!("{tag}x"))
        .arg(1)
        .cmd("INCR")
        .arg(format!("{tag}x"))
        .query_async(c)
        .await
        .expect("MULTI/EXEC on an authenticated dedicated connection");
    assert_eq!((ok.as_str(), n), ("OK", 2));

    let list = format!("{tag}list");
    let _: () = c.rpush(&list, "v").await.unwrap();
    let popped: (String, String) = redis::cmd("BLPOP")
        .arg(&list)
        .arg(1)
        .query_async(c)
        .await
        .expect("BLPOP on an authenticated dedicated connection");
    assert_eq!(popped.1, "v");

    let sub_client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut pubsub = sub_client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    let receivers: i64 = c.publish(channel, "m").await.unwrap();
    assert_eq!(receivers, 1);
    let mut stream = pubsub.on_message();
    let msg = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    .expect("message in time")
    .unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "m");
}
