//! RQ and Celery, run as their quick-start guides show, through the `slotgate` binary in
//! front of a 3-master Redis Cluster (issue 21 item 9). Both wrap unrelated keys in
//! MULTI/EXEC, Lua scripts and multi-key BRPOPs, which a cluster refuses (CROSSSLOT); the
//! `[[placement.colocate]]` groups of `conf/frameworks.toml` put those keys in one slot. The
//! checks are `tests/py/rq_check.py` and `tests/py/celery_check.py` (each bounded in time and
//! explaining what it proves); the venv with rq and celery comes from `scripts/ensure-python`.
//! Celery also needs PUBLISH inside a transaction whose keys are in any slot: its result
//! backend stores every result with SETEX and PUBLISH (on a channel of the key's name) in one
//! MULTI, which a cluster node runs (PUBLISH has no key).
//!
//! Also: without the groups the RQ check fails (so these tests can fail), and the frameworks'
//! own documented alternative, a hash-tag key prefix (RQ_KEY_PREFIX, kombu's and Celery's
//! `global_keyprefix`), works with no rule at all.

use crate::common;

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{spawn_slotgate, KillOnDrop, LogLines};
use slotgate::local_redis::{ClusterOptions, LocalCluster};

/// The example config with the colocation groups, run as it is (seeds and listen address come
/// from flags).
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/frameworks.toml");

/// Longest a Python check may run before it and its workers are killed: the checks bound
/// themselves (about 60 s for RQ, 90 s for Celery), this is the backstop.
const CHECK_LIMIT: Duration = Duration::from_secs(150);

/// A 3-master cluster (one replica each) and the `slotgate` binary in front of it. Field
/// order matters: the proxy stops first.
struct Setup {
    _proxy: KillOnDrop,
    log: LogLines,
    addr: SocketAddr,
    _cluster: LocalCluster,
}

/// Start the cluster and slotgate, with `config` (`--config FILE`) or with defaults only.
fn start(config: Option<&str>) -> Setup {
    start_with_env(config, &[])
}

/// [`start`], with `env` set for slotgate (`SLOTGATE_<SECTION>__<KEY>` overrides).
fn start_with_env(config: Option<&str>, env: &[(&str, &str)]) -> Setup {
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("start the Redis Cluster");
    let seeds = cluster.seeds().join(",");
    let mut args = vec!["--cluster", &seeds, "--workers", "2", "--log-level", "info"];
    if let Some(config) = config {
        args.extend(["--config", config]);
    }
    let (child, addr, log) = spawn_slotgate(&args, env);
    Setup {
        _proxy: KillOnDrop(child),
        log,
        addr,
        _cluster: cluster,
    }
}

/// What a Python check printed, and whether it passed.
struct Checked {
    passed: bool,
    stdout: String,
    stderr: String,
}

/// Run `tests/py/<script> ADDR` with the venv's python and `env`, at most [`CHECK_LIMIT`]: past
/// it the check's process group (it and the workers it started) is killed.
fn run_check(script: &str, setup: &Setup, env: &[(&str, &str)]) -> Checked {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python: PathBuf = root.join("target/redis-py/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-python (scripts/test does)",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(root.join("tests/py").join(script))
        .arg(setup.addr.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run python");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > CHECK_LIMIT {
            // The group is the check's own: process_group(0) made its pid the group id.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, mut stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {CHECK_LIMIT:?})"));
    }
    // The proxy's warnings and errors, for the failure message.
    let proxy_log: Vec<String> = setup
        .log
        .snapshot()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if !proxy_log.is_empty() {
        stderr.push_str(&format!("\n--- slotgate ---\n{}", proxy_log.join("\n")));
    }
    Checked {
        passed: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// Run a check that must pass; panics with everything it printed.
fn check_passes(script: &str, setup: &Setup, env: &[(&str, &str)]) {
    let out = run_check(script, setup, env);
    assert!(
        out.passed,
        "{script} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
}

#[test]
fn rq_jobs_finish_through_the_proxy() {
    let setup = start(Some(RULES));
    check_passes("rq_check.py", &setup, &[]);
}

#[test]
fn celery_tasks_finish_through_the_proxy() {
    let setup = start(Some(RULES));
    check_passes("celery_check.py", &setup, &[]);
}

/// Without the groups RQ's first enqueue (HSET rq:job:ID and RPUSH rq:queue:NAME in one
/// MULTI) is refused: the check fails, and says why.
#[test]
fn rq_fails_without_the_colocation_rules() {
    let setup = start(None);
    let out = run_check("rq_check.py", &setup, &[]);
    assert!(
        !out.passed,
        "rq_check.py passed without the colocation rules:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("CROSSSLOT"),
        "rq_check.py failed, but not with CROSSSLOT:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// RQ's documented key prefix (RQ_KEY_PREFIX, rq >= 3.0) with a hash tag: every RQ key in one
/// slot, no rule needed.
#[test]
fn rq_jobs_finish_with_a_hash_tag_key_prefix() {
    let setup = start(None);
    check_passes("rq_check.py", &setup, &[("RQ_KEY_PREFIX", "{rq}")]);
}

/// Kombu's and Celery's documented `global_keyprefix` transport options with a hash tag
/// (set by tests/py/celery_tasks.py from SLOTGATE_CELERY_KEYPREFIX): no rule needed.
#[test]
fn celery_tasks_finish_with_a_hash_tag_key_prefix() {
    let setup = start(None);
    check_passes(
        "celery_check.py",
        &setup,
        &[("SLOTGATE_CELERY_KEYPREFIX", "{celery}")],
    );
}

/// The other way the issue names: no rule, but transactions across slots served in parts
/// (`commands.non_atomic_cross_slot_writes`), each part atomic on its node.
#[test]
fn rq_jobs_finish_with_transactions_across_slots() {
    let setup = start_with_env(
        None,
        &[("SLOTGATE_COMMANDS__NON_ATOMIC_CROSS_SLOT_WRITES", "true")],
    );
    check_passes("rq_check.py", &setup, &[]);
}

/// Celery with the same setting and no rule.
#[test]
fn celery_tasks_finish_with_transactions_across_slots() {
    let setup = start_with_env(
        None,
        &[("SLOTGATE_COMMANDS__NON_ATOMIC_CROSS_SLOT_WRITES", "true")],
    );
    check_passes("celery_check.py", &setup, &[]);
}
