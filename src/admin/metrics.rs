//! `/metrics`: Prometheus text from the `metrics` crate's Prometheus exporter.
//!
//! The request path never calls the `metrics` macros: workers count in their own atomics
//! ([`crate::stats`]), and a scrape *publishes* the sums into the recorder (`absolute` for
//! counters, `set` for gauges) just before rendering. Rare events (redirects, backend failures,
//! topology refreshes) are counted with the macros where they happen. The latency histograms
//! are kept as fixed log2 buckets per worker and written here in Prometheus' histogram format,
//! because an exporter histogram would need one call per observation (and the exporter is
//! built with no buckets configured, so it would render a summary). Per-command counters,
//! bytes and backend connection states are per-worker atomics too, written here as text.
//! Only the per-node backend counters go through the recorder: each backend connection holds
//! its two `Counter` handles, registered once when it is created.
//!
//! The recorder is process-wide (the `metrics` crate has one global recorder), installed the
//! first time an admin listener starts. Two proxies in one process (tests) share it; a scrape
//! publishes its own proxy's values under a lock, so each scrape is self-consistent.

use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::stats::{latency_bucket_bound, LatencySnapshot, LATENCY_BUCKETS};

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
        "Nodes the health checker counts as up, by role."
    );
    describe_counter!(
        "slotgate_backend_requests_total",
        "Client requests written to each backend node (pipelined connections), by node."
    );
    describe_counter!(
        "slotgate_backend_errors_total",
        "Error replies received from each backend node (pipelined connections), by node."
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
    // Counted per redirect, exactly by kind, on the pipelined and the dedicated paths alike
    // (`RedirectCounters`; publishing the workers' sums here would fold LOADING/CLUSTERDOWN/
    // MASTERDOWN into `tryagain` a second time); touched here so the common kinds always
    // have a sample.
    for kind in ["moved", "ask", "tryagain"] {
        metrics::counter!("slotgate_redirects_total", "kind" => kind).increment(0);
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
        let health = state.topology.health();
        let (mut masters, mut replicas) = (0u32, 0u32);
        for (addr, role, _) in super::readiness::all_nodes(&table) {
            if health.is_up(&addr) == Some(true) {
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
    histogram(
        &mut out,
        "slotgate_request_duration_seconds",
        "Time from reading a request to writing its reply (proxy total).",
        &s.latency(),
    );
    histogram(
        &mut out,
        "slotgate_backend_round_trip_seconds",
        "Backend round trip per reply: its batch written to the node -> the reply read (pipelined connections).",
        &s.backend_latency(),
    );
    worker_counters(state, &mut out);
    out
}

/// Smallest rendered bucket: `2^5` µs = 32 µs. The worker histograms have log2 buckets from
/// 1 µs; a proxy round trip is never faster than a few tens of µs, so the buckets below are
/// folded into this one (Prometheus buckets are cumulative, so leaving some out is exact).
const FIRST_RENDERED_BUCKET: usize = 5;
/// Largest finite rendered bucket: `2^20` µs ≈ 1.05 s; slower observations land in `+Inf`.
const LAST_RENDERED_BUCKET: usize = 20;
// The worker histograms must reach past the last rendered bound.
const _: () = assert!(LAST_RENDERED_BUCKET + 1 < LATENCY_BUCKETS);

/// Append a latency histogram in Prometheus' text format, with the buckets 32 µs, 64 µs …
/// 1.05 s (powers of two) and `+Inf`: 17 lines that cover 50 µs – 1 s at 2x resolution.
fn histogram(out: &mut String, name: &str, help: &str, snapshot: &LatencySnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, n) in snapshot.buckets.iter().enumerate() {
        cumulative += n;
        if (FIRST_RENDERED_BUCKET..=LAST_RENDERED_BUCKET).contains(&i) {
            let bound = latency_bucket_bound(i);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Append the per-worker counters that are not published through the recorder: requests and
/// error replies by command, bytes, backend connection states, authentication failures.
fn worker_counters(state: &AdminState, out: &mut String) {
    let s = &state.stats;
    let by_command = s.commands_by();
    let name = "slotgate_command_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests received from clients, by command (lower case; subcommands count under their command, unknown ones under \"other\").\n# TYPE {name} counter"
    );
    for (i, (requests, _)) in by_command.iter().enumerate() {
        if *requests > 0 {
            let command = crate::command::stat_name(i);
            let _ = writeln!(out, "{name}{{command=\"{command}\"}} {requests}");
        }
    }
    let name = "slotgate_command_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Error replies written to clients, by command.\n# TYPE {name} counter"
    );
    for (i, (requests, errors)) in by_command.iter().enumerate() {
        if *requests > 0 || *errors > 0 {
            let command = crate::command::stat_name(i);
            let _ = writeln!(out, "{name}{{command=\"{command}\"}} {errors}");
        }
    }
    let [client_in, client_out, backend_in, backend_out] = s.bytes();
    for (name, help, value) in [
        (
            "slotgate_client_bytes_received_total",
            "Bytes read from clients.",
            client_in,
        ),
        (
            "slotgate_client_bytes_sent_total",
            "Bytes written to clients.",
            client_out,
        ),
        (
            "slotgate_backend_bytes_received_total",
            "Bytes read from backend nodes (pipelined connections).",
            backend_in,
        ),
        (
            "slotgate_backend_bytes_sent_total",
            "Bytes written to backend nodes (pipelined connections).",
            backend_out,
        ),
        (
            "slotgate_auth_failures_total",
            "Client AUTH / HELLO AUTH attempts with wrong credentials.",
            s.auth_failures_total(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let name = "slotgate_backend_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Pipelined backend connections by state (connected, connecting, down = the last connect failed).\n# TYPE {name} gauge"
    );
    for (state, n) in s.backend_states() {
        let _ = writeln!(out, "{name}{{state=\"{}\"}} {n}", state.label());
    }
}
