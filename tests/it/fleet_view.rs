//! A fleet of three slotgate instances (in this process) in front of one Redis Cluster, shown
//! to cluster-aware clients: each instance's CLUSTER SLOTS spreads the slots over the three
//! (`proxy.announce` + `[fleet] peers`), the `redis` crate's and redis-py's cluster clients
//! spread their requests over all of them, and when one instance stops, its peers' checks drop
//! it from their view and both clients go on with the other two; a draining instance leaves
//! its peers' view too. A plain client is served every key by any instance.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::eventually;
use redis::Value;
use slotgate::local_redis::{free_port, ClusterOptions, LocalCluster};
use slotgate::{Proxy, ProxyHandle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Keys each client round writes and reads back.
const KEYS: usize = 300;

/// One instance of the fleet; `None` once stopped.
struct Instance {
    client: SocketAddr,
    proxy: Option<ProxyHandle>,
}

/// Three instances, each announcing its own client address and naming the other two's admin
/// listeners as peers, checked every 100 ms and dropped after 2 failed checks.
fn start_fleet(cluster: &LocalCluster) -> Vec<Instance> {
    let port = || free_port(false).expect("a free port");
    let clients: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], port())))
        .collect();
    let admins: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", port())).collect();
    (0..3)
        .map(|i| {
            let mut config = common::proxy_config(cluster.seeds());
            config.proxy.workers = 1;
            config.proxy.listen = clients[i].to_string();
            config.proxy.announce = clients[i].to_string();
            config.admin.listen = admins[i].clone();
            config.fleet.peers = (0..3)
                .filter(|j| *j != i)
                .map(|j| admins[j].clone())
                .collect();
            config.fleet.check_interval_ms = 100;
            config.fleet.check_timeout_ms = 300;
            config.fleet.failures = 2;
            Instance {
                client: clients[i],
                proxy: Some(Proxy::start(config).expect("start slotgate")),
            }
        })
        .collect()
}

/// The client ports CLUSTER SLOTS at `addr` lists, in slot order, each with its range.
async fn slots_at(addr: SocketAddr) -> Result<Vec<(i64, i64, u16)>, String> {
    let mut conn = common::client(addr).await;
    let reply: Value = common::q(&mut conn, &["CLUSTER", "SLOTS"])
        .await
        .map_err(|e| e.to_string())?;
    let Value::Array(ranges) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    ranges
        .iter()
        .map(|range| match range {
            Value::Array(parts) => match parts.as_slice() {
                [Value::Int(first), Value::Int(last), Value::Array(node)] => {
                    match node.as_slice() {
                        [_, Value::Int(port), ..] => Ok((*first, *last, *port as u16)),
                        _ => Err(format!("a node without a port: {node:?}")),
                    }
                }
                _ => Err(format!("not a slot range: {parts:?}")),
            },
            _ => Err(format!("not a slot range: {range:?}")),
        })
        .collect()
}

/// Wait until every running instance's CLUSTER SLOTS spreads the slots over exactly the
/// running instances, in port order (they all announce 127.0.0.1).
async fn wait_for_view(fleet: &[Instance], within: Duration) {
    let mut live: Vec<u16> = fleet
        .iter()
        .filter(|i| i.proxy.is_some())
        .map(|i| i.client.port())
        .collect();
    live.sort_by_key(|p| p.to_string());
    for instance in fleet.iter().filter(|i| i.proxy.is_some()) {
        let what = format!("{}'s CLUSTER SLOTS lists {live:?}", instance.client);
        eventually(&what, within, async || {
            let slots = slots_at(instance.client).await?;
            let ports: Vec<u16> = slots.iter().map(|s| s.2).collect();
            let covered = slots.first().map(|s| s.0) == Some(0)
                && slots.last().map(|s| s.1) == Some(16383)
                && slots.windows(2).all(|w| w[0].1 + 1 == w[1].0);
            if ports == live && covered {
                Ok(())
            } else {
                Err(format!("{slots:?}"))
            }
        })
        .await;
    }
}

/// Requests each instance has served so far (`None` for a stopped one).
fn served(fleet: &[Instance]) -> Vec<Option<u64>> {
    fleet
        .iter()
        .map(|i| i.proxy.as_ref().map(|p| p.stats().commands_total()))
        .collect()
}

/// Assert every running instance served at least `least` requests between `before` and now.
fn assert_spread(fleet: &[Instance], before: &[Option<u64>], least: u64, who: &str) {
    let after = served(fleet);
    let got: Vec<Option<u64>> = after
        .iter()
        .zip(before)
        .map(|(a, b)| Some(a.as_ref()? - b.as_ref()?))
        .collect();
    for (instance, n) in fleet.iter().zip(&got) {
        if instance.proxy.is_some() {
            assert!(
                n.unwrap_or(0) >= least,
                "{who}: every running instance should serve at least {least} requests; per instance: {got:?}"
            );
        }
    }
    eprintln!("{who}: requests per instance {got:?}");
}

/// SET then GET `KEYS` keys through the `redis` crate's cluster client; the errors it returned.
async fn rust_round(conn: &mut redis::cluster_async::ClusterConnection, tag: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for i in 0..KEYS {
        let (key, value) = (format!("rs:{i}"), format!("{tag}{i}"));
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query_async(conn)
            .await;
        let got: redis::RedisResult<String> = redis::cmd("GET").arg(&key).query_async(conn).await;
        match (set, got) {
            (Ok(()), Ok(got)) if got == value => {}
            (set, got) => errors.push(format!("{key}: SET {set:?}, GET {got:?}")),
        }
    }
    errors
}

/// The next `roundN ERRORS NODE…` line of the redis-py script, with its error lines.
async fn py_round(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (usize, Vec<String>, Vec<String>) {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("redis-py answers within a minute")
        .expect("read redis-py's output")
        .expect("redis-py printed a round");
    let mut words = line.split_whitespace().skip(1);
    let errors: usize = words
        .next()
        .and_then(|n| n.parse().ok())
        .expect("an error count");
    let nodes = words.map(str::to_string).collect();
    let mut shown = Vec::new();
    for _ in 0..errors.min(5) {
        if let Ok(Some(l)) = lines.next_line().await {
            shown.push(l);
        }
    }
    (errors, nodes, shown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_clients_spread_over_the_fleet_and_survive_a_stopped_instance() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis-py/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-python (scripts/test does)",
        python.display()
    );
    let cluster = LocalCluster::start(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    })
    .expect("start the Redis Cluster");
    let mut fleet = start_fleet(&cluster);
    wait_for_view(&fleet, Duration::from_secs(10)).await;
    // The admin listener shows the same view, and what peers' checks ask.
    let admin = |i: usize| fleet[i].proxy.as_ref().unwrap().admin_addr().unwrap();
    let view = common::http_json(admin(2), "/fleet");
    let shown: Vec<&str> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["announce"].as_str().unwrap())
        .collect();
    let mut all: Vec<String> = fleet.iter().map(|i| i.client.to_string()).collect();
    all.sort();
    assert_eq!(shown, all, "{view}");
    let me = common::http_json(admin(1), "/fleet/self");
    assert_eq!(me["announce"], fleet[1].client.to_string());
    assert_eq!(me["draining"], false);

    // A plain client is served every key by one instance: no MOVED for a slot "owned" by
    // another instance.
    let mut plain = common::client(fleet[0].client).await;
    for i in 0..200 {
        let key = format!("plain:{i}");
        let _: () = common::q(&mut plain, &["SET", &key, "v"]).await.unwrap();
        let got: String = common::q(&mut plain, &["GET", &key]).await.unwrap();
        assert_eq!(got, "v");
    }

    // (a) The `redis` crate's cluster client, seeded with one instance, uses all three.
    let before = served(&fleet);
    let seed = format!("redis://{}/", fleet[0].client);
    let mut rust_client = redis::cluster::ClusterClient::new(vec![seed])
        .unwrap()
        .get_async_connection()
        .await
        .expect("the cluster client connects to the fleet");
    let errors = rust_round(&mut rust_client, "a").await;
    assert!(
        errors.is_empty(),
        "redis crate, before the stop: {errors:?}"
    );
    // 600 requests spread by slot over three equal shares: about 200 each.
    assert_spread(&fleet, &before, 100, "redis crate");

    // (b) redis-py's cluster client the same.
    let before = served(&fleet);
    let mut py = tokio::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fleet_cluster_client.py"))
        .arg(fleet[0].client.to_string())
        .arg(KEYS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python");
    let mut py_out = BufReader::new(py.stdout.take().unwrap()).lines();
    let (errors, nodes, shown) = py_round(&mut py_out).await;
    assert_eq!(errors, 0, "redis-py, before the stop: {shown:?}");
    assert_eq!(nodes, all, "redis-py knows the three instances");
    assert_spread(&fleet, &before, 100, "redis-py");

    // (c) One instance stops; its peers' checks drop it from their view.
    let stopped = fleet[1].client;
    let handle = fleet[1].proxy.take().unwrap();
    let at = Instant::now();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    wait_for_view(&fleet, Duration::from_secs(5)).await;
    eprintln!(
        "the peers' views dropped {stopped} {} ms after its shutdown",
        at.elapsed().as_millis()
    );

    // Both clients go on with the other two, with no error reaching the application.
    let before = served(&fleet);
    let errors = rust_round(&mut rust_client, "b").await;
    assert!(errors.is_empty(), "redis crate, after the stop: {errors:?}");
    assert_spread(&fleet, &before, 100, "redis crate after the stop");

    let before = served(&fleet);
    let mut stdin = py.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let (errors, nodes, shown) = py_round(&mut py_out).await;
    assert_eq!(errors, 0, "redis-py, after the stop: {shown:?}");
    assert!(
        !nodes.contains(&stopped.to_string()) && nodes.len() == 2,
        "redis-py dropped the stopped instance: {nodes:?}"
    );
    assert_spread(&fleet, &before, 100, "redis-py after the stop");
    let status = tokio::time::timeout(Duration::from_secs(10), py.wait())
        .await
        .expect("redis-py exits")
        .unwrap();
    assert!(status.success());

    // A draining instance still answers its peers' checks, saying so: it leaves their view.
    let draining = fleet[2].proxy.take().unwrap();
    let draining = tokio::task::spawn_blocking(move || {
        draining.drain(Duration::from_secs(5));
        draining
    })
    .await
    .unwrap();
    let last = fleet[0].client;
    eventually(
        "the last instance's CLUSTER SLOTS lists itself alone",
        Duration::from_secs(5),
        async || {
            let slots = slots_at(last).await?;
            if slots == [(0, 16383, last.port())] {
                Ok(())
            } else {
                Err(format!("{slots:?}"))
            }
        },
    )
    .await;
    let me = common::http_json(draining.admin_addr().unwrap(), "/fleet/self");
    assert_eq!(me["draining"], true);
}
