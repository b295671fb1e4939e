//! Resharding under load: slots move between masters (`redis-cli --cluster reshard`, and
//! `rebalance` onto a newly added master) while 50 plain clients keep writing and reading back
//! 2000 keys through the proxy. The proxy must absorb every MOVED and ASK: clients see no
//! redirect and no error, and no acknowledged write is lost.

use crate::common;

use std::time::{Duration, Instant};

use common::load::{self, Load};

const CLIENTS: usize = 50;
const KEYS: usize = 2000;
/// Load after the change: a proxy that still routes by the old table would be caught here.
const AFTER: Duration = Duration::from_secs(1);
/// Longest a `redis-cli --cluster reshard/rebalance` may run (a few thousand slots).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a whole test may take.
const BUDGET: Duration = Duration::from_secs(100);

/// `r:0` … `r:1999`: spread over all slots, so every master holds some.
fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("r:{i}")).collect()
}

/// Waits until the load has written every key once, so every key exists when its slot moves.
async fn wait_all_written(setup: &common::Setup) {
    let masters = setup.masters();
    common::eventually(
        "every key of the load written",
        Duration::from_secs(10),
        async || common::check(common::dbsize_sum(&masters), |&n| n == KEYS as u64),
    )
    .await;
}

/// The cluster's masters (ids and ports).
fn master_nodes(setup: &common::Setup) -> Vec<slotgate::local_redis::NodeInfo> {
    let nodes = setup.cluster.nodes().iter();
    nodes
        .filter(|n| n.role == slotgate::local_redis::Role::Master)
        .cloned()
        .collect()
}

/// `redis-cli --cluster reshard` of `slots` slots from node `from` to node `to` (ids); the
/// time it took.
fn reshard(setup: &common::Setup, from: &str, to: &str, slots: usize) -> Duration {
    let t = Instant::now();
    setup
        .cluster
        .reshard(from, to, slots, CLI_TIMEOUT)
        .expect("redis-cli --cluster reshard");
    t.elapsed()
}

/// Panics listing the first redirects and errors the clients saw.
fn assert_invisible(report: &load::LoadReport) {
    report.assert_no_redirects();
    report.assert_no_errors();
}

/// The harness check for the tests below: with no topology change, the load generator sees no
/// error at all and every acknowledged write reads back. Passes on the current proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_has_no_errors() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let setup = common::start();
    let load = Load::start(setup.addr(), CLIENTS, keys());
    // The steady state observed: a period of load, not a wait for an event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    eprintln!(
        "steady_state_has_no_errors: {} (test {:.1?})",
        report.summary(),
        started.elapsed()
    );

    report.assert_progress();
    assert_eq!(report.acked.len(), KEYS, "not every key was written");
    assert_invisible(&report);
    load::verify_acked(setup.addr(), &report).await;
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// 3000 slots move from the first master to the second under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_under_load_is_invisible_to_clients() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let setup = common::start();
    let addr = setup.addr();
    let masters: Vec<_> = master_nodes(&setup);
    let (from, to) = (&masters[0], &masters[1]);
    let before = setup.cluster.slot_counts().expect("slot map before");
    let version_before = load::counter(addr, "slot_table_version").await;

    let load = Load::start(addr, CLIENTS, keys());
    wait_all_written(&setup).await;
    // Blocks this thread only; the load runs on the runtime's workers.
    let reshard_took = reshard(&setup, &from.id, &to.id, 3000);
    tokio::time::sleep(AFTER).await;
    let report = load.stop().await;
    eprintln!(
        "reshard_under_load: reshard of 3000 slots took {reshard_took:.1?}; {} (test {:.1?})",
        report.summary(),
        started.elapsed()
    );

    // The harness really moved the slots ...
    let after = setup.cluster.slot_counts().expect("slot map after");
    assert_eq!(after[&to.port], before[&to.port] + 3000, "{after:?}");
    assert_eq!(after[&from.port], before[&from.port] - 3000, "{after:?}");
    report.assert_progress();
    // ... and the clients did not notice.
    assert_invisible(&report);
    load::verify_acked(addr, &report).await;

    // Counters of the topology feature (missing before it exists).
    let moved = load::counter(addr, "redirects_moved").await;
    let ask = load::counter(addr, "redirects_ask").await;
    eprintln!("reshard_under_load: proxy absorbed {moved} MOVED, {ask} ASK");
    assert!(
        moved + ask > 0,
        "the proxy saw no redirect: the test did not hit a migration window"
    );
    let version_after = load::counter(addr, "slot_table_version").await;
    assert!(
        version_after > version_before,
        "slot table not updated: {version_before} -> {version_after}"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// A new empty master joins, then `rebalance --cluster-use-empty-masters` gives it a quarter of
/// the slots (and their keys) under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_onto_a_new_master_is_invisible_to_clients() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let mut setup = common::start();
    let addr = setup.addr();

    let load = Load::start(addr, CLIENTS, keys());
    wait_all_written(&setup).await;
    // From this (the test's) thread: the new node dies with the thread that spawned it.
    let t = Instant::now();
    let idx = setup.cluster.add_master().expect("add a master");
    let added_took = t.elapsed();
    let new_port = setup.cluster.nodes()[idx].port;
    let t = Instant::now();
    setup
        .cluster
        .rebalance(CLI_TIMEOUT)
        .expect("redis-cli --cluster rebalance");
    let rebalance_took = t.elapsed();
    tokio::time::sleep(AFTER).await;
    let report = load.stop().await;
    eprintln!(
        "rebalance_onto_new_master: add-node {added_took:.1?}, rebalance {rebalance_took:.1?}; \
         {} (test {:.1?})",
        report.summary(),
        started.elapsed()
    );

    // The harness really added the master and moved slots and keys to it ...
    let counts = setup.cluster.slot_counts().expect("slot map after");
    let new_slots = counts.get(&new_port).copied().unwrap_or(0);
    assert!(
        new_slots > 3000,
        "new master serves {new_slots} slots: {counts:?}"
    );
    let mut direct = load::node(new_port).await;
    let dbsize: u64 = redis::cmd("DBSIZE")
        .query_async(&mut direct)
        .await
        .expect("DBSIZE on the new master");
    assert!(dbsize > 0, "no key moved to the new master");
    eprintln!("rebalance_onto_new_master: new master has {new_slots} slots, {dbsize} keys");
    report.assert_progress();
    // ... and the clients did not notice.
    assert_invisible(&report);
    load::verify_acked(addr, &report).await;

    // The proxy routes to the new master: bounded wait for its table to show it.
    common::eventually(
        "4 in INFO proxy backend_masters",
        Duration::from_secs(5),
        async || {
            let masters = load::info_field(addr, "backend_masters").await;
            common::check(masters, |&m| m == Some(4))
        },
    )
    .await;
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// One full SCAN (until cursor 0) through the proxy: the keys it returned and its call count.
async fn full_scan(c: &mut redis::aio::MultiplexedConnection) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let (next, page): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg("s:*")
            .arg("COUNT")
            .arg(25)
            .query_async(c)
            .await
            .expect("SCAN through the proxy");
        keys.extend(page);
        calls += 1;
        assert!(calls < 100_000, "SCAN never finished");
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

/// SCAN while slots move from the master scanned last to the one scanned first (the order
/// that would lose keys to a scan that does not notice): every scan that reports cursor 0
/// returned every key, whether it ran during or after the reshard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_during_a_reshard_misses_no_key() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let _serial = load::serial().await;
    let started = Instant::now();
    let setup = common::start();
    let addr = setup.addr();
    let mut masters: Vec<_> = master_nodes(&setup);
    // The proxy scans masters in address order; all ports here have the same digit count.
    masters.sort_by_key(|n| n.port.to_string());
    let (first, last) = (masters[0].clone(), masters[masters.len() - 1].clone());
    let want: BTreeSet<String> = (0..3000).map(|i| format!("s:{i}")).collect();
    let mut c = common::client(addr).await;
    for chunk in want.iter().collect::<Vec<_>>().chunks(500) {
        let mut mset = redis::cmd("MSET");
        for key in chunk {
            mset.arg(*key).arg("v");
        }
        let _: () = mset.query_async(&mut c).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let stop = Arc::clone(&stop);
        let want = want.clone();
        tokio::spawn(async move {
            let mut c = common::client(addr).await;
            let (mut scans, mut calls) = (0, 0);
            loop {
                let done = stop.load(Ordering::Relaxed);
                let (keys, n) = full_scan(&mut c).await;
                let got: BTreeSet<String> = keys.into_iter().collect();
                let missing: Vec<_> = want.difference(&got).take(5).collect();
                assert!(
                    missing.is_empty(),
                    "scan {scans} missed keys, e.g. {missing:?}"
                );
                scans += 1;
                calls += n;
                if done {
                    return (scans, calls);
                }
            }
        })
    };
    let reshard_took = reshard(&setup, &last.id, &first.id, 2000);
    stop.store(true, Ordering::Relaxed);
    let (scans, calls) = scanner.await.expect("scanner");
    eprintln!(
        "scan_during_reshard: reshard of 2000 slots took {reshard_took:.1?}; {scans} full scans \
         ({calls} SCAN calls) all complete (test {:.1?})",
        started.elapsed()
    );
    let after = setup.cluster.slot_counts().expect("slot map after");
    assert!(after[&first.port] >= 2000, "{after:?}");
    assert!(calls > scans, "the scans did not page");
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
