//! Master failover under load: a master dies (SIGKILL) or freezes (SIGSTOP, then comes back
//! with a stale view) and its replica is promoted. Through the proxy, clients may see errors
//! for the dead master's keys only while there is no master for them (kill → promotion, plus
//! [`SLACK`] for the proxy to learn it), never for other keys, never a redirect, and every
//! acknowledged write stays readable except what asynchronous replication can lose (see
//! [`may_lose_last`]).

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::load::{self, Acked, Failure, Load, LoadReport};
use slotgate::local_redis::{ClusterOptions, LocalCluster, Role};
use slotgate::slot::Slot;
use slotgate::Proxy;

/// `cluster-node-timeout`: a silent master is failed over 2–4 s after it went quiet.
const NODE_TIMEOUT_MS: u64 = 2_000;
/// How long the replica may take to be promoted.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(15);
/// After the promotion, how long the proxy may still fail requests for the failed slots.
const SLACK: Duration = Duration::from_secs(1);
/// Load kept running after the promotion (or the stale node's return).
const AFTER: Duration = Duration::from_secs(3);
const CLIENTS: usize = 30;
const KEYS: usize = 300;
/// Longest a whole test may take.
const BUDGET: Duration = Duration::from_secs(60);

/// `cluster-require-full-coverage no`: by default every node answers `CLUSTERDOWN` for *all*
/// slots from the moment a master is marked failed until its replica is promoted. That is Redis
/// refusing, not the proxy; with this setting the healthy masters keep serving, so "no error
/// for keys on other masters" checks the proxy alone.
fn options() -> ClusterOptions {
    ClusterOptions {
        node_timeout_ms: NODE_TIMEOUT_MS,
        extra_args: vec!["--cluster-require-full-coverage".into(), "no".into()],
        ..ClusterOptions::default()
    }
}

/// The first master (index in `nodes()`) and its replica.
fn victim_and_replica(cluster: &LocalCluster) -> (usize, usize) {
    let nodes = cluster.nodes();
    let victim = nodes.iter().position(|n| n.role == Role::Master).unwrap();
    let replica = nodes.iter().position(|n| n.master == Some(victim)).unwrap();
    (victim, replica)
}

/// The keys of `keys` whose slot `port` served at start-up.
fn keys_on(cluster: &LocalCluster, keys: &[String], port: u16) -> HashSet<String> {
    keys.iter()
        .filter(|k| cluster.port_of_slot(Slot::of(k.as_bytes()).get()) == Some(port))
        .cloned()
        .collect()
}

/// Polls node `idx` until it reports the `want` role; returns when it first did. Each probe
/// blocks this thread for at most 500 ms; the whole wait is bounded by `timeout`.
async fn wait_role(cluster: &LocalCluster, idx: usize, want: Role, timeout: Duration) -> Instant {
    let what = format!("node {idx} (port {}) {want:?}", cluster.nodes()[idx].port);
    common::eventually(&what, timeout, async || {
        let role = cluster.role_now(idx);
        common::check(role, |r| matches!(r, Ok(r) if *r == want)).map(|_| Instant::now())
    })
    .await
}

/// Replication is asynchronous: a write the old master acknowledged just before it died may
/// not have reached its replica, and then the promoted replica does not have it. That is Redis'
/// documented behaviour, not the proxy losing data, so for the failed master's keys whose last
/// acknowledged write came *before the promotion* (hence from the old master), the value before
/// it (or none) is accepted too. Writes acknowledged after the promotion must all be there.
fn may_lose_last<'a>(
    failed_keys: &'a HashSet<String>,
    promoted_at: Instant,
) -> impl Fn(&str, &Acked) -> bool + 'a {
    move |key, acked| failed_keys.contains(key) && acked.at < promoted_at
}

/// Panics unless the only failures are for `failed_keys`, sent before `window_end` and
/// answered after `window_start`: a request sent while the old master was still there may
/// fail when it dies, and one sent just before the proxy learned of the new master may take
/// up to the request timeout to fail, so failures are placed by when they were *sent*.
fn assert_errors_only_in_window(
    report: &LoadReport,
    failed_keys: &HashSet<String>,
    window_start: Instant,
    window_end: Instant,
) {
    let (failed, others): (Vec<&Failure>, Vec<&Failure>) = report
        .errors
        .iter()
        .partition(|f| failed_keys.contains(&f.key));
    assert!(
        others.is_empty(),
        "{} errors for keys on healthy masters (or connections), first: {}",
        others.len(),
        others[0]
    );
    let outside: Vec<&&Failure> = failed
        .iter()
        .filter(|f| f.at < window_start || f.started > window_end)
        .collect();
    assert!(
        outside.is_empty(),
        "{} of {} errors outside the failover window, first: {} (sent {:?} after the window)",
        outside.len(),
        failed.len(),
        outside[0],
        outside[0].started.saturating_duration_since(window_end)
    );
}

/// Every key of `keys` got a write acknowledged after `after`: the load kept making progress
/// on them once the window was over.
fn assert_written_after(report: &LoadReport, keys: &HashSet<String>, after: Instant) {
    let stale: Vec<&String> = keys
        .iter()
        .filter(|k| !matches!(report.acked.get(*k), Some(a) if a.at > after))
        .collect();
    assert!(
        stale.is_empty(),
        "{} of {} keys of the failed master got no acknowledged write after the window, e.g. {}",
        stale.len(),
        keys.len(),
        stale[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_fails_over_with_errors_only_in_the_window() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let mut setup = common::start_with(options(), |_| {});
    let addr = setup.addr();
    let (victim, replica) = victim_and_replica(&setup.cluster);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("f:{i}")).collect();
    let failed_keys = keys_on(&setup.cluster, &keys, setup.cluster.nodes()[victim].port);

    let refreshes_before = load::counter(addr, "topology_refreshes").await;
    let load = Load::start(addr, CLIENTS, keys);
    // A phase of the scenario, not a wait for an event: a second of load before the failure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_started = Instant::now();
    setup.cluster.kill(victim).expect("SIGKILL the master");
    let killed_at = Instant::now();
    let promoted_at = wait_role(&setup.cluster, replica, Role::Master, PROMOTION_TIMEOUT).await;
    // A phase of the scenario: the load runs on past the window, whose end is checked.
    tokio::time::sleep(AFTER).await;
    let report = load.stop().await;
    eprintln!(
        "killed_master_fails_over: promotion {:.1?} after the kill; {} (test {:.1?})",
        promoted_at - killed_at,
        report.summary(),
        started.elapsed()
    );

    report.assert_progress();
    report.assert_no_redirects();
    let window_end = promoted_at + SLACK;
    assert_errors_only_in_window(&report, &failed_keys, kill_started, window_end);
    assert_written_after(&report, &failed_keys, window_end);
    let lost = load::check_acked(addr, &report, may_lose_last(&failed_keys, promoted_at)).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Every error a client saw was one the proxy counted.
    let failed = load::counter(addr, "requests_failed_backend").await;
    assert!(
        failed as usize >= report.errors.len(),
        "INFO counts {failed} failed requests, clients saw {}",
        report.errors.len()
    );
    let refreshes_after = load::counter(addr, "topology_refreshes").await;
    assert!(
        refreshes_after > refreshes_before,
        "no topology refresh during the failover"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// A master freezes (SIGSTOP) long enough to be failed over, then resumes (SIGCONT) still
/// believing, for a moment, that it owns its slots with its old config epoch. The proxy has it
/// as its *first seed*, so a proxy that trusts the first answer would route to it. Checked on
/// the proxy that ran throughout and on a fresh proxy started right after SIGCONT: requests
/// for its former slots go to the new master, and writes made after the failover are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_master_after_failover_is_not_trusted() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let cluster = LocalCluster::start(options()).expect("start the Redis Cluster");
    let (victim, replica) = victim_and_replica(&cluster);
    let victim_port = cluster.nodes()[victim].port;
    let new_master_port = cluster.nodes()[replica].port;
    let victim_seed = format!("127.0.0.1:{victim_port}");
    let mut seeds = cluster.seeds();
    seeds.retain(|s| *s != victim_seed);
    seeds.insert(0, victim_seed);
    let proxy = Proxy::start(common::proxy_config(seeds.clone())).expect("start slotgate");
    let setup = common::Setup { proxy, cluster };
    let addr = setup.addr();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("s:{i}")).collect();
    let failed_keys = keys_on(&setup.cluster, &keys, victim_port);
    // Written once after SIGCONT; never touched by the load.
    let late_keys: Vec<String> = (0..)
        .map(|i| format!("late:{i}"))
        .filter(|k| setup.cluster.port_of_slot(Slot::of(k.as_bytes()).get()) == Some(victim_port))
        .take(50)
        .collect();

    let load = Load::start(addr, CLIENTS, keys);
    // A phase of the scenario, not a wait for an event: a second of load before the failure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = setup.cluster.pid(victim).expect("victim pid");
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    let stop_started = Instant::now();
    // SAFETY: plain kill(2) on a child process we started and still own (not yet reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");
    let promoted_at = wait_role(&setup.cluster, replica, Role::Master, PROMOTION_TIMEOUT).await;
    // Let the running proxy get past the failover before the old master wakes up: the
    // scenario's timing (the error window ends at promotion + SLACK), kept as it was.
    tokio::time::sleep(SLACK + Duration::from_millis(500)).await;

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0, "SIGCONT");
    let resumed_at = Instant::now();
    // Started at once, while the old master may still claim its slots.
    let fresh = Proxy::start(common::proxy_config(seeds)).expect("start a fresh slotgate");
    let fresh_started = resumed_at.elapsed();
    let victim_role = setup.cluster.role_now(victim);
    let mut late = LoadReport::default();
    let mut late_failures = Vec::new();
    let mut c = common::client(fresh.local_addr()).await;
    for (i, key) in late_keys.iter().enumerate() {
        let value = format!("late:{i}");
        let set = redis::cmd("SET").arg(key).arg(&value).clone();
        let reply: redis::RedisResult<()> =
            tokio::time::timeout(Duration::from_secs(8), set.query_async(&mut c))
                .await
                .expect("SET through the fresh proxy: no reply within 8 s");
        match reply {
            Ok(()) => {
                let acked = Acked {
                    value,
                    at: Instant::now(),
                    previous: None,
                    unacked: Vec::new(),
                };
                late.acked.insert(key.clone(), acked);
            }
            Err(e) => late_failures.push(format!(
                "SET {key}: {} {}",
                e.code().unwrap_or("?"),
                e.detail().unwrap_or("")
            )),
        }
    }
    // A phase of the scenario: the load runs on after the late writes.
    tokio::time::sleep(AFTER).await;
    let report = load.stop().await;
    // The old master rejoins as a replica of the new one and resyncs from it.
    wait_role(&setup.cluster, victim, Role::Replica, PROMOTION_TIMEOUT).await;
    setup
        .cluster
        .wait_ok(Duration::from_secs(20))
        .expect("cluster settles");
    eprintln!(
        "stale_master: promotion {:.1?} after SIGSTOP; fresh proxy up {fresh_started:.1?} \
         after SIGCONT, old master then reported {victim_role:?}; {} late writes acked, {} \
         failed; load: {} (test {:.1?})",
        promoted_at - stop_started,
        late.acked.len(),
        late_failures.len(),
        report.summary(),
        started.elapsed()
    );

    report.assert_progress();
    report.assert_no_redirects();
    assert!(
        late_failures.is_empty(),
        "writes through the fresh proxy failed: {late_failures:?}"
    );
    let window_end = promoted_at + SLACK;
    assert_errors_only_in_window(&report, &failed_keys, stop_started, window_end);
    assert_written_after(&report, &failed_keys, resumed_at);
    // Writes after the failover are on the new master and readable through both proxies.
    for (what, at) in [
        ("new master", load::node_addr(new_master_port)),
        ("running proxy", addr),
        ("fresh proxy", fresh.local_addr()),
    ] {
        let lost = load::check_acked(at, &late, |_, _| false).await;
        assert!(lost.is_empty(), "late writes not on the {what}: {lost:?}");
    }
    let lost = load::check_acked(addr, &report, may_lose_last(&failed_keys, promoted_at)).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
