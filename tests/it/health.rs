//! Active health checks seen from outside the binary: a node is marked down only after the
//! configured number of consecutive failed checks and up again only after consecutive good
//! ones, each change logged once (never a line per check).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::binary::{exit_within, spawn_slotgate};

/// A redis-server stopped with SIGSTOP (it accepts connections but answers nothing, like a
/// hung or overloaded node) until dropped.
struct Paused(libc::pid_t);

impl Paused {
    fn new(pid: u32) -> Paused {
        let pid = pid as libc::pid_t;
        // SAFETY: kill(2) on a redis-server this test started and still owns.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: as in `new`; resuming lets the server's own teardown stop it normally.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// `ADDR,up` or `ADDR,down`: the proxy's view of the pool's only replica.
fn replica_status(proxy: SocketAddr) -> String {
    common::info_value(proxy, "proxy", "master0_replica0").unwrap_or_default()
}

/// Wait up to 5 s for the replica to be marked `want` (`up` or `down`); the time it took.
fn wait_status(proxy: SocketAddr, want: &str) -> Duration {
    let started = Instant::now();
    let what = format!("the replica marked {want}");
    common::eventually_blocking(&what, Duration::from_secs(5), || {
        common::check(replica_status(proxy), |s| s.ends_with(&format!(",{want}")))
    });
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_marked_down_and_up_only_after_consecutive_checks() {
    let servers = common::standalone_servers(1);
    let replicas = common::replicas_of(&servers[0], 1);
    let (master, replica) = (servers[0].addr(), replicas[0].addr());
    let replica_pid = replicas[0].pid().expect("replica pid");
    let (mut child, addr, log) = spawn_slotgate(
        &["--workers", "1"],
        &[
            ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
            ("SLOTGATE_POOLS__A__REPLICAS", replica.as_str()),
            ("SLOTGATE_BACKEND__READ_POLICY", "prefer-replica"),
            ("SLOTGATE_HEALTH__INTERVAL_MS", "100"),
            ("SLOTGATE_HEALTH__TIMEOUT_MS", "100"),
            ("SLOTGATE_HEALTH__FAILURES", "5"),
            ("SLOTGATE_HEALTH__SUCCESSES", "3"),
        ],
    );
    assert_eq!(common::redis_cli(addr, &["SET", "k", "v"]), "OK");
    wait_status(addr, "up");

    // A blip of at most three failed checks stays under the threshold of five.
    {
        let _paused = Paused::new(replica_pid);
        // Up all along the blip (a check for an absence: it runs for the blip's length).
        let until = Instant::now() + Duration::from_millis(250);
        while Instant::now() < until {
            assert!(
                replica_status(addr).ends_with(",up"),
                "marked down by a blip"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Nothing happens after the blip either: an absence, watched for 5 check intervals.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(replica_status(addr).ends_with(",up"));
    assert!(
        log.matching("marked down").is_empty(),
        "{:#?}",
        log.snapshot()
    );

    // An outage: down after five consecutive failed checks of 100 ms each, not sooner.
    let paused = Paused::new(replica_pid);
    let took = wait_status(addr, "down");
    assert!(
        took >= Duration::from_millis(400),
        "down after only {took:?}"
    );
    let line = log.wait_for(
        "replica marked down after 5 failed health checks",
        Duration::from_secs(2),
    );
    assert!(line.contains(&replica), "{line}");
    // Reads fall back to the master while the replica is out.
    assert_eq!(common::redis_cli(addr, &["GET", "k"]), "v");

    // Back: up after three consecutive good checks.
    drop(paused);
    let took = wait_status(addr, "up");
    assert!(took >= Duration::from_millis(150), "up after only {took:?}");
    let line = log.wait_for(
        "replica marked up after 3 good health checks",
        Duration::from_secs(2),
    );
    assert!(line.contains(&replica), "{line}");

    // One line per change, none per check: an absence, watched for 3 more checks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log.matching("marked down").len(),
        1,
        "{:#?}",
        log.snapshot()
    );
    assert_eq!(log.matching("marked up").len(), 1, "{:#?}", log.snapshot());
    assert!(
        log.matching(&replica).len() <= 4,
        "the replica is logged more than its changes: {:#?}",
        log.snapshot()
    );
    let _ = child.kill();
    assert!(exit_within(&mut child, Duration::from_secs(5))
        .await
        .is_some());
}
