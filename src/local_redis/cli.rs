//! Running `redis-cli --cluster …` (create, add-node, reshard, rebalance) with a deadline.
//!
//! Owns: spawning the child (detached like the servers, so it dies with the spawning thread),
//! sending its output to a log file in the cluster directory, polling it against a deadline, and
//! turning a failure into [`LocalRedisError::ClusterCli`] with the output's tail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::LocalRedisError;
use super::process::{self, POLL_INTERVAL};

/// Runs `redis_cli --cluster args…` until it exits or `timeout` runs out (then it is killed),
/// authenticating with `password` if given. Its stdout and stderr go to `log`; on success the
/// whole log is returned.
pub(crate) fn run<S: AsRef<str> + AsRef<std::ffi::OsStr>>(
    redis_cli: &Path,
    password: Option<&str>,
    args: &[S],
    log: &Path,
    timeout: Duration,
) -> Result<String, LocalRedisError> {
    let out = std::fs::File::create(log)
        .map_err(|e| LocalRedisError::io(format!("cannot create {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LocalRedisError::io(format!("cannot dup {}", log.display()), e))?;
    let mut cmd = Command::new(redis_cli);
    if let Some(password) = password {
        // REDISCLI_AUTH rather than `-a`: the password stays off the process list.
        cmd.env("REDISCLI_AUTH", password);
    }
    cmd.arg("--cluster")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    process::detach(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| LocalRedisError::spawn(redis_cli, e))?;

    let failed = |reason: String| LocalRedisError::ClusterCli {
        command: args
            .iter()
            .map(|a| -> &str { a.as_ref() })
            .collect::<Vec<_>>()
            .join(" "),
        reason,
        output_tail: process::tail(log, 0).unwrap_or_default(),
        log: log.to_path_buf(),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                return std::fs::read_to_string(log)
                    .map_err(|e| LocalRedisError::io(format!("cannot read {}", log.display()), e));
            }
            Ok(Some(status)) => return Err(failed(format!("exited with {status}"))),
            Ok(None) if Instant::now() >= deadline => {
                // Best effort: we are reporting the timeout either way.
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("still running after {timeout:?}")));
            }
            Ok(None) => thread::sleep(POLL_INTERVAL),
            Err(e) => return Err(LocalRedisError::io("cannot poll redis-cli", e)),
        }
    }
}
