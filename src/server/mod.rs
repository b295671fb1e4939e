//! Starting and stopping the proxy: the listener, the worker threads and the control thread.
//!
//! ```text
//!  control thread: accept loop ──(socket, client id)──► worker 0 … worker N-1 (round robin)
//!                  topology refresh task ──ArcSwap::store──► slot table read by every worker
//!                  fleet checker (GET /fleet/self of each peer) ──ArcSwap::store──► fleet view (CLUSTER SLOTS …)
//! ```
//!
//! Handing a new socket to a worker is the only cross-thread step, once per connection.
//!
//! Reload ([`ProxyHandle::reload`]): a new config is validated as a whole; if valid, the pool
//! set / slot map / placement / read policies it describes is installed as a new slot table in
//! one `ArcSwap::store` (pools on Sentinel keep their resolved master, or are resolved in the
//! background when new), and settings that only take effect at start (listener, workers, limits,
//! timeouts, cluster settings) are reported and logged as not reloaded. If invalid, nothing
//! changes.
//! The admin HTTP listener, when configured, runs on a thread of its own (`slotgate-admin`).
//!
//! Listeners: plaintext (`proxy.listen`) and TLS (`tls.listen`), either or both, served by one
//! accept loop. A TLS client's handshake runs on its worker, not in the accept loop. Clients
//! beyond `proxy.max_clients` (a semaphore; each session holds a permit) are handed to a
//! worker too, which tells them `-ERR max number of clients reached` (over TLS for TLS
//! clients) and closes them. Reload re-reads the certificate files ([`TlsContext::reload`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::admin::{self, AdminState};
use crate::config::{self, Config, ConfigErrors};
use crate::lifecycle::DrainReport;
use crate::migration::{Migrations, Settle};
use crate::reload::{ReloadError, Reloaded, Reloader};
use crate::scripts::ScriptCache;
use crate::stats::ProxyStats;
use crate::tls::TlsContext;
use crate::topology::health::{self, HealthSettings};
use crate::topology::{names, sentinel, Topology, TopologyError};
use crate::upgrade::giver::Giver;
use crate::upgrade::taker::{self, Adopt, Taker};
use crate::upgrade::Outbox;
use crate::worker::{self, NewClient, Shared, Signals};

/// Why the proxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No seed node gave a usable topology.
    #[error("cannot discover the cluster: {0}")]
    Topology(#[from] TopologyError),
    /// A thread or runtime could not be created.
    #[error("cannot start threads: {0}")]
    Runtime(#[from] std::io::Error),
    /// `--take-over`: the running process could not be taken over (it keeps serving).
    #[error("take-over failed: {0}")]
    TakeOver(String),
    /// `proxy.upgrade_socket` could not be listened on.
    #[error("proxy.upgrade_socket: {0}")]
    UpgradeSocket(std::io::Error),
}

/// The proxy; see [`Proxy::start`].
pub struct Proxy;

impl Proxy {
    /// Validate `config`, discover the cluster, bind the listener and start serving. Returns
    /// once clients can connect. Blocks the calling thread briefly (discovery runs on the
    /// proxy's own threads), so it may be called from inside an async runtime.
    /// In pool mode the slot table is built from the config and no cluster is discovered.
    pub fn start(config: Config) -> Result<ProxyHandle, StartError> {
        Proxy::start_as(config, false)
    }

    /// Start as the successor of the slotgate running with the same `proxy.upgrade_socket`
    /// (`slotgate --take-over`): validate, discover the cluster (or build the pool table),
    /// and only then take the running process's listeners, so a failure up to there leaves
    /// it untouched. Clients are adopted after [`ProxyHandle::complete_take_over`].
    pub fn take_over(config: Config) -> Result<ProxyHandle, StartError> {
        Proxy::start_as(config, true)
    }

    fn start_as(config: Config, take_over: bool) -> Result<ProxyHandle, StartError> {
        config.validate()?;
        if take_over && config.proxy.upgrade_socket.is_empty() {
            return Err(StartError::TakeOver(
                "--take-over needs proxy.upgrade_socket (the running process's upgrade socket)"
                    .into(),
            ));
        }
        let tls = Arc::new(TlsContext::build(&config)?);
        let topology = Topology::new(&config, Arc::clone(&tls));
        if config.is_pool_mode() {
            // Pools on Sentinel are resolved by the control thread's first refresh, below.
            topology
                .install_config(&config)
                .map_err(|message| ConfigErrors::one("pools", message))?;
        }
        for warning in config.exposure_warnings() {
            tracing::warn!("SECURITY: {warning}");
        }
        let health = HealthSettings::from_config(&config);
        let (limits, connect_timeout) = (
            config.protocol.limits(),
            Duration::from_millis(config.backend.connect_timeout_ms),
        );
        let resolve_interval = Duration::from_millis(config.backend.resolve_interval_ms);
        let startup_wait = Duration::from_millis(config.cluster.startup_wait_ms);
        let (listener, tls_listener, mut inherited_admin, taker) = if take_over {
            // Start-up first: a successor that cannot see the cluster takes nothing.
            discover_now(&topology, startup_wait)?;
            let (taker, inherited) = taker::connect(
                Path::new(&config.proxy.upgrade_socket),
                !config.proxy.listen.is_empty(),
                !config.tls.listen.is_empty(),
            )
            .map_err(StartError::TakeOver)?;
            for (key, wanted, got) in [
                ("proxy.listen", &config.proxy.listen, &inherited.plain),
                ("tls.listen", &config.tls.listen, &inherited.tls),
                ("admin.listen", &config.admin.listen, &inherited.admin),
            ] {
                warn_if_moved(key, wanted, got.as_ref());
            }
            (inherited.plain, inherited.tls, inherited.admin, Some(taker))
        } else {
            (
                optional_bind(&config.proxy.listen)?,
                optional_bind(&config.tls.listen)?,
                None,
                None,
            )
        };
        let tls_addr = tls_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?;
        let local_addr = match &listener {
            Some(listener) => listener.local_addr()?,
            None => tls_addr.ok_or_else(|| std::io::Error::other("no listener configured"))?,
        };
        let client_permits = Arc::new(Semaphore::new(
            config.proxy.max_clients.min(Semaphore::MAX_PERMITS),
        ));
        let admin_listener = match config.admin.listen.as_str() {
            "" => None,
            // A successor keeps its predecessor's admin port (both serve it for a moment).
            _ if inherited_admin.is_some() => inherited_admin.take(),
            addr => Some(admin::bind(addr).map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?),
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?;
        if admin_listener.is_some() {
            // Before the workers exist: the counter handles they register at start must
            // reach the Prometheus recorder, not the no-op one.
            admin::install_metrics();
        }
        let workers = config.effective_workers();
        let stats = Arc::new(ProxyStats::new(workers, local_addr));
        let scripts = Arc::new(ScriptCache::new());
        // Built once (its specs live as long as the process); start-only.
        let custom = config.commands.custom_commands();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let drain = Arc::new(drain);
        // Flipped while this process hands itself over (never without an upgrade socket).
        let handing = Arc::new(watch::channel(false).0);
        let (done, handed_over) = watch::channel(None);
        let ids = Arc::new(AtomicU64::new(1));
        let giver = match config.proxy.upgrade_socket.as_str() {
            "" => None,
            path => {
                let (outbox, events) = Outbox::new();
                let dup = |l: &Option<std::net::TcpListener>| {
                    l.as_ref().map(std::net::TcpListener::try_clone).transpose()
                };
                Some(Arc::new(Giver {
                    path: path.into(),
                    plain: dup(&listener)?,
                    tls: dup(&tls_listener)?,
                    admin: dup(&admin_listener)?,
                    outbox: Arc::new(outbox),
                    events: std::sync::Mutex::new(Some(events)),
                    handing: Arc::clone(&handing),
                    drain: Arc::clone(&drain),
                    stats: Arc::clone(&stats),
                    timeout: Duration::from_millis(config.proxy.upgrade_timeout_ms),
                    drain_timeout: Duration::from_millis(config.proxy.drain_timeout_ms),
                    startup_wait,
                    done,
                }))
            }
        };
        let reloader = Reloader::new(config.clone(), Arc::clone(&topology), Arc::clone(&tls));
        let settle = Arc::new(Settle::new(workers));
        let migrations = Migrations::new(
            Arc::clone(&reloader),
            Arc::clone(&topology),
            Arc::clone(&settle),
            Arc::clone(&tls),
        );
        let fleet = crate::fleet::Fleet::new(&config);
        let mut fleet_checker = fleet.checker(Arc::clone(&reloader));
        let ops = crate::ops::Ops::new(&config, workers, Arc::clone(&migrations), fleet);
        let admin_state = AdminState::new(
            Arc::clone(&topology),
            Arc::clone(&stats),
            Arc::clone(&reloader),
            Arc::clone(&ops),
            Arc::clone(&migrations),
        );
        let mut handle = ProxyHandle {
            local_addr,
            tls_addr,
            reloader,
            migrations: Arc::clone(&migrations),
            admin_addr,
            topology: Arc::clone(&topology),
            stats: Arc::clone(&stats),
            admin: Arc::clone(&admin_state),
            drain_timeout: Duration::from_millis(config.proxy.drain_timeout_ms),
            shutdown,
            drain,
            handing: Arc::clone(&handing),
            handed_over,
            take_over: None,
            threads: Vec::new(),
        };

        let mut senders = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            let config = config.clone();
            let shared = Shared {
                topology: Arc::clone(&topology),
                stats: Arc::clone(&stats),
                scripts: Arc::clone(&scripts),
                tls: Arc::clone(&tls),
                ops: Arc::clone(&ops),
                custom,
                settle: Arc::clone(&settle),
                outbox: giver.as_ref().map(|g| Arc::clone(&g.outbox)),
            };
            let signals = Signals {
                drain: drain_rx.clone(),
                shutdown: shutdown_rx.clone(),
                handing: handing.subscribe(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("slotgate-worker-{index}"))
                .spawn(move || {
                    if let Err(e) = worker::run(index, &config, shared, rx, signals) {
                        tracing::error!("worker {index} failed to start: {e}");
                    }
                })?;
            handle.threads.push(thread);
        }

        if let Some(listener) = admin_listener {
            let stop = shutdown_rx.clone();
            let thread = std::thread::Builder::new()
                .name("slotgate-admin".into())
                .spawn(move || run_admin(listener, admin_state, stop))?;
            handle.threads.push(thread);
        }

        let adopt_into = senders.clone();
        let adopt_permits = Arc::clone(&client_permits);
        let (accept_ids, mut accept_handing) = (Arc::clone(&ids), handing.subscribe());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let control_topology = Arc::clone(&topology);
        let mut stop = shutdown_rx;
        let mut drain_accept = drain_rx;
        let control = std::thread::Builder::new()
            .name("slotgate-control".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Err(e) = control_topology.first_refresh(startup_wait).await {
                        let _ = ready_tx.send(Err(StartError::Topology(e)));
                        return;
                    }
                    let adopt = |l: Option<std::net::TcpListener>| {
                        l.map(tokio::net::TcpListener::from_std).transpose()
                    };
                    let listeners = match (adopt(listener), adopt(tls_listener)) {
                        (Ok(plain), Ok(tls)) => Listeners {
                            plain,
                            tls,
                            permits: client_permits,
                        },
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready_tx.send(Err(StartError::Runtime(e)));
                            return;
                        }
                    };
                    // A restarted or joining instance of a fleet takes the newest migration
                    // state before it serves a request.
                    match migrations.sync_from_fleet().await {
                        Ok(Some(version)) => tracing::info!(version, "migration state of the fleet adopted"),
                        Ok(None) => {}
                        Err(e) => tracing::error!("the fleet's migration state could not be adopted: {e}"),
                    }
                    // Cluster-aware clients see the live fleet from the first CLUSTER SLOTS.
                    fleet_checker.round().await;
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        () = Arc::clone(&control_topology).run() => {}
                        () = health::run(Arc::clone(&control_topology), health) => {}
                        () = names::run(Arc::clone(&control_topology), resolve_interval, connect_timeout) => {}
                        () = sentinel::watch(Arc::clone(&control_topology), limits, connect_timeout) => {}
                        () = migrations.run() => {}
                        () = fleet_checker.run() => {}
                        () = async {
                            // Accepting ends when the drain begins; the refresh task goes on.
                            accept_loop(listeners, senders, &mut drain_accept, &mut accept_handing, &accept_ids).await;
                            std::future::pending::<()>().await
                        } => {}
                        _ = stop.changed() => {}
                    }
                });
            })?;
        handle.threads.push(control);

        match ready_rx.recv() {
            Ok(Ok(())) => {
                tracing::info!(
                    listen = %local_addr,
                    workers,
                    "slotgate ready: point any Redis client at {local_addr}"
                );
                if let Some(tls) = tls_addr {
                    tracing::info!(tls_listen = %tls, "TLS listener on {tls}");
                }
                if let Some(admin) = admin_addr {
                    tracing::info!(admin = %admin, "admin listener on http://{admin}/");
                }
                match (taker, giver) {
                    (Some(taker), Some(giver)) => {
                        let adopt = Adopt {
                            workers: adopt_into,
                            ids,
                            permits: adopt_permits,
                            giver,
                        };
                        handle.take_over = Some((taker, adopt));
                    }
                    (None, Some(giver)) => giver.start(false).map_err(StartError::UpgradeSocket)?,
                    _ => {}
                }
                Ok(handle)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::Runtime(std::io::Error::other(
                "control thread exited during start-up",
            ))),
        }
    }
}

/// A running proxy. Dropping it stops the proxy (see [`ProxyHandle::shutdown`]).
pub struct ProxyHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    /// The configuration in force and the means to reload it.
    reloader: Arc<Reloader>,
    /// Slot moves between pools.
    migrations: Arc<Migrations>,
    admin_addr: Option<SocketAddr>,
    topology: Arc<Topology>,
    stats: Arc<ProxyStats>,
    admin: Arc<AdminState>,
    drain_timeout: Duration,
    shutdown: watch::Sender<bool>,
    drain: Arc<watch::Sender<bool>>,
    /// Kept for the process's life: the accept loop and the workers watch it.
    #[allow(dead_code)]
    handing: Arc<watch::Sender<bool>>,
    /// The successor's pid, once this process has handed itself over.
    handed_over: watch::Receiver<Option<u32>>,
    /// `--take-over`: the old process's connection, until [`ProxyHandle::complete_take_over`].
    take_over: Option<(Taker, Adopt)>,
    threads: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address clients connect to (the real port when `listen` asked for port 0): the
    /// plaintext listener's, or the TLS listener's when there is no plaintext one.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS listener's address, when `tls.listen` is set (the real port for port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The admin HTTP listener's address, when `admin.listen` is set (the real port for port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The config file migration phase changes are written to (the one `slotgate --config`
    /// names). Without one, moves cannot be started.
    pub fn set_config_file(&self, path: std::path::PathBuf) {
        self.migrations.set_file(path);
    }

    /// The migration controller (moves between pools).
    pub fn migrations(&self) -> &Arc<Migrations> {
        &self.migrations
    }

    /// The proxy's counters.
    pub fn stats(&self) -> &Arc<ProxyStats> {
        &self.stats
    }

    /// `proxy.drain_timeout_ms` of the configuration the proxy started with.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Graceful drain: stop accepting clients, let every client's in-flight requests finish
    /// and close each client once it is owed nothing (idle ones at once). Blocks until no
    /// client is left or `timeout` passed. The proxy keeps running (topology refresh, admin);
    /// call [`ProxyHandle::shutdown`] afterwards to stop it. Calling it twice is harmless.
    pub fn drain(&self, timeout: Duration) -> DrainReport {
        let started = Instant::now();
        let clients_at_start = self.stats.clients();
        self.admin.set_draining();
        let _ = self.drain.send(true);
        tracing::info!(
            clients = clients_at_start,
            timeout_ms = timeout.as_millis() as u64,
            "draining: no new clients; waiting for in-flight requests"
        );
        let mut clients_left = self.stats.clients();
        while clients_left > 0 && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(10));
            clients_left = self.stats.clients();
        }
        let report = DrainReport {
            clients_at_start,
            clients_left,
            elapsed: started.elapsed(),
            timed_out: clients_left > 0,
        };
        if report.timed_out {
            tracing::warn!(
                clients_left,
                "drain timed out; the remaining clients will be closed"
            );
        } else {
            tracing::info!(
                elapsed_ms = report.elapsed.as_millis() as u64,
                "drained: every client finished"
            );
        }
        report
    }

    /// Set to the successor's pid once this process has handed its listeners and clients
    /// over (`proxy.upgrade_socket`); it should then exit.
    pub fn handed_over(&self) -> watch::Receiver<Option<u32>> {
        self.handed_over.clone()
    }

    /// After [`Proxy::take_over`] (and writing the pid file): tell the old process this one
    /// serves, and adopt the clients it hands over. Does nothing for a proxy started with
    /// [`Proxy::start`].
    pub fn complete_take_over(&mut self) -> Result<(), String> {
        match self.take_over.take() {
            Some((taker, adopt)) => taker.ready(adopt),
            None => Ok(()),
        }
    }

    /// The live topology (for tests and admin tooling).
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// A copy of the configuration in force.
    pub fn config(&self) -> Config {
        self.reloader.config()
    }

    /// Re-read `path` and [`ProxyHandle::reload`] it.
    pub fn reload_from_file(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        self.reloader.reload_from_file(path)
    }

    /// Apply `next` to the running proxy; see [`Reloader::reload`].
    pub fn reload(&self, next: Config) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(next)
    }

    /// Where `POST /reload` on the admin listener (and [`Reloader::reload_from_source`])
    /// gets the configuration: typically the config file plus the command line.
    pub fn set_reload_source(
        &self,
        source: impl Fn() -> Result<Config, ConfigErrors> + Send + Sync + 'static,
    ) {
        self.reloader.set_source(source);
    }

    /// Stop accepting, close every client and backend connection, and join all threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A successor keeps its predecessor's listeners: say so when its configuration names
/// another address (port 0 names none in particular).
fn warn_if_moved(key: &str, wanted: &str, inherited: Option<&std::net::TcpListener>) {
    let (Ok(wanted), Some(Ok(kept))) = (
        config::resolve(wanted),
        inherited.map(std::net::TcpListener::local_addr),
    ) else {
        return;
    };
    if wanted.port() != 0 && wanted != kept {
        tracing::warn!(
            "{key} is {wanted}, but an upgrade keeps the listener it takes over, on {kept}; \
             a restart moves it"
        );
    }
}

/// The start-up discovery (or Sentinel resolution) on a thread of its own, before a
/// take-over: the caller may be inside an async runtime.
fn discover_now(topology: &Arc<Topology>, wait: Duration) -> Result<(), StartError> {
    let topology = Arc::clone(topology);
    let found = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime
            .block_on(topology.first_refresh(wait))
            .map(drop)
            .map_err(StartError::Topology)
    })
    .join();
    found.unwrap_or_else(|_| {
        Err(StartError::Runtime(std::io::Error::other(
            "start-up discovery panicked",
        )))
    })
}

/// Bind a client listener unless `addr` is empty.
fn optional_bind(addr: &str) -> Result<Option<std::net::TcpListener>, StartError> {
    if addr.is_empty() {
        return Ok(None);
    }
    bind(addr).map(Some)
}

/// Bind a client listener: non-blocking, `SO_REUSEADDR`, a backlog sized for bursts.
fn bind(addr: &str) -> Result<std::net::TcpListener, StartError> {
    let fail = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let resolved = config::resolve(addr).map_err(fail)?;
    let socket = Socket::new(Domain::for_address(resolved), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&resolved.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    Ok(socket.into())
}

/// Run the admin listener on this (dedicated) thread until `stop` flips.
fn run_admin(listener: std::net::TcpListener, state: Arc<AdminState>, stop: watch::Receiver<bool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("admin listener failed to start: {e}");
            return;
        }
    };
    if let Err(e) = runtime.block_on(admin::serve(listener, state, stop)) {
        tracing::error!("admin listener failed: {e}");
    }
}

/// The client listeners and the max-clients semaphore, owned by the accept loop.
struct Listeners {
    plain: Option<tokio::net::TcpListener>,
    tls: Option<tokio::net::TcpListener>,
    /// One permit per connected client (`proxy.max_clients`).
    permits: Arc<Semaphore>,
}

/// Accept on `listener`, or never when there is none.
async fn accept_on(
    listener: &Option<tokio::net::TcpListener>,
) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Accept clients on both listeners and deal them round-robin to the workers, until `drain`
/// flips (the listeners are then closed: new clients are refused). Each client takes a
/// permit; one that finds none is still handed over, to be told the limit was reached.
/// While `handing` is true (a successor serves on the same listeners) nothing is accepted.
async fn accept_loop(
    listeners: Listeners,
    workers: Vec<mpsc::UnboundedSender<NewClient>>,
    drain: &mut watch::Receiver<bool>,
    handing: &mut watch::Receiver<bool>,
    ids: &AtomicU64,
) {
    let mut turn = 0usize;
    loop {
        let paused = *handing.borrow_and_update();
        let (accepted, tls) = tokio::select! {
            accepted = accept_on(&listeners.plain), if !paused => (accepted, false),
            accepted = accept_on(&listeners.tls), if !paused => (accepted, true),
            changed = drain.changed() => {
                if changed.is_err() || *drain.borrow() {
                    return;
                }
                continue;
            }
            // The sender lives as long as the proxy.
            Ok(()) = handing.changed() => continue,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let Some(worker) = workers.get(turn % workers.len().max(1)) else {
            return;
        };
        turn = turn.wrapping_add(1);
        let permit = Arc::clone(&listeners.permits).try_acquire_owned().ok();
        if permit.is_none() {
            metrics::counter!("slotgate_clients_rejected_total").increment(1);
        }
        let client = NewClient {
            stream,
            id: ids.fetch_add(1, Ordering::Relaxed),
            tls,
            permit,
            adopted: None,
        };
        if worker.send(client).is_err() {
            return; // Shutting down.
        }
    }
}
