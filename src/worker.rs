//! A worker: one OS thread running a single-threaded tokio runtime that owns its client
//! sessions and its backend connections. Workers share only the slot table (`ArcSwap`), the
//! configuration and their statistics counters; nothing on the request path crosses threads.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::config::Config;
use crate::router::{self, Router};
use crate::scripts::ScriptCache;
use crate::session::WorkerContext;
use crate::stats::ProxyStats;
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
    /// Handed over by the process this one took over from, with its session's state.
    pub adopted: Option<Box<crate::upgrade::Adopted>>,
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
    /// The `[commands.custom]` commands, built once at start (`None`: none declared).
    pub custom: Option<&'static crate::command::custom::CustomCommands>,
    /// Migration phase changes this worker acknowledges.
    pub settle: Arc<crate::migration::Settle>,
    /// With `proxy.upgrade_socket`: where sessions hand themselves over to a successor.
    pub outbox: Option<Arc<crate::upgrade::Outbox>>,
}

/// The signals a worker obeys: `drain` (finish and close every client) and `shutdown` (stop
/// at once). Each flips from `false` to `true` once.
pub struct Signals {
    /// Graceful: sessions stop reading and close once they owe no reply.
    pub drain: watch::Receiver<bool>,
    /// Immediate: the worker's runtime stops, dropping its sessions.
    pub shutdown: watch::Receiver<bool>,
    /// True while a successor takes this process's clients: sessions move at their next
    /// request boundary.
    pub handing: watch::Receiver<bool>,
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
        custom,
        settle,
        outbox,
    } = shared;
    let Signals {
        drain: mut drain_signal,
        mut shutdown,
        mut handing,
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
        custom,
    );
    local.spawn_local(router::retry_loop(Rc::downgrade(&router)));
    local.spawn_local(router::follow_names(Rc::downgrade(&router)));
    let within = Duration::from_millis(config.backend.request_timeout_ms);
    local.spawn_local(settle_phase_changes(
        Rc::downgrade(&router),
        settle,
        Arc::clone(&ops.blocked),
        index,
        within,
    ));
    let worker = Rc::new(
        WorkerContext::new(index, config, router, proxy, tls, ops, custom).with_outbox(outbox),
    );
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
                // The sender lives as long as the proxy; a hand-over starts once.
                Ok(()) = handing.changed(), if !worker.moving().is_draining() => {
                    if *handing.borrow() {
                        worker.moving().start();
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
async fn adopt(worker: Rc<WorkerContext>, client: NewClient) {
    let NewClient {
        stream,
        id,
        tls,
        permit,
        adopted,
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
        // Plaintext, served here rather than in a function of its own: the request path
        // stays one state machine (a separate one cost ~60 instructions per request).
        let Some(_permit) = permit else {
            return refuse(&worker, stream, id, peer).await;
        };
        worker.stats().client_connected();
        let registration = worker.ops().clients.register(id, peer, local, fd);
        crate::session::serve_tcp(stream, registration, Rc::clone(&worker), adopted).await;
        worker.stats().client_disconnected();
        return;
    }
    // On the heap: the TLS session's state machine would otherwise size every plaintext
    // client's task too (idle clients are mostly this future).
    Box::pin(adopt_tls(worker, stream, client, permit)).await;
}

/// The TLS handshake, then the session over TLS.
async fn adopt_tls(
    worker: Rc<WorkerContext>,
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

/// Acknowledge each migration phase change once this worker has settled what it sent by
/// older tables (bounded by `within`; a worker that cannot settle does not acknowledge, and
/// the phase change fails), until the worker is gone.
async fn settle_phase_changes(
    router: std::rc::Weak<Router>,
    settle: Arc<crate::migration::Settle>,
    blocked: Arc<crate::ops::blocked::Blocked>,
    index: usize,
    within: Duration,
) {
    let mut rounds = settle.subscribe();
    while rounds.changed().await.is_ok() {
        let ticket = *rounds.borrow_and_update();
        let Some(router) = router.upgrade() else {
            return;
        };
        if router.settle(within, &blocked).await {
            settle.ack(index, ticket);
        } else {
            tracing::warn!(
                worker = index,
                "could not settle a migration phase change in time"
            );
        }
    }
}

/// Every `hotkeys.interval_ms`, publish this worker's hot keys and start a new window
/// (returns at once when hot keys are off, or once the worker is gone).
async fn publish_hot_keys(worker: std::rc::Weak<WorkerContext>) {
    let Some(interval) = worker
        .upgrade()
        .and_then(|w| w.ops().hotkeys.as_ref().map(|h| h.interval))
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

/// Run the session of a TLS client, or refuse it when it holds no `permit`.
async fn serve<S>(
    worker: Rc<WorkerContext>,
    stream: S,
    (id, peer, local, fd): ClientAddrs,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(_permit) = permit else {
        return refuse(&worker, stream, id, peer).await;
    };
    worker.stats().client_connected();
    let registration = worker.ops().clients.register(id, peer, local, fd);
    crate::session::serve(stream, registration, Rc::clone(&worker)).await;
    worker.stats().client_disconnected();
}

/// Tell a client over `proxy.max_clients` so, and close it. Out of line and on the heap:
/// it must not size or bloat the state machine that serves a client's requests.
#[inline(never)]
fn refuse<'a, S>(
    worker: &'a WorkerContext,
    mut stream: S,
    id: u64,
    peer: Option<std::net::SocketAddr>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>
where
    S: AsyncWrite + Unpin + 'a,
{
    Box::pin(async move {
        tracing::debug!(client = id, peer = ?peer, "refused: proxy.max_clients reached");
        worker.stats().rejected();
        let refuse = async {
            stream.write_all(MAX_CLIENTS_REPLY).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
    })
}
