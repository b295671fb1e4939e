//! Configuration errors, the command line, environment overrides and the pid file, through
//! the real binary.

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn slotgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(args)
        .output()
        .expect("run slotgate")
}

/// The stderr of `slotgate check-config file`, which must fail.
fn check_config_fails(file: &Path) -> String {
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn reference_config_passes_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/slotgate.toml");
    let out = common::binary::check_config_passes(path, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let mut file = std::env::temp_dir();
    file.push(format!("slotgate-bad-{}.toml", std::process::id()));
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "[proxy]\nlisten = \"nowhere\"\nlisten_port = 1\n[cluster]\nseeds = []\n[backend]\nrequest_timeout_ms = 0\n[bogus]\nx = 1").unwrap();
    drop(f);
    let stderr = check_config_fails(&file);
    // Unknown keys are reported first (all of them), before values are checked.
    assert!(
        stderr.contains("proxy.listen_port: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains("bogus: unknown key"), "{stderr}");

    std::fs::write(
        &file,
        "[proxy]\nlisten = \"nowhere\"\n[cluster]\nseeds = []\n[backend]\nrequest_timeout_ms = 0\n",
    )
    .unwrap();
    let stderr = check_config_fails(&file);
    for path in [
        "proxy.listen",
        "cluster.seeds",
        "backend.request_timeout_ms",
    ] {
        assert!(
            stderr.contains(&format!("{path}:")),
            "missing {path} in:\n{stderr}"
        );
    }

    std::fs::write(&file, "[backend]\nrequest_timeout_ms = \"soon\"\n").unwrap();
    let stderr =
        String::from_utf8_lossy(&slotgate(&["check-config", file.to_str().unwrap()]).stderr)
            .into_owned();
    assert!(stderr.contains("backend.request_timeout_ms"), "{stderr}");
    std::fs::remove_file(&file).ok();
}

#[test]
fn missing_file_and_bad_flags_fail_clearly() {
    let out = slotgate(&["check-config", "/nonexistent/slotgate.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = slotgate(&["--listen", "127.0.0.1:0", "--workers", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.seeds"));

    let out = slotgate(&["--cluster", "127.0.0.1:1", "--log-level", "loud["]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.level"));
}

#[test]
fn environment_variables_configure_a_run_without_a_file() {
    // Invalid values prove the variables were read: validation names their keys.
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .env("SLOTGATE_CLUSTER", "127.0.0.1:1")
        .env("SLOTGATE_ADMIN_LISTEN", "no-port")
        .env("SLOTGATE_LOG_FORMAT", "json")
        .output()
        .expect("run slotgate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.listen: \"no-port\" is not HOST:PORT"),
        "{stderr}"
    );

    // A flag wins over its variable.
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .env("SLOTGATE_LOG_FORMAT", "xml")
        .args([
            "--log-format",
            "text",
            "--cluster",
            "127.0.0.1:1",
            "--listen",
            "nowhere",
        ])
        .output()
        .expect("run slotgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("proxy.listen: \"nowhere\" is not HOST:PORT"),
        "{stderr}"
    );
}

#[test]
fn check_config_reads_the_tls_files_and_warns_about_exposure() {
    let file = std::env::temp_dir().join(format!("slotgate-tls-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[proxy]\nlisten = \"0.0.0.0:6380\"\n[cluster]\nseeds = [\"127.0.0.1:7000\"]\n\
         [tls]\nlisten = \"127.0.0.1:6390\"\ncert_file = \"/nonexistent/proxy.crt\"\n\
         key_file = \"/nonexistent/proxy.key\"\n",
    )
    .unwrap();
    let stderr = check_config_fails(&file);
    assert!(stderr.contains("tls.cert_file: cannot read"), "{stderr}");
    assert!(stderr.contains("tls.key_file: cannot read"), "{stderr}");

    // Valid otherwise: OK, with a warning for the listener on every interface.
    std::fs::write(
        &file,
        "[proxy]\nlisten = \"0.0.0.0:6380\"\n[cluster]\nseeds = [\"127.0.0.1:7000\"]\n",
    )
    .unwrap();
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: proxy.listen = \"0.0.0.0:6380\" is reachable"),
        "{stderr}"
    );
    std::fs::remove_file(&file).ok();
}

/// The stderr of a run of the binary with `env` set and `args`, which must fail (invalid
/// values make it stop at validation, before binding anything).
fn failing_run(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run slotgate");
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("slotgate-{name}-{}", std::process::id()))
}

#[test]
fn environment_overrides_every_key_between_the_file_and_the_flags() {
    let file = temp_path("env.toml");
    std::fs::write(
        &file,
        "[proxy]\nlisten = \"from-file\"\n[cluster]\nseeds = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    // The file alone.
    let stderr = failing_run(&[], &["--config", config]);
    assert!(stderr.contains("proxy.listen: \"from-file\""), "{stderr}");
    // The environment over the file.
    let env = [("SLOTGATE_PROXY__LISTEN", "from-env")];
    let stderr = failing_run(&env, &["--config", config]);
    assert!(stderr.contains("proxy.listen: \"from-env\""), "{stderr}");
    // A flag over both.
    let stderr = failing_run(&env, &["--config", config, "--listen", "from-flag"]);
    assert!(stderr.contains("proxy.listen: \"from-flag\""), "{stderr}");
    // Keys no flag has, nested ones, numbers and booleans: validation names each one.
    let env = [
        ("SLOTGATE_BACKEND__REQUEST_TIMEOUT_MS", "0"),
        ("SLOTGATE_BACKEND__TLS__ENABLED", "true"),
        (
            "SLOTGATE_CLUSTER__SEEDS",
            "[\"127.0.0.1:1\", \"127.0.0.1:2\"]",
        ),
    ];
    let stderr = failing_run(&env, &["--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("backend.request_timeout_ms:"), "{stderr}");
    assert!(stderr.contains("backend.tls.ca_file:"), "{stderr}");
    // check-config checks what would run: the file with the environment applied.
    common::binary::check_config_passes(config, &[("SLOTGATE_PROXY__LISTEN", "127.0.0.1:6380")]);
    std::fs::remove_file(&file).ok();
}

#[test]
fn unknown_environment_keys_are_rejected_with_their_path() {
    let flags = ["--cluster", "127.0.0.1:1"];
    let stderr = failing_run(&[("SLOTGATE_PROXY__LISTNE", "127.0.0.1:0")], &flags);
    assert!(
        stderr.contains("proxy.listne: unknown key (set by SLOTGATE_PROXY__LISTNE)"),
        "{stderr}"
    );
    let stderr = failing_run(&[("SLOTGATE_BACKEND__TLS__ENABLE", "true")], &flags);
    assert!(
        stderr.contains("backend.tls.enable: unknown key"),
        "{stderr}"
    );
    // One underscore where two belong: not a path, and not a flag variable either.
    let stderr = failing_run(&[("SLOTGATE_PROXY_LISTEN", "127.0.0.1:0")], &flags);
    assert!(
        stderr.contains("SLOTGATE_PROXY_LISTEN: not a configuration variable"),
        "{stderr}"
    );
}

#[test]
fn log_lines_to_a_pipe_have_no_colour_codes() {
    let server = common::standalone_servers(1).remove(0);
    let master = server.addr();
    // stderr is a pipe here (the harness collects it), not a terminal.
    let (child, _, log) = common::binary::spawn_slotgate(
        &["--workers", "1"],
        &[("SLOTGATE_POOLS__A__MASTER", master.as_str())],
    );
    // Killed once serving (its stderr closes): the lines up to "serving" are enough.
    drop(Running(child));
    let lines = log.join();
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:#?}");
    assert!(
        lines.iter().all(|l| !l.contains('\x1b')),
        "ANSI escape codes in a piped log: {lines:#?}"
    );
}

/// A running `slotgate` child, SIGKILLed by its PID if the test ends before it exited.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Running {
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: kill(2) on the PID of the child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Wait (at most 15 s) for the exit status.
    fn exit_code(&mut self) -> Option<i32> {
        let child = &mut self.0;
        common::eventually_blocking("slotgate exits", Duration::from_secs(15), || {
            child.try_wait().unwrap().ok_or("still running")
        })
        .code()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (at most 15 s) until `path` exists and `addr` accepts connections.
fn wait_serving(child: &mut Running, addr: SocketAddr, path: &Path) {
    let what = format!("slotgate serving on {addr}, with {path:?}");
    common::eventually_blocking(&what, Duration::from_secs(15), || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "slotgate exited early"
        );
        match (path.exists(), TcpStream::connect(addr)) {
            (true, Ok(_)) => Ok(()),
            (exists, connect) => Err(format!("file exists: {exists}, connect: {connect:?}")),
        }
    });
}

#[test]
fn a_sidecar_from_the_environment_keeps_its_pid_file_and_overrides_across_reloads() {
    let servers = common::standalone_servers(2);
    let (env_server, file_server) = (&servers[0], &servers[1]);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid_path = temp_path("sidecar.pid");
    let file = temp_path("sidecar.toml");
    // The file names one server; the environment another, and it must win at start and after
    // a reload (SIGHUP re-reads the file and re-applies the same variables).
    std::fs::write(
        &file,
        format!("[pools.a]\nmaster = \"{}\"\n", file_server.addr()),
    )
    .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .env("SLOTGATE_PROXY__LISTEN", addr.to_string())
        .env("SLOTGATE_ADMIN__LISTEN", admin.to_string())
        .env("SLOTGATE_PROXY__WORKERS", "1")
        .env("SLOTGATE_POOLS__A__MASTER", env_server.addr())
        .env("SLOTGATE_LOG__LEVEL", "warn")
        .env("SLOTGATE_PID_FILE", &pid_path)
        .args(["--config", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start slotgate");
    let mut child = Running(child);
    wait_serving(&mut child, addr, &pid_path);
    assert_eq!(
        std::fs::read_to_string(&pid_path).unwrap().trim(),
        child.0.id().to_string()
    );

    let env_addr: SocketAddr = env_server.addr().parse().unwrap();
    let file_addr: SocketAddr = file_server.addr().parse().unwrap();
    assert_eq!(common::redis_cli(addr, &["SET", "sidecar:1", "x"]), "OK");
    assert_eq!(common::redis_cli(env_addr, &["GET", "sidecar:1"]), "x");
    assert_eq!(common::redis_cli(file_addr, &["DBSIZE"]), "0");

    // Reload with a second pool in the file: slots 0-8191 stay with pool a (which the
    // environment still points at env_server), 8192-16383 go to the new pool b.
    std::fs::write(
        &file,
        format!(
            "[pools.a]\nmaster = \"{0}\"\n[pools.b]\nmaster = \"{0}\"\n",
            file_server.addr()
        ),
    )
    .unwrap();
    let version = || {
        let (_, metrics) = common::http_get(admin, "/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("slotgate_slot_table_version "))
            .map(|v| v.trim().to_string())
    };
    let before = version();
    child.signal(libc::SIGHUP);
    let what = "the reload applied (slot table version changes)";
    common::eventually_blocking(what, Duration::from_secs(10), || {
        common::check(version(), |v| *v != before)
    });
    let key_in = |low: bool| {
        (0..10_000)
            .map(|i| format!("sidecar:{i}"))
            .find(|k| (slotgate::slot::Slot::of(k.as_bytes()).get() < 8192) == low)
            .unwrap()
    };
    let (a_key, b_key) = (key_in(true), key_in(false));
    assert_eq!(common::redis_cli(addr, &["SET", &a_key, "a"]), "OK");
    assert_eq!(common::redis_cli(addr, &["SET", &b_key, "b"]), "OK");
    assert_eq!(common::redis_cli(env_addr, &["GET", &a_key]), "a");
    assert_eq!(common::redis_cli(file_addr, &["GET", &b_key]), "b");
    assert_eq!(common::redis_cli(file_addr, &["EXISTS", &a_key]), "0");

    // A second instance naming the same pid file is refused while the first one runs.
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--config", file.to_str().unwrap(), "--pid-file"])
        .arg(&pid_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("names a running process"), "{stderr}");
    assert!(
        pid_path.exists(),
        "the refused instance left the file alone"
    );

    // SIGTERM: drain, exit 0, pid file gone.
    child.signal(libc::SIGTERM);
    assert_eq!(child.exit_code(), Some(0));
    assert!(!pid_path.exists(), "pid file removed on a clean exit");
    std::fs::remove_file(&file).ok();
}
