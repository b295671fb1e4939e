//! The local Redis launcher (`slotgate::local_redis`) against real `redis-server` processes: a cluster
//! comes up complete and consistent with our slot hashing, nodes can be killed and restarted, and
//! nothing is left running after drop. And the test helpers' waits: they fail when they should.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::Commands;
use slotgate::local_redis::{
    ClusterOptions, LocalCluster, LocalRedisError, RedisServer, Role, ServerOptions,
};
use slotgate::slot::Slot;

/// Every test must finish well within this.
const TEST_BUDGET: Duration = Duration::from_secs(20);

fn conn(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

/// True while a process with this pid exists (zombies included; ours are reaped).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// ~200 random keys over an alphabet rich in `{` and `}`, plus explicit hash-tag keys.
fn random_keys() -> Vec<Vec<u8>> {
    let mut rng = rand::thread_rng();
    let alphabet = b"ab{}{}xyz019:_";
    let mut keys: Vec<Vec<u8>> = (0..150)
        .map(|_| {
            let len = rng.gen_range(0..20);
            (0..len)
                .map(|_| {
                    if rng.gen_bool(0.1) {
                        rng.gen()
                    } else {
                        alphabet[rng.gen_range(0..alphabet.len())]
                    }
                })
                .collect()
        })
        .collect();
    for i in 0..50 {
        let id = rng.gen_range(0..1_000_000);
        keys.push(match i % 3 {
            0 => format!("{{user:{id}}}.followers").into_bytes(),
            1 => format!("pre{{{id}}}post{{x}}").into_bytes(),
            _ => format!("{{}}{{{id}}}").into_bytes(),
        });
    }
    keys
}

#[test]
fn cluster_starts_complete_and_agrees_with_our_slot_hashing() {
    let started = Instant::now();
    let cluster = LocalCluster::start(ClusterOptions::default()).unwrap();
    eprintln!("3+3 cluster ready in {:?}", started.elapsed());

    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    assert_eq!(cluster.seeds().len(), 6);
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    for node in nodes {
        assert_eq!(node.id.len(), 40, "node id {:?}", node.id);
        match node.role {
            Role::Master => assert_eq!(node.master, None),
            Role::Replica => {
                let m = node.master.unwrap();
                assert_eq!(nodes[m].role, Role::Master);
            }
        }
    }
    for (i, m) in nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::Master)
    {
        let replicas = nodes.iter().filter(|n| n.master == Some(i)).count();
        assert_eq!(replicas, 1, "master {} has {replicas} replicas", m.port);
    }

    // Every slot has an owner among the masters, and the nodes agree.
    for slot in 0..16384 {
        let port = cluster.port_of_slot(slot).unwrap();
        assert!(masters.contains(&port), "slot {slot} on non-master {port}");
    }
    assert_eq!(cluster.port_of_slot(16384), None);
    for seed in cluster.seeds() {
        let port: u16 = seed.rsplit(':').next().unwrap().parse().unwrap();
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut conn(port))
            .unwrap();
        assert!(info.contains("cluster_state:ok"), "{seed}: {info}");
        assert!(info.contains("cluster_slots_ok:16384"), "{seed}: {info}");
    }

    // CLUSTER KEYSLOT agrees with Slot::of, and the start-up slot map routes writes correctly.
    let keys = random_keys();
    let mut c = conn(masters[0]);
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key.as_slice());
    }
    let slots: Vec<u16> = pipe.query(&mut c).unwrap();
    for (key, slot) in keys.iter().zip(&slots) {
        assert_eq!(
            Slot::of(key).get(),
            *slot,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
    for key in keys.iter().take(20) {
        let owner = cluster.port_of_slot(Slot::of(key).get()).unwrap();
        let () = conn(owner).set(key.as_slice(), "v").unwrap();
    }
    assert!(
        started.elapsed() < TEST_BUDGET,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn killed_master_restarts_and_everything_is_gone_after_drop() {
    let started = Instant::now();
    let mut cluster = LocalCluster::start(ClusterOptions::default()).unwrap();
    let dir = cluster.dir().to_path_buf();
    let idx = cluster
        .nodes()
        .iter()
        .position(|n| n.role == Role::Master)
        .unwrap();
    let port = cluster.nodes()[idx].port;
    let old_pid = cluster.pid(idx).unwrap();

    cluster.kill(idx).unwrap();
    assert_eq!(cluster.pid(idx), None);
    assert!(
        !process_exists(old_pid),
        "killed node {old_pid} still exists"
    );
    assert!(dir.join(format!("node-{idx}/nodes.conf")).exists());
    cluster.kill(idx).unwrap(); // idempotent

    cluster.restart(idx).unwrap();
    let t = Instant::now();
    cluster.wait_ok(Duration::from_secs(15)).unwrap();
    eprintln!("restarted master settled in {:?}", t.elapsed());
    let pong: String = redis::cmd("PING").query(&mut conn(port)).unwrap();
    assert_eq!(pong, "PONG");
    assert!(matches!(
        cluster.kill(99),
        Err(LocalRedisError::NoSuchNode { idx: 99, count: 6 })
    ));

    let pids: Vec<u32> = (0..cluster.nodes().len())
        .map(|i| cluster.pid(i).unwrap())
        .collect();
    drop(cluster);
    for pid in pids {
        assert!(!process_exists(pid), "node {pid} survived drop");
    }
    assert!(!dir.exists(), "temp dir {} not removed", dir.display());
    assert!(
        started.elapsed() < TEST_BUDGET,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn wait_ok_waits_for_failover_and_the_old_master_rejoins() {
    let started = Instant::now();
    let opts = ClusterOptions {
        node_timeout_ms: 1000,
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(opts).unwrap();
    let idx = cluster
        .nodes()
        .iter()
        .position(|n| n.role == Role::Master)
        .unwrap();
    let replica_port = cluster
        .nodes()
        .iter()
        .find(|n| n.master == Some(idx))
        .unwrap()
        .port;

    cluster.kill(idx).unwrap();
    cluster.wait_ok(Duration::from_secs(10)).unwrap();
    let role: String = redis::cmd("ROLE")
        .query::<Vec<redis::Value>>(&mut conn(replica_port))
        .map(|v| match &v[0] {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        })
        .unwrap();
    assert_eq!(role, "master", "replica was not promoted");

    cluster.restart(idx).unwrap();
    cluster.wait_ok(Duration::from_secs(10)).unwrap();
    eprintln!("failover + rejoin test took {:?}", started.elapsed());
    assert!(
        started.elapsed() < TEST_BUDGET,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn standalone_server_kill_and_restart() {
    use redis::AsyncCommands;

    let started = Instant::now();
    let mut server = RedisServer::start(ServerOptions::default()).unwrap();
    let dir = server.dir().to_path_buf();
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    let client = redis::Client::open(format!("redis://{}/", server.addr())).unwrap();
    let mut c = client.get_multiplexed_tokio_connection().await.unwrap();
    let () = c.set("k", "v").await.unwrap();

    let old_pid = server.pid().unwrap();
    server.kill().unwrap();
    assert!(!process_exists(old_pid));
    assert!(redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .is_err());

    server.restart().unwrap();
    let new_pid = server.pid().unwrap();
    assert_ne!(new_pid, old_pid);
    let mut c = client.get_multiplexed_tokio_connection().await.unwrap();
    let got: Option<String> = c.get("k").await.unwrap();
    assert_eq!(got, None, "no persistence: data is gone after a restart");

    drop(server);
    assert!(!process_exists(new_pid));
    assert!(!dir.exists());
    assert!(
        started.elapsed() < TEST_BUDGET,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn clear_errors_for_bad_setups() {
    let missing = PathBuf::from("/nonexistent/redis-server");
    let err = RedisServer::start(ServerOptions {
        redis_server: missing.clone(),
        ..ServerOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, LocalRedisError::RedisNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("apt-get install -y redis-server"));

    let err = LocalCluster::start(ClusterOptions {
        redis_server: missing,
        ..ClusterOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, LocalRedisError::RedisNotFound { .. }),
        "{err:?}"
    );

    let err = LocalCluster::start(ClusterOptions {
        masters: 2,
        ..ClusterOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, LocalRedisError::InvalidOptions(_)), "{err:?}");

    // A server that cannot start reports its log.
    let err = RedisServer::start(ServerOptions {
        extra_args: vec!["--no-such-option".into(), "1".into()],
        ..ServerOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no-such-option"), "{err}");
}

#[tokio::test]
async fn eventually_returns_the_first_ok() {
    let mut tries = 0;
    let got = common::eventually("the third try", Duration::from_secs(5), async || {
        tries += 1;
        common::check(tries, |&n| n == 3)
    })
    .await;
    assert_eq!(got, 3);
}

#[tokio::test]
#[should_panic(expected = "not within 100ms: a condition that never holds; last seen: 7")]
async fn eventually_fails_naming_what_it_awaited_and_the_last_value() {
    common::eventually(
        "a condition that never holds",
        Duration::from_millis(100),
        async || common::check(7, |_| false),
    )
    .await;
}

#[test]
#[should_panic(expected = "not within 100ms: a log line; last seen: \"no such line\"")]
fn eventually_blocking_fails_naming_what_it_awaited_and_the_last_error() {
    common::eventually_blocking("a log line", Duration::from_millis(100), || {
        Err::<(), _>("no such line")
    });
}
