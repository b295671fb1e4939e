//! Process-wide counters for INFO and `/metrics`: one cache-line-aligned block per worker,
//! written only by its worker (relaxed atomics, no contention; the request path's counters
//! by load and store, [`add_own`], not a locked add) and summed by whoever reads them (an INFO
//! reply, an admin scrape). Nothing here allocates or locks on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

mod commands;

pub use commands::CommandCounters;

/// Buckets of the latency histogram. Bucket `i` counts replies that took less than `2^i`
/// microseconds (and at least `2^(i-1)`); the last one also takes everything slower.
pub const LATENCY_BUCKETS: usize = 24;

/// Adds `n` to a counter that one thread alone writes (a worker's own): a load and a store
/// instead of a locked read-modify-write, which costs ~20 cycles on x86 even uncontended and
/// would be paid on every request. Readers on other threads still see whole values, at most
/// a few increments late. Counters another thread may also write keep `fetch_add`.
#[inline]
pub(crate) fn add_own(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

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
    auth_failures: AtomicU64,
    /// Clients refused by `proxy.max_clients`.
    rejected: AtomicU64,
    /// Clients closed for a request over `proxy.max_request_bytes`.
    query_limit_closed: AtomicU64,
    /// Subscribers closed for output over their limit.
    output_limit_closed: AtomicU64,
    picks: AtomicU64,
    /// Reply latency (proxy total: request read → reply written).
    latency: Histogram,
    /// Backend round trip of the pipelined connections: batch written → reply read.
    backend_latency: Histogram,
    /// Requests and error replies per command.
    commands_by: CommandCounters,
    /// Bytes read from and written to clients.
    client_bytes_in: AtomicU64,
    client_bytes_out: AtomicU64,
    /// Bytes read from and written to backend nodes (pipelined connections).
    backend_bytes_in: AtomicU64,
    backend_bytes_out: AtomicU64,
    /// Pipelined backend connections per [`BackendState`].
    backend_states: [AtomicU64; BackendState::ALL.len()],
}

/// What a pipelined backend connection is doing, for the connection gauges. A connection that
/// was never opened (or lost its socket and has not been needed since) is in none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// Connected and serving.
    Connected,
    /// Connecting (TCP, TLS, AUTH and the other handshake requests).
    Connecting,
    /// The last connect failed; requests fail at once during the back-off.
    Down,
}

impl BackendState {
    /// Every state, in gauge order.
    pub const ALL: [BackendState; 3] = [
        BackendState::Connected,
        BackendState::Connecting,
        BackendState::Down,
    ];

    /// The `state` label value.
    pub fn label(self) -> &'static str {
        match self {
            BackendState::Connected => "connected",
            BackendState::Connecting => "connecting",
            BackendState::Down => "down",
        }
    }
}

/// A log2 latency histogram (see [`LATENCY_BUCKETS`]) plus the sum of latencies in µs.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    /// `n` observations of `elapsed`: two adds, by the worker that owns the histogram.
    #[inline]
    pub fn record(&self, elapsed: Duration, n: u64) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(latency_bucket(us)) {
            add_own(b, n);
        }
        add_own(&self.sum_us, us.saturating_mul(n));
    }

    /// Add this histogram into `into`.
    fn add_to(&self, into: &mut LatencySnapshot) {
        for (o, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *o += b.load(Relaxed);
        }
        into.sum_us += self.sum_us.load(Relaxed);
    }
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
            add_own(&self.commands, n);
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

    /// A client gave wrong credentials.
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    /// A client was refused: `proxy.max_clients` reached.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// A client was closed for a request over `proxy.max_request_bytes`.
    pub fn request_too_large(&self) {
        self.query_limit_closed.fetch_add(1, Relaxed);
    }

    /// A subscriber was closed for output over its limit.
    pub fn output_limit_disconnected(&self) {
        self.output_limit_closed.fetch_add(1, Relaxed);
    }

    /// `n` replies were written to their client `elapsed` after their request was read.
    #[inline]
    pub fn record_latency(&self, elapsed: Duration, n: u64) {
        self.latency.record(elapsed, n);
    }

    /// The backend round-trip histogram (one observation per reply).
    #[inline]
    pub fn backend_latency(&self) -> &Histogram {
        &self.backend_latency
    }

    /// Per-command request and error counters.
    #[inline]
    pub fn commands_by(&self) -> &CommandCounters {
        &self.commands_by
    }

    /// `n` bytes were read from a client (one read).
    #[inline]
    pub fn client_read(&self, n: usize) {
        add_own(&self.client_bytes_in, n as u64);
    }

    /// `n` bytes were written to a client (one write).
    #[inline]
    pub fn client_wrote(&self, n: usize) {
        add_own(&self.client_bytes_out, n as u64);
    }

    /// `n` bytes were read from a backend node (one read).
    #[inline]
    pub fn backend_read(&self, n: usize) {
        add_own(&self.backend_bytes_in, n as u64);
    }

    /// `n` bytes were written to a backend node (one write).
    #[inline]
    pub fn backend_wrote(&self, n: usize) {
        add_own(&self.backend_bytes_out, n as u64);
    }

    /// A pipelined backend connection left state `from` (if any) for `to` (if any).
    pub fn backend_state(&self, from: Option<BackendState>, to: Option<BackendState>) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            self.backend_states[from as usize].fetch_sub(1, Relaxed);
        }
        if let Some(to) = to {
            self.backend_states[to as usize].fetch_add(1, Relaxed);
        }
    }
}

/// The histogram bucket of a latency of `us` microseconds.
fn latency_bucket(us: u64) -> usize {
    // 0 and 1 µs → bucket 1 (< 2 µs); 2..3 → 2; 4..7 → 3; …
    let bits = (u64::BITS - us.leading_zeros()) as usize;
    bits.clamp(1, LATENCY_BUCKETS - 1)
}

/// Upper bound of latency bucket `i`, in seconds (`+Inf` for the last one).
pub fn latency_bucket_bound(i: usize) -> f64 {
    if i + 1 >= LATENCY_BUCKETS {
        f64::INFINITY
    } else {
        (1u64 << i) as f64 / 1e6
    }
}

/// A merged latency histogram: counts per bucket, total count and sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Replies per bucket (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all latencies, in microseconds.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Replies counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What happened between `earlier` and `self` (both from the same proxy).
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        let mut out = LatencySnapshot {
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            ..LatencySnapshot::default()
        };
        for (o, (now, then)) in out
            .buckets
            .iter_mut()
            .zip(self.buckets.iter().zip(&earlier.buckets))
        {
            *o = now.saturating_sub(*then);
        }
        out
    }

    /// The upper bound, in seconds, of the bucket holding quantile `q` (0..=1); `None` when
    /// nothing was counted. The last bucket reports its lower bound (it has no upper one).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = latency_bucket_bound(i);
                return Some(if bound.is_finite() {
                    bound
                } else {
                    latency_bucket_bound(i - 1)
                });
            }
        }
        None
    }
}

/// Times the replies of one client session: [`ReplyClock::read`] notes when each batch of
/// requests was read, [`ReplyClock::written`] attributes the replies written since to the
/// oldest batches (replies leave in request order) and records their latency. One clock read
/// per write turn, none for replies written where they arrive (their arrival's reading,
/// [`ReplyClock::written_at`]); the batch queue grows only with the client's pipeline depth.
#[derive(Debug, Default)]
pub struct ReplyClock {
    /// (read at, requests of that read not yet answered), oldest first.
    batches: crate::fifo::Fifo<(tokio::time::Instant, u64)>,
    /// Requests read and not yet answered (the sum of `batches`).
    pending: u64,
}

impl ReplyClock {
    /// `count` requests were read at `at`.
    #[inline]
    pub fn read(&mut self, at: tokio::time::Instant, count: u64) {
        if count > 0 {
            self.batches.push_back((at, count));
            self.pending += count;
        }
    }

    /// Replies were written; `outstanding` are still owed to the client. Replies that answer
    /// no request (a protocol error) make the count approximate, never wrong by more.
    #[inline]
    pub fn written(&mut self, outstanding: usize, stats: &WorkerStats) {
        if self.pending > outstanding as u64 {
            self.written_at(outstanding, stats, tokio::time::Instant::now());
        }
    }

    /// [`ReplyClock::written`] with the clock already read: `now`, no earlier than the
    /// replies' arrival (the caller's own reading, saving one per write).
    #[inline]
    pub fn written_at(
        &mut self,
        outstanding: usize,
        stats: &WorkerStats,
        now: tokio::time::Instant,
    ) {
        let mut done = self.pending.saturating_sub(outstanding as u64);
        if done == 0 {
            return;
        }
        self.pending -= done;
        while done > 0 {
            let Some(front) = self.batches.front_mut() else {
                break;
            };
            let n = front.1.min(done);
            stats.record_latency(now.saturating_duration_since(front.0), n);
            done -= n;
            front.1 -= n;
            if front.1 == 0 {
                self.batches.pop_front();
            }
        }
    }
}

/// Facts and counters of the whole proxy.
#[derive(Debug)]
pub struct ProxyStats {
    started: Instant,
    workers: Box<[WorkerStats]>,
    /// Requests written to each backend node, one counter per (node, worker); registered when
    /// a worker opens its first connection to the node.
    nodes: std::sync::Mutex<Vec<NodeEntry>>,
    /// INFO's `instantaneous_ops_per_sec`: the last rate and the window it is measured from.
    ops_window: std::sync::Mutex<OpsWindow>,
    /// The address clients connect to.
    pub listen: std::net::SocketAddr,
}

/// Commands counted at the start of the current rate window, and the last full window's rate.
#[derive(Debug)]
struct OpsWindow {
    started: Instant,
    commands: u64,
    rate: f64,
}

/// One (node address, worker index) pair's request counter.
type NodeEntry = (std::sync::Arc<str>, usize, std::sync::Arc<NodeTraffic>);

/// Requests one worker wrote to one backend node (pipelined connections). Aligned so two
/// workers' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct NodeTraffic {
    requests: AtomicU64,
}

impl NodeTraffic {
    /// Count `n` requests written.
    #[inline]
    pub fn add(&self, n: u64) {
        add_own(&self.requests, n);
    }
}

impl ProxyStats {
    /// Counters for `workers` workers, starting now.
    pub fn new(workers: usize, listen: std::net::SocketAddr) -> Self {
        ProxyStats {
            started: Instant::now(),
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            nodes: std::sync::Mutex::new(Vec::new()),
            ops_window: std::sync::Mutex::new(OpsWindow {
                started: Instant::now(),
                commands: 0,
                rate: 0.0,
            }),
            listen,
        }
    }

    /// Worker `worker`'s request counter for node `addr` (created on first use; takes a lock,
    /// so callers keep the handle: once per backend connection, not per request).
    pub fn node_traffic(&self, worker: usize, addr: &str) -> std::sync::Arc<NodeTraffic> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, t)) = nodes.iter().find(|(a, w, _)| *w == worker && &**a == addr) {
            return std::sync::Arc::clone(t);
        }
        let traffic = std::sync::Arc::new(NodeTraffic::default());
        nodes.push((addr.into(), worker, std::sync::Arc::clone(&traffic)));
        traffic
    }

    /// Commands per second over the last window of at least one second that ended when this
    /// was last asked (INFO's `instantaneous_ops_per_sec`; 0 until a second has passed).
    pub fn instantaneous_ops(&self) -> f64 {
        let mut window = self.ops_window.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = window.started.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let commands = self.commands_total();
            window.rate = commands.saturating_sub(window.commands) as f64 / elapsed.as_secs_f64();
            window.commands = commands;
            window.started = Instant::now();
        }
        window.rate
    }

    /// Clients refused by `proxy.max_clients` since start.
    pub fn rejected_total(&self) -> u64 {
        self.sum(|w| &w.rejected)
    }

    /// Requests written to each backend node since start (every worker), by address.
    pub fn node_requests(&self) -> std::collections::BTreeMap<String, u64> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::collections::BTreeMap::new();
        for (addr, _, traffic) in nodes.iter() {
            *out.entry(addr.to_string()).or_insert(0) += traffic.requests.load(Relaxed);
        }
        out
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

    /// Redirects and retries by kind, for `/metrics`: `(kind, count)`.
    pub fn redirects_by_kind(&self) -> [(&'static str, u64); 3] {
        [
            ("moved", self.sum(|w| &w.moved)),
            ("ask", self.sum(|w| &w.asked)),
            ("tryagain", self.sum(|w| &w.try_again)),
        ]
    }

    /// Requests scheduled for another attempt since start.
    pub fn retried_total(&self) -> u64 {
        self.sum(|w| &w.retried)
    }

    /// Requests that failed with a proxy-side backend error since start.
    pub fn failed_total(&self) -> u64 {
        self.sum(|w| &w.failed)
    }

    /// Wrong AUTH / HELLO AUTH credentials, over all workers.
    pub fn auth_failures_total(&self) -> u64 {
        self.sum(|w| &w.auth_failures)
    }

    /// Clients closed by a limit, as `(INFO field, value)` pairs (Redis' field names).
    pub fn client_limit_counters(&self) -> [(&'static str, u64); 2] {
        [
            (
                "client_query_buffer_limit_disconnections",
                self.sum(|w| &w.query_limit_closed),
            ),
            (
                "client_output_buffer_limit_disconnections",
                self.sum(|w| &w.output_limit_closed),
            ),
        ]
    }

    /// The reply latency histogram merged over all workers.
    pub fn latency(&self) -> LatencySnapshot {
        let mut out = LatencySnapshot::default();
        for w in self.workers.iter() {
            w.latency.add_to(&mut out);
        }
        out
    }

    /// The backend round-trip histogram merged over all workers.
    pub fn backend_latency(&self) -> LatencySnapshot {
        let mut out = LatencySnapshot::default();
        for w in self.workers.iter() {
            w.backend_latency.add_to(&mut out);
        }
        out
    }

    /// `(requests, error replies)` per command index ([`crate::command::stat_index`]),
    /// summed over workers.
    pub fn commands_by(&self) -> Vec<(u64, u64)> {
        let mut out = vec![(0, 0); crate::command::stat_index::COUNT];
        for w in self.workers.iter() {
            w.commands_by.add_to(&mut out);
        }
        out
    }

    /// Bytes `(client in, client out, backend in, backend out)` since start.
    pub fn bytes(&self) -> [u64; 4] {
        [
            self.sum(|w| &w.client_bytes_in),
            self.sum(|w| &w.client_bytes_out),
            self.sum(|w| &w.backend_bytes_in),
            self.sum(|w| &w.backend_bytes_out),
        ]
    }

    /// Pipelined backend connections in each state now, over all workers.
    pub fn backend_states(&self) -> [(BackendState, u64); 3] {
        BackendState::ALL.map(|state| (state, self.sum(|w| &w.backend_states[state as usize])))
    }

    fn sum(&self, field: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| field(w).load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        assert_eq!(latency_bucket(0), 1);
        assert_eq!(latency_bucket(1), 1);
        assert_eq!(latency_bucket(2), 2);
        assert_eq!(latency_bucket(3), 2);
        assert_eq!(latency_bucket(1000), 10); // < 1024 µs
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        assert!(latency_bucket_bound(LATENCY_BUCKETS - 1).is_infinite());
        assert_eq!(latency_bucket_bound(10), 1024.0 / 1e6);
    }

    #[test]
    fn quantiles_come_from_merged_workers() {
        let stats = ProxyStats::new(2, "127.0.0.1:1".parse().unwrap());
        stats
            .worker(0)
            .record_latency(Duration::from_micros(100), 98);
        stats
            .worker(1)
            .record_latency(Duration::from_micros(5000), 2);
        let snap = stats.latency();
        assert_eq!(snap.count(), 100);
        assert_eq!(snap.quantile(0.5), Some(128.0 / 1e6));
        assert_eq!(snap.quantile(0.99), Some(8192.0 / 1e6));
        assert_eq!(snap.since(&snap).count(), 0);
        assert_eq!(LatencySnapshot::default().quantile(0.99), None);
    }

    /// The reply latency histogram's bucket counts.
    fn latency_counts(stats: &WorkerStats) -> Vec<u64> {
        stats
            .latency
            .buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reply_clock_attributes_replies_to_the_oldest_batch() {
        let stats = WorkerStats::default();
        let mut clock = ReplyClock::default();
        clock.read(tokio::time::Instant::now(), 3);
        tokio::time::advance(Duration::from_millis(2)).await;
        clock.read(tokio::time::Instant::now(), 2);
        // Two replies written, three still owed: both from the first batch (2 ms old).
        clock.written(3, &stats);
        tokio::time::advance(Duration::from_millis(1)).await;
        clock.written(0, &stats);
        let hist = latency_counts(&stats);
        assert_eq!(hist[latency_bucket(2000)], 2);
        assert_eq!(hist[latency_bucket(3000)], 1);
        assert_eq!(hist[latency_bucket(1000)], 2);
        assert!(clock.batches.is_empty());
        assert_eq!(clock.pending, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reply_clock_stops_at_the_given_instant() {
        let stats = WorkerStats::default();
        let mut clock = ReplyClock::default();
        let read = tokio::time::Instant::now();
        clock.read(read, 2);
        tokio::time::advance(Duration::from_millis(40)).await;
        // The replies arrived 5 ms after the read; written later, timed to their arrival.
        clock.written_at(0, &stats, read + Duration::from_millis(5));
        let hist = latency_counts(&stats);
        assert_eq!(hist[latency_bucket(5000)], 2);
        assert_eq!(hist.iter().sum::<u64>(), 2);
        // Nothing left to time: no clock read, nothing recorded.
        clock.written(0, &stats);
        assert_eq!(clock.pending, 0);
    }
}
