//! Scripts, functions and the keyspace-wide commands that go with them: EVAL routed by its
//! keys or to some master without them, EVALSHA surviving a node that lost its script cache,
//! FUNCTION LOAD/DELETE on every master, INFO keyspace summed, FLUSHALL switchable by config.

use crate::common;

use common::q;

use std::time::Duration;

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
    let cluster = slotgate::local_redis::LocalCluster::start(Default::default()).unwrap();
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

/// A function library whose `readit` may run under FCALL_RO (`no-writes`).
const RO_LIBRARY: &str = "#!lua name=rolib\n\
    redis.register_function{function_name='readit', \
    callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

/// EVAL_RO, EVALSHA_RO and FCALL_RO go to the master of their keys' slot (counted by each
/// master's own commandstats), read the key there, pass Redis' own error for a write, and
/// get CROSSSLOT for keys in two slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_scripts_are_routed_by_their_keys() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let body = "return redis.call('GET', KEYS[1])";
    let sha: String = q(c, &["SCRIPT", "LOAD", body]).await.unwrap();
    let name: String = q(c, &["FUNCTION", "LOAD", RO_LIBRARY]).await.unwrap();
    assert_eq!(name, "rolib");
    let masters = setup.cluster.master_ports();
    let keys: Vec<String> = masters
        .iter()
        .map(|&port| common::key_on(&setup.cluster, port, "ro"))
        .collect();
    for (port, key) in masters.iter().zip(&keys) {
        let _: () = q(c, &["SET", key, &port.to_string()]).await.unwrap();
    }
    let addr = |port: u16| -> std::net::SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    for &port in &masters {
        common::reset_stats(addr(port));
    }
    for (port, key) in masters.iter().zip(&keys) {
        let want = port.to_string();
        let got: String = q(c, &["EVAL_RO", body, "1", key]).await.unwrap();
        assert_eq!(got, want, "EVAL_RO {key}");
        let got: String = q(c, &["EVALSHA_RO", &sha, "1", key]).await.unwrap();
        assert_eq!(got, want, "EVALSHA_RO {key}");
        let got: String = q(c, &["FCALL_RO", "readit", "1", key]).await.unwrap();
        assert_eq!(got, want, "FCALL_RO {key}");
    }
    // Each ran exactly once on each master: sent straight to the key's node, not redirected.
    for &port in &masters {
        for command in ["eval_ro", "evalsha_ro", "fcall_ro"] {
            assert_eq!(
                common::command_calls(addr(port), command),
                1,
                "{command} on master {port}"
            );
        }
    }

    // A write inside a read-only script: Redis' own error, and nothing written.
    let e = q::<String>(
        c,
        &[
            "EVAL_RO",
            "return redis.call('SET', KEYS[1], 'x')",
            "1",
            &keys[0],
        ],
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("Write commands are not allowed from read-only scripts"),
        "{e}"
    );
    assert_eq!(
        q::<String>(c, &["GET", &keys[0]]).await.unwrap(),
        masters[0].to_string()
    );

    // EVALSHA_RO on a node that lost its script cache is answered, as EVALSHA is.
    let _: () = q(&mut direct(masters[1]).await, &["SCRIPT", "FLUSH"])
        .await
        .unwrap();
    let got: String = q(c, &["EVALSHA_RO", &sha, "1", &keys[1]]).await.unwrap();
    assert_eq!(got, masters[1].to_string());

    // Keys in two slots: CROSSSLOT, as a cluster node says.
    for args in [
        vec!["EVAL_RO", body, "2", "a", "b"],
        vec!["EVALSHA_RO", &sha, "2", "a", "b"],
        vec!["FCALL_RO", "readit", "2", "a", "b"],
    ] {
        let e = q::<redis::Value>(c, &args).await.unwrap_err();
        assert_eq!(e.kind(), redis::ErrorKind::CrossSlot, "{args:?}: {e}");
    }
}

/// SCRIPT FLUSH and FUNCTION FLUSH reach every master: asked directly afterwards, none has a
/// script or a library left, and the proxy no longer answers EVALSHA from its own memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_and_function_flush_reach_every_master() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let masters = setup.cluster.master_ports();
    let loaded: String = q(c, &["SCRIPT", "LOAD", "return 'loaded'"]).await.unwrap();
    // A script EVAL'd through the proxy lands in one master's cache only.
    let key = common::key_on(&setup.cluster, masters[2], "fl");
    let evaled_body = "return 'evaled'";
    let _: String = q(c, &["EVAL", evaled_body, "1", &key]).await.unwrap();
    let evaled = slotgate::scripts::sha1_hex(evaled_body.as_bytes());
    let evaled = std::str::from_utf8(&evaled).unwrap().to_string();
    let _: String = q(c, &["FUNCTION", "LOAD", RO_LIBRARY]).await.unwrap();
    for &port in &masters {
        let d = &mut direct(port).await;
        let exists: Vec<i64> = q(d, &["SCRIPT", "EXISTS", &loaded]).await.unwrap();
        assert_eq!(exists, [1], "SCRIPT LOAD missed {port}");
        let libs: Vec<redis::Value> = q(d, &["FUNCTION", "LIST"]).await.unwrap();
        assert_eq!(libs.len(), 1, "FUNCTION LOAD missed {port}");
    }
    let exists: Vec<i64> = q(
        &mut direct(masters[2]).await,
        &["SCRIPT", "EXISTS", &evaled],
    )
    .await
    .unwrap();
    assert_eq!(exists, [1]);

    assert_eq!(q::<String>(c, &["SCRIPT", "FLUSH"]).await.unwrap(), "OK");
    assert_eq!(q::<String>(c, &["FUNCTION", "FLUSH"]).await.unwrap(), "OK");
    for &port in &masters {
        let d = &mut direct(port).await;
        let exists: Vec<i64> = q(d, &["SCRIPT", "EXISTS", &loaded, &evaled]).await.unwrap();
        assert_eq!(exists, [0, 0], "a script survived SCRIPT FLUSH on {port}");
        let libs: Vec<redis::Value> = q(d, &["FUNCTION", "LIST"]).await.unwrap();
        assert!(
            libs.is_empty(),
            "a library survived FUNCTION FLUSH on {port}"
        );
    }
    // As on one Redis: after SCRIPT FLUSH, EVALSHA is NOSCRIPT and FCALL names no function.
    let e = q::<String>(c, &["EVALSHA", &evaled, "1", &key])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), redis::ErrorKind::NoScriptError, "{e}");
    let e = q::<String>(c, &["FCALL_RO", "readit", "1", &key])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Function not found"), "{e}");

    // The ASYNC forms are fanned out too.
    let _: String = q(c, &["SCRIPT", "LOAD", "return 'again'"]).await.unwrap();
    let _: String = q(c, &["FUNCTION", "LOAD", RO_LIBRARY]).await.unwrap();
    assert_eq!(
        q::<String>(c, &["SCRIPT", "FLUSH", "ASYNC"]).await.unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(c, &["FUNCTION", "FLUSH", "ASYNC"])
            .await
            .unwrap(),
        "OK"
    );
    let again = slotgate::scripts::sha1_hex(b"return 'again'");
    let again = std::str::from_utf8(&again).unwrap().to_string();
    for &port in &masters {
        let d = &mut direct(port).await;
        let exists: Vec<i64> = q(d, &["SCRIPT", "EXISTS", &again]).await.unwrap();
        assert_eq!(exists, [0], "{port}");
        let libs: Vec<redis::Value> = q(d, &["FUNCTION", "LIST"]).await.unwrap();
        assert!(libs.is_empty(), "{port}");
    }
}

/// A script may return tables nested as deep as its Lua stack allows (thousands of levels);
/// the reply passes through slotgate as the node sent it, not "nested too deep".
#[test]
fn a_deeply_nested_script_reply_passes_through() {
    let setup = common::start();
    const DEPTH: usize = 5000;
    let script = format!(
        "local t = {{}} local cur = t for i=1,{DEPTH} do local n = {{}} cur[1] = n cur = n end \
         cur[1] = 7 return t"
    );
    let request = format!(
        "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
        script.len()
    );
    // `*1\r\n` per level, then the integer.
    let expected = "*1\r\n".repeat(DEPTH + 1) + ":7\r\n";
    let mut raw = common::Raw::connect(setup.addr());
    raw.send(request.as_bytes());
    let got = raw.read_exactly(expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    // And the connection is still in order.
    raw.send(b"PING\r\n");
    assert_eq!(raw.read_line(), "+PONG\r\n");
}

/// A runaway script can be stopped through slotgate: SCRIPT KILL reaches its node on a
/// connection of its own (the node does not read the script's connection), the script's
/// client gets Redis' "killed" error, and with nothing running the answer is NOTBUSY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_kill_stops_a_runaway_script() {
    let setup = common::start();
    // Redis takes SCRIPT KILL once a script has run this long (default 5 s).
    for port in setup.cluster.master_ports() {
        let _: () = q(
            &mut direct(port).await,
            &["CONFIG", "SET", "busy-reply-threshold", "100"],
        )
        .await
        .unwrap();
    }
    let mut runaway = setup.client().await;
    let script =
        tokio::spawn(
            async move { q::<()>(&mut runaway, &["EVAL", "while true do end", "0"]).await },
        );
    let c = &mut setup.client().await;
    common::eventually(
        "SCRIPT KILL to find the script",
        Duration::from_secs(10),
        async || q::<String>(c, &["SCRIPT", "KILL"]).await,
    )
    .await;
    let killed = script.await.unwrap().unwrap_err().to_string();
    assert!(
        killed.contains("Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    let none = q::<String>(c, &["SCRIPT", "KILL"])
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("No scripts in execution right now"), "{none}");
    let none = q::<String>(c, &["FUNCTION", "KILL"])
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("No scripts in execution right now"), "{none}");
}
