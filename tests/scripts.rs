//! Scripts, functions and the keyspace-wide commands that go with them: EVAL routed by its
//! keys or to some master without them, EVALSHA surviving a node that lost its script cache,
//! FUNCTION LOAD/DELETE on every master, INFO keyspace summed, FLUSHALL switchable by config.

mod common;

use common::q;

use redis::aio::MultiplexedConnection;

async fn direct(port: u16) -> MultiplexedConnection {
    common::client(format!("127.0.0.1:{port}").parse().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_with_and_without_keys() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let n: i64 = q(
        c,
        &["EVAL", "return redis.call('INCR', KEYS[1])", "1", "sc:a"],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    // Key-less scripts run on some master, a different one from time to time.
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let id: String = q(c, &["EVAL", "return redis.call('CLUSTER', 'MYID')", "0"])
            .await
            .unwrap();
        ids.insert(id);
    }
    assert!(
        ids.len() > 1,
        "every key-less script ran on one node: {ids:?}"
    );
    let e = q::<i64>(c, &["EVAL", "return 1", "2", "a", "b"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), redis::ErrorKind::CrossSlot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_scripts_can_be_pinned_to_one_node() {
    let cluster = slotgate::demo::LocalCluster::start(Default::default()).unwrap();
    let port = cluster.master_ports()[1];
    let mut config = common::proxy_config(cluster.seeds());
    config.commands.keyless_scripts = format!("127.0.0.1:{port}");
    let proxy = slotgate::Proxy::start(config).unwrap();
    let c = &mut common::client(proxy.local_addr()).await;
    let want: String = q(&mut direct(port).await, &["CLUSTER", "MYID"])
        .await
        .unwrap();
    for _ in 0..10 {
        let id: String = q(c, &["EVAL", "return redis.call('CLUSTER', 'MYID')", "0"])
            .await
            .unwrap();
        assert_eq!(id, want);
    }
}

/// A node that lost its script cache (as a promoted replica has: Redis does not replicate
/// scripts) gets the script again from the proxy; the client never sees NOSCRIPT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evalsha_survives_a_node_without_the_script() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let body = "return redis.call('GET', KEYS[1])";
    let sha: String = q(c, &["SCRIPT", "LOAD", body]).await.unwrap();
    let key = common::key_on(&setup.cluster, setup.cluster.master_ports()[0], "ns");
    let _: () = q(c, &["SET", &key, "v"]).await.unwrap();
    let _: () = q(
        &mut direct(setup.cluster.master_ports()[0]).await,
        &["SCRIPT", "FLUSH"],
    )
    .await
    .unwrap();
    let got: String = q(c, &["EVALSHA", &sha, "1", &key]).await.unwrap();
    assert_eq!(got, "v");
    // An EVAL also teaches the proxy its body.
    let body2 = "return 'two'";
    let _: String = q(c, &["EVAL", body2, "1", &key]).await.unwrap();
    let sha2 = slotgate::scripts::sha1_hex(body2.as_bytes());
    let sha2 = std::str::from_utf8(&sha2).unwrap();
    let _: () = q(
        &mut direct(setup.cluster.master_ports()[0]).await,
        &["SCRIPT", "FLUSH"],
    )
    .await
    .unwrap();
    assert_eq!(
        q::<String>(c, &["EVALSHA", sha2, "1", &key]).await.unwrap(),
        "two"
    );
    // A script the proxy never saw still gets Redis' own NOSCRIPT.
    let e = q::<String>(c, &["EVALSHA", &"0".repeat(40), "1", &key])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), redis::ErrorKind::NoScriptError, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_on_every_master_and_keyspace_info() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let library = "#!lua name=slotlib\nredis.register_function('getit', function(keys) return redis.call('GET', keys[1]) end)";
    let name: String = q(c, &["FUNCTION", "LOAD", library]).await.unwrap();
    assert_eq!(name, "slotlib");
    for port in setup.cluster.master_ports() {
        let key = common::key_on(&setup.cluster, port, "fn");
        let _: () = q(c, &["SET", &key, &port.to_string()]).await.unwrap();
        let got: String = q(c, &["FCALL", "getit", "1", &key]).await.unwrap();
        assert_eq!(got, port.to_string());
    }
    let _: () = q(c, &["FUNCTION", "DELETE", "slotlib"]).await.unwrap();
    for port in setup.cluster.master_ports() {
        let libs: Vec<redis::Value> = q(&mut direct(port).await, &["FUNCTION", "LIST"])
            .await
            .unwrap();
        assert!(libs.is_empty(), "library left on {port}");
    }

    // INFO keyspace: the masters' counts summed, in Redis' format, after the proxy's sections.
    let _: () = q(c, &["FLUSHALL"]).await.unwrap();
    for i in 0..90 {
        let _: () = q(c, &["SET", &format!("ks:{i}"), "v"]).await.unwrap();
    }
    for i in 0..30 {
        let _: () = q(c, &["EXPIRE", &format!("ks:{i}"), "1000"]).await.unwrap();
    }
    let info: String = q(c, &["INFO", "keyspace"]).await.unwrap();
    assert!(
        info.starts_with("# Keyspace\r\ndb0:keys=90,expires=30,avg_ttl="),
        "{info:?}"
    );
    let all: String = q(c, &["INFO"]).await.unwrap();
    assert!(
        all.contains("# Server\r\n") && all.contains("\r\n\r\n# Keyspace\r\ndb0:keys=90,"),
        "{all}"
    );
    let server: String = q(c, &["INFO", "server"]).await.unwrap();
    assert!(!server.contains("Keyspace"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_can_be_disabled() {
    let setup = common::start_with(Default::default(), |c| c.commands.allow_flush = false);
    let c = &mut setup.client().await;
    let _: () = q(c, &["SET", "keep", "1"]).await.unwrap();
    for cmd in ["FLUSHALL", "FLUSHDB"] {
        let e = q::<()>(c, &[cmd]).await.unwrap_err();
        assert!(e.to_string().contains("disabled by configuration"), "{e}");
    }
    assert_eq!(q::<i64>(c, &["DBSIZE"]).await.unwrap(), 1);
}
