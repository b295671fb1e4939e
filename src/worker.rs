//! A worker: one OS thread running a single-threaded tokio runtime that owns its client
//! sessions and its backend connections. Workers share only the slot table (`ArcSwap`), the
//! configuration and their statistics counters; nothing on the request path crosses threads.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::config::Config;
use crate::lifecycle::SessionDrain;
use crate::resp::Limits;
use crate::router::{self, Router};
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

/// What every session of a worker obeys, from the configuration (start-only settings).
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Request parsing limits.
    pub limits: Limits,
    /// Replies one client may have outstanding before it is no longer read.
    pub max_pipeline_depth: usize,
    /// Pending bytes, idle timeout and subscriber output limits of each client.
    pub client_limits: crate::session::ClientLimits,
    /// Time a request has, from its arrival, to be answered (retries included).
    pub request_timeout: Duration,
    /// FLUSHALL / FLUSHDB are served.
    pub allow_flush: bool,
    /// Key-less admin commands sent to every master (`commands.allow_admin`, table names).
    pub allow_admin: Vec<String>,
    /// The node key-less scripts run on (`None`: a random master).
    pub keyless_scripts: Option<Arc<str>>,
    /// Time a TLS client has to complete its handshake.
    pub handshake_timeout: Duration,
}

impl SessionSettings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> SessionSettings {
        SessionSettings {
            limits: Limits {
                max_request_len: config.proxy.max_request_bytes,
                ..config.protocol.limits()
            },
            max_pipeline_depth: config.proxy.max_pipeline_depth,
            client_limits: crate::session::ClientLimits::from_config(&config.proxy),
            request_timeout: Duration::from_millis(config.backend.request_timeout_ms),
            allow_flush: config.commands.allow_flush,
            allow_admin: config.commands.allowed_admin_names(),
            keyless_scripts: config.commands.keyless_scripts_node().map(Arc::from),
            handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
        }
    }
}

/// What the sessions of one worker share: its router (the way to the nodes), its settings,
/// counters, client users and command policy, drain signal, and the process's operator views.
pub struct Worker {
    index: usize,
    router: Rc<Router>,
    settings: SessionSettings,
    proxy: Arc<ProxyStats>,
    users: crate::auth::Users,
    command_policy: Option<crate::command_policy::CommandPolicy>,
    drain: SessionDrain,
    tls: Arc<TlsContext>,
    ops: Arc<crate::ops::Ops>,
    hot: Option<crate::ops::hotkeys::Sampler>,
}

impl Worker {
    /// This worker's own counters.
    pub fn stats(&self) -> &WorkerStats {
        self.proxy.worker(self.index)
    }

    /// Index of this worker, `0..workers`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What every session of this worker obeys.
    #[inline]
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Process-wide counters and facts, for INFO.
    pub fn proxy(&self) -> &Arc<ProxyStats> {
        &self.proxy
    }

    /// Who clients may authenticate as.
    pub fn users(&self) -> &crate::auth::Users {
        &self.users
    }

    /// The deny list and rename map, when configured.
    pub fn command_policy(&self) -> Option<&crate::command_policy::CommandPolicy> {
        self.command_policy.as_ref()
    }

    /// Tells this worker's sessions to finish what they owe and close (graceful shutdown).
    pub fn drain(&self) -> &SessionDrain {
        &self.drain
    }

    /// TLS material (listener acceptor, backend connector), re-read on reload.
    pub fn tls(&self) -> &TlsContext {
        &self.tls
    }

    /// Client registry, slow log, hot keys (shared by all workers).
    pub fn ops(&self) -> &crate::ops::Ops {
        &self.ops
    }

    /// This worker's hot-key sampler (`None`: hot keys off).
    pub fn hot(&self) -> Option<&crate::ops::hotkeys::Sampler> {
        self.hot.as_ref()
    }

    /// The way to the nodes: slot table, routing, backend connections.
    #[inline]
    pub fn router(&self) -> &Router {
        &self.router
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
    let router = Router::new(
        index,
        config,
        topology,
        Arc::clone(&proxy),
        scripts,
        Arc::clone(&tls),
    );
    local.spawn_local(router::retry_loop(Rc::downgrade(&router)));
    let worker = Rc::new(Worker {
        index,
        router,
        settings: SessionSettings::from_config(config),
        proxy,
        users: crate::auth::Users::from_config(&config.auth),
        command_policy: crate::command_policy::CommandPolicy::from_config(&config.commands),
        drain: SessionDrain::default(),
        tls,
        hot: ops.hotkeys.as_ref().map(|h| h.sampler()),
        ops,
    });
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
                changed = drain_signal.changed(), if !worker.drain().is_draining() => {
                    if changed.is_err() || *drain_signal.borrow() {
                        worker.drain().start();
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
    let Some(acceptor) = worker.tls().acceptor() else {
        return; // No TLS listener: cannot happen.
    };
    match tokio::time::timeout(worker.settings().handshake_timeout, acceptor.accept(stream)).await {
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
        if let (Some(hot), Some(sampler)) = (&worker.ops().hotkeys, &worker.hot()) {
            hot.publish(worker.index(), sampler);
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
    let registration = worker.ops().clients.register(id, peer, local, fd);
    crate::session::serve(stream, registration, Rc::clone(&worker)).await;
    worker.stats().client_disconnected();
}
