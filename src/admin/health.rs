//! Node health (a PING per node per second, from the admin thread) and readiness.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use crate::backend::oneshot;
use crate::resp::{Frame, Limits};
use crate::tls::BackendTls;
use crate::topology::SlotTable;

use super::{lock, AdminState, PROBE_TIMEOUT};

/// What the last probe of one node found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    /// The node answered PING with PONG.
    pub healthy: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// When it was probed (ms since the Unix epoch).
    pub probed_at_ms: u64,
    /// Round trip of the PING, in microseconds (0 when it failed).
    pub rtt_us: u64,
}

/// Last known health by node address.
#[derive(Debug, Default)]
pub struct HealthMap(HashMap<String, NodeHealth>);

impl HealthMap {
    /// Replace the entries of the probed nodes and forget nodes that left the table.
    pub fn update(&mut self, results: Vec<(String, NodeHealth)>) {
        self.0 = results.into_iter().collect();
    }

    /// Merge results without forgetting other nodes.
    pub fn merge(&mut self, results: Vec<(String, NodeHealth)>) {
        self.0.extend(results);
    }

    /// Health of `addr`, if it was probed.
    pub fn get(&self, addr: &str) -> Option<&NodeHealth> {
        self.0.get(addr)
    }
}

/// Whether the proxy should receive clients, and why (not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// True when every slot has a master and every master answers.
    pub ready: bool,
    /// One line for the `/readyz` body.
    pub reason: String,
}

/// Every node of `table`: `(address, role, master it replicates)`.
pub fn all_nodes(table: &SlotTable) -> Vec<(String, &'static str, Option<String>)> {
    let mut nodes = Vec::new();
    for shard in table.shards() {
        nodes.push((shard.master.to_string(), "master", None));
        for replica in &shard.replicas {
            nodes.push((
                replica.to_string(),
                "replica",
                Some(shard.master.to_string()),
            ));
        }
    }
    nodes
}

/// PING every node concurrently (each bounded by [`PROBE_TIMEOUT`]), authenticating with
/// the credentials `table` gives it.
pub async fn probe<R>(
    nodes: &[(String, R, Option<String>)],
    table: &SlotTable,
    tls: Option<Arc<BackendTls>>,
) -> Vec<(String, NodeHealth)> {
    let mut set = JoinSet::new();
    for (addr, _, _) in nodes {
        let addr = addr.clone();
        let auth = table.credentials_for(&addr);
        let tls = tls.clone();
        set.spawn(async move {
            let started = std::time::Instant::now();
            let result = oneshot::commands(
                &addr,
                auth.as_deref(),
                &[&["PING"]],
                PROBE_TIMEOUT,
                Limits::default(),
                tls.as_deref(),
            )
            .await;
            let rtt_us = started.elapsed().as_micros() as u64;
            let error = match result {
                Ok(frames) => match frames.first() {
                    Some(Frame::Simple(s)) if s.eq_ignore_ascii_case(b"PONG") => None,
                    Some(Frame::Error(e)) => Some(String::from_utf8_lossy(e).into_owned()),
                    other => Some(format!("unexpected reply to PING: {other:?}")),
                },
                Err(e) => Some(e.to_string()),
            };
            let health = NodeHealth {
                healthy: error.is_none(),
                rtt_us: if error.is_none() { rtt_us } else { 0 },
                error,
                probed_at_ms: now_ms(),
            };
            (addr, health)
        });
    }
    let mut out = Vec::with_capacity(nodes.len());
    while let Some(joined) = set.join_next().await {
        if let Ok(result) = joined {
            out.push(result);
        }
    }
    out
}

/// What the table's routing units are called in readiness messages.
fn units(table: &SlotTable) -> &'static str {
    match table.placement() {
        crate::placement::Placement::Slots => "slots",
        crate::placement::Placement::Ketama(_) => "ketama servers",
    }
}

/// Ready when not draining, all slots have a master, and every master answers a PING now.
pub async fn readiness(state: &AdminState) -> Readiness {
    let not = |reason: String| Readiness {
        ready: false,
        reason,
    };
    if state.is_draining() {
        return not("not ready: draining (shutting down)".into());
    }
    let table: Arc<SlotTable> = Arc::clone(&state.topology.table());
    if let Some(first) = table.first_uncovered() {
        return not(format!(
            "not ready: slot table version {} covers {} of {} {} (first uncovered: {first})",
            table.version(),
            table.covered_slots(),
            table.unit_count(),
            units(&table),
        ));
    }
    let masters: Vec<_> = all_nodes(&table)
        .into_iter()
        .filter(|(_, role, _)| *role == "master")
        .collect();
    let results = probe(&masters, &table, state.topology.backend_tls()).await;
    let down: Vec<String> = results
        .iter()
        .filter(|(_, h)| !h.healthy)
        .map(|(addr, h)| format!("{addr} ({})", h.error.as_deref().unwrap_or("?")))
        .collect();
    lock(&state.health).merge(results);
    if !down.is_empty() {
        return not(format!(
            "not ready: master(s) unreachable: {}",
            down.join(", ")
        ));
    }
    Readiness {
        ready: true,
        reason: format!(
            "ready: {} {} covered by {} masters, table version {}",
            table.unit_count(),
            units(&table),
            masters.len(),
            table.version()
        ),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
