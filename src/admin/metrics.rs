//! `/metrics`: Prometheus text from the `metrics` crate's Prometheus exporter.
//!
//! The request path never calls the `metrics` macros: workers count in their own atomics
//! ([`crate::stats`]), and a scrape *publishes* the sums into the recorder (`absolute` for
//! counters, `set` for gauges) just before rendering. Rare events (redirects, backend failures,
//! topology refreshes) are counted with the macros where they happen. The latency histogram is
//! kept as fixed log2 buckets per worker and written here in Prometheus' histogram format,
//! because an exporter histogram would need one call per observation.
//!
//! The recorder is process-wide (the `metrics` crate has one global recorder), installed the
//! first time an admin listener starts. Two proxies in one process (tests) share it; a scrape
//! publishes its own proxy's values under a lock, so each scrape is self-consistent.

use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::stats::{latency_bucket_bound, LATENCY_BUCKETS};

use super::{lock, AdminState};

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
/// Serializes publish + render, so concurrent scrapes of two proxies do not interleave.
static SCRAPE: Mutex<()> = Mutex::new(());

/// Install the Prometheus recorder as the global `metrics` recorder, once per process. If
/// another recorder was installed first (an embedding application), `/metrics` still serves
/// the proxy's own counters and histogram, without the macro-counted ones.
pub fn install() {
    RECORDER.get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            describe();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!("cannot install the Prometheus recorder: {e}");
            None
        }
    });
}

/// Help texts, registered once.
fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!("slotgate_client_connections", "Clients connected now.");
    describe_counter!(
        "slotgate_client_connections_total",
        "Client connections accepted since start."
    );
    describe_counter!("slotgate_commands_total", "Commands received from clients.");
    describe_counter!(
        "slotgate_redirects_total",
        "Cluster redirects and retry replies absorbed, by kind (moved, ask, tryagain, …)."
    );
    describe_counter!(
        "slotgate_requests_retried_total",
        "Requests scheduled for another attempt (held while a node was down, TRYAGAIN …)."
    );
    describe_counter!(
        "slotgate_requests_failed_total",
        "Requests answered with a proxy-side backend error."
    );
    describe_counter!(
        "slotgate_backend_failures_total",
        "Backend connection failures, by kind."
    );
    describe_counter!(
        "slotgate_client_query_buffer_limit_disconnections_total",
        "Clients closed for a request over proxy.max_request_bytes."
    );
    describe_counter!(
        "slotgate_client_output_buffer_limit_disconnections_total",
        "Subscribers closed for unwritten output over their limit."
    );
    describe_counter!(
        "slotgate_topology_refreshes_total",
        "Topology refreshes attempted."
    );
    describe_gauge!(
        "slotgate_slot_table_version",
        "Version of the live slot table."
    );
    describe_gauge!(
        "slotgate_slots_covered",
        "Slots (of 16384) that have a master."
    );
    describe_gauge!("slotgate_backend_masters", "Masters in the slot table.");
    describe_gauge!(
        "slotgate_backend_nodes_healthy",
        "Nodes whose last health PING succeeded, by role."
    );
    describe_gauge!("slotgate_workers", "Worker threads.");
    describe_gauge!("slotgate_uptime_seconds", "Seconds since start.");
}

/// Publish this proxy's counters into the recorder and render everything.
pub fn render(state: &AdminState) -> String {
    let _serial = lock(&SCRAPE);
    let s = &state.stats;
    let table = state.topology.table();
    metrics::gauge!("slotgate_client_connections").set(s.clients() as f64);
    metrics::counter!("slotgate_client_connections_total").absolute(s.connections_total());
    metrics::counter!("slotgate_commands_total").absolute(s.commands_total());
    for (kind, n) in s.redirects_by_kind() {
        metrics::counter!("slotgate_redirects_total", "kind" => kind).absolute(n);
    }
    metrics::counter!("slotgate_requests_retried_total").absolute(s.retried_total());
    metrics::counter!("slotgate_requests_failed_total").absolute(s.failed_total());
    let [(_, query_limit), (_, output_limit)] = s.client_limit_counters();
    metrics::counter!("slotgate_client_query_buffer_limit_disconnections_total")
        .absolute(query_limit);
    metrics::counter!("slotgate_client_output_buffer_limit_disconnections_total")
        .absolute(output_limit);
    metrics::counter!("slotgate_topology_refreshes_total").absolute(state.topology.refreshes());
    metrics::gauge!("slotgate_slot_table_version").set(table.version() as f64);
    metrics::gauge!("slotgate_slots_covered").set(table.covered_slots() as f64);
    metrics::gauge!("slotgate_backend_masters").set(table.shards().len() as f64);
    metrics::gauge!("slotgate_workers").set(s.worker_count() as f64);
    metrics::gauge!("slotgate_uptime_seconds").set(s.uptime_secs() as f64);
    {
        let health = lock(&state.health);
        let (mut masters, mut replicas) = (0u32, 0u32);
        for (addr, role, _) in super::health::all_nodes(&table) {
            if health.get(&addr).is_some_and(|h| h.healthy) {
                match role {
                    "master" => masters += 1,
                    _ => replicas += 1,
                }
            }
        }
        metrics::gauge!("slotgate_backend_nodes_healthy", "role" => "master")
            .set(f64::from(masters));
        metrics::gauge!("slotgate_backend_nodes_healthy", "role" => "replica")
            .set(f64::from(replicas));
    }

    let mut out = match RECORDER.get() {
        Some(Some(handle)) => handle.render(),
        _ => String::new(),
    };
    latency_histogram(state, &mut out);
    out
}

/// Append the merged reply-latency histogram in Prometheus' text format.
fn latency_histogram(state: &AdminState, out: &mut String) {
    let snapshot = state.stats.latency();
    let name = "slotgate_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from reading a request to writing its reply (proxy total).\n# TYPE {name} histogram"
    );
    let mut cumulative = 0u64;
    for (i, n) in snapshot.buckets.iter().enumerate() {
        cumulative += n;
        // The first bucket (< 1 µs) is always empty: skip it to keep the output short.
        if i == 0 {
            continue;
        }
        let bound = latency_bucket_bound(i);
        if i + 1 == LATENCY_BUCKETS {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
    }
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}
