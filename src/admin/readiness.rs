//! Readiness, and the nodes the admin views list. Node health itself is judged in one place,
//! the topology's health checker (`topology::health`): `/readyz`, `/topology` and the
//! `/metrics` gauges read its published view, the same one routing acts on.

use std::sync::Arc;

use crate::topology::SlotTable;

use super::AdminState;

/// Whether the proxy should receive clients, and why (not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// True when every slot has a master and no master is marked down.
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

/// What the table's routing units are called in readiness messages.
fn units(table: &SlotTable) -> &'static str {
    match table.placement().hashing() {
        crate::placement::Hashing::Slots => "slots",
        crate::placement::Hashing::Ketama(_) => "ketama servers",
    }
}

/// Ready when not draining, all slots have a master, and the health checker marks no master
/// down (with its hysteresis: `health.failures` failed checks in a row).
pub fn readiness(state: &AdminState) -> Readiness {
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
            table.covered_units(),
            table.unit_count(),
            units(&table),
        ));
    }
    let health = state.topology.health();
    let masters = table.shards().len();
    let down: Vec<String> = table
        .shards()
        .iter()
        .filter(|shard| health.is_down(&shard.master))
        .map(|shard| {
            let why = health
                .last_check(&shard.master)
                .and_then(|c| c.error.as_deref())
                .unwrap_or("?");
            format!("{} ({why})", shard.master)
        })
        .collect();
    if !down.is_empty() {
        return not(format!(
            "not ready: master(s) unreachable: {}",
            down.join(", ")
        ));
    }
    Readiness {
        ready: true,
        reason: format!(
            "ready: {} {} covered by {masters} masters, table version {}",
            table.unit_count(),
            units(&table),
            table.version()
        ),
    }
}
