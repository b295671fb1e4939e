//! Read policy and health checks: read-only commands land on replicas (counted by the
//! replicas' own `INFO commandstats`), writes on the master; a killed replica is taken out of
//! reads without a client error and put back when it is healthy again; `replica` fails
//! clearly when no replica is healthy; cluster replicas serve reads after `READONLY`.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    command_calls, key_on, pool_config, redis_cli, replicas_of, reset_stats, standalone_servers,
    wait_link_up,
};
use redis::AsyncCommands;
use slotgate::config::{Config, ReadPolicy};
use slotgate::local_redis::{ClusterOptions, LocalCluster, RedisServer, Role};
use slotgate::{Proxy, ProxyHandle};

fn addr(server: &RedisServer) -> SocketAddr {
    server.addr().parse().expect("server address")
}

/// One pool on `master` with `replicas`, reading by `policy`, with fast health checks.
fn proxy(master: &RedisServer, replicas: &[RedisServer], policy: ReadPolicy) -> ProxyHandle {
    let mut config = pool_config(std::slice::from_ref(master), &[]);
    fast_health(&mut config);
    let pool = config.pools.get_mut("p0").expect("pool p0");
    pool.replicas = replicas.iter().map(RedisServer::addr).collect();
    pool.read_policy = Some(policy);
    Proxy::start(config).expect("start slotgate")
}

fn fast_health(config: &mut Config) {
    config.health.interval_ms = 100;
    config.health.timeout_ms = 200;
    config.health.failures = 2;
    config.health.successes = 2;
}

/// The `master0_replica{i}` line of the proxy's `INFO proxy`: `ADDR,up` or `ADDR,down`.
fn replica_status(proxy: SocketAddr, i: usize) -> String {
    common::info_value(proxy, "proxy", &format!("master0_replica{i}")).unwrap_or_default()
}

fn wait_status(proxy: SocketAddr, i: usize, want: &str) {
    let what = format!("replica {i} marked {want}");
    common::eventually_blocking(&what, Duration::from_secs(10), || {
        common::check(replica_status(proxy, i), |s| s.ends_with(want))
    });
}

/// `n` clients of the proxy (distinct client ids, so per-client picks spread).
async fn clients(proxy: SocketAddr, n: usize) -> Vec<redis::aio::MultiplexedConnection> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(common::client(proxy).await);
    }
    out
}

async fn write_keys(c: &mut redis::aio::MultiplexedConnection, n: usize) {
    for i in 0..n {
        let _: () = c.set(format!("k{i}"), i).await.expect("SET");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_replica_reads_on_replicas_writes_on_master() {
    let servers = standalone_servers(1);
    let replicas = replicas_of(&servers[0], 2);
    let proxy = proxy(&servers[0], &replicas, ReadPolicy::PreferReplica);
    let mut cs = clients(proxy.local_addr(), 4).await;
    for node in std::iter::once(&servers[0]).chain(&replicas) {
        reset_stats(addr(node));
    }
    write_keys(&mut cs[0], 50).await;
    assert_eq!(command_calls(addr(&servers[0]), "set"), 50);
    // Let replication catch up before reading from the replicas (read-your-writes caveat).
    let acked = common::wait_replicated(addr(&servers[0]), 2, "sync").await;
    assert_eq!(acked, 2, "replicas did not acknowledge the writes");
    for (n, c) in cs.iter_mut().enumerate() {
        for i in 0..50 {
            let v: i64 = c.get(format!("k{i}")).await.expect("GET");
            assert_eq!(v, i, "client {n}");
        }
    }
    let on_replicas: Vec<u64> = replicas
        .iter()
        .map(|r| command_calls(addr(r), "get"))
        .collect();
    assert_eq!(
        command_calls(addr(&servers[0]), "get"),
        0,
        "a read hit the master"
    );
    assert_eq!(on_replicas.iter().sum::<u64>(), 200, "{on_replicas:?}");
    assert!(on_replicas.iter().all(|&n| n > 0), "{on_replicas:?}");
    let info = redis_cli(proxy.local_addr(), &["INFO", "proxy"]);
    assert!(
        info.contains("master0_read_policy:prefer-replica"),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_ejected_and_readmitted_without_client_errors() {
    let servers = standalone_servers(1);
    let mut replicas = replicas_of(&servers[0], 1);
    let proxy = proxy(&servers[0], &replicas, ReadPolicy::PreferReplica);
    let paddr = proxy.local_addr();
    let mut c = common::client(paddr).await;
    write_keys(&mut c, 20).await;
    wait_status(paddr, 0, ",up");

    // Reads keep succeeding while the replica dies: in-flight ones go to the master.
    let reads = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let reads = Arc::clone(&reads);
        async move {
            let mut c = common::client(paddr).await;
            let until = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < until {
                let got: redis::RedisResult<Option<i64>> = c.get("k1").await;
                assert!(got.is_ok(), "read failed while the replica died: {got:?}");
                reads.fetch_add(1, Ordering::Relaxed);
            }
            reads.load(Ordering::Relaxed)
        }
    });
    common::eventually("the reader reading", Duration::from_secs(5), async || {
        common::check(reads.load(Ordering::Relaxed), |&n| n > 0)
    })
    .await;
    replicas[0].kill().expect("kill the replica");
    assert!(reader.await.expect("reader") > 0);
    wait_status(paddr, 0, ",down");
    reset_stats(addr(&servers[0]));
    for _ in 0..20 {
        let v: i64 = c.get("k3").await.expect("GET with the replica down");
        assert_eq!(v, 3);
    }
    assert_eq!(command_calls(addr(&servers[0]), "get"), 20);

    // Revived (same port, resyncs from the master): back in reads once healthy.
    replicas[0].restart().expect("restart the replica");
    wait_link_up(addr(&replicas[0]));
    wait_status(paddr, 0, ",up");
    reset_stats(addr(&replicas[0]));
    for _ in 0..20 {
        let v: i64 = c.get("k4").await.expect("GET after the replica came back");
        assert_eq!(v, 4);
    }
    assert_eq!(command_calls(addr(&replicas[0]), "get"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_policy_fails_clearly_without_a_healthy_replica() {
    let servers = standalone_servers(1);
    let mut replicas = replicas_of(&servers[0], 1);
    let proxy = proxy(&servers[0], &replicas, ReadPolicy::Replica);
    let paddr = proxy.local_addr();
    let mut c = common::client(paddr).await;
    write_keys(&mut c, 5).await;
    wait_status(paddr, 0, ",up");
    replicas[0].kill().expect("kill the replica");
    wait_status(paddr, 0, ",down");
    let err = c.get::<_, Option<i64>>("k1").await.unwrap_err();
    assert!(
        err.to_string().contains("no healthy replica"),
        "unexpected error: {err}"
    );
    let _: () = c.set("k9", 9).await.expect("writes still go to the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_reads_over_master_and_replicas() {
    let servers = standalone_servers(1);
    let replicas = replicas_of(&servers[0], 1);
    let proxy = proxy(&servers[0], &replicas, ReadPolicy::RoundRobin);
    let mut c = common::client(proxy.local_addr()).await;
    write_keys(&mut c, 1).await;
    wait_status(proxy.local_addr(), 0, ",up");
    reset_stats(addr(&servers[0]));
    reset_stats(addr(&replicas[0]));
    for _ in 0..40 {
        let _: Option<i64> = c.get("k0").await.expect("GET");
    }
    let (m, r) = (
        command_calls(addr(&servers[0]), "get"),
        command_calls(addr(&replicas[0]), "get"),
    );
    assert_eq!(m + r, 40);
    assert!(m >= 10 && r >= 10, "master {m}, replica {r}");
}

fn node_addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("node address")
}

/// A 3-master cluster with one replica each, and a proxy reading by `policy` (fast health
/// checks) once it has discovered every replica and sees them all up.
async fn cluster_proxy(policy: ReadPolicy) -> (LocalCluster, ProxyHandle) {
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("start the Redis Cluster");
    let mut config = common::proxy_config(cluster.seeds());
    config.backend.read_policy = policy;
    fast_health(&mut config);
    // Replicas still syncing are left out of a discovered table; a refresh adds them.
    config.cluster.refresh_interval_ms = 200;
    let proxy = Proxy::start(config).expect("start slotgate");
    let what = "3 replicas discovered, none down";
    common::eventually(what, Duration::from_secs(10), async || {
        let info = redis_cli(proxy.local_addr(), &["INFO", "proxy"]);
        common::check(info, |i| {
            i.contains("backend_replicas:3") && !i.contains(",down")
        })
    })
    .await;
    (cluster, proxy)
}

/// Wait until every replica has what its master took so far (reads from replicas are then
/// exact), then reset every node's stats.
async fn settle(cluster: &LocalCluster) {
    for node in cluster.nodes() {
        if node.role == Role::Replica {
            wait_link_up(node_addr(node.port));
        }
    }
    for port in cluster.master_ports() {
        let key = key_on(cluster, port, "sync");
        assert_eq!(common::wait_replicated(node_addr(port), 1, &key).await, 1);
    }
    for node in cluster.nodes() {
        reset_stats(node_addr(node.port));
    }
}

/// Calls of `command` on the nodes that were `role` at start-up, summed.
fn calls_on(cluster: &LocalCluster, role: Role, command: &str) -> u64 {
    cluster
        .nodes()
        .iter()
        .filter(|n| n.role == role)
        .map(|n| command_calls(node_addr(n.port), command))
        .sum()
}

/// MOVED replies the proxy met: a read sent to a replica without READONLY, or a write sent to
/// a replica, would be answered MOVED (and then served by the master behind the client's back).
fn moved(proxy: SocketAddr) -> u64 {
    common::info_value(proxy, "stats", "redirects_moved")
        .and_then(|v| v.parse().ok())
        .expect("redirects_moved in INFO stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicas_serve_reads_after_readonly() {
    let (cluster, proxy) = cluster_proxy(ReadPolicy::PreferReplica).await;
    let mut c = common::client(proxy.local_addr()).await;
    write_keys(&mut c, 100).await;
    settle(&cluster).await;
    for i in 0..100 {
        let v: i64 = c.get(format!("k{i}")).await.expect("GET through a replica");
        assert_eq!(v, i);
    }
    let info: String = common::q(&mut c, &["INFO", "proxy"]).await.expect("INFO");
    assert_eq!(
        calls_on(&cluster, Role::Master, "get"),
        0,
        "a read went to a master; {info}"
    );
    assert_eq!(calls_on(&cluster, Role::Replica, "get"), 100);
    // Without READONLY the replicas would have answered MOVED and the reads gone to masters.
    assert_eq!(moved(proxy.local_addr()), 0);
}

/// Write 100 keys through the proxy (all of them must land on masters), let the replicas
/// catch up, then read every key back through the proxy (stats reset in between, so the
/// caller counts only the reads).
async fn write_to_masters_and_read_back(
    cluster: &LocalCluster,
    c: &mut redis::aio::MultiplexedConnection,
) {
    for node in cluster.nodes() {
        reset_stats(node_addr(node.port));
    }
    write_keys(c, 100).await;
    assert_eq!(calls_on(cluster, Role::Master, "set"), 100);
    settle(cluster).await;
    for i in 0..100 {
        let v: i64 = c.get(format!("k{i}")).await.expect("GET through the proxy");
        assert_eq!(v, i);
    }
}

/// `replica` in cluster mode: reads only on replicas, writes on masters; a shard whose replica
/// is down fails its reads clearly instead of reading from its master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replica_policy_reads_only_replicas() {
    let (mut cluster, proxy) = cluster_proxy(ReadPolicy::Replica).await;
    let paddr = proxy.local_addr();
    let mut c = common::client(paddr).await;
    write_to_masters_and_read_back(&cluster, &mut c).await;
    assert_eq!(
        calls_on(&cluster, Role::Master, "get"),
        0,
        "a read went to a master"
    );
    assert_eq!(calls_on(&cluster, Role::Replica, "get"), 100);
    assert_eq!(moved(paddr), 0, "a request was redirected");

    // The replica of one shard dies: once the health checker (or a refresh) has taken it out,
    // that shard's reads fail clearly; the master is not read behind the client's back.
    let master = cluster.master_ports()[0];
    let master_idx = common::node_index(&cluster, master);
    let replica_idx = cluster
        .nodes()
        .iter()
        .position(|n| n.master == Some(master_idx))
        .unwrap();
    let replica = format!("127.0.0.1:{}", cluster.nodes()[replica_idx].port);
    cluster.kill(replica_idx).expect("kill the replica");
    let what = "the dead replica no longer up for reads";
    common::eventually(what, Duration::from_secs(10), async || {
        let info = redis_cli(paddr, &["INFO", "proxy"]);
        common::check(info, |i| !i.contains(&format!("{replica},up")))
    })
    .await;
    reset_stats(node_addr(master));
    let key = key_on(&cluster, master, "k");
    let _: () = c.set(&key, 7).await.expect("writes still go to the master");
    let err = c.get::<_, Option<i64>>(&key).await.unwrap_err();
    let slot = slotgate::slot::Slot::of(key.as_bytes()).get();
    assert!(
        err.to_string()
            .contains(&format!("no healthy replica serves hash slot {slot}")),
        "unexpected error: {err}"
    );
    assert_eq!(
        command_calls(node_addr(master), "get"),
        0,
        "read fell back to the master"
    );
    assert_eq!(command_calls(node_addr(master), "set"), 1);
    // The other shards still read from their replicas.
    let other = key_on(&cluster, cluster.master_ports()[1], "k");
    let _: () = c.set(&other, 8).await.expect("SET");
    common::wait_replicated(
        node_addr(cluster.master_ports()[1]),
        1,
        &key_on(&cluster, cluster.master_ports()[1], "sync"),
    )
    .await;
    let v: i64 = c
        .get(&other)
        .await
        .expect("GET on a shard with its replica");
    assert_eq!(v, 8);
}

/// `round-robin` in cluster mode: reads alternate between masters and replicas, writes go to
/// masters only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_round_robin_spreads_reads_over_masters_and_replicas() {
    let (cluster, proxy) = cluster_proxy(ReadPolicy::RoundRobin).await;
    let mut c = common::client(proxy.local_addr()).await;
    write_to_masters_and_read_back(&cluster, &mut c).await;
    let (m, r) = (
        calls_on(&cluster, Role::Master, "get"),
        calls_on(&cluster, Role::Replica, "get"),
    );
    assert_eq!(m + r, 100);
    assert!(m >= 30 && r >= 30, "masters {m}, replicas {r}");
    let replicas_serving = cluster
        .nodes()
        .iter()
        .filter(|n| n.role == Role::Replica && command_calls(node_addr(n.port), "get") > 0)
        .count();
    assert_eq!(replicas_serving, 3, "every shard's replica takes its turn");
    assert_eq!(moved(proxy.local_addr()), 0, "a request was redirected");
    let info = redis_cli(proxy.local_addr(), &["INFO", "proxy"]);
    assert!(info.contains("master0_read_policy:round-robin"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_read_policy() {
    let servers = standalone_servers(1);
    let replicas = replicas_of(&servers[0], 1);
    let proxy = proxy(&servers[0], &replicas, ReadPolicy::Master);
    let mut c = common::client(proxy.local_addr()).await;
    write_keys(&mut c, 1).await;
    wait_status(proxy.local_addr(), 0, ",up");
    assert_eq!(gets_on(&replicas[0], &mut c).await, 0);
    let mut next = proxy.config();
    next.backend.read_policy = ReadPolicy::PreferReplica;
    next.pools.get_mut("p0").expect("p0").read_policy = None;
    let reloaded = proxy.reload(next).expect("reload");
    assert!(reloaded.table_version.is_some(), "{reloaded:?}");
    assert!(reloaded.not_reloaded.is_empty(), "{reloaded:?}");
    assert_eq!(gets_on(&replicas[0], &mut c).await, 10);
}

/// Reset `node`'s stats, send 10 GETs through `c`, and count those `node` served.
async fn gets_on(node: &RedisServer, c: &mut redis::aio::MultiplexedConnection) -> u64 {
    reset_stats(addr(node));
    for _ in 0..10 {
        let _: Option<i64> = c.get("k0").await.expect("GET");
    }
    command_calls(addr(node), "get")
}
