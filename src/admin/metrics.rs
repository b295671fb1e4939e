//! `/metrics`: Prometheus text, written by one renderer from one list of metric families.
//!
//! A scrape collects the families from two sources, both read at scrape time, and renders them
//! the same way (one `# HELP` table, one writer):
//!
//! - this proxy's own values: the per-worker relaxed atomics of [`crate::stats`] (summed:
//!   connections, commands by name, bytes, latency histograms as fixed log2 buckets, backend
//!   connection states …), the topology and the health table. The request path only bumps its
//!   worker's atomics; it never calls a `metrics` macro nor looks anything up in a registry.
//! - the process-wide `metrics` recorder installed here ([`install`]): what other modules count
//!   with the `metrics` macros where rare events happen (redirects by kind, backend failures,
//!   rejected clients, TLS handshake failures) or through handles registered once (each backend
//!   connection's per-node request and error counters). Its storage is `metrics-util`'s atomic
//!   registry; a family the proxy renders from its own values (the slot table version, the
//!   topology refreshes) is not rendered a second time from the recorder.
//!
//! The recorder keeps counters and gauges; `metrics` histograms are not recorded (nothing
//! observes one: a latency histogram is per-worker buckets, published as buckets). The recorder
//! is process-wide (the `metrics` crate has one global recorder), installed the first time an
//! admin listener starts; two proxies in one process (tests) share its macro-counted families,
//! while each scrape renders its own proxy's values. If another recorder was installed first (an
//! embedding application), `/metrics` serves the proxy's own values without the macro-counted
//! ones.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

use crate::stats::{latency_bucket_bound, LatencySnapshot, LATENCY_BUCKETS};

use super::AdminState;

/// Help texts, by metric name: the `# HELP` line of every family slotgate exports (a family
/// without one here, nor described through the recorder, gets only its `# TYPE` line).
const HELP: &[(&str, &str)] = &[
    ("slotgate_client_connections", "Clients connected now."),
    (
        "slotgate_client_connections_total",
        "Client connections accepted since start.",
    ),
    ("slotgate_commands_total", "Commands received from clients."),
    (
        "slotgate_redirects_total",
        "Cluster redirects and retry replies absorbed, by kind (moved, ask, tryagain, …).",
    ),
    (
        "slotgate_requests_retried_total",
        "Requests scheduled for another attempt (held while a node was down, TRYAGAIN …).",
    ),
    (
        "slotgate_requests_failed_total",
        "Requests answered with a proxy-side backend error.",
    ),
    (
        "slotgate_backend_failures_total",
        "Backend connection failures, by kind.",
    ),
    (
        "slotgate_client_query_buffer_limit_disconnections_total",
        "Clients closed for a request over proxy.max_request_bytes.",
    ),
    (
        "slotgate_client_output_buffer_limit_disconnections_total",
        "Subscribers closed for unwritten output over their limit.",
    ),
    (
        "slotgate_topology_refreshes_total",
        "Topology refreshes attempted.",
    ),
    (
        "slotgate_slot_table_version",
        "Version of the live slot table.",
    ),
    (
        "slotgate_slots_covered",
        "Slots (of 16384) that have a master.",
    ),
    ("slotgate_backend_masters", "Masters in the slot table."),
    (
        "slotgate_backend_nodes_healthy",
        "Nodes the health checker counts as up, by role.",
    ),
    (
        "slotgate_backend_requests_total",
        "Client requests written to each backend node (pipelined connections), by node.",
    ),
    (
        "slotgate_backend_errors_total",
        "Error replies received from each backend node (pipelined connections), by node.",
    ),
    ("slotgate_workers", "Worker threads."),
    ("slotgate_uptime_seconds", "Seconds since start."),
    (
        "slotgate_request_duration_seconds",
        "Time from reading a request to writing its reply (proxy total).",
    ),
    (
        "slotgate_backend_round_trip_seconds",
        "Backend round trip per reply: its batch written to the node -> the reply read (pipelined connections).",
    ),
    (
        "slotgate_command_requests_total",
        "Requests received from clients, by command (lower case; subcommands count under their command, unknown ones under \"other\").",
    ),
    (
        "slotgate_command_errors_total",
        "Error replies written to clients, by command.",
    ),
    ("slotgate_client_bytes_received_total", "Bytes read from clients."),
    ("slotgate_client_bytes_sent_total", "Bytes written to clients."),
    (
        "slotgate_backend_bytes_received_total",
        "Bytes read from backend nodes (pipelined connections).",
    ),
    (
        "slotgate_backend_bytes_sent_total",
        "Bytes written to backend nodes (pipelined connections).",
    ),
    (
        "slotgate_auth_failures_total",
        "Client AUTH / HELLO AUTH attempts with wrong credentials.",
    ),
    (
        "slotgate_backend_connections",
        "Pipelined backend connections by state (connected, connecting, down = the last connect failed).",
    ),
    (
        "slotgate_migration_on_touch_moves_total",
        "Requests whose keys were moved between pools before they ran (one MIGRATE each).",
    ),
    (
        "slotgate_migration_keys_moved_total",
        "Keys the background mover moved between pools.",
    ),
    (
        "slotgate_migration_bytes_moved_total",
        "Bytes the background mover moved between pools, as the source measured its keys (MEMORY USAGE, before each batch); on-touch moves are not counted.",
    ),
    (
        "slotgate_migration_errors_total",
        "Failed moves between pools, by kind (on_touch: a request's MIGRATE; background: a batch or the scan feeding it).",
    ),
    (
        "slotgate_migration_moves",
        "Slot moves between pools in force, by state (moving, paused, aborting).",
    ),
    (
        "slotgate_migration_keys_per_second_limit",
        "The background mover's pace (migration.keys_per_second; 0: unthrottled).",
    ),
    (
        "slotgate_migration_move_keys_moved",
        "Keys the background mover moved for one move (this direction).",
    ),
    (
        "slotgate_migration_keys_left_estimate",
        "Keys of one move still on its source, estimated (its share of the source's keys when the mover began, less those it moved; keys moved on touch are not subtracted).",
    ),
    (
        "slotgate_migration_rate_keys_per_second",
        "One move's background rate, keys per second since the mover began on it.",
    ),
    (
        "slotgate_migration_rate_bytes_per_second",
        "One move's background rate, bytes (MEMORY USAGE) per second since the mover began on it.",
    ),
    (
        "slotgate_migration_eta_seconds",
        "Seconds until one move's source is empty at its current rate (absent until a rate is known).",
    ),
];

/// The recorder's storage, once installed as the global `metrics` recorder (`None`: another
/// recorder was installed first).
static RECORDER: OnceLock<Option<Arc<Recorded>>> = OnceLock::new();

/// What the recorder holds: counters and gauges by key, and descriptions given through it.
struct Recorded {
    /// Counters and gauges (`f64` bits), each an atomic shared with its handles.
    registry: Registry<Key, AtomicStorage>,
    /// `describe_*` texts by metric name, for families [`HELP`] does not know.
    descriptions: RwLock<HashMap<String, String>>,
}

/// The global `metrics` recorder: hands out atomics from [`Recorded`].
struct Recorder(Arc<Recorded>);

impl Recorder {
    fn describe(&self, key: KeyName, description: SharedString) {
        let mut descriptions = self
            .0
            .descriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        descriptions
            .entry(key.as_str().to_string())
            .or_insert_with(|| description.into_owned());
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Install the `/metrics` recorder as the global `metrics` recorder, once per process. If
/// another recorder was installed first (an embedding application), `/metrics` still serves
/// the proxy's own values, without the macro-counted ones.
pub fn install() {
    RECORDER.get_or_init(|| {
        let recorded = Arc::new(Recorded {
            registry: Registry::atomic(),
            descriptions: RwLock::new(HashMap::new()),
        });
        match metrics::set_global_recorder(Recorder(Arc::clone(&recorded))) {
            Ok(()) => Some(recorded),
            Err(e) => {
                tracing::warn!("cannot install the metrics recorder: {e}");
                None
            }
        }
    });
}

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value: counts as integers, gauges and sums as floats.
#[derive(Clone, Copy, Debug)]
enum Value {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

/// One line of a family: `name` + `suffix`, its labels, its value.
#[derive(Clone, Debug)]
struct Sample {
    /// Appended to the family name (`_bucket`, `_sum`, `_count`; empty for most).
    suffix: &'static str,
    /// Label pairs, in order.
    labels: Vec<(String, String)>,
    value: Value,
}

/// One metric family: a `# HELP` line (when known), a `# TYPE` line and its samples.
#[derive(Clone, Debug)]
struct Family {
    name: String,
    kind: Kind,
    samples: Vec<Sample>,
}

impl Family {
    fn new(name: &str, kind: Kind) -> Family {
        Family {
            name: name.to_string(),
            kind,
            samples: Vec::new(),
        }
    }

    /// A family of one unlabelled sample.
    fn single(name: &str, kind: Kind, value: Value) -> Family {
        Family::new(name, kind).with(&[], value)
    }

    /// Add a sample with `labels`.
    fn with(mut self, labels: &[(&str, &str)], value: Value) -> Family {
        self.push("", labels, value);
        self
    }

    fn push(&mut self, suffix: &'static str, labels: &[(&str, &str)], value: Value) {
        self.samples.push(Sample {
            suffix,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }
}

/// Render this proxy's values and the recorder's families.
pub fn render(state: &AdminState) -> String {
    // The common redirect kinds always have a sample (counted per redirect, exactly by kind,
    // on the pipelined and the dedicated paths alike, by `RedirectCounters`).
    for kind in ["moved", "ask", "tryagain"] {
        metrics::counter!("slotgate_redirects_total", "kind" => kind).increment(0);
    }
    let mut families = proxy_families(state);
    let recorded = match RECORDER.get() {
        Some(Some(recorded)) => Some(recorded.as_ref()),
        _ => None,
    };
    if let Some(recorded) = recorded {
        for family in recorder_families(recorded) {
            if !families.iter().any(|f| f.name == family.name) {
                families.push(family);
            }
        }
    }
    let mut out = String::new();
    for family in &families {
        write_family(&mut out, family, recorded);
    }
    out
}

/// This proxy's own families: the workers' atomics summed, the topology, the health table.
fn proxy_families(state: &AdminState) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let s = &state.stats;
    let table = state.topology.table();
    let [(_, query_limit), (_, output_limit)] = s.client_limit_counters();
    let (mut masters, mut replicas) = (0u32, 0u32);
    {
        let health = state.topology.health();
        for (addr, role, _) in super::readiness::all_nodes(&table) {
            if health.is_up(&addr) == Some(true) {
                match role {
                    "master" => masters += 1,
                    _ => replicas += 1,
                }
            }
        }
    }
    let counter = |name, n| Family::single(name, Counter, Value::Int(n));
    let gauge = |name, x| Family::single(name, Gauge, Value::Float(x));
    let mut families = vec![
        gauge("slotgate_client_connections", s.clients() as f64),
        counter("slotgate_client_connections_total", s.connections_total()),
        counter("slotgate_commands_total", s.commands_total()),
        counter("slotgate_requests_retried_total", s.retried_total()),
        counter("slotgate_requests_failed_total", s.failed_total()),
        counter(
            "slotgate_client_query_buffer_limit_disconnections_total",
            query_limit,
        ),
        counter(
            "slotgate_client_output_buffer_limit_disconnections_total",
            output_limit,
        ),
        counter(
            "slotgate_topology_refreshes_total",
            state.topology.refreshes(),
        ),
        gauge("slotgate_slot_table_version", table.version() as f64),
        gauge("slotgate_slots_covered", table.covered_units() as f64),
        gauge("slotgate_backend_masters", table.shards().len() as f64),
        Family::new("slotgate_backend_nodes_healthy", Gauge)
            .with(&[("role", "master")], Value::Float(f64::from(masters)))
            .with(&[("role", "replica")], Value::Float(f64::from(replicas))),
        gauge("slotgate_workers", s.worker_count() as f64),
        gauge("slotgate_uptime_seconds", s.uptime_secs() as f64),
        histogram("slotgate_request_duration_seconds", &s.latency()),
        histogram("slotgate_backend_round_trip_seconds", &s.backend_latency()),
    ];

    let by_command = s.commands_by();
    let mut requests = Family::new("slotgate_command_requests_total", Counter);
    let mut errors = Family::new("slotgate_command_errors_total", Counter);
    for (i, &(n_requests, n_errors)) in by_command.iter().enumerate() {
        let command = crate::command::stat_name(i);
        if n_requests > 0 {
            requests.push("", &[("command", command)], Value::Int(n_requests));
        }
        if n_requests > 0 || n_errors > 0 {
            errors.push("", &[("command", command)], Value::Int(n_errors));
        }
    }
    families.extend([requests, errors]);

    let [client_in, client_out, backend_in, backend_out] = s.bytes();
    for (name, value) in [
        ("slotgate_client_bytes_received_total", client_in),
        ("slotgate_client_bytes_sent_total", client_out),
        ("slotgate_backend_bytes_received_total", backend_in),
        ("slotgate_backend_bytes_sent_total", backend_out),
        ("slotgate_auth_failures_total", s.auth_failures_total()),
    ] {
        families.push(Family::single(name, Counter, Value::Int(value)));
    }
    let mut connections = Family::new("slotgate_backend_connections", Gauge);
    for (state, n) in s.backend_states() {
        connections.push("", &[("state", state.label())], Value::Int(n));
    }
    families.push(connections);
    families.extend(migration_families(&state.migrations.status()));
    families
}

/// The slot moves between pools, from the controller's status (the `/migrations` JSON): the
/// totals as counters, the moves by state, and per move (labelled by `slots`, `from`, `to`)
/// the keys moved and left, the rates and the ETA. A move's series end with the move.
fn migration_families(status: &serde_json::Value) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let float = |v: &serde_json::Value| Value::Float(v.as_f64().unwrap_or(0.0));
    let counter = |name, field| Family::single(name, Counter, Value::Int(number(&status[field])));
    let mut families = vec![
        counter("slotgate_migration_on_touch_moves_total", "on_touch_moves"),
        counter(
            "slotgate_migration_keys_moved_total",
            "background_keys_moved",
        ),
        counter(
            "slotgate_migration_bytes_moved_total",
            "background_bytes_moved",
        ),
        Family::new("slotgate_migration_errors_total", Counter)
            .with(
                &[("kind", "on_touch")],
                Value::Int(number(&status["on_touch_failures"])),
            )
            .with(
                &[("kind", "background")],
                Value::Int(number(&status["background_failures"])),
            ),
    ];
    let moves = status["moves"].as_array().map_or(&[][..], Vec::as_slice);
    let mut by_state = Family::new("slotgate_migration_moves", Gauge);
    for state in ["moving", "paused", "aborting"] {
        let n = moves.iter().filter(|m| m["state"] == state).count();
        by_state.push("", &[("state", state)], Value::Int(n as u64));
    }
    families.push(by_state);
    families.push(Family::single(
        "slotgate_migration_keys_per_second_limit",
        Gauge,
        float(&status["keys_per_second_limit"]),
    ));
    let mut per_move = [
        ("slotgate_migration_move_keys_moved", "keys_moved"),
        (
            "slotgate_migration_keys_left_estimate",
            "keys_left_estimate",
        ),
        (
            "slotgate_migration_rate_keys_per_second",
            "rate_keys_per_second",
        ),
        (
            "slotgate_migration_rate_bytes_per_second",
            "rate_bytes_per_second",
        ),
        ("slotgate_migration_eta_seconds", "eta_seconds"),
    ]
    .map(|(name, field)| (Family::new(name, Gauge), field));
    for m in moves {
        let text = |field: &str| m[field].as_str().unwrap_or_default().to_string();
        let (slots, from, to) = (text("slots"), text("from"), text("to"));
        let labels = [
            ("slots", slots.as_str()),
            ("from", from.as_str()),
            ("to", to.as_str()),
        ];
        for (family, field) in &mut per_move {
            // An ETA is unknown (null) until the mover has a rate: no sample.
            if !m[*field].is_null() {
                family.push("", &labels, float(&m[*field]));
            }
        }
    }
    families.extend(per_move.into_iter().map(|(family, _)| family));
    families
}

/// The recorder's counters and gauges as families, by name, labels in order.
fn recorder_families(recorded: &Recorded) -> Vec<Family> {
    let mut by_name: Vec<Family> = Vec::new();
    let mut add = |key: &Key, kind: Kind, value: Value| {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        match by_name
            .iter_mut()
            .find(|f| f.name == key.name() && f.kind == kind)
        {
            Some(family) => family.push("", &labels, value),
            None => {
                let mut family = Family::new(key.name(), kind);
                family.push("", &labels, value);
                by_name.push(family);
            }
        }
    };
    recorded.registry.visit_counters(|key, counter| {
        add(
            key,
            Kind::Counter,
            Value::Int(counter.load(Ordering::Acquire)),
        );
    });
    recorded.registry.visit_gauges(|key, gauge| {
        add(
            key,
            Kind::Gauge,
            Value::Float(f64::from_bits(gauge.load(Ordering::Acquire))),
        );
    });
    by_name.sort_by(|a, b| a.name.cmp(&b.name));
    for family in &mut by_name {
        family.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    by_name
}

/// Smallest rendered bucket: `2^5` µs = 32 µs. The worker histograms have log2 buckets from
/// 1 µs; a proxy round trip is never faster than a few tens of µs, so the buckets below are
/// folded into this one (Prometheus buckets are cumulative, so leaving some out is exact).
const FIRST_RENDERED_BUCKET: usize = 5;
/// Largest finite rendered bucket: `2^20` µs ≈ 1.05 s; slower observations land in `+Inf`.
const LAST_RENDERED_BUCKET: usize = 20;
// The worker histograms must reach past the last rendered bound.
const _: () = assert!(LAST_RENDERED_BUCKET + 1 < LATENCY_BUCKETS);

/// A latency histogram family, with the buckets 32 µs, 64 µs … 1.05 s (powers of two) and
/// `+Inf`: 17 buckets that cover 50 µs – 1 s at 2x resolution.
fn histogram(name: &str, snapshot: &LatencySnapshot) -> Family {
    let mut family = Family::new(name, Kind::Histogram);
    let mut cumulative = 0u64;
    for (i, n) in snapshot.buckets.iter().enumerate() {
        cumulative += n;
        if (FIRST_RENDERED_BUCKET..=LAST_RENDERED_BUCKET).contains(&i) {
            let bound = latency_bucket_bound(i).to_string();
            family.push("_bucket", &[("le", &bound)], Value::Int(cumulative));
        }
    }
    family.push("_bucket", &[("le", "+Inf")], Value::Int(cumulative));
    family.push("_sum", &[], Value::Float(snapshot.sum_us as f64 / 1e6));
    family.push("_count", &[], Value::Int(cumulative));
    family
}

/// The help text of `name`: [`HELP`], else a description given through the recorder.
fn help(name: &str, recorded: Option<&Recorded>) -> Option<String> {
    if let Some((_, text)) = HELP.iter().find(|(n, _)| *n == name) {
        return Some((*text).to_string());
    }
    let descriptions = recorded?
        .descriptions
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    descriptions.get(name).cloned()
}

/// Append `family` in Prometheus' text format, then an empty line.
fn write_family(out: &mut String, family: &Family, recorded: Option<&Recorded>) {
    let name = &family.name;
    if let Some(text) = help(name, recorded) {
        let text = text.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {text}");
    }
    let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
    for sample in &family.samples {
        let _ = write!(out, "{name}{}", sample.suffix);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (key, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{key}=\"{value}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", sample.value);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_prometheus_text_format() {
        let mut out = String::new();
        let counter = Family::new("slotgate_backend_requests_total", Kind::Counter)
            .with(&[("node", "10.0.0.1:6379")], Value::Int(7))
            .with(&[("node", "a\"b\\c")], Value::Int(0));
        write_family(&mut out, &counter, None);
        let gauge = Family::single("slotgate_undescribed", Kind::Gauge, Value::Float(3.0));
        write_family(&mut out, &gauge, None);
        assert_eq!(
            out,
            "# HELP slotgate_backend_requests_total Client requests written to each backend node \
             (pipelined connections), by node.\n\
             # TYPE slotgate_backend_requests_total counter\n\
             slotgate_backend_requests_total{node=\"10.0.0.1:6379\"} 7\n\
             slotgate_backend_requests_total{node=\"a\\\"b\\\\c\"} 0\n\n\
             # TYPE slotgate_undescribed gauge\n\
             slotgate_undescribed 3\n\n"
        );
    }

    #[test]
    fn latency_histograms_have_cumulative_buckets_a_sum_and_a_count() {
        let mut snapshot = LatencySnapshot {
            buckets: [0; LATENCY_BUCKETS],
            sum_us: 1_500,
        };
        snapshot.buckets[0] = 1; // below the first rendered bound: folded into it
        snapshot.buckets[7] = 2;
        snapshot.buckets[LATENCY_BUCKETS - 1] = 1; // past the last bound: only in +Inf
        let mut out = String::new();
        write_family(&mut out, &histogram("h", &snapshot), None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# TYPE h histogram");
        assert_eq!(lines[1], "h_bucket{le=\"0.000032\"} 1");
        assert_eq!(lines[3], "h_bucket{le=\"0.000128\"} 3");
        assert_eq!(lines[16], "h_bucket{le=\"1.048576\"} 3");
        assert_eq!(lines[17], "h_bucket{le=\"+Inf\"} 4");
        assert_eq!(lines[18], "h_sum 0.0015");
        assert_eq!(lines[19], "h_count 4");
    }

    #[test]
    fn moves_between_pools_render_as_totals_states_and_per_move_gauges() {
        let status = serde_json::json!({
            "moves": [{"slots": "0-2730", "from": "a", "to": "d", "state": "moving",
                       "keys_moved": 400, "bytes_moved": 32000, "keys_left_estimate": 600,
                       "rate_keys_per_second": 200.5, "rate_bytes_per_second": 16040.0,
                       "eta_seconds": 3.0, "passes": 0, "last_error": null}],
            "on_touch_moves": 7, "on_touch_failures": 1, "background_keys_moved": 400,
            "background_bytes_moved": 32000, "background_failures": 2,
            "keys_per_second_limit": 5000,
        });
        let mut out = String::new();
        for family in migration_families(&status) {
            write_family(&mut out, &family, None);
        }
        let labels = "{slots=\"0-2730\",from=\"a\",to=\"d\"}";
        for line in [
            "slotgate_migration_on_touch_moves_total 7".to_string(),
            "slotgate_migration_keys_moved_total 400".to_string(),
            "slotgate_migration_bytes_moved_total 32000".to_string(),
            "slotgate_migration_errors_total{kind=\"on_touch\"} 1".to_string(),
            "slotgate_migration_errors_total{kind=\"background\"} 2".to_string(),
            "slotgate_migration_moves{state=\"moving\"} 1".to_string(),
            "slotgate_migration_moves{state=\"paused\"} 0".to_string(),
            "slotgate_migration_keys_per_second_limit 5000".to_string(),
            format!("slotgate_migration_move_keys_moved{labels} 400"),
            format!("slotgate_migration_keys_left_estimate{labels} 600"),
            format!("slotgate_migration_rate_keys_per_second{labels} 200.5"),
            format!("slotgate_migration_rate_bytes_per_second{labels} 16040"),
            format!("slotgate_migration_eta_seconds{labels} 3"),
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
        }
        // Every family has its help text.
        for family in migration_families(&status) {
            assert!(help(&family.name, None).is_some(), "{}", family.name);
        }

        // No move: the totals, no per-move sample, no ETA.
        let idle = serde_json::json!({"moves": [], "keys_per_second_limit": 0});
        let mut out = String::new();
        for family in migration_families(&idle) {
            write_family(&mut out, &family, None);
        }
        assert!(
            out.contains("slotgate_migration_keys_moved_total 0\n"),
            "{out}"
        );
        assert!(!out.contains("slotgate_migration_eta_seconds{"), "{out}");
    }

    #[test]
    fn help_texts_are_unique() {
        for (i, (name, _)) in HELP.iter().enumerate() {
            assert!(HELP[..i].iter().all(|(n, _)| n != name), "{name}");
        }
    }
}
