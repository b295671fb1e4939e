//! Starting and stopping the proxy: the listener, the worker threads and the control thread.
//!
//! ```text
//!  control thread: accept loop ──(socket, client id)──► worker 0 … worker N-1 (round robin)
//!                  topology refresh task ──ArcSwap::store──► slot table read by every worker
//! ```
//!
//! Handing a new socket to a worker is the only cross-thread step, once per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config, ConfigErrors};
use crate::scripts::ScriptCache;
use crate::stats::ProxyStats;
use crate::topology::{Topology, TopologyError};
use crate::worker::{self, NewClient};

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
}

/// The proxy; see [`Proxy::start`].
pub struct Proxy;

impl Proxy {
    /// Validate `config`, discover the cluster, bind the listener and start serving. Returns
    /// once clients can connect. Blocks the calling thread briefly (discovery runs on the
    /// proxy's own threads), so it may be called from inside an async runtime.
    pub fn start(config: Config) -> Result<ProxyHandle, StartError> {
        config.validate()?;
        let listener = bind(&config.proxy.listen)?;
        let local_addr = listener.local_addr()?;
        let topology = Topology::new(&config);
        let workers = config.effective_workers();
        let stats = Arc::new(ProxyStats::new(workers, local_addr));
        let scripts = Arc::new(ScriptCache::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut handle = ProxyHandle {
            local_addr,
            topology: Arc::clone(&topology),
            shutdown,
            threads: Vec::new(),
        };

        let mut senders = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            let (config, topology, stats, scripts, stop) = (
                config.clone(),
                Arc::clone(&topology),
                Arc::clone(&stats),
                Arc::clone(&scripts),
                shutdown_rx.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("slotgate-worker-{index}"))
                .spawn(move || {
                    if let Err(e) = worker::run(index, &config, topology, stats, scripts, rx, stop)
                    {
                        tracing::error!("worker {index} failed to start: {e}");
                    }
                })?;
            handle.threads.push(thread);
        }

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let control_topology = Arc::clone(&topology);
        let mut stop = shutdown_rx;
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
                    if let Err(e) = control_topology.refresh().await {
                        let _ = ready_tx.send(Err(StartError::Topology(e)));
                        return;
                    }
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(StartError::Runtime(e)));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        () = Arc::clone(&control_topology).run() => {}
                        () = accept_loop(listener, senders) => {}
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
    topology: Arc<Topology>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address clients connect to (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live topology (for tests and admin tooling).
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
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

/// Bind the client listener: non-blocking, `SO_REUSEADDR`, a backlog sized for bursts.
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

/// Accept clients and deal them round-robin to the workers.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<NewClient>>,
) {
    let mut next_id: u64 = 1;
    let mut turn = 0usize;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
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
        if worker.send((stream, next_id)).is_err() {
            return; // Shutting down.
        }
        next_id += 1;
    }
}
