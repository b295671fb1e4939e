//! Nodes known by host name, resolved by the system resolver for real: names this module adds
//! to `/etc/hosts` (pointing at 127.0.0.x addresses) and moves from one address to another,
//! as a Kubernetes pod that comes back on a new IP under the same DNS name.
//!
//! - a Redis 7 cluster whose nodes announce hostnames (`cluster-announce-hostname`,
//!   `cluster-preferred-endpoint-type hostname`: names in MOVED/ASK and CLUSTER SHARDS/SLOTS),
//!   one master restarted on a new address under the same name under load: the proxy follows
//!   with no client error outside the restart window and every acknowledged write readable;
//! - the name watch (`backend.resolve_interval_ms`): a name moved to another live server while
//!   the old one still answers — the proxy's connections move over;
//! - a name that does not resolve: the proxy runs, requests get a clear error, one log line,
//!   and the name is followed as soon as it resolves.
//!
//! Editing `/etc/hosts` needs root (CI containers run as root): when it is not writable each
//! test says so and returns (`common::hosts`).

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::Hosts;
use common::load::{self, Load};
use slotgate::local_redis::{ClusterOptions, LocalCluster, RedisServer, ServerOptions};
use slotgate::Proxy;

/// A `redis-server` bound to `ip`:`port` only, killed on drop (the launcher's servers always
/// listen on 127.0.0.1, where this one's port is taken by another server).
struct BoundServer(Child);

impl BoundServer {
    fn start(ip: &str, port: u16) -> BoundServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", ip, "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = BoundServer(child);
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        common::eventually_blocking(
            "the bound server to answer",
            Duration::from_secs(10),
            || {
                std::net::TcpStream::connect(addr)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        server
    }
}

impl Drop for BoundServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn set(c: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) -> String {
    match redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<String>(c)
        .await
    {
        Ok(ok) => ok,
        Err(e) => format!("error: {e}"),
    }
}

async fn get(addr: SocketAddr, key: &str) -> Option<String> {
    let mut c = common::client(addr).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// The local addresses (`laddr`) of the clients of the server on 127.0.0.1:`port` other than
/// the `redis-cli` asking: which of its addresses the proxy's connections went to.
fn client_laddrs(port: u16) -> Vec<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut laddrs: Vec<String> = common::redis_cli(addr, &["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("laddr=")))
        .map(String::from)
        .collect();
    laddrs.sort();
    laddrs.dedup();
    laddrs
}

/// The name of cluster node `i` in these tests.
fn node_name(i: usize) -> String {
    format!("slotgate-test-node{i}")
}

/// `redis-server` arguments that make node `i` listen on 127.0.0.1 (the launcher's probes)
/// and `ip`, and announce its name as its preferred endpoint.
fn named_node_args(i: usize, ip: &str) -> Vec<String> {
    let name = node_name(i);
    ["--bind", "127.0.0.1", ip]
        .into_iter()
        .chain(["--cluster-announce-hostname", &name])
        .chain(["--cluster-preferred-endpoint-type", "hostname"])
        .map(String::from)
        .collect()
}

/// The distinct test names CLUSTER SLOTS on 127.0.0.1:`port` gives as endpoints.
fn slot_hosts(port: u16) -> Vec<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut names: Vec<String> = common::redis_cli(addr, &["CLUSTER", "SLOTS"])
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("slotgate-test-node"))
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_back_on_a_new_address_under_its_name_is_followed_under_load() {
    let Some(mut hosts) = Hosts::open("hostnames cluster restart") else {
        return;
    };
    let _serial = load::serial().await;
    let mut cluster = LocalCluster::start(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    })
    .expect("start the Redis Cluster");
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    // Each node listens on 127.0.0.2i too and announces its name, as a StatefulSet pod would.
    for (i, &port) in ports.iter().enumerate() {
        let ip = format!("127.0.0.2{i}");
        hosts.set(&node_name(i), &ip);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let bind = format!("127.0.0.1 {ip}");
        for (key, value) in [
            ("bind", bind.as_str()),
            ("cluster-announce-hostname", &node_name(i)),
            ("cluster-preferred-endpoint-type", "hostname"),
        ] {
            let said = common::redis_cli(addr, &["CONFIG", "SET", key, value]);
            assert_eq!(said.trim(), "OK", "CONFIG SET {key} {value}");
        }
    }
    common::eventually_blocking(
        "every node to name every master by hostname in CLUSTER SLOTS",
        Duration::from_secs(10),
        || {
            let all: Vec<Vec<String>> = ports.iter().map(|&p| slot_hosts(p)).collect();
            common::check(all, |all| all.iter().all(|names| names.len() == 3))
        },
    );

    let mut config = common::proxy_config(vec![format!("{}:{}", node_name(0), ports[0])]);
    config.backend.resolve_interval_ms = 200;
    config.backend.request_timeout_ms = 5_000;
    let proxy = Proxy::start(config).expect("start slotgate on a seed known by name");
    let addr = proxy.local_addr();
    {
        let table = proxy.topology().table();
        let mut masters: Vec<String> = table
            .shards()
            .iter()
            .map(|s| s.master.to_string())
            .collect();
        masters.sort();
        let want: Vec<String> = (0..3)
            .map(|i| format!("{}:{}", node_name(i), ports[i]))
            .collect();
        assert_eq!(masters, want, "the table knows the masters by name");
    }

    let keys: Vec<String> = (0..600).map(|i| format!("hostnames:{i}")).collect();
    let load = Load::start(addr, 12, keys);
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Node 1 goes away (saving its data, as a pod with a volume would) and comes back
    // listening on 127.0.0.31 under the same name; then DNS follows.
    let down = Instant::now();
    let node1 = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let _ = common::redis_cli(node1, &["SHUTDOWN", "SAVE"]);
    cluster
        .restart_with(1, named_node_args(1, "127.0.0.31"))
        .expect("restart node 1 on its new address");
    hosts.set(&node_name(1), "127.0.0.31");
    cluster
        .wait_ok(Duration::from_secs(20))
        .expect("the cluster settles with node 1 back");
    let up = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let report = load.stop().await;
    eprintln!("restart window {:?}; {}", up - down, report.summary());

    report.assert_no_redirects();
    report.assert_progress();
    // Errors only while node 1 was away (requests sent then may fail; the default
    // `cluster.when_node_down = hold` keeps most waiting for it).
    let outside: Vec<String> = report
        .errors
        .iter()
        .filter(|f| f.started < down || f.at > up + Duration::from_millis(500))
        .map(|f| format!("{f} (at +{:?} after the restart began)", f.at - down))
        .collect();
    assert!(
        outside.is_empty(),
        "errors outside the restart window: {outside:#?}"
    );
    load::verify_acked(addr, &report).await;

    // Requests for node 1's slots reach it at its new address.
    let key = common::key_on(&cluster, ports[1], "after-move");
    let mut c = common::client(addr).await;
    assert_eq!(set(&mut c, &key, "v").await, "OK");
    assert_eq!(get(addr, &key).await.as_deref(), Some("v"));
    let direct = format!("redis://127.0.0.31:{}/", ports[1]);
    let mut node = redis::Client::open(direct)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("node 1 on its new address");
    let there: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut node)
        .await
        .unwrap();
    assert_eq!(there.as_deref(), Some("v"));
    // Through the name: every connection the proxy has to node 1 went to its new address.
    assert_eq!(
        client_laddrs(ports[1]),
        vec![format!("127.0.0.31:{}", ports[1])]
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_follow_a_name_moved_to_another_live_server() {
    let Some(mut hosts) = Hosts::open("hostnames name watch") else {
        return;
    };
    let name = "slotgate-test-pool";
    // The old server still answers on 127.0.0.41 after the name moves to 127.0.0.42: only the
    // name watch can tell the proxy's connections to move.
    let old = RedisServer::start(ServerOptions {
        extra_args: vec!["--bind".into(), "127.0.0.1".into(), "127.0.0.41".into()],
        ..ServerOptions::default()
    })
    .expect("start the old server");
    let port = old.port();
    let new = BoundServer::start("127.0.0.42", port);
    hosts.set(name, "127.0.0.41");

    let mut config = common::base_config();
    config.pools.insert(
        "a".into(),
        slotgate::config::PoolConfig {
            master: format!("{name}:{port}"),
            ..Default::default()
        },
    );
    config.backend.resolve_interval_ms = 100;
    let proxy = Proxy::start(config).expect("start slotgate on a pool master known by name");
    let addr = proxy.local_addr();
    let mut c = common::client(addr).await;
    assert_eq!(set(&mut c, "k-before", "1").await, "OK");
    let old_addr = SocketAddr::from(([127, 0, 0, 41], port));
    let new_addr = SocketAddr::from(([127, 0, 0, 42], port));
    assert_eq!(
        common::redis_cli(old_addr, &["GET", "k-before"]).trim(),
        "1"
    );

    hosts.set(name, "127.0.0.42");
    // The same client, its connection to the proxy kept: its writes land on the new server.
    let moved = common::eventually(
        "writes to land on the name's new address",
        Duration::from_secs(5),
        || {
            let mut c = c.clone();
            async move {
                let key = format!("k-{}", Instant::now().elapsed().as_nanos());
                let said = set(&mut c, &key, "2").await;
                let there = common::redis_cli(new_addr, &["GET", &key]);
                common::check((said, there), |(said, there)| {
                    said == "OK" && there.trim() == "2"
                })
            }
        },
    )
    .await;
    drop(moved);
    // The connections to the old address are closed (they had nothing left to answer).
    let old_port = old.port();
    common::eventually_blocking(
        "the old server to have no proxy connection",
        Duration::from_secs(5),
        || common::check(client_laddrs(old_port), Vec::is_empty),
    );
    // And stay there.
    for i in 0..20 {
        let key = format!("k-after-{i}");
        assert_eq!(set(&mut c, &key, "3").await, "OK");
        assert_eq!(common::redis_cli(new_addr, &["GET", &key]).trim(), "3");
        assert_eq!(common::redis_cli(old_addr, &["EXISTS", &key]).trim(), "0");
    }
    drop(proxy);
    drop(new);
}

#[test]
fn a_name_that_does_not_resolve_is_a_clear_error_and_followed_once_it_does() {
    let Some(mut hosts) = Hosts::open("hostnames unresolvable") else {
        return;
    };
    let servers = common::standalone_servers(1);
    let port = servers[0].port();
    let name = "slotgate-test-later";
    let master = format!("{name}:{port}");
    let (child, addr, log) = common::binary::spawn_slotgate(
        &["--workers", "1"],
        &[
            ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
            ("SLOTGATE_BACKEND__RESOLVE_INTERVAL_MS", "100"),
            ("SLOTGATE_HEALTH__INTERVAL_MS", "0"),
        ],
    );
    let reply = common::redis_cli(addr, &["SET", "k", "v"]);
    assert!(
        reply.contains(&format!("slotgate: backend {master} does not resolve (")),
        "{reply}"
    );
    // Several intervals pass: one line about the name, not one per look.
    std::thread::sleep(Duration::from_millis(600));
    let mut child = common::binary::KillOnDrop(child);
    let said = |what: &str| {
        log.matching(what)
            .iter()
            .filter(|l| l.contains(name))
            .count()
    };
    assert_eq!(
        said("backend name does not resolve"),
        1,
        "{:#?}",
        log.snapshot()
    );

    hosts.set(name, "127.0.0.1");
    common::eventually_blocking("the name to be followed", Duration::from_secs(5), || {
        common::check(common::redis_cli(addr, &["SET", "k", "v"]), |r| {
            r.trim() == "OK"
        })
    });
    assert_eq!(
        said("backend name resolves again"),
        0,
        "never resolved before: no 'again'"
    );
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_seed_name_to_resolve_within_cluster_startup_wait() {
    let Some(mut hosts) = Hosts::open("hostnames start-up wait") else {
        return;
    };
    let node = common::lone_cluster_node(0, 16383).await;
    let seed = format!("slotgate-test-seed:{}", node.port());

    // Never resolves: the start-up error comes once the wait is over, naming the cause.
    let mut config = common::proxy_config(vec![seed.clone()]);
    config.cluster.startup_wait_ms = 400;
    let started = Instant::now();
    let error = tokio::task::spawn_blocking(move || Proxy::start(config).err())
        .await
        .unwrap()
        .expect("no seed ever resolves: start-up fails");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("does not resolve"), "{error}");

    // Resolves half a second into the wait: start-up succeeds.
    let mut config = common::proxy_config(vec![seed]);
    config.cluster.startup_wait_ms = 10_000;
    let starting = tokio::task::spawn_blocking(move || Proxy::start(config));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!starting.is_finished(), "start-up waits for the seed");
    hosts.set("slotgate-test-seed", "127.0.0.1");
    let proxy = tokio::time::timeout(Duration::from_secs(10), starting)
        .await
        .expect("start-up ends once the seed resolves")
        .unwrap()
        .expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    assert_eq!(set(&mut c, "k", "v").await, "OK");
    drop(proxy);
}
