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
    moved: AtomicU64,
    asked: AtomicU64,
    try_again: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    picks: AtomicU64,
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

    /// A MOVED reply was followed.
    pub fn moved(&self) {
        self.moved.fetch_add(1, Relaxed);
    }

    /// An ASK reply was followed.
    pub fn asked(&self) {
        self.asked.fetch_add(1, Relaxed);
    }

    /// A TRYAGAIN, CLUSTERDOWN, LOADING or MASTERDOWN reply was absorbed.
    pub fn try_again(&self) {
        self.try_again.fetch_add(1, Relaxed);
    }

    /// A request was scheduled for another attempt.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    /// A varying number for spreading choices (RANDOMKEY's first master) over the masters.
    pub fn next_pick(&self) -> u64 {
        self.picks
            .fetch_add(1, Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 32
    }

    /// A request failed with a proxy-side backend error.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Relaxed);
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
        self.sum(|w| &w.commands)
    }

    /// Redirect and retry counters summed over workers, as `(INFO field, value)` pairs.
    pub fn redirect_counters(&self) -> [(&'static str, u64); 5] {
        [
            ("redirects_moved", self.sum(|w| &w.moved)),
            ("redirects_ask", self.sum(|w| &w.asked)),
            ("retries_tryagain", self.sum(|w| &w.try_again)),
            ("requests_retried", self.sum(|w| &w.retried)),
            ("requests_failed_backend", self.sum(|w| &w.failed)),
        ]
    }

    fn sum(&self, field: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| field(w).load(Relaxed)).sum()
    }
}
