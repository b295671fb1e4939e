//! The `slotgate` binary as a child process: started with flags and environment variables,
//! its log lines collected as they come (so its stderr pipe never fills and a test can wait
//! for a line).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped: also when a test fails before its end.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The log lines of a running `slotgate`, collected by a thread until the process exits.
pub struct LogLines {
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl LogLines {
    /// The lines logged so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines logged so far that contain `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Wait up to `limit` for a line containing `needle`; panics with the log when none comes.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        super::eventually_blocking(&format!("a log line with {needle:?}"), limit, || {
            self.matching(needle)
                .into_iter()
                .next()
                .ok_or_else(|| self.snapshot())
        })
    }

    /// Every line, once the process has exited (its stderr closed).
    pub fn join(self) -> Vec<String> {
        let _ = self.reader.join();
        let lines = self.lines.lock().unwrap();
        lines.clone()
    }
}

/// `slotgate check-config path` with `env` set; panics with its stderr unless it passes.
pub fn check_config_passes(path: &str, env: &[(&str, &str)]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .envs(env.iter().copied())
        .args(["check-config", path])
        .output()
        .expect("run slotgate check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Wait up to `limit` until the log file at `path` has a line containing `needle`; returns it.
pub fn wait_for_in_file(path: &std::path::Path, needle: &str, limit: Duration) -> String {
    super::eventually_blocking(
        &format!("a line with {needle:?} in {path:?}"),
        limit,
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = text.lines().find(|l| l.contains(needle)).map(String::from);
            line.ok_or(text)
        },
    )
}

/// The `slotgate` binary started with `args` (plus `--listen 127.0.0.1:0`) and `env`, once it
/// logs the address it serves: the child, that address, and its log lines.
pub fn spawn_slotgate(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr, LogLines) {
    spawn_slotgate_with(&[], "127.0.0.1:0", args, env)
}

/// [`spawn_slotgate`] listening on `listen` (a test that must know the port beforehand: an
/// announce address).
pub fn spawn_slotgate_on(
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, SocketAddr, LogLines) {
    spawn_slotgate_with(&[], listen, args, env)
}

/// [`spawn_slotgate`], run by the command `wrapper` (`["unshare", "--pid", "--fork"]` …;
/// empty: none): the child is the wrapper.
pub fn spawn_slotgate_under(
    wrapper: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, SocketAddr, LogLines) {
    spawn_slotgate_with(wrapper, "127.0.0.1:0", args, env)
}

/// The `slotgate` binary run by `wrapper` (empty: none), listening on `listen`.
fn spawn_slotgate_with(
    wrapper: &[&str],
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, SocketAddr, LogLines) {
    let binary = env!("CARGO_BIN_EXE_slotgate");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let mut child = command
        .args(["--listen", listen])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            const MARK: &str = "point any Redis client at ";
            if let Some(at) = line.find(MARK) {
                let addr: String = line[at + MARK.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = addr_tx.send(addr);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let log = LogLines { lines, reader };
    match addr_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => (child, addr.parse().unwrap(), log),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("slotgate never became ready: {:#?}", log.join());
        }
    }
}

/// Wait up to `limit` for `child` to exit (`None`: still running; a test may want that).
pub async fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
