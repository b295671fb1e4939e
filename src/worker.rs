//! A worker: one OS thread running a single-threaded tokio runtime that owns its client
//! sessions and its backend connections. Workers share only the slot table (`ArcSwap`), the
//! configuration and their statistics counters; nothing on the request path crosses threads.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::backend::dedicated::IdleConns;
use crate::backend::{BackendPool, ConnSettings};
use crate::config::{Config, WhenNodeDown};
use crate::lifecycle::SessionDrain;
use crate::resp::Limits;
use crate::router::{self, Held, RoutePolicy, WorkerHooks};
use crate::scripts::ScriptCache;
use crate::stats::{ProxyStats, WorkerStats};
use crate::tls::TlsContext;
use crate::topology::Topology;

/// What a client over `proxy.max_clients` is told before it is closed (Redis' wording).
pub const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// A new client handed to a worker by the accept loop.
#[derive(Debug)]
pub struct NewClient {
    /// The accepted socket.
    pub stream: std::net::TcpStream,
    /// Proxy-wide client id.
    pub id: u64,
    /// Accepted on the TLS listener: the worker runs the handshake first.
    pub tls: bool,
    /// The client's place under `proxy.max_clients`, held for the session's life. `None`:
    /// the limit was reached, so the client is told so and closed.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What every worker shares with the others and with the control thread.
pub struct Shared {
    /// The live slot table.
    pub topology: Arc<Topology>,
    /// Process-wide counters.
    pub stats: Arc<ProxyStats>,
    /// Script bodies seen.
    pub scripts: Arc<ScriptCache>,
    /// TLS material for the listener and the backends.
    pub tls: Arc<TlsContext>,
    /// Client registry, slow log, hot keys.
    pub ops: Arc<crate::ops::Ops>,
}

/// Everything a session needs from its worker.
pub struct Worker {
    /// Index of this worker, `0..workers`.
    pub index: usize,
    /// The live slot table.
    pub topology: Arc<Topology>,
    /// This worker's cached view of the table, for the request path (see [`Worker::table`]).
    table_cache: RefCell<crate::topology::TableCache>,
    /// This worker's backend connections (RESP2).
    pub pool: RefCell<BackendPool>,
    /// Backend connections speaking RESP3, for RESP3 clients (opened only when one asks).
    pub pool3: RefCell<BackendPool>,
    /// Request parsing limits.
    pub limits: Limits,
    /// Replies one client may have outstanding before it is no longer read.
    pub max_pipeline_depth: usize,
    /// Pending bytes, idle timeout and subscriber output limits of each client.
    pub client_limits: crate::session::ClientLimits,
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
    /// `slotgate_redirects_total` by kind, for every path that follows redirects.
    pub redirects: crate::backend::redirect::RedirectCounters,
    /// Key-less admin commands sent to every master (`commands.allow_admin`, table names).
    pub allow_admin: Vec<String>,
    /// The node key-less scripts run on (`None`: a random master).
    pub keyless_scripts: Option<Arc<str>>,
    /// Who clients may authenticate as.
    pub users: crate::auth::Users,
    /// The deny list and rename map, when configured.
    pub command_policy: Option<crate::policy::CommandPolicy>,
    /// Tells this worker's sessions to finish what they owe and close (graceful shutdown).
    pub drain: SessionDrain,
    /// TLS material (listener acceptor, backend connector), re-read on reload.
    pub tls: Arc<TlsContext>,
    /// Time a TLS client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Client registry, slow log, hot keys (shared by all workers).
    pub ops: Arc<crate::ops::Ops>,
    /// This worker's hot-key sampler (`None`: hot keys off).
    pub hot: Option<crate::ops::hotkeys::Sampler>,
}

impl Worker {
    /// This worker's own counters.
    pub fn stats(&self) -> &WorkerStats {
        self.proxy.worker(self.index)
    }

    /// The backend TLS connector as of now (`None`: plaintext backends).
    pub fn backend_tls(&self) -> Option<Arc<crate::tls::BackendTls>> {
        self.tls.backend()
    }

    /// The live slot table, through this worker's cache: the request path's way to read it.
    #[inline]
    pub fn table(&self) -> crate::topology::LocalTable {
        self.table_cache.borrow_mut().current()
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
    shared: Shared,
    mut clients: mpsc::UnboundedReceiver<NewClient>,
    signals: Signals,
) -> std::io::Result<()> {
    let Shared {
        topology,
        stats: proxy,
        scripts,
        tls,
        ops,
    } = shared;
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
        tls: config.backend.tls.enabled.then(|| Arc::clone(&tls)),
        stats: Arc::clone(&proxy),
        worker: index,
    };
    let worker = Rc::new_cyclic(|weak| Worker {
        index,
        table_cache: RefCell::new(topology.table_cache()),
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
        limits: Limits {
            max_request_len: config.proxy.max_request_bytes,
            ..config.protocol.limits()
        },
        max_pipeline_depth: config.proxy.max_pipeline_depth,
        client_limits: crate::session::ClientLimits::from_config(&config.proxy),
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
        redirects: crate::backend::redirect::RedirectCounters::register(),
        allow_admin: config.commands.allowed_admin_names(),
        keyless_scripts: config.commands.keyless_scripts_node().map(Arc::from),
        users: crate::auth::Users::from_config(&config.auth),
        command_policy: crate::policy::CommandPolicy::from_config(&config.commands),
        drain: SessionDrain::default(),
        tls,
        handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
        hot: ops.hotkeys.as_ref().map(|h| h.sampler()),
        ops,
    });
    local.spawn_local(router::retry_loop(Rc::downgrade(&worker)));
    local.spawn_local(publish_hot_keys(Rc::downgrade(&worker)));
    local.block_on(&runtime, async move {
        // The accept loop drops its senders when a drain begins: the sessions go on.
        let mut accepting = true;
        loop {
            tokio::select! {
                client = clients.recv(), if accepting => {
                    let Some(client) = client else {
                        accepting = false;
                        continue;
                    };
                    tokio::task::spawn_local(adopt(Rc::clone(&worker), client));
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

/// Take over a client from the accept loop: TLS handshake if it came to the TLS listener,
/// then its session, or the max-clients refusal.
async fn adopt(worker: Rc<Worker>, client: NewClient) {
    let NewClient {
        stream,
        id,
        tls,
        permit,
    } = client;
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot adopt client socket: {e}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
    let fd = i64::from(std::os::fd::AsRawFd::as_raw_fd(&stream));
    let client = (id, peer, local, fd);
    if !tls {
        return serve(worker, stream, client, permit).await;
    }
    // On the heap: the TLS session's state machine would otherwise size every plaintext
    // client's task too (idle clients are mostly this future).
    Box::pin(adopt_tls(worker, stream, client, permit)).await;
}

/// The TLS handshake, then the session over TLS.
async fn adopt_tls(
    worker: Rc<Worker>,
    stream: tokio::net::TcpStream,
    client: ClientAddrs,
    permit: Option<OwnedSemaphorePermit>,
) {
    let (id, peer) = (client.0, client.1);
    let Some(acceptor) = worker.tls.acceptor() else {
        return; // No TLS listener: cannot happen.
    };
    match tokio::time::timeout(worker.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve(worker, stream, client, permit).await,
        Ok(Err(e)) => {
            metrics::counter!("slotgate_tls_handshake_failures_total").increment(1);
            tracing::debug!(client = id, peer = ?peer, "TLS handshake failed: {e}");
        }
        Err(_) => {
            metrics::counter!("slotgate_tls_handshake_failures_total").increment(1);
            tracing::debug!(client = id, peer = ?peer, "TLS handshake timed out");
        }
    }
}

/// Every `hotkeys.interval_ms`, publish this worker's hot keys and start a new window
/// (returns at once when hot keys are off, or once the worker is gone).
async fn publish_hot_keys(worker: std::rc::Weak<Worker>) {
    let Some(interval) = worker
        .upgrade()
        .and_then(|w| w.ops.hotkeys.as_ref().map(|h| h.interval))
    else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // The first tick is immediate.
    loop {
        tick.tick().await;
        let Some(worker) = worker.upgrade() else {
            return;
        };
        if let (Some(hot), Some(sampler)) = (&worker.ops.hotkeys, &worker.hot) {
            hot.publish(worker.index, sampler);
        }
    }
}

/// `(id, peer, local, fd)` of an adopted client.
type ClientAddrs = (
    u64,
    Option<std::net::SocketAddr>,
    Option<std::net::SocketAddr>,
    i64,
);

/// Run the session of an adopted client, or refuse it when it holds no `permit`.
async fn serve<S>(
    worker: Rc<Worker>,
    mut stream: S,
    (id, peer, local, fd): ClientAddrs,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(_permit) = permit else {
        tracing::debug!(client = id, peer = ?peer, "refused: proxy.max_clients reached");
        worker.stats().rejected();
        let refuse = async {
            stream.write_all(MAX_CLIENTS_REPLY).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
        return;
    };
    worker.stats().client_connected();
    let registration = worker.ops.clients.register(id, peer, local, fd);
    crate::session::serve(stream, registration, Rc::clone(&worker)).await;
    worker.stats().client_disconnected();
}
