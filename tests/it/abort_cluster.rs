//! Aborting a move from the pools onto a Redis Cluster (issue 20, item 5: "abort half-way,
//! then everything is readable; resume later, and it finishes"): keys written through a real
//! `nutcracker` (ketama, fnv1a_64) start moving onto a 3-master cluster under non-retrying
//! load; half-way the move is aborted; every key moves back to the pool ketama gives it, with
//! its value and TTL, the cluster ends empty and the config file is the pool-mode one again;
//! then the move starts again and finishes.

use crate::common;
use crate::fleet_migration::status;
use crate::to_cluster::{
    assert_seeded_on, destination_cluster, ketama_config, mixed_client, owner_and_other,
    pair_moving_onto, seed_through_nutcracker, seeded_key, set_slot, start_onto, start_pools_proxy,
    until_no_move_on_both,
};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::{Load, LoadOptions};
use common::{client, eventually, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::{Config, MoveState};

/// Keys written through nutcracker before the move.
const SEEDED: usize = 6_000;

async fn post(admin: &str, path: &str) -> Result<String, String> {
    slotgate::admin::client::request(admin, hyper::Method::POST, path).await
}

/// Seeded keys by the port of the pool ketama places each on (`servers`' placement).
fn by_pool(servers: &[slotgate::local_redis::RedisServer]) -> HashMap<u16, Vec<usize>> {
    let pools = slotgate::topology::pools::table_from_config(&ketama_config(servers)).unwrap();
    let mut out: HashMap<u16, Vec<usize>> = HashMap::new();
    for i in 0..SEEDED {
        let key = seeded_key(i);
        let unit = pools.placement().unit_of(key.as_bytes());
        let shard = pools.shard_of(unit).unwrap();
        let addr: SocketAddr = pools.shards()[shard].master.parse().unwrap();
        out.entry(addr.port()).or_default().push(i);
    }
    out
}

/// The keys the cluster's masters hold.
fn on_cluster(cluster: &slotgate::local_redis::LocalCluster) -> u64 {
    let masters: Vec<SocketAddr> = cluster
        .master_ports()
        .into_iter()
        .map(common::load::node_addr)
        .collect();
    common::dbsize_sum(&masters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_half_way_under_load_puts_every_key_back_and_the_move_starts_again() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(3);
    let (written_from, written_by) = seed_through_nutcracker(&servers, SEEDED);
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-abort-cluster", |config| {
        config.migration.keys_per_second = 1_000;
        config.migration.batch_keys = 50;
    });
    let addr = proxy.local_addr();
    let admin = proxy.admin_addr().unwrap().to_string();

    // Nothing to abort yet.
    let refused = post(&admin, "/migrations/abort").await.unwrap_err();
    assert!(refused.contains("no move is in force"), "{refused}");

    // Clients that do not retry, through the start, the abort and its end.
    let keys: Vec<String> = (0..300).map(|i| format!("load:{i}")).collect();
    let opts = LoadOptions {
        op_timeout: Duration::from_secs(5),
        ..LoadOptions::default()
    };
    let load = Load::start_with(addr, 8, keys, opts);
    let stop = Arc::new(AtomicBool::new(false));
    let mixed: Vec<_> = (0..3)
        .map(|t| tokio::spawn(mixed_client(addr, t, "mixed".into(), SEEDED, stop.clone())))
        .collect();

    let answer = start_onto(&admin, &cluster, "start the move onto the cluster").await;
    assert!(answer.contains("\"ok\":true"), "{answer}");
    eventually("half the keys moved", Duration::from_secs(30), || async {
        common::check(on_cluster(&cluster), |&n| n >= SEEDED as u64 / 2)
    })
    .await;

    // The abort: every key moves back.
    let aborted = post(&admin, "/migrations/abort").await.unwrap();
    assert!(aborted.contains("\"state\":\"aborting\""), "{aborted}");
    let saved = Config::load(&file.0).unwrap();
    assert_eq!(saved.migration.to_cluster, Some(MoveState::Aborting));
    let again = post(&admin, "/migrations/abort").await.unwrap_err();
    assert!(again.contains("already aborting"), "{again}");
    let resume = post(&admin, "/migrations/resume").await.unwrap_err();
    assert!(resume.contains("an abort is final"), "{resume}");
    let path = file.0.clone();
    eventually("the abort ends", Duration::from_secs(60), || {
        let path = path.clone();
        async move {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&path).unwrap();
            common::check(text, |_| config.migration.to_cluster.is_none())
        }
    })
    .await;
    // Traffic goes on for a while on the pools alone.
    let moved_back = status(&admin).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.stop().await;
    report.assert_no_errors();
    report.assert_progress();
    for task in mixed {
        let (ops, errors) = task.await.unwrap();
        assert!(
            errors.is_empty(),
            "mixed clients saw {} errors: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(ops > 0);
    }
    common::load::verify_acked(addr, &report).await;

    // The cluster holds nothing; every key is on its pool with its value and TTL; the file
    // is the pool-mode one it was.
    assert_eq!(
        on_cluster(&cluster),
        0,
        "the cluster is empty: {moved_back}"
    );
    assert_seeded_on(by_pool(&servers), written_from, written_by).await;
    let saved = Config::load(&file.0).unwrap();
    saved.validate().unwrap();
    assert!(saved.is_pool_mode() && saved.cluster.seeds.is_empty());
    assert_eq!(
        saved.pools,
        ketama_config(&servers).pools,
        "pools unchanged"
    );
    assert_eq!(saved.placement, ketama_config(&servers).placement);
    assert_eq!(status(&admin).await["moves"], serde_json::json!([]));
    let mut conn = client(addr).await;
    let v: String = conn.get(seeded_key(7)).await.unwrap();
    assert_eq!(v, "v7");
    let refused = post(&admin, "/migrations/abort").await.unwrap_err();
    assert!(refused.contains("no move is in force"), "{refused}");

    // Later, the move starts again (the cluster is empty again) and finishes.
    start_onto(&admin, &cluster, "start the move again after the abort").await;
    eventually("the move ends", Duration::from_secs(60), || {
        let path = file.0.clone();
        async move {
            let pool_mode = Config::load(&path).map_or(true, |c| c.is_pool_mode());
            common::check(pool_mode, |pool| !pool)
        }
    })
    .await;
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    assert_eq!(common::dbsize_sum(&pools), 0, "the pools are empty");
    assert!(on_cluster(&cluster) >= SEEDED as u64);
    for i in (0..SEEDED).step_by(101) {
        let v: String = conn.get(seeded_key(i)).await.unwrap();
        assert_eq!(v, format!("v{i}"));
    }
    drop(proxy);
}

/// While the abort runs, a slot is being resharded inside the cluster (by hand: MIGRATING on
/// its owner, IMPORTING on another master, one of its two keys moved there already, the other
/// still on the owner). A bare `MIGRATE` on the owner would answer `NOKEY` for the key already
/// gone, and a read of it would miss it: the move back declares its keys, the owner answers
/// `ASK`, and the key is moved back from the importing node (`ASKING`). The abort ends with the
/// slot still open, the cluster empty, every key on its pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_a_slot_is_resharded_inside_the_cluster_finds_every_key() {
    let _serial = common::load::serial().await;
    let servers = standalone_servers(2);
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-abort-reshard", |config| {
        config.migration.keys_per_second = 1;
        config.migration.batch_keys = 1;
    });
    let addr = proxy.local_addr();
    let admin = proxy.admin_addr().unwrap().to_string();
    let mut conn = client(addr).await;
    for i in 0..100 {
        let () = conn.set(format!("r:{i}"), i).await.unwrap();
    }
    let (a, b) = ("{rs}a", "{rs}b");
    let () = conn.set(a, "va").await.unwrap();
    let () = conn.set(b, "vb").await.unwrap();
    start_onto(&admin, &cluster, "start the move onto the cluster").await;
    post(&admin, "/migrations/pause").await.unwrap();
    // Both keys move onto the cluster on touch.
    let _: Vec<String> = conn.mget(&[a, b]).await.unwrap();
    let slot = slotgate::slot::Slot::of(a.as_bytes()).get();
    let ((owner, owner_id), (other, other_id)) = owner_and_other(&cluster, slot).await;
    let mut on_owner = common::load::node(owner).await;
    let n: i64 = on_owner.exists(&[a, b]).await.unwrap();
    assert_eq!(n, 2, "both keys on the slot's owner");

    // The slot is being resharded by hand: b already on the importing node, a on the owner.
    let setslot = |port: u16, args: &[&str]| set_slot(port, slot, args);
    setslot(other, &["IMPORTING", &owner_id]);
    setslot(owner, &["MIGRATING", &other_id]);
    let other_port = other.to_string();
    let moved = common::redis_cli(
        common::load::node_addr(owner),
        &[
            "MIGRATE",
            "127.0.0.1",
            &other_port,
            "",
            "0",
            "5000",
            "KEYS",
            b,
        ],
    );
    assert_eq!(moved.trim(), "OK", "{b} moved inside the cluster");

    post(&admin, "/migrations/abort").await.unwrap();
    let v: String = conn.get(b).await.unwrap();
    assert_eq!(v, "vb", "{b}, on the importing node, is found");
    let v: String = conn.get(a).await.unwrap();
    assert_eq!(v, "va", "{a}, on the owner, is found");
    let path = file.0.clone();
    eventually("the abort ends", Duration::from_secs(30), || {
        let path = path.clone();
        async move {
            let state = Config::load(&path).map(|c| c.migration.to_cluster);
            common::check(state.ok(), |s| *s == Some(None))
        }
    })
    .await;
    assert_eq!(
        on_cluster(&cluster),
        0,
        "the cluster is empty, its slot still open"
    );
    let pools: Vec<SocketAddr> = servers.iter().map(|s| s.addr().parse().unwrap()).collect();
    assert_eq!(
        common::dbsize_sum(&pools),
        102,
        "every key back on the pools"
    );
    for i in 0..100 {
        let v: i64 = conn.get(format!("r:{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    let v: Vec<String> = conn.mget(&[a, b]).await.unwrap();
    assert_eq!(v, ["va", "vb"]);
    drop(proxy);
}

/// Two instances in front of the pools (`[fleet] peers`): the move onto the cluster starts on
/// both, is aborted on both half-way (each holds, settles, then switches), and B, killed with
/// SIGKILL mid-abort, comes back from its file (which says aborting) and finds the keys still
/// on the cluster before it serves. The abort ends on both: both files are pool mode again, the
/// cluster is empty, every key reads the same through both; clients of A saw no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_abort_together_through_a_sigkill_of_one() {
    use crate::fleet_migration::{spawn_b, Pair};
    let _serial = common::load::serial().await;
    let servers = standalone_servers(3);
    let cluster = destination_cluster(None);
    let (
        Pair {
            a: proxy,
            a_admin,
            a_file,
            b_admin,
            b_listen,
            b_file,
            instance_b,
            ..
        },
        mut through_a,
        load_a,
    ) = pair_moving_onto(&servers, &cluster, "abort-cluster", 300, 2000).await;
    let b_addr: SocketAddr = b_listen.parse().unwrap();
    eventually("some keys moved", Duration::from_secs(20), || async {
        common::check(on_cluster(&cluster), |&n| n >= 600)
    })
    .await;
    let aborted = post(&a_admin, "/migrations/abort").await.unwrap();
    assert!(aborted.contains("\"state\":\"aborting\""), "{aborted}");
    let on_b = status(&b_admin).await;
    assert_eq!(
        on_b["moves"][0]["state"], "aborting",
        "B switched with A: {on_b}"
    );

    // B dies mid-abort and comes back from its file, which has the abort.
    drop(instance_b);
    let saved_b = Config::load(&b_file.0).unwrap();
    assert_eq!(saved_b.migration.to_cluster, Some(MoveState::Aborting));
    let _instance_b = spawn_b(&b_file, &b_listen);
    let mut through_b = client(b_addr).await;
    for i in (0..2000).step_by(7) {
        let v: Option<i64> = through_b.get(format!("f:{i}")).await.unwrap();
        assert_eq!(v, Some(i), "f:{i} through B, restarted mid-abort");
    }
    until_no_move_on_both(&a_admin, &b_admin, "the abort ended on both").await;
    let report_a = load_a.stop().await;
    report_a.assert_no_errors();
    report_a.assert_progress();
    for file in [&a_file, &b_file] {
        let saved = Config::load(&file.0).unwrap();
        saved.validate().unwrap();
        assert!(
            saved.is_pool_mode() && saved.migration.to_cluster.is_none(),
            "{} is the pool-mode file again",
            file.0.display()
        );
        assert!(saved.cluster.seeds.is_empty());
    }
    assert_eq!(on_cluster(&cluster), 0, "the cluster is empty");
    for i in 0..2000 {
        let key = format!("f:{i}");
        let from_a: Option<i64> = through_a.get(&key).await.unwrap();
        let from_b: Option<i64> = through_b.get(&key).await.unwrap();
        assert_eq!((from_a, from_b), (Some(i), Some(i)), "{key}");
    }
    common::load::verify_acked(b_addr, &report_a).await;
    drop(proxy);
}
