//! A fleet of three slotgate instances in front of one Redis Cluster, shown to cluster-aware
//! clients: each instance's CLUSTER SLOTS spreads the slots over the three (`proxy.announce` +
//! `[fleet] peers`), the `redis` crate's and redis-py's cluster clients spread their requests
//! over all of them, and when one instance stops — gracefully, or killed with SIGKILL (no
//! drain, no goodbye: the `slotgate` binary as a child process) — its peers' checks drop it
//! from their CLUSTER SLOTS / SHARDS / NODES and both clients go on with the other two; a
//! draining instance leaves its peers' view too. A plain client is served every key by any
//! instance.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::binary::{spawn_slotgate_on, KillOnDrop};
use common::eventually;
use redis::Value;
use slotgate::config::Config;
use slotgate::local_redis::{free_port, ClusterOptions, LocalCluster};
use slotgate::{Proxy, ProxyHandle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Keys each client round writes and reads back.
const KEYS: usize = 300;

/// Checks of the peers: every 100 ms, 300 ms each, out after 2 failures in a row.
const CHECK_INTERVAL_MS: u64 = 100;
const CHECK_TIMEOUT_MS: u64 = 300;
const FAILURES: u32 = 2;

/// How an instance of the fleet runs.
enum Running {
    /// In this process.
    Here(Box<ProxyHandle>),
    /// The `slotgate` binary, so the test can kill it with SIGKILL.
    Child(KillOnDrop),
}

/// One instance of the fleet; `running` is `None` once stopped.
struct Instance {
    client: SocketAddr,
    admin: SocketAddr,
    running: Option<Running>,
}

/// Three instances, each announcing its own client address and naming the other two's admin
/// listeners as peers, checked every 100 ms and dropped after 2 failed checks; instance
/// `child` (if any) runs as the `slotgate` binary with the same configuration.
fn start_fleet(cluster: &LocalCluster, child: Option<usize>) -> Vec<Instance> {
    let port = || free_port(false).expect("a free port");
    let clients: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], port())))
        .collect();
    let admins: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], port())))
        .collect();
    (0..3)
        .map(|i| {
            let mut config = common::proxy_config(cluster.seeds());
            config.proxy.workers = 1;
            config.proxy.listen = clients[i].to_string();
            config.proxy.announce = clients[i].to_string();
            config.admin.listen = admins[i].to_string();
            config.fleet.peers = (0..3)
                .filter(|j| *j != i)
                .map(|j| admins[j].to_string())
                .collect();
            config.fleet.check_interval_ms = CHECK_INTERVAL_MS;
            config.fleet.check_timeout_ms = CHECK_TIMEOUT_MS;
            config.fleet.failures = FAILURES;
            let running = if child == Some(i) {
                Running::Child(spawn_child(config))
            } else {
                Running::Here(Box::new(Proxy::start(config).expect("start slotgate")))
            };
            Instance {
                client: clients[i],
                admin: admins[i],
                running: Some(running),
            }
        })
        .collect()
}

/// The `slotgate` binary run with `config` (written to a file), once it serves.
fn spawn_child(mut config: Config) -> KillOnDrop {
    // Its "ready" line is an info line.
    config.log.level = "info".into();
    let file = std::env::temp_dir().join(format!(
        "slotgate-fleet-{}-{}.toml",
        std::process::id(),
        config.proxy.listen.replace([':', '.'], "-")
    ));
    std::fs::write(&file, toml::to_string(&config).expect("config as TOML")).unwrap();
    let listen = config.proxy.listen.clone();
    let (child, _, _log) = spawn_slotgate_on(&listen, &["--config", file.to_str().unwrap()], &[]);
    std::fs::remove_file(&file).ok();
    KillOnDrop(child)
}

/// The client ports CLUSTER SLOTS at `addr` lists, in slot order, each with its range.
pub(crate) async fn slots_at(addr: SocketAddr) -> Result<Vec<(i64, i64, u16)>, String> {
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
        .filter(|i| i.running.is_some())
        .map(|i| i.client.port())
        .collect();
    live.sort_by_key(|p| p.to_string());
    for instance in fleet.iter().filter(|i| i.running.is_some()) {
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

/// Requests each instance has served so far (`None` for a stopped one), from its admin
/// listener's `/stats`.
fn served(fleet: &[Instance]) -> Vec<Option<u64>> {
    fleet
        .iter()
        .map(|i| {
            i.running.as_ref()?;
            common::http_json(i.admin, "/stats")["commands_total"].as_u64()
        })
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
        if instance.running.is_some() {
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

/// The fleet's cluster-aware clients: the `redis` crate's, and redis-py's (a child process,
/// between its two rounds).
struct Clients {
    rust: redis::cluster_async::ClusterConnection,
    py: tokio::process::Child,
    py_out: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// A Redis Cluster of three masters for the fleet to front.
fn start_cluster() -> LocalCluster {
    LocalCluster::start(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    })
    .expect("start the Redis Cluster")
}

/// Both cluster clients, seeded with instance 0, run a first round with no error, spread over
/// every instance of the fleet.
async fn clients_use_every_instance(fleet: &[Instance]) -> Clients {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis-py/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-python (scripts/test does)",
        python.display()
    );
    let mut all: Vec<String> = fleet.iter().map(|i| i.client.to_string()).collect();
    all.sort();

    // (a) The `redis` crate's cluster client, seeded with one instance, uses all three.
    let before = served(fleet);
    let seed = format!("redis://{}/", fleet[0].client);
    let mut rust = redis::cluster::ClusterClient::new(vec![seed])
        .unwrap()
        .get_async_connection()
        .await
        .expect("the cluster client connects to the fleet");
    let errors = rust_round(&mut rust, "a").await;
    assert!(
        errors.is_empty(),
        "redis crate, before the stop: {errors:?}"
    );
    // 600 requests spread by slot over three equal shares: about 200 each.
    assert_spread(fleet, &before, 100, "redis crate");

    // (b) redis-py's cluster client the same.
    let before = served(fleet);
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
    assert_spread(fleet, &before, 100, "redis-py");
    Clients { rust, py, py_out }
}

/// After instance `stopped` left the others' view, both clients go on with the other two,
/// with no error reaching the application.
async fn clients_go_on_without(fleet: &[Instance], mut clients: Clients, stopped: SocketAddr) {
    let before = served(fleet);
    let errors = rust_round(&mut clients.rust, "b").await;
    assert!(errors.is_empty(), "redis crate, after the stop: {errors:?}");
    assert_spread(fleet, &before, 100, "redis crate after the stop");

    let before = served(fleet);
    let mut stdin = clients.py.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let (errors, nodes, shown) = py_round(&mut clients.py_out).await;
    assert_eq!(errors, 0, "redis-py, after the stop: {shown:?}");
    assert!(
        !nodes.contains(&stopped.to_string()) && nodes.len() == 2,
        "redis-py dropped the stopped instance: {nodes:?}"
    );
    assert_spread(fleet, &before, 100, "redis-py after the stop");
    let status = tokio::time::timeout(Duration::from_secs(10), clients.py.wait())
        .await
        .expect("redis-py exits")
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_clients_spread_over_the_fleet_and_survive_a_stopped_instance() {
    let cluster = start_cluster();
    let mut fleet = start_fleet(&cluster, None);
    wait_for_view(&fleet, Duration::from_secs(10)).await;
    // The admin listener shows the same view, and what peers' checks ask.
    let view = common::http_json(fleet[2].admin, "/fleet");
    let shown: Vec<&str> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["announce"].as_str().unwrap())
        .collect();
    let mut all: Vec<String> = fleet.iter().map(|i| i.client.to_string()).collect();
    all.sort();
    assert_eq!(shown, all, "{view}");
    let me = common::http_json(fleet[1].admin, "/fleet/self");
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

    let clients = clients_use_every_instance(&fleet).await;

    // One instance stops; its peers' checks drop it from their view.
    let stopped = fleet[1].client;
    let Some(Running::Here(handle)) = fleet[1].running.take() else {
        unreachable!("every instance runs in this process")
    };
    let at = Instant::now();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    wait_for_view(&fleet, Duration::from_secs(5)).await;
    eprintln!(
        "the peers' views dropped {stopped} {} ms after its shutdown",
        at.elapsed().as_millis()
    );
    clients_go_on_without(&fleet, clients, stopped).await;

    // A draining instance still answers its peers' checks, saying so: it leaves their view.
    let Some(Running::Here(draining)) = fleet[2].running.take() else {
        unreachable!("every instance runs in this process")
    };
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

/// The client ports CLUSTER SHARDS and CLUSTER NODES at `addr` list (sorted).
async fn shards_and_nodes_at(addr: SocketAddr) -> (Vec<u16>, Vec<u16>) {
    let mut conn = common::client(addr).await;
    let shards: Value = common::q(&mut conn, &["CLUSTER", "SHARDS"]).await.unwrap();
    let mut shard_ports = Vec::new();
    let Value::Array(shards) = shards else {
        panic!("CLUSTER SHARDS: {shards:?}")
    };
    for shard in shards {
        // ["slots", [...], "nodes", [[ "id", …, "port", N, … ]]]
        let Value::Array(fields) = shard else {
            panic!("a shard: {shard:?}")
        };
        let Some(Value::Array(nodes)) = fields.get(3) else {
            panic!("a shard's nodes: {fields:?}")
        };
        for node in nodes {
            let Value::Array(node) = node else {
                panic!("a node: {node:?}")
            };
            let port = node
                .chunks(2)
                .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == b"port"))
                .and_then(|kv| match &kv[1] {
                    Value::Int(port) => Some(*port as u16),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("a node without a port: {node:?}"));
            shard_ports.push(port);
        }
    }
    let nodes: String = common::q(&mut conn, &["CLUSTER", "NODES"]).await.unwrap();
    // `ID IP:PORT@BUS FLAGS …`
    let mut node_ports: Vec<u16> = nodes
        .lines()
        .map(|line| {
            let addr = line.split(' ').nth(1).expect("an address");
            let port = addr.split('@').next().unwrap().rsplit(':').next().unwrap();
            port.parse().expect("a port")
        })
        .collect();
    shard_ports.sort_unstable();
    node_ports.sort_unstable();
    (shard_ports, node_ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_with_sigkill_leaves_the_view_and_the_clients_go_on() {
    let cluster = start_cluster();
    // Instance 1 is the slotgate binary: SIGKILL ends it with no drain and no goodbye.
    let mut fleet = start_fleet(&cluster, Some(1));
    wait_for_view(&fleet, Duration::from_secs(10)).await;
    let mut ports: Vec<u16> = fleet.iter().map(|i| i.client.port()).collect();
    ports.sort_unstable();
    assert_eq!(
        shards_and_nodes_at(fleet[0].client).await,
        (ports.clone(), ports)
    );
    let clients = clients_use_every_instance(&fleet).await;

    let killed = fleet[1].client;
    let Some(Running::Child(mut child)) = fleet[1].running.take() else {
        unreachable!("instance 1 is a child process")
    };
    let at = Instant::now();
    child.0.kill().expect("SIGKILL"); // std's kill is SIGKILL
    child.0.wait().unwrap();
    // Out after FAILURES failed checks (refused at once: the port is closed), so within
    // FAILURES check intervals plus one check's time; a second on top for a loaded machine.
    let bound =
        Duration::from_millis(u64::from(FAILURES) * CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS + 1_000);
    wait_for_view(&fleet, bound).await;
    eprintln!(
        "the peers' views dropped {killed} {} ms after its SIGKILL",
        at.elapsed().as_millis()
    );
    let mut left: Vec<u16> = [0, 2].map(|i| fleet[i].client.port()).to_vec();
    left.sort_unstable();
    for i in [0, 2] {
        assert_eq!(
            shards_and_nodes_at(fleet[i].client).await,
            (left.clone(), left.clone()),
            "CLUSTER SHARDS / NODES at {}",
            fleet[i].client
        );
    }
    clients_go_on_without(&fleet, clients, killed).await;
}
