//! Load for topology-change tests: many clients writing and reading back their own keys through
//! the proxy while the cluster changes underneath ([`Load`]), the check that no acknowledged
//! write was lost ([`verify_acked`]), and small helpers those tests share (the proxy's `INFO`
//! counters, direct node connections, one-test-at-a-time).
//!
//! Each client task owns a disjoint set of keys and loops `SET key <task>:<n>` then `GET key`,
//! expecting its own value back. Every reply that is not the expected one is recorded verbatim,
//! as Redis put it on the wire (`MOVED 3999 127.0.0.1:7002`, `ERR slotgate: …`): a `MOVED` or
//! `ASK` reply is a *redirect* (the proxy let a cluster detail leak to a plain client), anything
//! else an *error*. Every loop is bounded: a stop flag, a per-operation timeout and an overall
//! run limit.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;

/// How a [`Load`] behaves; [`Default`] suits every test here.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pause after each SET+GET round, so 50 clients leave CPU to the cluster on 2 cores.
    pub pause: Duration,
    /// Longest one command (or connect) may take before it counts as an error. Above the
    /// proxy's request timeout, so the proxy's own timeout error is what gets recorded.
    pub op_timeout: Duration,
    /// The tasks stop by themselves after this long even if nobody calls [`Load::stop`].
    pub max_run: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pause: Duration::from_millis(2),
            op_timeout: Duration::from_secs(8),
            max_run: Duration::from_secs(120),
        }
    }
}

/// One reply that was not the expected one.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When the command was sent.
    pub started: Instant,
    /// When its reply (or the timeout) arrived.
    pub at: Instant,
    /// The client task.
    pub task: usize,
    /// `SET`, `GET` or `CONNECT`.
    pub op: &'static str,
    /// The key (empty for `CONNECT`).
    pub key: String,
    /// The reply verbatim (`MOVED 3999 127.0.0.1:7002`), or what went wrong.
    pub reply: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} {} {}: {}",
            self.task, self.op, self.key, self.reply
        )
    }
}

/// What is known about one key's value at the end.
#[derive(Debug, Clone)]
pub struct Acked {
    /// The last value whose SET was acknowledged with OK.
    pub value: String,
    /// When that OK arrived.
    pub at: Instant,
    /// The acknowledged value before it, if any.
    pub previous: Option<String>,
    /// Values SET *after* `value` whose SET failed or timed out: the proxy or the node may still
    /// have applied them (a timeout says nothing about whether the write happened), so finding
    /// one of them is not a lost write.
    pub unacked: Vec<String>,
}

/// What a [`Load`] saw, from [`Load::stop`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Commands sent (SET and GET), over all tasks.
    pub ops: u64,
    /// Commands sent per task: a task stuck at 0 would mean a harness problem.
    pub task_ops: Vec<u64>,
    /// `MOVED` / `ASK` replies.
    pub redirects: Vec<Failure>,
    /// Every other failure: error replies, wrong values, timeouts, broken connections.
    pub errors: Vec<Failure>,
    /// Per key: the last acknowledged write (keys never acknowledged are absent).
    pub acked: HashMap<String, Acked>,
    /// How long the load ran.
    pub ran: Duration,
}

impl LoadReport {
    /// One line for the test log, plus the first few failures of each kind.
    pub fn summary(&self) -> String {
        let min = self.task_ops.iter().min().copied().unwrap_or(0);
        let asks = self
            .redirects
            .iter()
            .filter(|f| f.reply.starts_with("ASK "))
            .count();
        let mut out = format!(
            "{} ops in {:.1?} by {} clients (min {min}/client), {} keys acked, {} redirects \
             ({} MOVED, {asks} ASK), {} errors",
            self.ops,
            self.ran,
            self.task_ops.len(),
            self.acked.len(),
            self.redirects.len(),
            self.redirects.len() - asks,
            self.errors.len()
        );
        for f in self.redirects.iter().take(3) {
            out.push_str(&format!("\n  redirect: {f}"));
        }
        for f in self.errors.iter().take(5) {
            out.push_str(&format!("\n  error: {f}"));
        }
        out
    }

    /// Panics unless every task made progress (a harness problem otherwise).
    /// Panics, showing the first one, if any client saw a MOVED or ASK reply.
    pub fn assert_no_redirects(&self) {
        assert!(
            self.redirects.is_empty(),
            "clients saw {} MOVED/ASK replies (the proxy must follow them), first: {}",
            self.redirects.len(),
            self.redirects[0]
        );
    }

    /// Panics, showing the first one, if any client saw an error reply.
    pub fn assert_no_errors(&self) {
        assert!(
            self.errors.is_empty(),
            "clients saw {} errors, first: {}",
            self.errors.len(),
            self.errors[0]
        );
    }

    pub fn assert_progress(&self) {
        assert!(
            !self.task_ops.is_empty() && self.task_ops.iter().all(|&n| n >= 2),
            "some load task made no progress: {:?}",
            self.task_ops
        );
    }
}

/// A running load; stop it with [`Load::stop`] (dropping it stops the tasks too).
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<TaskReport>>,
    started: Instant,
}

impl Load {
    /// `clients` tasks on `addr`, each with its own connection and keys `i` where
    /// `i % clients == task`, with [`LoadOptions::default`].
    pub fn start(addr: SocketAddr, clients: usize, keys: Vec<String>) -> Load {
        Load::start_with(addr, clients, keys, LoadOptions::default())
    }

    /// Like [`Load::start`] with explicit options.
    pub fn start_with(
        addr: SocketAddr,
        clients: usize,
        keys: Vec<String>,
        opts: LoadOptions,
    ) -> Load {
        assert!(
            clients > 0 && keys.len() >= clients,
            "every client needs a key"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|task| {
                let own: Vec<String> = keys.iter().skip(task).step_by(clients).cloned().collect();
                tokio::spawn(run_task(task, addr, own, opts.clone(), stop.clone()))
            })
            .collect();
        Load {
            stop,
            tasks,
            started: Instant::now(),
        }
    }

    /// Stops every task (each finishes its current command, bounded by the op timeout) and
    /// merges what they saw.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = LoadReport {
            ran: self.started.elapsed(),
            ..LoadReport::default()
        };
        for task in self.tasks.drain(..) {
            let r = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a load task did not stop within 30 s")
                .expect("a load task panicked");
            report.ops += r.ops;
            report.task_ops.push(r.ops);
            report.redirects.extend(r.redirects);
            report.errors.extend(r.errors);
            report.acked.extend(r.acked);
        }
        report.redirects.sort_by_key(|f| f.at);
        report.errors.sort_by_key(|f| f.at);
        report
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that panics before stop(): do not leave tasks hammering a dying cluster.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What one task saw.
#[derive(Default)]
struct TaskReport {
    ops: u64,
    redirects: Vec<Failure>,
    errors: Vec<Failure>,
    acked: HashMap<String, Acked>,
}

impl TaskReport {
    fn fail(&mut self, started: Instant, task: usize, op: &'static str, key: &str, why: Why) {
        let (redirect, reply) = match why {
            Why::Redis(e) => (
                matches!(e.kind(), ErrorKind::Moved | ErrorKind::Ask),
                wire(&e),
            ),
            Why::Other(text) => (false, text),
        };
        let f = Failure {
            started,
            at: Instant::now(),
            task,
            op,
            key: key.to_owned(),
            reply,
        };
        if redirect {
            self.redirects.push(f);
        } else {
            self.errors.push(f);
        }
    }
}

enum Why {
    Redis(RedisError),
    Other(String),
}

/// The error as Redis wrote it on the wire (`MOVED 3999 127.0.0.1:7002`), when it was a
/// server reply; otherwise the client library's description (I/O errors and the like).
fn wire(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

/// True when the connection cannot be used any more and must be replaced.
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Runs `cmd` on `c`; `None` when no reply came within `timeout`.
async fn timed<T: redis::FromRedisValue>(
    c: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Option<redis::RedisResult<T>> {
    tokio::time::timeout(timeout, cmd.query_async(c)).await.ok()
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(wire(&e)),
        Err(_) => Err(format!("connect timed out after {timeout:?}")),
    }
}

async fn run_task(
    task: usize,
    addr: SocketAddr,
    keys: Vec<String>,
    opts: LoadOptions,
    stop: Arc<AtomicBool>,
) -> TaskReport {
    let mut report = TaskReport::default();
    // Values SET after the last acknowledged one whose outcome is unknown, per key.
    let mut unacked: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + opts.max_run;
    let running = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;
    let mut conn: Option<MultiplexedConnection> = None;
    let mut counter: u64 = 0;
    'rounds: while running() {
        for key in &keys {
            if !running() {
                break 'rounds;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    let started = Instant::now();
                    match connect(addr, opts.op_timeout).await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            report.fail(started, task, "CONNECT", "", Why::Other(e));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
            };

            counter += 1;
            let value = format!("{task}:{counter}");
            let started = Instant::now();
            report.ops += 1;
            let set = redis::cmd("SET").arg(key).arg(&value).clone();
            match timed::<()>(c, &set, opts.op_timeout).await {
                Some(Ok(())) => {
                    let previous = report.acked.remove(key).map(|a| a.value);
                    unacked.remove(key);
                    report.acked.insert(
                        key.clone(),
                        Acked {
                            value: value.clone(),
                            at: Instant::now(),
                            previous,
                            unacked: Vec::new(),
                        },
                    );
                }
                Some(Err(e)) => {
                    unacked.entry(key.clone()).or_default().push(value);
                    if broken(&e) {
                        conn = None;
                    }
                    report.fail(started, task, "SET", key, Why::Redis(e));
                    continue;
                }
                None => {
                    unacked.entry(key.clone()).or_default().push(value);
                    conn = None;
                    let why = Why::Other(format!("no reply within {:?}", opts.op_timeout));
                    report.fail(started, task, "SET", key, why);
                    continue;
                }
            }

            let started = Instant::now();
            report.ops += 1;
            let get = redis::cmd("GET").arg(key).clone();
            match timed::<Option<String>>(c, &get, opts.op_timeout).await {
                Some(Ok(Some(v))) if v == value => {}
                Some(Ok(other)) => {
                    let why = Why::Other(format!("read {other:?} right after writing {value:?}"));
                    report.fail(started, task, "GET", key, why);
                }
                Some(Err(e)) => {
                    if broken(&e) {
                        conn = None;
                    }
                    report.fail(started, task, "GET", key, Why::Redis(e));
                }
                None => {
                    conn = None;
                    let why = Why::Other(format!("no reply within {:?}", opts.op_timeout));
                    report.fail(started, task, "GET", key, why);
                }
            }
            if !opts.pause.is_zero() {
                tokio::time::sleep(opts.pause).await;
            }
        }
    }
    for (key, values) in unacked {
        if let Some(a) = report.acked.get_mut(&key) {
            a.unacked = values;
        }
    }
    report
}

/// Reads every acknowledged key back through `addr` and panics, listing the first problems,
/// unless each holds its last acknowledged value (or a later write whose outcome was unknown).
pub async fn verify_acked(addr: SocketAddr, report: &LoadReport) {
    let problems = check_acked(addr, report, |_, _| false).await;
    assert!(
        problems.is_empty(),
        "{} of {} acknowledged writes not readable, e.g.:\n  {}",
        problems.len(),
        report.acked.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The keys of `report` whose value read through `addr` is not acceptable, one line each.
/// Acceptable: the last acknowledged value, a later unacknowledged one (see [`Acked::unacked`]),
/// or, where `may_lose_last(key, acked)` says so, the acknowledged value before the last (or no
/// value when there was none).
pub async fn check_acked(
    addr: SocketAddr,
    report: &LoadReport,
    may_lose_last: impl Fn(&str, &Acked) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut conn = match connect(addr, Duration::from_secs(5)).await {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot connect to {addr}: {e}")],
    };
    let mut keys: Vec<&String> = report.acked.keys().collect();
    keys.sort();
    for key in keys {
        let acked = &report.acked[key];
        let get = redis::cmd("GET").arg(key).clone();
        let found = match timed::<Option<String>>(&mut conn, &get, Duration::from_secs(5)).await {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                problems.push(format!("GET {key}: {}", wire(&e)));
                if broken(&e) {
                    match connect(addr, Duration::from_secs(5)).await {
                        Ok(c) => conn = c,
                        Err(e) => {
                            problems.push(format!("cannot reconnect to {addr}: {e}"));
                            break;
                        }
                    }
                }
                continue;
            }
            None => {
                problems.push(format!("GET {key}: no reply within 5 s"));
                break;
            }
        };
        let ok = match &found {
            Some(v) => {
                *v == acked.value
                    || acked.unacked.contains(v)
                    || (acked.previous.as_ref() == Some(v) && may_lose_last(key, acked))
            }
            None => acked.previous.is_none() && may_lose_last(key, acked),
        };
        if !ok {
            problems.push(format!(
                "{key}: found {found:?}, last acknowledged {:?} (previous {:?}, unacknowledged \
                 after it {:?})",
                acked.value, acked.previous, acked.unacked
            ));
        }
    }
    problems
}

/// A numeric field of the proxy's `INFO stats` / `INFO proxy`; `None` when it is missing (or
/// `INFO` fails).
pub async fn info_field(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut c = connect(addr, Duration::from_secs(5)).await.ok()?;
    let info = redis::cmd("INFO").arg("stats").arg("proxy").clone();
    let text: String = timed(&mut c, &info, Duration::from_secs(5)).await?.ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k == name {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A counter of the proxy's `INFO stats` / `INFO proxy` (e.g. `redirects_moved`,
/// `retries_tryagain`, `topology_refreshes`, `slot_table_version`); panics when it is missing.
pub async fn counter(addr: SocketAddr, name: &str) -> u64 {
    info_field(addr, name)
        .await
        .unwrap_or_else(|| panic!("INFO through the proxy has no {name}"))
}

/// An async connection straight to the cluster node on 127.0.0.1:`port` (no proxy).
pub async fn node(port: u16) -> MultiplexedConnection {
    super::client(node_addr(port)).await
}

/// `127.0.0.1:port`.
pub fn node_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Held for the whole of a topology test: these tests start 6–7 Redis nodes, 20–50 clients
/// and assert on timing windows, so within one test binary they run one at a time.
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}
