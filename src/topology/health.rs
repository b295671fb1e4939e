//! The one judge of node health: one task (on the control thread, not per worker) sends
//! `PING` to every master and replica of the current slot table each `health.interval_ms`,
//! and publishes the result as an immutable [`Health`] view through the topology. Routing
//! (replica choice), the admin `/topology` and `/readyz`, and the `/metrics` gauges all read
//! that view, so they never disagree about a node.
//!
//! A node is marked down after `health.failures` consecutive failed checks and up again
//! after `health.successes` consecutive good ones, so one lost packet does not flap it.
//! Workers read the published view lock-free and take down replicas out of reads
//! (`router::pool`); a down master is not replaced by anything (no silent remap of its
//! slots), but its failure asks the topology to re-resolve Sentinel masters.
//!
//! Each check opens a short-lived connection (connect, `AUTH` if the pool has credentials,
//! `PING`), bounded by `health.timeout_ms`: a check proves the node accepts new connections,
//! which is what a worker needs after it lost one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{oneshot, Credentials};
use crate::config::{Config, ReadPolicy};
use crate::resp::{Frame, Limits};

use super::Topology;

/// Which backend nodes the health checker counts as down, and what its last check of each
/// node found. Immutable; a change is a new value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Addresses of the nodes marked down, sorted: what routing reads.
    down: Vec<Arc<str>>,
    /// The last check of every node checked, by address, sorted.
    checks: Vec<(Arc<str>, Check)>,
}

/// What one health check of a node found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Why the check failed; `None` when the node answered well.
    pub error: Option<String>,
    /// When it was made (ms since the Unix epoch).
    pub at_ms: u64,
    /// Its round trip, connect included, in microseconds (0 when it failed).
    pub rtt_us: u64,
}

impl Health {
    /// A view with exactly `down` marked down (and no checks recorded).
    pub fn with_down(down: Vec<Arc<str>>) -> Health {
        Health::new(down, Vec::new())
    }

    /// A view with `down` marked down and `checks` the last check of each node.
    pub fn new(mut down: Vec<Arc<str>>, mut checks: Vec<(Arc<str>, Check)>) -> Health {
        down.sort();
        down.dedup();
        checks.sort_by(|a, b| a.0.cmp(&b.0));
        checks.dedup_by(|a, b| a.0 == b.0);
        Health { down, checks }
    }

    /// True when the node at `addr` is marked down.
    pub fn is_down(&self, addr: &str) -> bool {
        self.down.binary_search_by(|d| (**d).cmp(addr)).is_ok()
    }

    /// The nodes marked down, in address order.
    pub fn down(&self) -> &[Arc<str>] {
        &self.down
    }

    /// The last check of the node at `addr`, if it was checked.
    pub fn last_check(&self, addr: &str) -> Option<&Check> {
        let at = self
            .checks
            .binary_search_by(|(a, _)| (**a).cmp(addr))
            .ok()?;
        self.checks.get(at).map(|(_, check)| check)
    }

    /// The node's standing for people: `None` before its first check, else whether it is up
    /// (not marked down: the same answer routing acts on).
    pub fn is_up(&self, addr: &str) -> Option<bool> {
        self.last_check(addr).map(|_| !self.is_down(addr))
    }
}

/// The checker's settings, from `[health]`.
#[derive(Clone, Debug)]
pub struct HealthSettings {
    /// Time between two rounds of checks; zero disables checking.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive failures that mark an up node down.
    pub failures: u32,
    /// Consecutive successes that mark a down node up.
    pub successes: u32,
    /// Reply parsing limits.
    pub limits: Limits,
}

impl HealthSettings {
    /// The settings `config` describes. In cluster mode with `read_policy = "master"` and no
    /// admin listener the checks decide nothing and nobody reads them (masters change no
    /// routing; failed connections already ask for a refresh), so they are off.
    pub fn from_config(config: &Config) -> HealthSettings {
        let idle = !config.is_pool_mode()
            && config.backend.read_policy == ReadPolicy::Master
            && config.admin.listen.is_empty();
        HealthSettings {
            interval: Duration::from_millis(if idle { 0 } else { config.health.interval_ms }),
            timeout: Duration::from_millis(config.health.timeout_ms),
            failures: config.health.failures.max(1),
            successes: config.health.successes.max(1),
            limits: config.protocol.limits(),
        }
    }
}

/// One node's standing: its published state and the streak of results against it.
#[derive(Debug, Default)]
struct Standing {
    down: bool,
    /// Consecutive check results that disagree with `down` (failures while up, successes
    /// while down).
    streak: u32,
}

impl Standing {
    /// Count one check result; true when the node's state flips.
    fn record(&mut self, ok: bool, settings: &HealthSettings) -> bool {
        if ok != self.down {
            // The result agrees with the current state.
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.down {
            settings.successes
        } else {
            settings.failures
        };
        if self.streak < needed {
            return false;
        }
        self.down = !self.down;
        self.streak = 0;
        true
    }
}

/// Check every node of `topology`'s table forever (until the runtime is dropped). With a
/// zero interval it does nothing and never returns.
pub async fn run(topology: Arc<Topology>, settings: HealthSettings) {
    if settings.interval.is_zero() {
        return std::future::pending().await;
    }
    let mut standings: HashMap<Arc<str>, Standing> = HashMap::new();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let nodes = nodes_of(&topology);
        standings.retain(|addr, _| nodes.iter().any(|n| n.addr == *addr));
        let mut checks = tokio::task::JoinSet::new();
        let tls = topology.backend_tls();
        for node in nodes {
            let settings = settings.clone();
            let tls = tls.clone();
            checks.spawn(async move {
                let started = std::time::Instant::now();
                let result = check(&node, &settings, tls.as_deref()).await;
                let rtt_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                (node, result, rtt_us)
            });
        }
        let mut last = Vec::with_capacity(standings.len());
        while let Some(joined) = checks.join_next().await {
            let Ok((node, result, rtt_us)) = joined else {
                continue;
            };
            last.push((
                Arc::clone(&node.addr),
                Check {
                    error: result.as_ref().err().cloned(),
                    at_ms: now_ms(),
                    rtt_us: if result.is_ok() { rtt_us } else { 0 },
                },
            ));
            if result.is_err() && node.master && topology.is_pool_mode() {
                // A pool master that fails may have been replaced by Sentinel. (Cluster mode
                // needs no nudge: failed backend connections already ask for a refresh.)
                topology.request_refresh();
            }
            let standing = standings.entry(Arc::clone(&node.addr)).or_default();
            if standing.record(result.is_ok(), &settings) {
                let role = if node.master { "master" } else { "replica" };
                match result {
                    Err(reason) => tracing::warn!(
                        node = %node.addr,
                        "{role} marked down after {} failed health checks: {reason}",
                        settings.failures
                    ),
                    Ok(()) => tracing::info!(
                        node = %node.addr,
                        "{role} marked up after {} good health checks",
                        settings.successes
                    ),
                }
            }
        }
        let down: Vec<Arc<str>> = standings
            .iter()
            .filter(|(_, s)| s.down)
            .map(|(addr, _)| Arc::clone(addr))
            .collect();
        topology.publish_health(Health::new(down, last));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One node to check.
#[derive(Debug)]
struct Node {
    addr: Arc<str>,
    auth: Option<Arc<Credentials>>,
    master: bool,
}

/// Every master and replica of the current table, each once.
fn nodes_of(topology: &Topology) -> Vec<Node> {
    let table = topology.table();
    let mut nodes: Vec<Node> = Vec::new();
    for shard in table.shards() {
        let all =
            std::iter::once((&shard.master, true)).chain(shard.replicas.iter().map(|r| (r, false)));
        for (addr, master) in all {
            if nodes.iter().all(|n| n.addr != *addr) {
                nodes.push(Node {
                    addr: Arc::clone(addr),
                    auth: shard.auth.clone(),
                    master,
                });
            }
        }
    }
    nodes
}

/// Connect, authenticate if needed, `PING`; for a replica also `INFO replication`, since a
/// replica whose link to its master is down (restarted, still syncing, master gone) serves
/// stale or empty data. `Err` says what went wrong.
async fn check(
    node: &Node,
    settings: &HealthSettings,
    tls: Option<&crate::tls::BackendTls>,
) -> Result<(), String> {
    let mut commands: Vec<&[&str]> = Vec::with_capacity(2);
    commands.push(&["PING"]);
    if !node.master {
        commands.push(&["INFO", "replication"]);
    }
    let replies = oneshot::commands(
        &node.addr,
        node.auth.as_ref(),
        &commands,
        settings.timeout,
        settings.limits,
        tls,
    )
    .await
    .map_err(|e| e.to_string())?;
    for reply in replies {
        match reply {
            Frame::Error(message) => return Err(String::from_utf8_lossy(&message).into_owned()),
            Frame::Bulk(text) if !node.master => {
                let text = std::str::from_utf8(&text).unwrap_or_default();
                let link = super::discovery::info_value(text, "master_link_status");
                if link.is_some_and(|status| status != "up") {
                    return Err("its replication link to the master is down".into());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(10),
            failures: 3,
            successes: 2,
            limits: Limits::default(),
        }
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let s = settings();
        let mut node = Standing::default();
        assert!(!node.record(false, &s));
        assert!(!node.record(false, &s));
        assert!(
            !node.record(true, &s),
            "a success resets the failure streak"
        );
        assert!(!node.record(false, &s));
        assert!(!node.record(false, &s));
        assert!(
            node.record(false, &s),
            "third consecutive failure marks it down"
        );
        assert!(node.down);
        assert!(!node.record(true, &s));
        assert!(
            !node.record(false, &s),
            "a failure resets the success streak"
        );
        assert!(!node.record(true, &s));
        assert!(
            node.record(true, &s),
            "second consecutive success marks it up"
        );
        assert!(!node.down);
    }

    #[test]
    fn health_view_lookups() {
        let h = Health::with_down(vec!["b:1".into(), "a:1".into(), "b:1".into()]);
        assert!(h.is_down("a:1") && h.is_down("b:1") && !h.is_down("c:1"));
        assert_eq!(h.down().len(), 2);
        assert!(!Health::default().is_down("a:1"));
    }

    #[test]
    fn a_node_is_up_or_down_only_once_checked() {
        let failed = Check {
            error: Some("refused".into()),
            at_ms: 2,
            rtt_us: 0,
        };
        let good = Check {
            error: None,
            at_ms: 1,
            rtt_us: 80,
        };
        let h = Health::new(
            vec!["a:1".into()],
            vec![("b:1".into(), good.clone()), ("a:1".into(), failed.clone())],
        );
        assert_eq!(h.is_up("a:1"), Some(false));
        assert_eq!(h.is_up("b:1"), Some(true));
        assert_eq!(h.is_up("c:1"), None, "never checked: unknown, not up");
        assert_eq!(h.last_check("a:1"), Some(&failed));
        assert_eq!(h.last_check("b:1"), Some(&good));
    }
}
