//! Cluster topology: which node serves which slot, discovered from the cluster and published
//! as an immutable [`SlotTable`] through `ArcSwap`.
//!
//! Readers (every request) call [`Topology::table`], a lock-free load. One background task
//! ([`Topology::run`]) refreshes the table on a timer and on demand; a new table is stored only
//! when the routing actually changed, with one info log line per change.

pub mod discovery;
pub mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;

use crate::backend::oneshot;
use crate::config::Config;
use crate::resp::{Frame, Limits};

pub use table::{Shard, ShardInfo, SlotTable, TableError};

/// Why no usable table could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    /// No node answered with a usable layout; one reason per node tried.
    #[error("no cluster node gave a usable topology: {}", .0.join("; "))]
    NoUsableAnswer(Vec<String>),
}

/// Settings the topology task needs, taken from [`Config`].
#[derive(Clone, Debug)]
struct Settings {
    seeds: Vec<String>,
    require_full_coverage: bool,
    refresh_interval: Duration,
    refresh_min_gap: Duration,
    query_timeout: Duration,
    limits: Limits,
}

/// The live slot table and the machinery that keeps it current.
#[derive(Debug)]
pub struct Topology {
    table: ArcSwap<SlotTable>,
    settings: Settings,
    wake: Notify,
    versions: AtomicU64,
}

impl Topology {
    /// A topology for `config`, starting with an empty table (call [`Topology::refresh`]).
    pub fn new(config: &Config) -> Arc<Topology> {
        Arc::new(Topology {
            table: ArcSwap::from_pointee(SlotTable::empty()),
            settings: Settings {
                seeds: config.cluster.seeds.clone(),
                require_full_coverage: config.cluster.require_full_coverage,
                refresh_interval: Duration::from_millis(config.cluster.refresh_interval_ms),
                refresh_min_gap: Duration::from_millis(config.cluster.refresh_min_gap_ms),
                query_timeout: Duration::from_millis(
                    config.backend.connect_timeout_ms + config.backend.request_timeout_ms,
                ),
                limits: config.protocol.limits(),
            },
            wake: Notify::new(),
            versions: AtomicU64::new(0),
        })
    }

    /// The current table: a lock-free load, cheap enough for every request.
    #[inline]
    pub fn table(&self) -> Guard<Arc<SlotTable>> {
        self.table.load()
    }

    /// Ask the background task for a refresh soon (debounced by `refresh_min_gap_ms`).
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Discover the layout now and publish it if the routing changed. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, TopologyError> {
        let found = self.discover().await?;
        let current = self.table.load();
        if current.version() > 0 && current.same_routing(&found) {
            return Ok(false);
        }
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let next = found.with_version(version);
        tracing::info!(
            version,
            shards = next.shards().len(),
            covered = next.covered_slots(),
            "slot table updated: {}",
            next.describe().join(", ")
        );
        self.table.store(Arc::new(next));
        Ok(true)
    }

    /// Refresh forever: every `refresh_interval_ms`, and soon after [`Topology::request_refresh`].
    /// Ends when its runtime is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut last = Instant::now();
        loop {
            let _ =
                tokio::time::timeout(self.settings.refresh_interval, self.wake.notified()).await;
            // Debounce: a burst of failures costs one refresh per gap, not one each.
            let since = last.elapsed();
            if since < self.settings.refresh_min_gap {
                tokio::time::sleep(self.settings.refresh_min_gap - since).await;
            }
            last = Instant::now();
            if let Err(e) = self.refresh().await {
                tracing::warn!("topology refresh failed, keeping the current table: {e}");
            }
        }
    }

    /// Ask known masters first, then the seeds, until one gives a usable table.
    async fn discover(&self) -> Result<SlotTable, TopologyError> {
        let mut candidates: Vec<String> = self
            .table
            .load()
            .shards()
            .iter()
            .map(|s| s.master.to_string())
            .collect();
        for seed in &self.settings.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut reasons = Vec::new();
        for addr in &candidates {
            match self.ask(addr).await {
                Ok(table) => return Ok(table),
                Err(reason) => {
                    tracing::debug!("topology from {addr}: {reason}");
                    reasons.push(format!("{addr}: {reason}"));
                }
            }
        }
        Err(TopologyError::NoUsableAnswer(reasons))
    }

    /// One node's view as a table, or why it is not usable.
    async fn ask(&self, addr: &str) -> Result<SlotTable, String> {
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(addr);
        let (timeout, limits) = (self.settings.query_timeout, self.settings.limits);
        let shards_reply = oneshot::command(addr, &["CLUSTER", "SHARDS"], timeout, limits).await;
        let shards = match shards_reply.map_err(|e| e.to_string())? {
            // Older servers (< 7.0) have no CLUSTER SHARDS.
            Frame::Error(_) => match oneshot::command(addr, &["CLUSTER", "SLOTS"], timeout, limits)
                .await
                .map_err(|e| e.to_string())?
            {
                Frame::Error(msg) => return Err(String::from_utf8_lossy(&msg).into_owned()),
                reply => discovery::parse_cluster_slots(&reply, host),
            },
            reply => discovery::parse_cluster_shards(&reply, host),
        }
        .map_err(|e| e.to_string())?;
        let table = SlotTable::from_shards(&shards, 0).map_err(|e| e.to_string())?;
        if self.settings.require_full_coverage {
            if let Some(slot) = table.first_uncovered() {
                return Err(format!(
                    "only {} of 16384 slots are covered (first missing: {slot}); \
                     set cluster.require_full_coverage = false to serve a partial cluster",
                    table.covered_slots()
                ));
            }
        }
        Ok(table)
    }
}
