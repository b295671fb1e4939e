//! Upgrade in place (`proxy.upgrade_socket`, `slotgate --take-over`): the real binary handed
//! over three times in a row under load from redis-py clients with retries off, then take-overs
//! that fail (a bad config, a successor that fails after taking the listeners) leaving the
//! running process serving. The load and its checks live in `tests/py/upgrade_load.py`.
//! Then: a session's state moving, sessions that move after their MULTI or blocking command
//! ends and one closed after the timeout, and the first process as a container's PID 1. (TLS
//! clients being closed: `tls.rs`, which has the certificates.)

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::binary::{exit_within, spawn_slotgate, spawn_slotgate_under, KillOnDrop, LogLines};
use slotgate::local_redis::{ClusterOptions, LocalCluster};

/// A scratch directory for the upgrade socket, pid file and stop file; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// `name`: the test's own (tests run in parallel).
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("slotgate-upgrade-{name}-{}", std::process::id()));
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
        let python = common::redis_py_python();
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

/// `slotgate` with `args`, `env`, and the upgrade socket and pid file of `dir` (a 5 s
/// upgrade timeout unless `env` says otherwise).
fn slotgate(
    dir: &Scratch,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, std::net::SocketAddr, LogLines) {
    let pid = dir.path("slotgate.pid");
    let mut all = vec!["--workers", "2", "--pid-file", &pid];
    all.extend_from_slice(args);
    let socket = dir.path("upgrade.sock");
    let mut vars = vec![
        ("SLOTGATE_PROXY__UPGRADE_SOCKET", socket.as_str()),
        ("SLOTGATE_PROXY__UPGRADE_TIMEOUT_MS", "5000"),
    ];
    vars.extend_from_slice(env);
    spawn_slotgate(&all, &vars)
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
    let dir = Scratch::new("load");
    let (first, addr, mut log) = slotgate(&dir, &["--cluster", &seeds], &[]);
    let mut running = KillOnDrop(first);
    pid_file_names(&dir, running.0.id());
    let stop_file = dir.path("stop");
    let load = Load::start(addr, &stop_file);
    assert_eq!(load.line(Duration::from_secs(30)), "READY");

    for round in 1..=3 {
        // Let the load run on this process for a while.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (next, next_addr, next_log) =
            slotgate(&dir, &["--cluster", &seeds, "--take-over"], &[]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_move_at_their_boundary_with_their_state_or_close_after_the_timeout() {
    let server = common::standalone_servers(1).remove(0);
    let master = server.addr();
    let dir = Scratch::new("state");
    let env = [
        ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
        ("SLOTGATE_AUTH__PASSWORD", "secret"),
        ("SLOTGATE_PROXY__UPGRADE_TIMEOUT_MS", "1500"),
    ];
    let admin = ["--admin-listen", "127.0.0.1:0"];
    let (old, addr, log) = slotgate(&dir, &admin, &env);
    let line = log.wait_for("admin listener on http://", Duration::from_secs(5));
    let admin_addr: std::net::SocketAddr = line[line.find("http://").unwrap() + 7..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut old = KillOnDrop(old);
    let login = |raw: &mut common::Raw| {
        raw.send(b"AUTH secret\r\n");
        assert_eq!(raw.read_line(), "+OK\r\n");
    };
    // A client with state: logged in, named, database 2, RESP3, and half a request read.
    let mut stateful = common::Raw::connect(addr);
    login(&mut stateful);
    stateful.send(b"CLIENT SETNAME keeper\r\nSELECT 2\r\nHELLO 3\r\nPING\r\n");
    assert_eq!(stateful.read_line(), "+OK\r\n");
    assert_eq!(stateful.read_line(), "+OK\r\n");
    // HELLO's map, up to PING's answer.
    let mut seen = Vec::new();
    while !seen.ends_with(b"+PONG\r\n") {
        let more = stateful.read_exactly(1);
        assert!(
            !more.is_empty(),
            "PING answered: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend(more);
    }
    assert!(seen.starts_with(b"%"), "HELLO 3 answers a map");
    stateful.send(b"*3\r\n$3\r\nSET\r\n$5\r\nmoved\r\n$2\r\nok");
    // A transaction that ends during the hand-over, and one that never ends.
    let mut finishing = common::Raw::connect(addr);
    login(&mut finishing);
    finishing.send(b"MULTI\r\nSET tx 1\r\n");
    assert_eq!(finishing.read_line(), "+OK\r\n");
    assert_eq!(finishing.read_line(), "+QUEUED\r\n");
    let mut stuck = common::Raw::connect(addr);
    login(&mut stuck);
    stuck.send(b"MULTI\r\n");
    assert_eq!(stuck.read_line(), "+OK\r\n");
    // A client blocked until a push that comes during the hand-over.
    let mut blocked = common::Raw::connect(addr);
    login(&mut blocked);
    blocked.send(b"BLPOP queue 0\r\n");
    let direct: std::net::SocketAddr = master.parse().unwrap();
    common::wait_blocked(&[direct], 1).await;

    let (next, _, next_log) = slotgate(&dir, &[admin[0], admin[1], "--take-over"], &env);
    let _next = KillOnDrop(next);
    log.wait_for("listeners passed", Duration::from_secs(10));
    // Still in the old process (it waits for the transactions): EXEC is answered there, and
    // the client moves right after it.
    finishing.send(b"EXEC\r\n");
    assert_eq!(finishing.read_line(), "*1\r\n");
    assert_eq!(finishing.read_line(), "+OK\r\n");
    assert_eq!(common::redis_cli(direct, &["LPUSH", "queue", "job"]), "1");
    assert_eq!(blocked.read_line(), "*2\r\n");
    assert_eq!(blocked.read_exactly(20), b"$5\r\nqueue\r\n$3\r\njob\r\n");
    let status = exit_within(&mut old.0, Duration::from_secs(10)).await;
    let old_lines = log.join();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {old_lines:#?}"
    );
    assert!(
        old_lines
            .iter()
            .any(|l| l.contains("3 clients handed over, 1 closed")),
        "{old_lines:#?}"
    );
    next_log.wait_for("take-over done", Duration::from_secs(5));
    // The successor serves the admin listener on the same port.
    assert_eq!(common::http_get(admin_addr, "/healthz").0, 200);

    // The old process is gone: whatever answers now is the successor.
    assert!(
        stuck.is_closed(),
        "the endless MULTI is closed after the timeout"
    );
    finishing.send(b"GET tx\r\n");
    assert_eq!(finishing.read_line(), "$1\r\n");
    assert_eq!(finishing.read_line(), "1\r\n");
    blocked.send(b"PING\r\n");
    assert_eq!(
        blocked.read_line(),
        "+PONG\r\n",
        "the unblocked client moved"
    );
    // The rest of the half-read request, then requests that show the state moved: no AUTH
    // needed, RESP3 (an empty map, not an empty array), the name, database 2.
    stateful.send(b"\r\nHGETALL nothing\r\nCLIENT GETNAME\r\n");
    assert_eq!(stateful.read_line(), "+OK\r\n");
    assert_eq!(stateful.read_line(), "%0\r\n");
    assert_eq!(stateful.read_line(), "$6\r\n");
    assert_eq!(stateful.read_line(), "keeper\r\n");
    assert_eq!(
        common::redis_cli(direct, &["-n", "2", "GET", "moved"]),
        "ok"
    );
    assert_eq!(
        common::redis_cli(direct, &["-n", "0", "EXISTS", "moved"]),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_containers_pid_1_the_old_process_stays_for_its_successor() {
    // A PID namespace stands for the container (needs root, as the hostnames tests do).
    let namespaces = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !namespaces {
        eprintln!("skipped: `unshare --pid` is not permitted here");
        return;
    }
    let server = common::standalone_servers(1).remove(0);
    let master = server.addr();
    let dir = Scratch::new("pid1");
    let (pid_file, socket) = (dir.path("slotgate.pid"), dir.path("upgrade.sock"));
    let env = [
        ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
        ("SLOTGATE_PROXY__UPGRADE_SOCKET", socket.as_str()),
    ];
    let args = ["--workers", "1", "--pid-file", &pid_file];
    let (init, addr, log) =
        spawn_slotgate_under(&["unshare", "--pid", "--fork", "--kill-child"], &args, &env);
    let mut init = KillOnDrop(init);
    pid_file_names(&dir, 1);
    // Its pid outside the namespace: unshare's child.
    let children = format!("/proc/{0}/task/{0}/children", init.0.id());
    let inner = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .to_string();
    let mut client = common::Raw::connect(addr);
    client.send(b"PING\r\n");
    assert_eq!(client.read_line(), "+PONG\r\n");

    let mut take_over = args.to_vec();
    take_over.push("--take-over");
    let (next, _, next_log) = spawn_slotgate_under(
        &["nsenter", "--target", &inner, "--pid", "--"],
        &take_over,
        &env,
    );
    let mut next = KillOnDrop(next);
    log.wait_for("this process is PID 1", Duration::from_secs(10));
    next_log.wait_for("take-over done", Duration::from_secs(5));
    client.send(b"PING\r\n");
    assert_eq!(client.read_line(), "+PONG\r\n");
    assert!(
        exit_within(&mut init.0, Duration::from_millis(500))
            .await
            .is_none(),
        "PID 1 stays while its successor runs"
    );
    // The container is stopped: its PID 1 passes SIGTERM on; the successor drains, exits and
    // removes its pid file; then PID 1 exits, cleanly.
    // SAFETY: kill(2) on the pid of a process this test started (in its namespace).
    assert_eq!(
        unsafe { libc::kill(inner.parse().unwrap(), libc::SIGTERM) },
        0
    );
    let successor = exit_within(&mut next.0, Duration::from_secs(10)).await;
    assert!(successor.is_some_and(|s| s.success()), "{successor:?}");
    let status = exit_within(&mut init.0, Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {:#?}",
        log.join()
    );
    assert!(client.is_closed());
}
