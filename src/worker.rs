//! A worker: one OS thread running a single-threaded tokio runtime that owns its client
//! sessions and its backend connections. Workers share only the slot table (`ArcSwap`), the
//! configuration and their statistics counters; nothing on the request path crosses threads.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::backend::dedicated::IdleConns;
use crate::backend::{BackendPool, ConnSettings};
use crate::config::{Config, WhenNodeDown};
use crate::lifecycle::SessionDrain;
use crate::resp::Limits;
use crate::router::{self, Held, RoutePolicy, WorkerHooks};
use crate::scripts::ScriptCache;
use crate::stats::{ProxyStats, WorkerStats};
use crate::topology::Topology;

/// A new client handed to a worker: the socket and its proxy-wide client id.
pub type NewClient = (std::net::TcpStream, u64);

/// Everything a session needs from its worker.
pub struct Worker {
    /// Index of this worker, `0..workers`.
    pub index: usize,
    /// The live slot table.
    pub topology: Arc<Topology>,
    /// This worker's backend connections (RESP2).
    pub pool: RefCell<BackendPool>,
    /// Backend connections speaking RESP3, for RESP3 clients (opened only when one asks).
    pub pool3: RefCell<BackendPool>,
    /// Request parsing limits.
    pub limits: Limits,
    /// Replies one client may have outstanding before it is no longer read.
    pub max_pipeline_depth: usize,
    /// Time a request has, from its arrival, to be answered (retries included).
    pub request_timeout: Duration,
    /// Process-wide counters and facts, for INFO.
    pub proxy: Arc<ProxyStats>,
    /// How redirects and unavailable nodes are handled.
    pub policy: RoutePolicy,
    /// Requests waiting for a retry.
    pub held: Held,
    /// Dedicated connections (blocking commands, transactions) free for the next client.
    pub idle: RefCell<IdleConns>,
    /// Time allowed to open a backend connection.
    pub connect_timeout: Duration,
    /// Script bodies seen, to answer NOSCRIPT after a failover.
    pub scripts: Arc<ScriptCache>,
    /// FLUSHALL / FLUSHDB are served.
    pub allow_flush: bool,
    /// The node key-less scripts run on (`None`: a random master).
    pub keyless_scripts: Option<Arc<str>>,
    /// Who clients may authenticate as.
    pub users: crate::auth::Users,
    /// The deny list and rename map, when configured.
    pub command_policy: Option<crate::policy::CommandPolicy>,
    /// Tells this worker's sessions to finish what they owe and close (graceful shutdown).
    pub drain: SessionDrain,
}

impl Worker {
    /// This worker's own counters.
    pub fn stats(&self) -> &WorkerStats {
        self.proxy.worker(self.index)
    }
}

/// The signals a worker obeys: `drain` (finish and close every client) and `shutdown` (stop
/// at once). Each flips from `false` to `true` once.
pub struct Signals {
    /// Graceful: sessions stop reading and close once they owe no reply.
    pub drain: watch::Receiver<bool>,
    /// Immediate: the worker's runtime stops, dropping its sessions.
    pub shutdown: watch::Receiver<bool>,
}

/// Run worker `index` on the current thread until `signals.shutdown` flips, serving the
/// clients that arrive on `clients`.
pub fn run(
    index: usize,
    config: &Config,
    topology: Arc<Topology>,
    proxy: Arc<ProxyStats>,
    scripts: Arc<ScriptCache>,
    mut clients: mpsc::UnboundedReceiver<NewClient>,
    signals: Signals,
) -> std::io::Result<()> {
    let Signals {
        drain: mut drain_signal,
        mut shutdown,
    } = signals;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let settings = ConnSettings {
        connect_timeout: Duration::from_millis(config.backend.connect_timeout_ms),
        request_timeout: Duration::from_millis(config.backend.request_timeout_ms),
        reconnect_backoff: Duration::from_millis(config.backend.reconnect_backoff_ms),
        limits: config.protocol.limits(),
        follow_redirects: !config.is_pool_mode(),
    };
    let worker = Rc::new_cyclic(|weak| Worker {
        index,
        topology,
        pool: RefCell::new(BackendPool::new(
            settings.clone(),
            config.backend.connections_per_node,
            Rc::new(WorkerHooks(weak.clone())),
            false,
        )),
        pool3: RefCell::new(BackendPool::new(
            settings,
            config.backend.connections_per_node,
            Rc::new(WorkerHooks(weak.clone())),
            true,
        )),
        limits: config.protocol.limits(),
        max_pipeline_depth: config.proxy.max_pipeline_depth,
        request_timeout: Duration::from_millis(config.backend.request_timeout_ms),
        proxy,
        policy: RoutePolicy {
            max_redirects: config.cluster.max_redirects,
            hold_when_down: config.cluster.when_node_down == WhenNodeDown::Hold,
        },
        held: Held::default(),
        idle: RefCell::new(IdleConns::default()),
        connect_timeout: Duration::from_millis(config.backend.connect_timeout_ms),
        scripts,
        allow_flush: config.commands.allow_flush,
        keyless_scripts: config.commands.keyless_scripts_node().map(Arc::from),
        users: crate::auth::Users::from_config(&config.auth),
        command_policy: crate::policy::CommandPolicy::from_config(&config.commands),
        drain: SessionDrain::default(),
    });
    local.spawn_local(router::retry_loop(Rc::downgrade(&worker)));
    local.block_on(&runtime, async move {
        // The accept loop drops its senders when a drain begins: the sessions go on.
        let mut accepting = true;
        loop {
            tokio::select! {
                client = clients.recv(), if accepting => {
                    let Some((stream, id)) = client else {
                        accepting = false;
                        continue;
                    };
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!("cannot adopt client socket: {e}");
                            continue;
                        }
                    };
                    let worker = Rc::clone(&worker);
                    tokio::task::spawn_local(async move {
                        worker.stats().client_connected();
                        crate::session::serve(stream, Rc::clone(&worker), id).await;
                        worker.stats().client_disconnected();
                    });
                }
                changed = drain_signal.changed(), if !worker.drain.is_draining() => {
                    if changed.is_err() || *drain_signal.borrow() {
                        worker.drain.start();
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
    Ok(())
}
