//! Upgrade in place (`proxy.upgrade_socket`, `slotgate --take-over`): the real binary handed
//! over three times in a row under load from redis-py clients with retries off, then take-overs
//! that fail (a bad config, a successor that fails after taking the listeners) leaving the
//! running process serving. The load and its checks live in `tests/py/upgrade_load.py`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::binary::{exit_within, spawn_slotgate, KillOnDrop, LogLines};
use slotgate::local_redis::{ClusterOptions, LocalCluster};

/// A scratch directory for the upgrade socket, pid file and stop file; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("slotgate-upgrade-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The redis-py load, its stdout lines arriving on a channel.
struct Load {
    _child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, stop_file: &str) -> Load {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/redis-py/venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/ensure-python (scripts/test does)",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(root.join("tests/py/upgrade_load.py"))
            .arg(addr.to_string())
            .arg(stop_file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Load {
            _child: KillOnDrop(child),
            lines,
        }
    }

    fn line(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .expect("the load script printed nothing in time (see its stderr)")
    }
}

/// `slotgate` in front of `seeds` with the upgrade socket and pid file of `dir`; `extra`
/// flags last.
fn slotgate(seeds: &str, dir: &Scratch, extra: &[&str]) -> (Child, std::net::SocketAddr, LogLines) {
    let pid = dir.path("slotgate.pid");
    let mut args = vec!["--cluster", seeds, "--workers", "2", "--pid-file", &pid];
    args.extend_from_slice(extra);
    let socket = dir.path("upgrade.sock");
    spawn_slotgate(
        &args,
        &[
            ("SLOTGATE_PROXY__UPGRADE_SOCKET", socket.as_str()),
            ("SLOTGATE_PROXY__UPGRADE_TIMEOUT_MS", "5000"),
        ],
    )
}

/// Wait until the pid file names `pid` (it is written just after the ready line).
fn pid_file_names(dir: &Scratch, pid: u32) {
    common::eventually_blocking(
        "the pid file to name the process",
        Duration::from_secs(5),
        || {
            let text = std::fs::read_to_string(dir.path("slotgate.pid")).unwrap_or_default();
            common::check(text, |t| t.trim() == pid.to_string())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_upgrades_under_load_lose_no_client_and_a_failed_one_changes_nothing() {
    let cluster = LocalCluster::start(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    })
    .unwrap();
    let seeds = cluster.seeds().join(",");
    let dir = Scratch::new();
    let (first, addr, mut log) = slotgate(&seeds, &dir, &[]);
    let mut running = KillOnDrop(first);
    pid_file_names(&dir, running.0.id());
    let stop_file = dir.path("stop");
    let load = Load::start(addr, &stop_file);
    assert_eq!(load.line(Duration::from_secs(30)), "READY");

    for round in 1..=3 {
        // Let the load run on this process for a while.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (next, next_addr, next_log) = slotgate(&seeds, &dir, &["--take-over"]);
        assert_eq!(next_addr, addr, "the successor serves the same listener");
        let status = exit_within(&mut running.0, Duration::from_secs(20)).await;
        let old_lines = std::mem::replace(&mut log, next_log).join();
        let status = status.unwrap_or_else(|| {
            panic!("round {round}: the old process did not exit: {old_lines:#?}")
        });
        assert!(status.success(), "round {round}: {status}: {old_lines:#?}");
        for phase in [
            "listeners passed",
            "upgrade: done",
            "handed over to the successor",
        ] {
            assert!(
                old_lines.iter().any(|l| l.contains(phase)),
                "round {round}: no {phase:?} line: {old_lines:#?}"
            );
        }
        running = KillOnDrop(next);
        log.wait_for("take-over done", Duration::from_secs(10));
        pid_file_names(&dir, running.0.id());
    }

    // A successor with a bad configuration fails before it reaches the running process.
    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "[proxy]\nmax_clients = \"many\"\n").unwrap();
    let socket = dir.path("upgrade.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["--config", &bad, "--cluster", &seeds, "--take-over"])
        .env("SLOTGATE_PROXY__UPGRADE_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("proxy.max_clients"), "{stderr}");

    // One that fails after it took the listeners (its admin port is taken): the running
    // process says so and keeps serving.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            &seeds,
            "--take-over",
        ])
        .args(["--admin-listen", &taken])
        .env("SLOTGATE_PROXY__UPGRADE_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&taken), "{stderr}");
    log.wait_for("keeps serving, untouched", Duration::from_secs(10));
    pid_file_names(&dir, running.0.id());
    // New clients are still served by it.
    let mut late = common::Raw::connect(addr);
    late.send(b"PING\r\n");
    assert_eq!(late.read_line(), "+PONG\r\n");
    tokio::time::sleep(Duration::from_millis(500)).await;

    std::fs::write(&stop_file, "").unwrap();
    let report = load.line(Duration::from_secs(40));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    eprintln!("load: {report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["reconnected"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing_count"], 0, "{report}");
    assert_eq!(report["name_mismatch"], serde_json::json!([]), "{report}");
    // No message lost; duplicates are allowed (a message published while both processes are
    // subscribed reaches the client twice: see docs/DEPLOY.md).
    assert_eq!(report["lost"], serde_json::json!([]), "{report}");
    assert!(report["published"].as_u64().unwrap() > 100, "{report}");
    assert!(report["acked"].as_u64().unwrap() > 1000, "{report}");
    assert_eq!(
        report["min_receivers"], 1,
        "every message had its subscriber: {report}"
    );
}
