//! The proxy's own `INFO` reply, in Redis' `# Section` / `key:value` format.

use super::WorkerContext;

/// The Redis version whose command set and protocol slotgate presents to clients.
pub const REDIS_VERSION: &str = "7.0.0";

/// Section names, in output order, and whether plain `INFO` includes them.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("stats", true),
    ("proxy", true),
    ("replication", true),
    ("cluster", true),
    // In plain INFO only when hot keys are on (see `render`).
    ("hotkeys", false),
    // In plain INFO only while slots move between pools (see `render`).
    ("migration", false),
];

/// True when `INFO [section …]` asks for section `name` (`default` says whether plain INFO
/// includes it).
fn wanted(args: &[&[u8]], name: &str, default: bool) -> bool {
    if args.is_empty() {
        return default;
    }
    args.iter().any(|a| {
        a.eq_ignore_ascii_case(name.as_bytes())
            || a.eq_ignore_ascii_case(b"all")
            || a.eq_ignore_ascii_case(b"everything")
            || (default && a.eq_ignore_ascii_case(b"default"))
    })
}

/// True when `INFO [section …]` includes a section summed over the masters (the caller asks
/// them; see [`node_sections`]) rather than rendered here.
pub fn wants_node_sections(args: &[&[u8]]) -> bool {
    !node_sections(args).is_empty()
}

/// Sections the masters answer and the proxy sums, in output order, and whether plain `INFO`
/// includes them (as Redis' does).
const NODE_SECTIONS: &[(&str, bool)] = &[
    ("memory", true),
    ("persistence", true),
    // Merged with the proxy's own `# Stats` (its fields win).
    ("stats", true),
    ("cpu", true),
    ("commandstats", false),
    ("latencystats", false),
    ("errorstats", true),
    ("keyspace", true),
];

/// The sections of `INFO [section …]` to ask every master for and sum.
pub fn node_sections(args: &[&[u8]]) -> Vec<&'static str> {
    NODE_SECTIONS
        .iter()
        .filter(|(name, default)| wanted(args, name, *default))
        .map(|(name, _)| *name)
        .collect()
}

/// Render `INFO [section …]`, every section but those summed over the masters (see
/// [`node_sections`]). Unknown
/// section names are ignored, as Redis does.
pub fn render(args: &[&[u8]], worker: &WorkerContext) -> String {
    let mut out = String::new();
    for &(name, default) in SECTIONS {
        let default = default
            || match name {
                "hotkeys" => worker.ops().hotkeys.is_some(),
                "migration" => worker.ops().migrations.in_force(),
                _ => false,
            };
        if wanted(args, name, default) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            section(name, worker, &mut out);
        }
    }
    out
}

fn section(name: &str, worker: &WorkerContext, out: &mut String) {
    let proxy = &worker.proxy();
    let table = worker.router().topology().table();
    match name {
        "server" => {
            out.push_str("# Server\r\n");
            kv(out, "redis_version", &REDIS_VERSION);
            kv(out, "redis_mode", &"standalone");
            kv(out, "slotgate_version", &env!("CARGO_PKG_VERSION"));
            kv(out, "os", &std::env::consts::OS);
            kv(out, "arch_bits", &(usize::BITS));
            kv(out, "process_id", &std::process::id());
            kv(out, "tcp_port", &proxy.listen.port());
            kv(out, "uptime_in_seconds", &proxy.uptime_secs());
            kv(out, "uptime_in_days", &(proxy.uptime_secs() / 86_400));
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            kv(out, "connected_clients", &proxy.clients());
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            kv(
                out,
                "total_connections_received",
                &proxy.connections_total(),
            );
            kv(out, "total_commands_processed", &proxy.commands_total());
            kv(
                out,
                "instantaneous_ops_per_sec",
                &(proxy.instantaneous_ops().round() as u64),
            );
            let [client_in, client_out, backend_in, backend_out] = proxy.bytes();
            kv(out, "total_net_input_bytes", &client_in);
            kv(out, "total_net_output_bytes", &client_out);
            kv(out, "rejected_connections", &proxy.rejected_total());
            kv(out, "backend_net_input_bytes", &backend_in);
            kv(out, "backend_net_output_bytes", &backend_out);
            for (key, value) in proxy.redirect_counters() {
                kv(out, key, &value);
            }
            for (key, value) in proxy.client_limit_counters() {
                kv(out, key, &value);
            }
            kv(
                out,
                "topology_refreshes",
                &worker.router().topology().refreshes(),
            );
        }
        "proxy" => {
            out.push_str("# Proxy\r\n");
            kv(out, "proxy_version", &env!("CARGO_PKG_VERSION"));
            kv(out, "proxy_uptime_in_seconds", &proxy.uptime_secs());
            kv(out, "proxy_workers", &proxy.worker_count());
            kv(out, "proxy_clients", &proxy.clients());
            kv(out, "auth_failures", &proxy.auth_failures_total());
            kv(out, "backend_masters", &table.shards().len());
            let replicas: usize = table.shards().iter().map(|s| s.replicas.len()).sum();
            kv(out, "backend_replicas", &replicas);
            kv(out, "backend_nodes_this_worker", &worker.router().nodes());
            kv(out, "slot_table_version", &table.version());
            kv(out, "slots_covered", &table.covered_units());
            let health = worker.router().topology().health();
            kv(out, "backend_nodes_down", &health.down().len());
            let status = |addr: &str| if health.is_down(addr) { "down" } else { "up" };
            for (i, shard) in table.shards().iter().enumerate() {
                kv(out, &format!("master{i}"), &shard.master);
                kv(out, &format!("master{i}_health"), &status(&shard.master));
                kv(
                    out,
                    &format!("master{i}_read_policy"),
                    &shard.read_policy.as_str(),
                );
                for (j, replica) in shard.replicas.iter().enumerate() {
                    let line = format!("{replica},{}", status(replica));
                    kv(out, &format!("master{i}_replica{j}"), &line);
                }
            }
        }
        "hotkeys" => {
            out.push_str("# Hotkeys\r\n");
            let Some(hot) = &worker.ops().hotkeys else {
                kv(out, "hotkeys_enabled", &0);
                return;
            };
            kv(out, "hotkeys_enabled", &1);
            kv(out, "hotkeys_sample_rate", &hot.sample_rate);
            kv(out, "hotkeys_interval_ms", &hot.interval.as_millis());
            for (i, hot) in hot.top().iter().enumerate() {
                let (slot, node) = crate::ops::hotkeys::placed(&table, &hot.key);
                // Escaped so a key cannot break the line format.
                let key = hot.key.escape_ascii().to_string().replace(',', "\\x2c");
                let line = format!("key={key},count={},slot={slot},node={node}", hot.count);
                kv(out, &format!("hotkey_{i}"), &line);
            }
        }
        // Clients see one master that takes writes (client libraries read `role`); the
        // nodes' own replication is the proxy's business.
        "replication" => {
            out.push_str("# Replication\r\n");
            kv(out, "role", &"master");
            kv(out, "connected_slaves", &0);
            // ROLE's offset: the proxy has no replication stream of its own.
            kv(out, "master_repl_offset", &0);
        }
        // Clients see one standalone server: cluster support is the proxy's business.
        "cluster" => {
            out.push_str("# Cluster\r\n");
            kv(out, "cluster_enabled", &0);
        }
        "migration" => migration(&worker.ops().migrations.status(), out),
        _ => {}
    }
}

/// `# Migration`: the slot moves between pools (pool mode) from the controller's status (the
/// admin API's `/migrations` JSON): the totals, then one `moveN:` line per move, fields as
/// `key=value` separated by commas (the format of `slaveN:` lines).
fn migration(status: &serde_json::Value, out: &mut String) {
    out.push_str("# Migration\r\n");
    let moves = status["moves"].as_array().map_or(&[][..], Vec::as_slice);
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    kv(out, "migration_moves", &moves.len());
    for (key, field) in [
        ("migration_keys_per_second_limit", "keys_per_second_limit"),
        ("migration_on_touch_moves", "on_touch_moves"),
        ("migration_on_touch_failures", "on_touch_failures"),
        ("migration_background_keys_moved", "background_keys_moved"),
        ("migration_background_bytes_moved", "background_bytes_moved"),
        ("migration_background_failures", "background_failures"),
    ] {
        kv(out, key, &number(&status[field]));
    }
    for (i, m) in moves.iter().enumerate() {
        let text = |field: &str| info_field(m[field].as_str().unwrap_or_default());
        let eta = m["eta_seconds"].as_f64().map_or(-1, |s| s as i64);
        let line = format!(
            "slots={},from={},to={},state={},keys_moved={},keys_left_estimate={},bytes_moved={},\
             rate_keys_per_second={},rate_bytes_per_second={},eta_seconds={eta},passes={},last_error={}",
            text("slots"),
            text("from"),
            text("to"),
            text("state"),
            number(&m["keys_moved"]),
            number(&m["keys_left_estimate"]),
            number(&m["bytes_moved"]),
            m["rate_keys_per_second"].as_f64().unwrap_or(0.0),
            m["rate_bytes_per_second"].as_f64().unwrap_or(0.0),
            number(&m["passes"]),
            text("last_error"),
        );
        kv(out, &format!("move{i}"), &line);
    }
}

/// `text` as one field of a `key=value,…` INFO line: escaped so that it cannot break the line
/// (no CR/LF, no comma).
fn info_field(text: &str) -> String {
    text.escape_default().to_string().replace(',', "\\x2c")
}

/// One `key:value` line.
fn kv(out: &mut String, key: &str, value: &dyn std::fmt::Display) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{key}:{value}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_section_has_the_totals_and_one_line_per_move() {
        let status = serde_json::json!({
            "moves": [
                {"slots": "0-2730", "from": "a", "to": "d", "state": "moving",
                 "keys_moved": 41200, "bytes_moved": 3_296_000, "keys_scanned": 92000,
                 "passes": 0, "keys_left_estimate": 18800, "rate_keys_per_second": 4998.7,
                 "rate_bytes_per_second": 399896.0, "eta_seconds": 4.0, "last_error": null},
                {"slots": "5000", "from": "b", "to": "d", "state": "paused",
                 "keys_moved": 0, "bytes_moved": 0, "passes": 0, "keys_left_estimate": 0,
                 "rate_keys_per_second": 0.0, "rate_bytes_per_second": 0.0,
                 "eta_seconds": null, "last_error": "MIGRATE failed: OOM, retry\r\nlater"},
            ],
            "on_touch_moves": 310, "on_touch_failures": 2, "background_keys_moved": 41200,
            "background_bytes_moved": 3_296_000, "background_failures": 1,
            "keys_per_second_limit": 5000,
        });
        let mut out = String::new();
        migration(&status, &mut out);
        assert_eq!(
            out,
            "# Migration\r\n\
             migration_moves:2\r\n\
             migration_keys_per_second_limit:5000\r\n\
             migration_on_touch_moves:310\r\n\
             migration_on_touch_failures:2\r\n\
             migration_background_keys_moved:41200\r\n\
             migration_background_bytes_moved:3296000\r\n\
             migration_background_failures:1\r\n\
             move0:slots=0-2730,from=a,to=d,state=moving,keys_moved=41200,\
             keys_left_estimate=18800,bytes_moved=3296000,rate_keys_per_second=4998.7,\
             rate_bytes_per_second=399896,eta_seconds=4,passes=0,last_error=\r\n\
             move1:slots=5000,from=b,to=d,state=paused,keys_moved=0,keys_left_estimate=0,\
             bytes_moved=0,rate_keys_per_second=0,rate_bytes_per_second=0,eta_seconds=-1,\
             passes=0,last_error=MIGRATE failed: OOM\\x2c retry\\r\\nlater\r\n"
        );
    }

    #[test]
    fn no_move_is_a_section_of_totals() {
        let status = serde_json::json!({
            "moves": [], "on_touch_moves": 0, "on_touch_failures": 0,
            "background_keys_moved": 0, "background_bytes_moved": 0,
            "background_failures": 0, "keys_per_second_limit": 5000,
        });
        let mut out = String::new();
        migration(&status, &mut out);
        assert!(
            out.starts_with("# Migration\r\nmigration_moves:0\r\n"),
            "{out}"
        );
        assert!(!out.contains("move0:"), "{out}");
    }
}
