//! `[commands.custom]`: commands the built-in table does not know, declared with their arity,
//! flags and key positions, are routed by key. Tested against a real module: every node of
//! the cluster loads RediSearch (Debian's `redis-redisearch`, installed by
//! `scripts/ensure-redis`), whose suggestion commands (`FT.SUGADD key string score`,
//! `FT.SUGGET key prefix`, `FT.SUGLEN key`) keep a dictionary under a real key. Redis Cluster
//! checks a module command's key against the node's slots too, and slotgate would follow
//! the MOVED silently, so the test asserts the proxy met no redirect: each request went
//! straight to the node its declared key names.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{command_calls, info_value, key_on, redis_cli, reset_stats, wait_link_up, Raw};
use slotgate::config::{Config, CustomCommandConfig, ReadPolicy};
use slotgate::local_redis::{ClusterOptions, LocalCluster, Role};
use slotgate::{Proxy, ProxyHandle};

/// Where Debian's `redis-redisearch` puts the module.
const REDISEARCH: &str = "/usr/lib/redis/modules/redisearch.so";

fn node_addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("node address")
}

fn declare(config: &mut Config, name: &str, arity: i64, flags: &[&str], first: i64, last: i64) {
    config.commands.custom.insert(
        name.into(),
        CustomCommandConfig {
            arity: Some(arity),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            first_key: Some(first),
            last_key: Some(last),
            ..CustomCommandConfig::default()
        },
    );
}

/// 3 masters with a replica each, all loading RediSearch, and a proxy that declares its
/// suggestion commands and reads from replicas (so `readonly` is seen to matter), once it
/// has discovered every replica up.
async fn module_cluster() -> (LocalCluster, ProxyHandle) {
    assert!(
        std::path::Path::new(REDISEARCH).exists(),
        "{REDISEARCH} is missing: install Debian's redis-redisearch (scripts/ensure-redis)"
    );
    let cluster = LocalCluster::start(ClusterOptions {
        extra_args: vec!["--loadmodule".into(), REDISEARCH.into()],
        ..ClusterOptions::default()
    })
    .expect("start a Redis Cluster loading RediSearch");
    let mut config = common::proxy_config(cluster.seeds());
    declare(&mut config, "FT.SUGADD", -4, &["write", "denyoom"], 1, 1);
    declare(&mut config, "FT.SUGGET", -3, &["readonly"], 1, 1);
    declare(&mut config, "ft.suglen", 2, &["readonly"], 1, 1);
    // Not a RediSearch command: a multi-key declaration, for the proxy's CROSSSLOT check
    // (refused before any node is asked).
    declare(&mut config, "X.MLEN", -2, &["readonly"], 1, -1);
    config.backend.read_policy = ReadPolicy::Replica;
    config.health.interval_ms = 100;
    config.cluster.refresh_interval_ms = 200;
    let proxy = Proxy::start(config).expect("start slotgate");
    common::eventually(
        "3 replicas discovered, none down",
        Duration::from_secs(10),
        async || {
            let info = redis_cli(proxy.local_addr(), &["INFO", "proxy"]);
            common::check(info, |i| {
                i.contains("backend_replicas:3") && !i.contains(",down")
            })
        },
    )
    .await;
    (cluster, proxy)
}

fn moved(proxy: SocketAddr) -> u64 {
    info_value(proxy, "stats", "redirects_moved")
        .and_then(|v| v.parse().ok())
        .expect("redirects_moved in INFO stats")
}

/// Calls of `command` (as the nodes' commandstats name it) on the nodes of `role`, summed.
fn calls_on(cluster: &LocalCluster, role: Role, command: &str) -> u64 {
    cluster
        .nodes()
        .iter()
        .filter(|n| n.role == role)
        .map(|n| command_calls(node_addr(n.port), command))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_commands_are_routed_by_their_declared_key() {
    let (cluster, proxy) = module_cluster().await;
    let addr = proxy.local_addr();
    let mut c = common::client(addr).await;
    let keys: Vec<String> = (0..60).map(|i| format!("sug:{i}")).collect();
    for key in &keys {
        let added: i64 = common::q(&mut c, &["FT.SUGADD", key, "hello world", "1"])
            .await
            .expect("FT.SUGADD through slotgate");
        assert_eq!(added, 1, "{key}");
    }
    // Each dictionary is on the master of its key's slot, and no request was redirected.
    for key in &keys {
        let slot = slotgate::slot::Slot::of(key.as_bytes()).get();
        let port = cluster
            .port_of_slot(slot)
            .expect("a master serves the slot");
        assert_eq!(
            redis_cli(node_addr(port), &["FT.SUGLEN", key]),
            "1",
            "{key} on its master"
        );
    }
    let masters = cluster.master_ports();
    let used = masters
        .iter()
        .filter(|&&p| command_calls(node_addr(p), "FT.SUGADD") > 0)
        .count();
    assert_eq!(used, 3, "60 keys spread over every master");
    assert_eq!(moved(addr), 0, "a write was sent to the wrong node");

    // Reads (declared readonly) go to the replicas under the replica read policy.
    for node in cluster.nodes().iter().filter(|n| n.role == Role::Replica) {
        wait_link_up(node_addr(node.port));
    }
    for &port in &masters {
        let key = key_on(&cluster, port, "sync");
        assert_eq!(common::wait_replicated(node_addr(port), 1, &key).await, 1);
    }
    for node in cluster.nodes() {
        reset_stats(node_addr(node.port));
    }
    for key in &keys {
        let found: Vec<String> = common::q(&mut c, &["ft.sugget", key, "hel"])
            .await
            .expect("FT.SUGGET through slotgate");
        assert_eq!(found, ["hello world"], "{key}");
        let len: i64 = common::q(&mut c, &["FT.SugLen", key]).await.expect("len");
        assert_eq!(len, 1);
    }
    assert_eq!(calls_on(&cluster, Role::Replica, "FT.SUGGET"), 60);
    assert_eq!(calls_on(&cluster, Role::Master, "FT.SUGGET"), 0);
    assert_eq!(moved(addr), 0, "a read was sent to the wrong node");

    // A transaction of custom commands in one slot.
    let mut raw = Raw::connect(addr);
    raw.send(b"MULTI\r\nFT.SUGADD {t}a hi 1\r\nFT.SUGADD {t}b hi 1\r\nFT.SUGLEN {t}a\r\nEXEC\r\n");
    for want in ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n"] {
        assert_eq!(raw.read_line(), want);
    }
    for want in ["*3\r\n", ":1\r\n", ":1\r\n", ":1\r\n"] {
        assert_eq!(raw.read_line(), want);
    }
}

/// What the proxy itself answers about declared commands: arity errors, CROSSSLOT,
/// `COMMAND INFO`, undeclared module commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_commands_are_checked_and_described_by_the_proxy() {
    let (_cluster, proxy) = module_cluster().await;
    let mut raw = Raw::connect(proxy.local_addr());
    for (command, want) in [
        (
            "FT.SUGLEN",
            "-ERR wrong number of arguments for 'ft.suglen' command\r\n",
        ),
        (
            "FT.SUGADD k only",
            "-ERR wrong number of arguments for 'FT.SUGADD' command\r\n",
        ),
        (
            "X.MLEN a b c",
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        ),
        (
            "FT.SEARCH idx hello",
            "-ERR unknown command 'FT.SEARCH', with args beginning with: 'idx' 'hello' \r\n",
        ),
        ("COMMAND INFO ft.sugget", "*1\r\n"),
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        assert_eq!(raw.read_line(), want, "{command}");
    }
    let row: Vec<String> = (0..14).map(|_| raw.read_line()).collect();
    assert_eq!(
        row.concat(),
        "*10\r\n$9\r\nFT.SUGGET\r\n:-3\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*2\r\n+@read\r\n\
         +@slow\r\n*0\r\n*1\r\n"
    );
}
