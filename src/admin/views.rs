//! The JSON documents of `/topology`, `/stats`, `/config`, `/slowlog`, `/hotkeys`,
//! `/fleet/self` and `/fleet`, and the per-second history the dashboard charts.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};

use crate::config::Config;
use crate::placement::Unit;
use crate::slot::SLOT_COUNT;
use crate::stats::{LatencySnapshot, ProxyStats};
use crate::topology::SlotTable;

use super::readiness::all_nodes;
use super::{lock, AdminState, HISTORY};
use crate::topology::health::now_ms;

/// Keys whose values never leave the process: a key whose name contains one of these
/// (case-insensitive) is shown as `"<redacted>"` by `/config`.
const SECRET_KEYS: &[&str] = &["password", "secret", "token", "credential", "private_key"];

/// Replace the value of every secret-looking key in `value` (recursively) by `"<redacted>"`.
/// Empty strings and nulls stay as they are, so an operator can see a secret is *unset*.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                let secret = SECRET_KEYS.iter().any(|s| lower.contains(s));
                let unset = v.is_null() || v.as_str() == Some("");
                if secret && !unset {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `/config`: the effective configuration with secrets redacted.
pub fn config(config: &Config) -> Value {
    let mut value = serde_json::to_value(config)
        .unwrap_or_else(|e| json!({ "error": format!("cannot serialize the config: {e}") }));
    redact(&mut value);
    value
}

/// `/fleet/self`: what this instance tells its fleet peers' checks about itself.
pub fn fleet_self(state: &AdminState) -> Value {
    let report = crate::fleet::SelfReport {
        announce: state.ops.fleet.announce().unwrap_or_default().to_string(),
        draining: state.is_draining(),
    };
    serde_json::to_value(report).unwrap_or_default()
}

/// `/fleet`: the fleet view cluster-aware clients are shown (`null` without
/// `proxy.announce`): each instance with its node id and slot range.
pub fn fleet(state: &AdminState) -> Value {
    let Some(view) = state.ops.fleet.view() else {
        return json!({ "announce": null, "instances": [] });
    };
    let instances: Vec<Value> = view
        .shares()
        .map(|(i, member, first, last)| {
            json!({
                "announce": member.addr,
                "id": member.id,
                "slots": [first, last],
                "myself": view.is_own(i),
            })
        })
        .collect();
    json!({ "announce": view.own().addr, "instances": instances })
}

/// Contiguous slot ranges of `table`: `(first, last, shard index)`.
fn slot_ranges(table: &SlotTable) -> Vec<(u16, u16, usize)> {
    let mut ranges: Vec<(u16, u16, usize)> = Vec::new();
    for n in 0..SLOT_COUNT as u16 {
        let Some(shard) = Unit::new(n).and_then(|u| table.shard_of(u)) else {
            continue;
        };
        match ranges.last_mut() {
            Some((_, last, index)) if *index == shard && *last + 1 == n => *last = n,
            _ => ranges.push((n, n, shard)),
        }
    }
    ranges
}

/// `/topology`: the slot table and every node's role and last known health.
pub fn topology(state: &AdminState) -> Value {
    let table = state.topology.table();
    let health = state.topology.health();
    let requests = state.stats.node_requests();
    let history = lock(&state.history);
    let shards = table.shards();
    let ranges = slot_ranges(&table);
    let mut counts = vec![0usize; shards.len()];
    for &(first, last, index) in &ranges {
        if let Some(c) = counts.get_mut(index) {
            *c += usize::from(last - first) + 1;
        }
    }
    let slots: Vec<Value> = ranges
        .into_iter()
        .filter_map(|(first, last, index)| {
            let shard = shards.get(index)?;
            Some(json!({
                "first": first,
                "last": last,
                "master": &*shard.master,
                "replicas": shard.replicas.iter().map(|r| &**r).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let nodes: Vec<Value> = all_nodes(&table)
        .into_iter()
        .map(|(addr, role, master)| {
            let check = health.last_check(&addr);
            let slots = shards
                .iter()
                .position(|s| *s.master == *addr)
                .and_then(|i| counts.get(i).copied())
                .unwrap_or(0);
            json!({
                "address": addr,
                "role": role,
                "master": master,
                "slots": slots,
                "healthy": health.is_up(&addr),
                "error": check.and_then(|c| c.error.clone()),
                "rtt_us": check.map(|c| c.rtt_us),
                "probed_at_ms": check.map(|c| c.at_ms),
                "requests_total": requests.get(&addr).copied().unwrap_or(0),
                "qps": history.node_rate(&addr),
            })
        })
        .collect();
    json!({
        "version": table.version(),
        "covered_slots": table.covered_units(),
        "complete": table.is_complete(),
        "slots": slots,
        "nodes": nodes,
    })
}

/// One second of traffic, for the dashboard's charts.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// End of the second (ms since the Unix epoch).
    pub at_ms: u64,
    /// Commands per second.
    pub qps: f64,
    /// Median reply latency in ms (bucket upper bound), if any reply was written.
    pub p50_ms: Option<f64>,
    /// 99th percentile reply latency in ms (bucket upper bound), if any.
    pub p99_ms: Option<f64>,
}

/// The last [`HISTORY`] samples and the counters they were taken from.
#[derive(Debug)]
pub struct History {
    samples: VecDeque<Sample>,
    last_at: Instant,
    last_commands: u64,
    last_latency: LatencySnapshot,
    /// Requests written to each backend node as of the last sample.
    last_nodes: BTreeMap<String, u64>,
    /// Requests per second to each backend node over the last sample's second.
    node_rates: BTreeMap<String, f64>,
}

impl History {
    /// An empty history starting from the counters' current values.
    pub fn new(stats: &ProxyStats) -> Self {
        History {
            samples: VecDeque::with_capacity(HISTORY),
            last_at: Instant::now(),
            last_commands: stats.commands_total(),
            last_latency: stats.latency(),
            last_nodes: stats.node_requests(),
            node_rates: BTreeMap::new(),
        }
    }

    /// Take one sample: what happened since the previous one.
    pub fn sample(&mut self, stats: &ProxyStats) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_at).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let commands = stats.commands_total();
        let latency = stats.latency();
        let window = latency.since(&self.last_latency);
        let sample = Sample {
            at_ms: now_ms(),
            qps: commands.saturating_sub(self.last_commands) as f64 / secs,
            p50_ms: window.quantile(0.5).map(|s| s * 1e3),
            p99_ms: window.quantile(0.99).map(|s| s * 1e3),
        };
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let nodes = stats.node_requests();
        self.node_rates = nodes
            .iter()
            .map(|(addr, &total)| {
                let before = self.last_nodes.get(addr).copied().unwrap_or(0);
                (addr.clone(), total.saturating_sub(before) as f64 / secs)
            })
            .collect();
        self.last_at = now;
        self.last_commands = commands;
        self.last_latency = latency;
        self.last_nodes = nodes;
    }

    /// Requests per second written to `addr` over the last sampled second (0 if none).
    pub fn node_rate(&self, addr: &str) -> f64 {
        self.node_rates.get(addr).copied().unwrap_or(0.0)
    }
}

/// `/stats`: totals, redirect counters and the per-second history.
pub fn stats(state: &AdminState) -> Value {
    let s = &state.stats;
    let history = lock(&state.history);
    let samples: Vec<Value> = history
        .samples
        .iter()
        .map(|x| json!({ "t": x.at_ms, "qps": x.qps, "p50_ms": x.p50_ms, "p99_ms": x.p99_ms }))
        .collect();
    let last = history.samples.back();
    let all = s.latency();
    let redirects: serde_json::Map<String, Value> = s
        .redirects_by_kind()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "uptime_secs": s.uptime_secs(),
        "listen": s.listen.to_string(),
        "workers": s.worker_count(),
        "clients": s.clients(),
        "connections_total": s.connections_total(),
        "commands_total": s.commands_total(),
        "retries_total": s.retried_total(),
        "failed_total": s.failed_total(),
        "redirects": redirects,
        "table_version": state.topology.table().version(),
        "topology_refreshes": state.topology.refreshes(),
        "draining": state.is_draining(),
        "qps": last.map_or(0.0, |x| x.qps),
        "node_qps": history.node_rates,
        "p99_ms": last.and_then(|x| x.p99_ms),
        "p99_ms_all_time": all.quantile(0.99).map(|s| s * 1e3),
        "history": samples,
    })
}

/// `/slowlog[?count=N]`: the slow log, newest first (default 128 entries), each entry with
/// the backend node that served it (which `SLOWLOG GET` leaves out, to keep Redis' shape).
pub fn slowlog(state: &AdminState, query: Option<&str>) -> Value {
    let log = &state.ops.slowlog;
    let count = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("count="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(128);
    let entries: Vec<Value> = log
        .get(count)
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "time": e.unix_time,
                "duration_us": e.duration_us,
                "argv": e.argv.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>(),
                "client_addr": e.client_addr,
                "client_name": e.client_name,
                "node": e.node,
            })
        })
        .collect();
    json!({
        "log_slower_than_us": log.log_slower_than_us(),
        "max_len": log.max_len(),
        "len": log.len(),
        "entries": entries,
    })
}

/// `/hotkeys`: whether sampling is on, and the last window's top keys with slot and node.
pub fn hotkeys(state: &AdminState) -> Value {
    let Some(hot) = &state.ops.hotkeys else {
        return json!({ "enabled": false, "keys": [] });
    };
    let table = state.topology.table();
    let keys: Vec<Value> = hot
        .top()
        .iter()
        .map(|k| {
            let (slot, node) = crate::ops::hotkeys::placed(&table, &k.key);
            json!({
                "key": String::from_utf8_lossy(&k.key),
                "count": k.count,
                "slot": slot,
                "node": node,
            })
        })
        .collect();
    json!({
        "enabled": true,
        "sample_rate": hot.sample_rate,
        "interval_ms": u64::try_from(hot.interval.as_millis()).unwrap_or(u64::MAX),
        "top": hot.top,
        "keys": keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let mut value = json!({
            "backend": { "password": "hunter2", "user": "app", "tls_private_key": "x" },
            "cluster": { "seeds": ["a:1"], "auth_token": "" },
            "nodes": [ { "secret": "s" } ],
            "admin": { "listen": "127.0.0.1:9180" }
        });
        redact(&mut value);
        assert_eq!(value["backend"]["password"], "<redacted>");
        assert_eq!(value["backend"]["tls_private_key"], "<redacted>");
        assert_eq!(value["backend"]["user"], "app");
        assert_eq!(
            value["cluster"]["auth_token"], "",
            "an unset secret stays visibly unset"
        );
        assert_eq!(value["nodes"][0]["secret"], "<redacted>");
        assert_eq!(value["admin"]["listen"], "127.0.0.1:9180");
    }

    #[test]
    fn effective_config_is_shown() {
        let mut c = Config::default();
        c.cluster.seeds = vec!["127.0.0.1:7000".into()];
        c.cluster.password = Some(crate::config::Secret::new("node-pw"));
        let v = config(&c);
        assert_eq!(v["cluster"]["seeds"][0], "127.0.0.1:7000");
        assert_eq!(v["cluster"]["password"], "<redacted>");
        assert!(!v.to_string().contains("node-pw"));
        assert_eq!(v["proxy"]["drain_timeout_ms"], 10_000);
    }
}
