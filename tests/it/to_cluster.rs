//! From Twemproxy to Redis Cluster (issue 20 item 2): keys written through a real `nutcracker`
//! (ketama, fnv1a_64) on standalone servers; slotgate, started on the same placement, serves
//! them; then every key moves onto a 3-master Redis Cluster while non-retrying clients read,
//! write, INCR, MGET/MSET across slots and pipeline, and the cluster reshards a range inside
//! itself meanwhile. At the end the old servers are empty, every key (value and TTL) is on
//! the cluster, and the same slotgate address serves in plain cluster mode.

use crate::common;
use crate::pool_migration::tempfile_path::TempPath;
use crate::twemproxy::{run_nutcracker, send_all};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{Load, LoadOptions};
use common::{client, eventually, pool_config, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::{Config, Distribution};
use slotgate::local_redis::{free_port, ClusterOptions, LocalCluster, Role};
use slotgate::placement::KeyHash;
use slotgate::Proxy;

/// Keys written through nutcracker before the move (issue 20's proof: 100 000; the bench
/// with client throughput is `MODE=to-cluster benches/migrate.sh`).
const SEEDED: usize = 100_000;
/// Seconds of TTL of every fifth seeded key.
const TTL: u64 = 3_000;

/// The `i`th key written through nutcracker.
pub(crate) fn seeded_key(i: usize) -> String {
    match i % 10 {
        // Hash tags: nutcracker hashes the tag, the cluster too.
        0 => format!("tw:{{user:{}}}:profile", i / 10),
        _ => format!("tw:key:{i}"),
    }
}

/// slotgate's pool-mode config with nutcracker's placement over `servers`.
pub(crate) fn ketama_config(servers: &[slotgate::local_redis::RedisServer]) -> Config {
    let mut config = pool_config(servers, &[]);
    config.placement.distribution = Distribution::Ketama;
    config.placement.hash = KeyHash::Fnv1a64;
    config.placement.hash_tag = Some("{}".into());
    config
}

/// The destination: a throwaway Redis Cluster of three masters, no replica, that asks for
/// `password` if given.
pub(crate) fn destination_cluster(password: Option<&str>) -> LocalCluster {
    LocalCluster::start(ClusterOptions {
        replicas_per_master: 0,
        password: password.map(String::from),
        ..ClusterOptions::default()
    })
    .expect("start the Redis Cluster")
}

/// Start the move onto `cluster` through the admin listener `admin`; its answer (`why`: what
/// the test expects of it, should it fail).
pub(crate) async fn start_onto(admin: &str, cluster: &LocalCluster, why: &str) -> String {
    let seeds = cluster.seeds().join(",");
    let path = format!("/migrations/start?to_cluster={seeds}");
    slotgate::admin::client::request(admin, hyper::Method::POST, &path)
        .await
        .expect(why)
}

/// slotgate in pool mode over `servers` (ketama as nutcracker places keys), with an admin
/// listener, its config `tweak`ed, then written to a file (`name`) it rewrites at each phase
/// change.
pub(crate) fn start_pools_proxy(
    servers: &[slotgate::local_redis::RedisServer],
    name: &str,
    tweak: impl FnOnce(&mut Config),
) -> (slotgate::ProxyHandle, TempPath) {
    let mut config = ketama_config(servers);
    common::with_admin(&mut config);
    tweak(&mut config);
    let file = TempPath::new(name, ".toml");
    std::fs::write(&file.0, toml::to_string(&config).unwrap()).unwrap();
    let proxy = Proxy::start(config).expect("start slotgate in pool mode");
    proxy.set_config_file(file.0.clone());
    (proxy, file)
}

/// A client of non-retrying mixed traffic: INCRs, MSET/MGET across slots, pipelines of
/// SET+GET+STRLEN, MULTI/EXEC and RPUSH+BLPOP on its own keys, each checked; every error or
/// wrong answer is kept. The pipeline's keys carry the hash tag `stable`, of a slot no reshard
/// touches: a pipelined write and read of a key whose slot is being resharded have cluster
/// mode's own window (docs/ARCHITECTURE.md, "Race windows worth knowing"), not the move's.
pub(crate) async fn mixed_client(
    addr: SocketAddr,
    task: usize,
    stable: String,
    seeded: usize,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let mut conn = client(addr).await;
    let (mut ops, mut errors) = (0u64, Vec::new());
    let mut n = 0i64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let counter = format!("mix:{task}:counter");
        match conn.incr::<_, _, i64>(&counter, 1).await {
            Ok(v) if v == n => {}
            other => errors.push(format!("INCR {counter}: {other:?}, wanted {n}")),
        }
        let (a, b) = (
            format!("mix:{task}:a:{}", n % 50),
            format!("mix:{task}:b:{}", n % 37),
        );
        let set: redis::RedisResult<()> = redis::cmd("MSET")
            .arg(&a)
            .arg(n)
            .arg(&b)
            .arg(-n)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            errors.push(format!("MSET: {e}"));
        }
        match conn.mget::<_, Vec<Option<i64>>>(&[&a, &b]).await {
            Ok(v) if v == [Some(n), Some(-n)] => {}
            other => errors.push(format!("MGET {a} {b}: {other:?}")),
        }
        let key = format!("{{{stable}}}:mix:{task}:p:{}", n % 20);
        let piped: redis::RedisResult<(String, i64)> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(n)
            .ignore()
            .cmd("GET")
            .arg(&key)
            .cmd("STRLEN")
            .arg(seeded_key((task * 7919 + n as usize) % seeded))
            .query_async(&mut conn)
            .await;
        match piped {
            Ok((v, len)) if v == n.to_string() && len > 0 => {}
            other => errors.push(format!("pipeline on {key}: {other:?}")),
        }
        // A transaction and a blocking pop (the dedicated-connection path), one slot each.
        let (tx_a, tx_b) = (
            format!("{{mix:{task}}}:tx:a"),
            format!("{{mix:{task}}}:tx:b"),
        );
        let tx: redis::RedisResult<(i64, i64)> = redis::pipe()
            .atomic()
            .incr(&tx_a, 1)
            .incr(&tx_b, 2)
            .query_async(&mut conn)
            .await;
        match tx {
            Ok((a, b)) if a == n && b == 2 * n => {}
            other => errors.push(format!("MULTI/EXEC on {tx_a}: {other:?}")),
        }
        let queue = format!("{{mix:{task}}}:queue");
        let pushed: redis::RedisResult<i64> = conn.rpush(&queue, n).await;
        let popped: redis::RedisResult<Option<(String, i64)>> = redis::cmd("BLPOP")
            .arg(&queue)
            .arg(1)
            .query_async(&mut conn)
            .await;
        match (pushed, popped) {
            (Ok(1), Ok(Some((_, v)))) if v == n => {}
            other => errors.push(format!("RPUSH/BLPOP on {queue}: {other:?}")),
        }
        ops += 9;
    }
    (ops, errors)
}

/// `CLUSTER SETSLOT slot args…` on the node at `port`, which must answer `OK`.
pub(crate) fn set_slot(port: u16, slot: u16, args: &[&str]) {
    let slot = slot.to_string();
    let mut all = vec!["CLUSTER", "SETSLOT", &slot];
    all.extend(args);
    let out = common::redis_cli(common::load::node_addr(port), &all);
    assert_eq!(
        out.trim(),
        "OK",
        "CLUSTER SETSLOT {slot} {args:?} on {port}"
    );
}

/// Wait (at most `within`) until the config file at `path` is a cluster-mode one: the move
/// onto the cluster ended.
pub(crate) async fn until_cluster_mode(path: &std::path::Path, within: Duration) {
    eventually("the move onto the cluster ends", within, || async {
        let pool_mode = Config::load(path).map_or(true, |c| c.is_pool_mode());
        common::check(pool_mode, |pool| !pool)
    })
    .await;
}

/// The master owning `slot` now and another master, each as `(port, node id)`.
pub(crate) async fn owner_and_other(
    cluster: &LocalCluster,
    slot: u16,
) -> ((u16, String), (u16, String)) {
    let owner = slot_owners(cluster.master_ports()[0]).await[slot as usize];
    let other = *cluster
        .master_ports()
        .iter()
        .find(|&&p| p != owner)
        .unwrap();
    (
        (owner, node_id(cluster, owner)),
        (other, node_id(cluster, other)),
    )
}

/// Write `n` keys (`seeded_key`, every fifth with a TTL of `TTL` seconds) through a real
/// nutcracker (ketama, fnv1a_64, hash tag `{}`) over `servers`: when the writes began and ended.
pub(crate) fn seed_through_nutcracker(
    servers: &[slotgate::local_redis::RedisServer],
    n: usize,
) -> (Instant, Instant) {
    let port = free_port(false).unwrap();
    let mut yaml = format!(
        "app:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  \
         hash_tag: \"{{}}\"\n  redis: true\n  auto_eject_hosts: false\n  timeout: 2000\n  servers:\n"
    );
    for server in servers {
        yaml.push_str(&format!("   - {}:1\n", server.addr()));
    }
    let nutcracker = run_nutcracker(&yaml, &[port]);
    let written_from = Instant::now();
    let requests: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|i| {
            let mut args = vec![
                b"SET".to_vec(),
                seeded_key(i).into_bytes(),
                format!("v{i}").into_bytes(),
            ];
            if i % 5 == 0 {
                args.extend([b"EX".to_vec(), TTL.to_string().into_bytes()]);
            }
            args
        })
        .collect();
    send_all(SocketAddr::from(([127, 0, 0, 1], port)), &requests);
    let written_by = Instant::now();
    drop(nutcracker);
    let sizes: Vec<u64> = servers
        .iter()
        .map(|s| common::dbsize_sum(&[s.addr().parse().unwrap()]))
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), n as u64);
    assert!(
        sizes.iter().all(|&n| n > 0),
        "ketama spread the keys: {sizes:?}"
    );
    (written_from, written_by)
}

/// Every seeded key of `by_node` (node port → key indexes) is on that node with its value,
/// and its TTL if it has one (within a second of what its write, between `written_from` and
/// `written_by`, left).
pub(crate) async fn assert_seeded_on(
    by_node: HashMap<u16, Vec<usize>>,
    written_from: Instant,
    written_by: Instant,
) {
    for (port, keys) in by_node {
        let mut node = common::load::node(port).await;
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                pipe.cmd("GET")
                    .arg(seeded_key(i))
                    .cmd("PTTL")
                    .arg(seeded_key(i));
            }
            let replies: Vec<redis::Value> = pipe.query_async(&mut node).await.unwrap();
            let now = Instant::now();
            for (pair, &i) in replies.chunks(2).zip(chunk) {
                let value: Option<String> = redis::from_redis_value(&pair[0]).unwrap();
                assert_eq!(
                    value,
                    Some(format!("v{i}")),
                    "key {} on node {port}",
                    seeded_key(i)
                );
                let pttl: i64 = redis::from_redis_value(&pair[1]).unwrap();
                if i % 5 == 0 {
                    let most = TTL as i64 * 1000 - (now - written_by).as_millis() as i64 + 1000;
                    let least = TTL as i64 * 1000 - (now - written_from).as_millis() as i64 - 1000;
                    assert!(
                        (least..=most).contains(&pttl),
                        "TTL of {} kept: {pttl} ms",
                        seeded_key(i)
                    );
                } else {
                    assert_eq!(pttl, -1, "{} has no TTL", seeded_key(i));
                }
            }
        }
    }
}

/// The id of the cluster node at `port`.
pub(crate) fn node_id(cluster: &LocalCluster, port: u16) -> String {
    let node = cluster.nodes().iter().find(|n| n.port == port).unwrap();
    node.id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_written_through_nutcracker_move_onto_a_cluster_under_load() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(3);

    // 1. The application's nutcracker writes the keys.
    let (written_from, written_by) = seed_through_nutcracker(&servers, SEEDED);
    let mut cluster = destination_cluster(None);

    // 2. slotgate replaces nutcracker: same placement, pool mode, a config file it rewrites.
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-to-cluster", |config| {
        // Slow enough that the reshard below runs while keys still move (~10 s for the keys;
        // the reshard of 600 slots takes about 1 s here).
        config.migration.keys_per_second = 10_000;
        config.migration.batch_keys = 100;
    });
    let addr = proxy.local_addr();
    let mut conn = client(addr).await;
    for i in (0..SEEDED).step_by(97) {
        let v: Option<String> = conn.get(seeded_key(i)).await.unwrap();
        assert_eq!(
            v,
            Some(format!("v{i}")),
            "slotgate serves what nutcracker wrote"
        );
    }

    // 3. Clients that do not retry, on the same address.
    let keys: Vec<String> = (0..400).map(|i| format!("load:{i}")).collect();
    let opts = LoadOptions {
        op_timeout: Duration::from_secs(5),
        ..LoadOptions::default()
    };
    let load = Load::start_with(addr, 8, keys, opts);
    let stop = Arc::new(AtomicBool::new(false));
    let masters: Vec<u16> = cluster
        .nodes()
        .iter()
        .filter(|n| n.role == Role::Master)
        .map(|n| n.port)
        .collect();
    // The reshard below moves slots of masters[0] to masters[1]: masters[2]'s stay.
    let owners = slot_owners(masters[0]).await;
    let stable = (0..)
        .map(|i| format!("stable{i}"))
        .find(|t| owners[slotgate::slot::Slot::of(t.as_bytes()).get() as usize] == masters[2])
        .unwrap();
    let mixed: Vec<_> = (0..4)
        .map(|t| tokio::spawn(mixed_client(addr, t, stable.clone(), SEEDED, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 4. The move onto the cluster starts; the cluster reshards a range inside itself.
    let admin = proxy.admin_addr().unwrap().to_string();
    let answer = start_onto(&admin, &cluster, "start the move onto the cluster").await;
    assert!(answer.contains("\"ok\":true"), "{answer}");
    let (from, to) = (node_id(&cluster, masters[0]), node_id(&cluster, masters[1]));
    let resharding = std::thread::spawn(move || {
        let out = cluster.reshard(&from, &to, 600, Duration::from_secs(120));
        (cluster, out)
    });
    let reshard_output;
    (cluster, reshard_output) = tokio::task::spawn_blocking(move || resharding.join().unwrap())
        .await
        .unwrap();
    reshard_output.expect("redis-cli --cluster reshard during the move");
    let status = slotgate::admin::client::request(&admin, hyper::Method::GET, "/migrations")
        .await
        .unwrap();
    eprintln!("after the reshard: {status}");
    assert!(
        status.contains("\"from\":\"pools\""),
        "the reshard ran while keys moved: {status}"
    );

    // 5. The move ends by itself: the pools are empty, the file is a cluster-mode one.
    let path = file.0.clone();
    eventually(
        "the move onto the cluster ends",
        Duration::from_secs(120),
        || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(&path).unwrap();
                let config = Config::load(&path).map_err(|e| e.to_string())?;
                common::check(text, |_| {
                    !config.is_pool_mode() && config.migration.to_cluster.is_none()
                })
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.stop().await;
    report.assert_no_errors();
    report.assert_progress();
    let mut mixed_ops = 0;
    for task in mixed {
        let (ops, errors) = task.await.unwrap();
        assert!(
            errors.is_empty(),
            "mixed clients saw {} errors: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        mixed_ops += ops;
    }
    assert!(mixed_ops > 100, "the mixed clients ran ({mixed_ops} ops)");
    common::load::verify_acked(addr, &report).await;

    // 6. The old servers hold nothing; every key is on the cluster with its value and TTL.
    for server in &servers {
        assert_eq!(
            common::dbsize_sum(&[server.addr().parse().unwrap()]),
            0,
            "{} is empty",
            server.addr()
        );
    }
    let on_cluster: u64 = masters
        .iter()
        .map(|&p| common::dbsize_sum(&[common::load::node_addr(p)]))
        .sum();
    assert!(
        on_cluster >= SEEDED as u64,
        "{on_cluster} keys on the cluster"
    );
    let owners = slot_owners(masters[0]).await;
    let mut by_node: HashMap<u16, Vec<usize>> = HashMap::new();
    for i in 0..SEEDED {
        let slot = slotgate::slot::Slot::of(seeded_key(i).as_bytes()).get();
        let port = owners[slot as usize];
        by_node.entry(port).or_default().push(i);
    }
    assert_seeded_on(by_node, written_from, written_by).await;

    // 7. The same address serves in plain cluster mode (no MIGRATE reaches the old servers
    // any more); the status shows no move.
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    let migrates = || -> u64 {
        pools
            .iter()
            .map(|&p| common::command_calls(p, "migrate"))
            .sum()
    };
    let migrates_before = migrates();
    assert!(
        migrates_before > 0,
        "the old servers ran the MIGRATEs of the move"
    );
    let mut conn = client(addr).await;
    for i in 0..100 {
        let () = conn.set(format!("after:move:{i}"), i).await.unwrap();
        let v: i64 = conn.get(format!("after:move:{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    assert_eq!(
        migrates(),
        migrates_before,
        "nothing of the move is left on the request path"
    );
    let status = slotgate::admin::client::request(&admin, hyper::Method::GET, "/migrations")
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["moves"], serde_json::json!([]), "{status}");
    assert!(
        status["on_touch_moves"].as_u64().unwrap() > 0,
        "requests moved keys on touch: {status}"
    );
    assert!(
        Config::load(&file.0).unwrap().validate().is_ok(),
        "a restart comes up in cluster mode"
    );
    drop(proxy);
    drop(cluster);
}

/// The port of the master owning each slot now, as the node at `port` says (`CLUSTER SLOTS`).
pub(crate) async fn slot_owners(port: u16) -> Vec<u16> {
    let mut node = common::load::node(port).await;
    let ranges: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<redis::Value>>(&mut node)
        .await
        .unwrap()
        .into_iter()
        .map(|range| {
            let redis::Value::Array(parts) = range else {
                panic!("a CLUSTER SLOTS range")
            };
            let first: u16 = redis::from_redis_value(&parts[0]).unwrap();
            let last: u16 = redis::from_redis_value(&parts[1]).unwrap();
            let redis::Value::Array(master) = &parts[2] else {
                panic!("a master")
            };
            let host: String = redis::from_redis_value(&master[0]).unwrap();
            let port: u16 = redis::from_redis_value(&master[1]).unwrap();
            (first, last, (host, port))
        })
        .collect();
    let mut owners = vec![0u16; 16384];
    for (first, last, (_, port)) in ranges {
        owners[first as usize..=last as usize].fill(port);
    }
    owners
}

/// A key whose slot is being resharded inside the cluster (MIGRATING on its owner, IMPORTING
/// on another node) cannot be moved onto the cluster yet: a non-cluster source's `RESTORE`
/// is answered `ASK` by the owner and `MOVED` by the importing node. A request for it waits
/// (no error) and the mover leaves it on its pool until the reshard of the slot ends; then
/// both go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_slot_is_resharded_inside_the_cluster_waits_for_the_reshard() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(2);
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-to-cluster-reshard", |config| {
        config.backend.request_timeout_ms = 5_000;
    });
    let addr = proxy.local_addr();
    let mut conn = client(addr).await;
    for i in 0..200 {
        let () = conn.set(format!("r:{i}"), i).await.unwrap();
    }
    // The slot of r:0 is being moved from its owner to another master, by hand.
    let key = "r:0";
    let slot = slotgate::slot::Slot::of(key.as_bytes()).get();
    let ((owner, owner_id), (other, other_id)) = owner_and_other(&cluster, slot).await;
    let setslot = |port: u16, args: &[&str]| set_slot(port, slot, args);
    setslot(other, &["IMPORTING", &owner_id]);
    setslot(owner, &["MIGRATING", &other_id]);

    let admin = proxy.admin_addr().unwrap().to_string();
    start_onto(&admin, &cluster, "start the move onto the cluster").await;
    let mut reader_conn = client(addr).await;
    let asked = Instant::now();
    let reader = tokio::spawn(async move {
        let conn = &mut reader_conn;
        let started = Instant::now();
        let v: redis::RedisResult<String> = conn.get(key).await;
        (v, started.elapsed())
    });
    // Every other key moves; r:0 stays on its pool while its slot is being resharded.
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    eventually("every key but r:0 moved", Duration::from_secs(20), || {
        let pools = pools.clone();
        async move { common::check(common::dbsize_sum(&pools), |&n| n == 1) }
    })
    .await;
    // A whole pass ends with r:0 left waiting, and says so.
    eventually(
        "the mover says a key waits",
        Duration::from_secs(20),
        || {
            let admin = admin.clone();
            async move {
                let status =
                    slotgate::admin::client::request(&admin, hyper::Method::GET, "/migrations")
                        .await
                        .unwrap();
                common::check(status, |s| {
                    s.contains("1 keys wait for their slot's reshard")
                })
            }
        },
    )
    .await;
    assert!(
        !reader.is_finished(),
        "the request for r:0 waits for the reshard"
    );
    // The reshard of the slot ends (no key of it was on the owner): the request and the
    // mover go on.
    for port in cluster.master_ports() {
        setslot(port, &["NODE", &other_id]);
    }
    let ended = asked.elapsed();
    let (v, waited) = reader.await.unwrap();
    assert_eq!(v.unwrap(), "0", "r:0 read once its slot's reshard ended");
    assert!(
        waited + Duration::from_millis(100) >= ended,
        "it waited for the reshard ({waited:?}; the reshard ended {ended:?} after it was asked)"
    );
    eventually("the move ends", Duration::from_secs(20), || {
        let path = file.0.clone();
        async move {
            let pool_mode = Config::load(&path).map_or(true, |c| c.is_pool_mode());
            common::check(pool_mode, |pool| !pool)
        }
    })
    .await;
    let mut node = common::load::node(other).await;
    let v: String = node.get(key).await.unwrap();
    assert_eq!(v, "0", "r:0 is on the slot's new owner");
    assert_eq!(common::dbsize_sum(&pools), 0);
    drop(proxy);
}

/// Two instances in front of the pools (`[fleet] peers`, ketama over `servers`, the mover at
/// `keys_per_second`), `keys` keys `f:i` = i written through A, a non-retrying load on A, and
/// the move onto `cluster` started on both: the pair, a client of A, the load.
pub(crate) async fn pair_moving_onto(
    servers: &[slotgate::local_redis::RedisServer],
    cluster: &LocalCluster,
    name: &str,
    keys_per_second: u64,
    keys: i64,
) -> (
    crate::fleet_migration::Pair,
    redis::aio::MultiplexedConnection,
    Load,
) {
    let mut base = ketama_config(servers);
    base.migration.keys_per_second = keys_per_second;
    base.migration.batch_keys = 50;
    let pair = crate::fleet_migration::start_pair(&base, name);
    let mut through_a = client(pair.a.local_addr()).await;
    for i in 0..keys {
        let () = through_a.set(format!("f:{i}"), i).await.unwrap();
    }
    let opts = LoadOptions {
        pause: Duration::from_millis(5),
        ..LoadOptions::default()
    };
    let load_keys = (0..200).map(|i| format!("fa:{i}")).collect();
    let load_a = Load::start_with(pair.a.local_addr(), 8, load_keys, opts);
    start_onto(
        &pair.a_admin,
        cluster,
        "start the move onto the cluster on both",
    )
    .await;
    (pair, through_a, load_a)
}

/// Wait (at most a minute) until neither instance of a pair (admin listeners `a_admin`,
/// `b_admin`) shows a move any more (`what`: the move's end, or its abort's).
pub(crate) async fn until_no_move_on_both(a_admin: &str, b_admin: &str, what: &str) {
    use crate::fleet_migration::status;
    eventually(what, Duration::from_secs(60), || async {
        let (a, b) = (status(a_admin).await, status(b_admin).await);
        let done = |s: &serde_json::Value| s["moves"].as_array().is_some_and(Vec::is_empty);
        if done(&a) && done(&b) {
            Ok(())
        } else {
            Err((a, b))
        }
    })
    .await;
}

/// Two instances in front of the pools (`[fleet] peers`): the move onto the cluster starts on
/// both together; one is SIGKILLed mid-move and comes back from its file (pool mode, keys
/// moving onto the cluster), and the two end the move together: both files become
/// cluster-mode ones, and every key reads back through both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_move_onto_the_cluster_together_through_a_sigkill_of_one() {
    use crate::fleet_migration::{spawn_b, status, Pair};
    let _serial = common::load::serial().await;
    let servers = standalone_servers(3);
    let cluster = destination_cluster(None);
    let (
        Pair {
            a: proxy,
            a_admin,
            a_file,
            b,
            b_admin,
            b_listen,
            b_file,
            instance_b,
        },
        mut through_a,
        load_a,
    ) = pair_moving_onto(&servers, &cluster, "to-cluster", 500, 3000).await;
    let b_addr: SocketAddr = b_listen.parse().unwrap();
    let on_b = status(&b_admin).await;
    assert_eq!(
        on_b["moves"][0]["from"], "pools",
        "B switched with A: {on_b}"
    );
    eventually("some keys moved", Duration::from_secs(20), || async {
        let moved = status(&a_admin).await["background_keys_moved"]
            .as_u64()
            .unwrap_or(0)
            + status(&b_admin).await["background_keys_moved"]
                .as_u64()
                .unwrap_or(0);
        common::check(moved, |&m| m >= 200)
    })
    .await;

    // B dies mid-move and comes back from its file, which has the move.
    drop(instance_b);
    let saved_b = Config::load(&b_file.0).unwrap();
    assert_eq!(
        saved_b.migration.to_cluster,
        Some(slotgate::config::MoveState::Moving)
    );
    assert_eq!(saved_b.cluster.seeds, cluster.seeds());
    let _instance_b = spawn_b(&b_file, &b_listen);
    let through_b = &mut client(b_addr).await;
    for i in (0..3000).step_by(7) {
        let v: Option<i64> = through_b.get(format!("f:{i}")).await.unwrap();
        assert_eq!(v, Some(i), "f:{i} through B, restarted mid-move");
    }
    until_no_move_on_both(&a_admin, &b_admin, "the move ended on both").await;
    let report_a = load_a.stop().await;
    report_a.assert_no_errors();
    report_a.assert_progress();
    for file in [&a_file, &b_file] {
        let saved = Config::load(&file.0).unwrap();
        assert!(
            !saved.is_pool_mode(),
            "{} is a cluster-mode file",
            file.0.display()
        );
        assert_eq!(saved.cluster.seeds, cluster.seeds());
    }
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    assert_eq!(common::dbsize_sum(&pools), 0, "the pools are empty");
    let mut through_b = client(b_addr).await;
    for i in 0..3000 {
        let key = format!("f:{i}");
        let from_a: Option<i64> = through_a.get(&key).await.unwrap();
        let from_b: Option<i64> = through_b.get(&key).await.unwrap();
        assert_eq!((from_a, from_b), (Some(i), Some(i)), "{key}");
    }
    common::load::verify_acked(b_addr, &report_a).await;

    // B comes back from a stale file (pool mode, from before the move): it takes the fleet's
    // state before it serves, so it serves in cluster mode and its file says so.
    drop(through_b);
    drop(_instance_b);
    std::fs::write(&b_file.0, toml::to_string(&b).unwrap()).unwrap();
    let _instance_b = spawn_b(&b_file, &b_listen);
    let mut through_b = client(b_addr).await;
    for i in (0..3000).step_by(11) {
        let v: Option<i64> = through_b.get(format!("f:{i}")).await.unwrap();
        assert_eq!(v, Some(i), "f:{i} through B, back from a stale file");
    }
    let () = through_b.set("f:after", "b").await.unwrap();
    let v: Option<String> = through_a.get("f:after").await.unwrap();
    assert_eq!(
        v.as_deref(),
        Some("b"),
        "B writes where A reads: the cluster"
    );
    assert_eq!(
        common::dbsize_sum(&pools),
        0,
        "B wrote nothing to the pools"
    );
    let saved = Config::load(&b_file.0).unwrap();
    assert!(!saved.is_pool_mode(), "B's file brought up to cluster mode");
    drop(proxy);
}

/// Pools and cluster both ask for a password: the pools' logins are the pools' own
/// (`[pools.NAME] password`), the cluster's is `[cluster] password` of the pool-mode file, read
/// when the move starts; each `MIGRATE` logs in to its cluster node (`AUTH`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_cluster_with_passwords() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(2);
    for server in &servers {
        let addr = server.addr().parse().unwrap();
        let out = common::redis_cli(addr, &["CONFIG", "SET", "requirepass", "poolpw"]);
        assert_eq!(out, "OK");
    }
    let cluster = destination_cluster(Some("clusterpw"));
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-to-cluster-auth", |config| {
        for pool in config.pools.values_mut() {
            pool.password = Some(slotgate::config::Secret::new("poolpw"));
        }
        config.cluster.password = Some(slotgate::config::Secret::new("clusterpw"));
    });
    let mut conn = client(proxy.local_addr()).await;
    for i in 0..500 {
        let () = conn.set(format!("a:{i}"), i).await.unwrap();
    }
    let admin = proxy.admin_addr().unwrap().to_string();
    start_onto(&admin, &cluster, "start the move onto the cluster").await;
    for i in (0..500).rev() {
        let v: i64 = conn.get(format!("a:{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    eventually("the move ends", Duration::from_secs(30), || {
        let path = file.0.clone();
        async move {
            let pool_mode = Config::load(&path).map_or(true, |c| c.is_pool_mode());
            common::check(pool_mode, |pool| !pool)
        }
    })
    .await;
    let mut on_cluster = 0;
    for port in cluster.master_ports() {
        let url = format!("redis://:clusterpw@127.0.0.1:{port}/");
        let mut node = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let n: u64 = redis::cmd("DBSIZE").query_async(&mut node).await.unwrap();
        on_cluster += n;
    }
    assert_eq!(on_cluster, 500, "every key is on the cluster");
    let saved = Config::load(&file.0).unwrap();
    assert_eq!(
        saved.cluster.password.unwrap().expose(),
        "clusterpw",
        "the login stays in the file"
    );
    let v: i64 = conn.get("a:7").await.unwrap();
    assert_eq!(v, 7, "served in cluster mode");
    drop(proxy);
}

/// Bad starts change nothing (no cluster there; a cluster that does not serve every slot; a
/// move already in force), and `pause` stops the mover while every key stays readable and
/// touched keys still move; `resume` lets it end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_starts_change_nothing_and_a_paused_move_keeps_every_key_readable() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(2);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-to-cluster-bad", |config| {
        config.migration.keys_per_second = 200;
    });
    let admin = proxy.admin_addr().unwrap().to_string();
    let post = |path: String| {
        let admin = admin.clone();
        async move { slotgate::admin::client::request(&admin, hyper::Method::POST, &path).await }
    };
    let mut conn = client(proxy.local_addr()).await;
    for i in 0..1000 {
        let () = conn.set(format!("b:{i}"), i).await.unwrap();
    }
    let unchanged = || {
        let saved = Config::load(&file.0).unwrap();
        assert!(saved.is_pool_mode() && saved.migration.to_cluster.is_none());
        assert_eq!(saved.migration.version, 0);
    };

    let nobody = format!("127.0.0.1:{}", free_port(false).unwrap());
    let refused = post(format!("/migrations/start?to_cluster={nobody}"))
        .await
        .unwrap_err();
    assert!(
        refused.contains("no cluster node gave a usable topology"),
        "{refused}"
    );
    unchanged();
    let half = common::lone_cluster_node(0, 8191).await;
    let refused = post(format!("/migrations/start?to_cluster={}", half.addr()))
        .await
        .unwrap_err();
    assert!(
        refused.contains("only 8192 of 16384 slots are covered"),
        "{refused}"
    );
    unchanged();
    let refused = post("/migrations/start?to_cluster=".into())
        .await
        .unwrap_err();
    assert!(
        refused.contains("needs the destination cluster's [cluster] seeds"),
        "{refused}"
    );
    unchanged();
    let v: i64 = conn.get("b:1").await.unwrap();
    assert_eq!(v, 1, "still served from the pools");

    let cluster = destination_cluster(None);
    let seeds = cluster.seeds().join(",");
    // A cluster that holds a key: the pools' key of the same name would overwrite it.
    let b1_owner = slot_owners(cluster.master_ports()[0]).await
        [slotgate::slot::Slot::of(b"b:1").get() as usize];
    let mut node = common::load::node(b1_owner).await;
    let () = node.set("b:1", "the cluster's own").await.unwrap();
    let refused = post(format!("/migrations/start?to_cluster={seeds}"))
        .await
        .unwrap_err();
    assert!(refused.contains("the cluster holds 1 keys"), "{refused}");
    unchanged();
    let () = node.del("b:1").await.unwrap();
    post(format!("/migrations/start?to_cluster={seeds}"))
        .await
        .unwrap();
    let again = post(format!("/migrations/start?to_cluster={seeds}"))
        .await
        .unwrap_err();
    assert!(again.contains("already move onto the cluster"), "{again}");
    let paused = post("/migrations/pause".into()).await.unwrap();
    assert!(paused.contains("\"state\":\"paused\""), "{paused}");
    let saved = Config::load(&file.0).unwrap();
    assert_eq!(
        saved.migration.to_cluster,
        Some(slotgate::config::MoveState::Paused)
    );
    let status = |admin: String| async move {
        let s = slotgate::admin::client::request(&admin, hyper::Method::GET, "/migrations")
            .await
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap()
    };
    let before = status(admin.clone()).await["background_keys_moved"]
        .as_u64()
        .unwrap();
    // Paused: every key reads back (touched keys move), the mover moves nothing more.
    for i in 0..1000 {
        let v: i64 = conn.get(format!("b:{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    let s = status(admin.clone()).await;
    assert_eq!(s["background_keys_moved"].as_u64().unwrap(), before, "{s}");
    assert!(s["on_touch_moves"].as_u64().unwrap() > 0, "{s}");
    post("/migrations/resume".into()).await.unwrap();
    eventually("the move ends", Duration::from_secs(30), || {
        let path = file.0.clone();
        async move {
            let pool_mode = Config::load(&path).map_or(true, |c| c.is_pool_mode());
            common::check(pool_mode, |pool| !pool)
        }
    })
    .await;
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    assert_eq!(common::dbsize_sum(&pools), 0);
    drop(proxy);
}
