//! One `redis-server` child process: how it is spawned, checked and killed.
//!
//! Owns: the command line (no persistence, loopback only, optional cluster mode), the log file in
//! the node directory, the readiness check, and SIGKILL + reap. Both [`super::RedisServer`] and
//! [`super::LocalCluster`] are built from this.
//!
//! Readiness is "answers `INFO server` with *our* child's pid": a bare `PING` could be answered
//! by some other process that already held the port while our child is failing to bind it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::LocalRedisError;
use super::ports::{self, BUS_OFFSET};
use super::resp_probe;
use crate::topology::discovery::info_value;

/// Name of each node's log file inside its directory.
pub(crate) const LOG_FILE: &str = "redis.log";
/// How long a freshly spawned server gets to answer.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of every probe socket operation.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between readiness probes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Lines of log included in errors.
const TAIL_LINES: usize = 20;
/// How many fresh ports to try when an automatically chosen port turns out to be taken.
const PORT_RETRIES: usize = 4;

/// Everything needed to (re)start one server.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Port to listen on (127.0.0.1 only).
    pub(crate) port: u16,
    /// Working directory: `dir` for Redis, the log file and `nodes.conf`.
    pub(crate) dir: PathBuf,
    /// The `redis-server` program.
    pub(crate) binary: PathBuf,
    /// `Some(node_timeout_ms)` to run in cluster mode.
    pub(crate) cluster_node_timeout_ms: Option<u64>,
    /// Appended last, so they override ours.
    pub(crate) extra_args: Vec<String>,
    /// Run as a Sentinel with this (writable) config file.
    pub(crate) sentinel_config: Option<PathBuf>,
    /// `requirepass` and `masterauth` (so replicas can sync); probes authenticate with it.
    /// A sentinel's password is in its config file instead; probes still use this.
    pub(crate) password: Option<String>,
}

impl NodeSpec {
    /// The full `redis-server` argument list.
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(config) = &self.sentinel_config {
            // The config file must come first; Sentinel rewrites it as it learns.
            args.push(config.to_string_lossy().into_owned());
            args.push("--sentinel".into());
        }
        args.extend(
            [
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.to_string_lossy(),
                "--daemonize",
                "no",
                // Log to stdout, which we redirect to LOG_FILE.
                "--logfile",
                "",
                "--save",
                "",
                "--appendonly",
                "no",
                // Replicas sync at once instead of waiting 5 s for more replicas to batch with.
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(timeout) = self.cluster_node_timeout_ms {
            for arg in [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &timeout.to_string(),
            ] {
                args.push(arg.to_string());
            }
        }
        if let (Some(password), None) = (&self.password, &self.sentinel_config) {
            for arg in ["--requirepass", password, "--masterauth", password] {
                args.push(arg.to_string());
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A `redis-server` that may or may not be running right now.
#[derive(Debug)]
pub(crate) struct RedisProcess {
    spec: NodeSpec,
    child: Option<Child>,
    /// Length of the log when the current child was spawned; errors show only what it wrote.
    log_offset: u64,
}

impl RedisProcess {
    /// Starts a server and waits until it answers. With `auto_port`, a port found taken at bind
    /// time is replaced by a fresh one from [`ports::free_port`] (a few times) instead of failing.
    pub(crate) fn start(spec: NodeSpec, auto_port: bool) -> Result<RedisProcess, LocalRedisError> {
        let with_bus = spec.cluster_node_timeout_ms.is_some();
        let mut proc = RedisProcess {
            spec,
            child: None,
            log_offset: 0,
        };
        let mut attempt = 0;
        loop {
            match proc.restart() {
                Ok(()) => return Ok(proc),
                Err(_) if auto_port && attempt < PORT_RETRIES && proc.lost_port_race() => {
                    tracing::debug!(port = proc.spec.port, "port taken at bind time, retrying");
                    attempt += 1;
                    proc.spec.port = ports::free_port(with_bus)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.spec.port
    }

    /// The pid of the running child, `None` when killed.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while we have a child that we have not killed.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Arguments appended after the others on every later (re)start.
    pub(crate) fn set_extra_args(&mut self, args: Vec<String>) {
        self.spec.extra_args = args;
    }

    /// (Re)spawns the server on the same port and directory, killing the old child first if it
    /// is still running, and waits until it answers. On failure nothing is left running.
    pub(crate) fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.kill()?;
        self.spawn()?;
        let ready = self.wait_ready(START_TIMEOUT);
        if ready.is_err() {
            // Best effort: the readiness error is the one worth reporting.
            let _ = self.kill();
        }
        ready
    }

    /// SIGKILLs and reaps the child. Does nothing when it is not running.
    pub(crate) fn kill(&mut self) -> Result<(), LocalRedisError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let port = self.spec.port;
        // `kill` on a child that already exited (but is not reaped) returns Ok.
        child.kill().map_err(|e| {
            LocalRedisError::io(format!("cannot kill redis-server on port {port}"), e)
        })?;
        child.wait().map_err(|e| {
            LocalRedisError::io(format!("cannot reap redis-server on port {port}"), e)
        })?;
        Ok(())
    }

    /// The last lines the current (or last) child wrote to its log.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log_path(), self.log_offset).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// A [`LocalRedisError::StartFailed`] for this server.
    pub(crate) fn start_failed(&self, reason: impl Into<String>) -> LocalRedisError {
        LocalRedisError::StartFailed {
            port: self.spec.port,
            reason: reason.into(),
            log: self.log_path(),
            log_tail: self.log_tail(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.spec.dir.join(LOG_FILE)
    }

    /// True when the last start failed because the port (or bus port) was already bound.
    fn lost_port_race(&self) -> bool {
        let taken = !ports::can_bind(self.spec.port)
            || (self.spec.cluster_node_timeout_ms.is_some()
                && !ports::can_bind(self.spec.port.saturating_add(BUS_OFFSET)));
        taken || self.log_tail().contains("Address already in use")
    }

    fn spawn(&mut self) -> Result<(), LocalRedisError> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LocalRedisError::io(format!("cannot open {}", log_path.display()), e))?;
        self.log_offset = log
            .metadata()
            .map_err(|e| LocalRedisError::io(format!("cannot stat {}", log_path.display()), e))?
            .len();
        let log_err = log
            .try_clone()
            .map_err(|e| LocalRedisError::io(format!("cannot dup {}", log_path.display()), e))?;

        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(self.spec.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        detach(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| LocalRedisError::spawn(&self.spec.binary, e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls until the server answers `INFO server` with our child's pid.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), LocalRedisError> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(self.start_failed("not running"));
            };
            let pid = child.id();
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Err(self.start_failed(format!("exited with {status}")));
                }
                Ok(None) => {}
                Err(e) => return Err(LocalRedisError::io("cannot poll redis-server", e)),
            }
            match resp_probe::query_text(
                self.spec.port,
                &["INFO", "server"],
                PROBE_TIMEOUT,
                self.spec.password.as_deref(),
            ) {
                Ok(info) => match info_value(&info, "process_id") {
                    Some(p) if p == pid.to_string() => return Ok(()),
                    other => last = format!("port answered by process {other:?}, not {pid}"),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(self.start_failed(format!("no answer within {timeout:?}: {last}")));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // Best effort: nothing useful can be done about a failure in drop.
        let _ = self.kill();
    }
}

/// Puts the child in its own process group (a Ctrl-C in the demo's terminal reaches only the
/// demo, which then stops the servers in order) and, on Linux, makes the kernel SIGKILL it when
/// the spawning thread dies, so a crashed or killed parent leaves no servers behind.
pub(crate) fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec; it only calls prctl and
        // getppid, which are async-signal-safe, and builds errors without allocating.
        unsafe {
            cmd.pre_exec(move || {
                // prctl is variadic and reads unsigned longs: pass exactly that type.
                let signal = libc::SIGKILL as libc::c_ulong;
                let unused: libc::c_ulong = 0;
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal, unused, unused, unused) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then nobody would kill us.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

/// The last [`TAIL_LINES`] lines of `path` written after byte `from` (at most the last 64 KiB).
pub(crate) fn tail(path: &Path, from: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = from.max(len.saturating_sub(64 * 1024));
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.len().saturating_sub(TAIL_LINES);
    Ok(lines[first..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_args_follow_our_defaults_and_end_with_extra_args() {
        let spec = NodeSpec {
            port: 7000,
            dir: PathBuf::from("/tmp/x"),
            binary: PathBuf::from("redis-server"),
            cluster_node_timeout_ms: Some(5000),
            extra_args: vec!["--save".into(), "60 1".into()],
            sentinel_config: None,
            password: None,
        };
        let args = spec.args();
        let joined = args.join(" ");
        assert!(joined.starts_with("--port 7000 --bind 127.0.0.1 --dir /tmp/x"));
        assert!(joined.contains("--cluster-enabled yes"));
        assert!(joined.contains("--cluster-node-timeout 5000"));
        assert_eq!(&args[args.len() - 2..], ["--save", "60 1"]);
    }

    /// Needs `redis-server` on PATH (scripts/ensure-redis installs it).
    #[test]
    fn an_automatic_port_taken_at_bind_time_is_replaced() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("slotgate-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = NodeSpec {
            port: taken,
            dir: dir.clone(),
            binary: PathBuf::from("redis-server"),
            cluster_node_timeout_ms: None,
            extra_args: vec![],
            sentinel_config: None,
            password: None,
        };
        let err = RedisProcess::start(spec.clone(), false).unwrap_err();
        assert!(err.to_string().contains("Address already in use"), "{err}");
        let mut proc = RedisProcess::start(spec, true).unwrap();
        assert_ne!(proc.port(), taken);
        assert!(proc.pid().is_some());
        proc.kill().unwrap();
        assert!(!proc.is_running());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_only_the_last_lines_after_the_offset() {
        let dir = std::env::temp_dir().join(format!("slotgate-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let old = "old\n";
        let new: String = (0..30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, format!("{old}{new}")).unwrap();
        let t = tail(&path, old.len() as u64).unwrap();
        assert!(!t.contains("old"));
        assert!(t.starts_with("line 10") && t.ends_with("line 29"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
