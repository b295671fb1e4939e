//! Process-wide counters for INFO: one cache-line-aligned block per worker, written only by
//! its worker (relaxed atomics, no contention) and summed by whoever reads them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Counters of one worker. Aligned so two workers never write the same cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    clients: AtomicU64,
    connections: AtomicU64,
    commands: AtomicU64,
}

impl WorkerStats {
    /// A client connected to this worker.
    pub fn client_connected(&self) {
        self.clients.fetch_add(1, Relaxed);
        self.connections.fetch_add(1, Relaxed);
    }

    /// A client of this worker went away.
    pub fn client_disconnected(&self) {
        self.clients.fetch_sub(1, Relaxed);
    }

    /// `n` more commands were received (added once per read, not per command).
    pub fn add_commands(&self, n: u64) {
        if n > 0 {
            self.commands.fetch_add(n, Relaxed);
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> u64 {
        self.clients.load(Relaxed)
    }
}

/// Facts and counters of the whole proxy.
#[derive(Debug)]
pub struct ProxyStats {
    started: Instant,
    workers: Box<[WorkerStats]>,
    /// The address clients connect to.
    pub listen: std::net::SocketAddr,
}

impl ProxyStats {
    /// Counters for `workers` workers, starting now.
    pub fn new(workers: usize, listen: std::net::SocketAddr) -> Self {
        ProxyStats {
            started: Instant::now(),
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            listen,
        }
    }

    /// Worker `index`'s counters. Panics on an index the proxy never created (a bug).
    pub fn worker(&self, index: usize) -> &WorkerStats {
        &self.workers[index]
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Clients connected now.
    pub fn clients(&self) -> u64 {
        self.workers.iter().map(|w| w.clients()).sum()
    }

    /// Client connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.connections.load(Relaxed))
            .sum()
    }

    /// Commands received since start.
    pub fn commands_total(&self) -> u64 {
        self.workers.iter().map(|w| w.commands.load(Relaxed)).sum()
    }
}
