//! The name watch: nodes known by host name (`redis-0.redis:6379`, a Redis 7 node's
//! `cluster-announce-hostname`) are resolved again every `backend.resolve_interval_ms`, so a
//! node that comes back on a new IP under the same name is followed even by connections that
//! did not break (the old address still answers, or hangs).
//!
//! A name stays the node's identity everywhere (table, pools, health, metrics); only the
//! address behind it changes. The control thread's [`run`] resolves every name of the table,
//! logs one line per name per change of state (first failure, recovery, new addresses), and
//! publishes the addresses each name gives ([`Resolved`]) when they changed; each worker then
//! replaces its connections that go to an address the name no longer gives
//! (`router::follow_names`). A name that does not resolve keeps its last addresses: a resolver
//! hiccup closes nothing, and new connections keep trying (and fail with a clear error) until
//! it resolves again.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::backend::resolve::{self, host, is_name};

use super::Topology;

/// The addresses each name of the table resolved to at the last look that succeeded.
#[derive(Debug, Default)]
pub struct Resolved {
    by_host: HashMap<String, Vec<IpAddr>>,
}

impl Resolved {
    /// True when `addr`'s host is a name whose current addresses do not include `peer`: a
    /// connection to `peer` goes to where the node used to be.
    pub fn moved(&self, addr: &str, peer: IpAddr) -> bool {
        is_name(addr)
            && self
                .by_host
                .get(host(addr))
                .is_some_and(|ips| !ips.contains(&peer))
    }

    /// The addresses `name` resolved to last, if it ever did.
    pub fn addresses(&self, name: &str) -> Option<&[IpAddr]> {
        self.by_host.get(name).map(Vec::as_slice)
    }
}

/// The published [`Resolved`] and the signal of its changes (shared by the control thread and
/// the workers).
#[derive(Debug)]
pub struct Names {
    resolved: ArcSwap<Resolved>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            resolved: ArcSwap::from_pointee(Resolved::default()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Names {
    /// The addresses published last.
    pub fn current(&self) -> Arc<Resolved> {
        self.resolved.load_full()
    }

    /// Changes: the value is bumped after each publication.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Store `resolved` and wake the subscribers.
    pub fn publish(&self, resolved: Resolved) {
        self.resolved.store(Arc::new(resolved));
        self.changes.send_modify(|n| *n += 1);
    }
}

/// What a look at one name found, worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Resolved for the first time.
    First(Vec<IpAddr>),
    /// Resolves to other addresses than before (possibly after failing for a while).
    Moved {
        /// The addresses it gave before.
        from: Vec<IpAddr>,
        /// The addresses it gives now.
        to: Vec<IpAddr>,
    },
    /// Stopped resolving (or never did).
    Failing(String),
    /// Resolves again, to the same addresses as before it failed.
    Back(Vec<IpAddr>),
}

#[derive(Debug, Default)]
struct NameState {
    known: Option<Vec<IpAddr>>,
    failing: bool,
}

/// Each name's state across looks (pure): what changed, and the addresses to publish.
#[derive(Debug, Default)]
pub struct Watch {
    states: HashMap<String, NameState>,
}

impl Watch {
    /// Record one look at `name`: its addresses, or why it did not resolve. `Some` when its
    /// state changed (a log line's worth); repeated failures and unchanged answers are `None`.
    pub fn observe(&mut self, name: &str, look: Result<Vec<IpAddr>, String>) -> Option<Change> {
        let state = self.states.entry(name.to_string()).or_default();
        match look {
            Err(reason) => {
                let first_failure = !state.failing;
                state.failing = true;
                first_failure.then_some(Change::Failing(reason))
            }
            Ok(mut ips) => {
                ips.sort_unstable();
                ips.dedup();
                let was_failing = std::mem::replace(&mut state.failing, false);
                let change = match state.known.take() {
                    None => Change::First(ips.clone()),
                    Some(from) if from != ips => Change::Moved {
                        from,
                        to: ips.clone(),
                    },
                    Some(_) if was_failing => Change::Back(ips.clone()),
                    Some(_) => {
                        state.known = Some(ips);
                        return None;
                    }
                };
                state.known = Some(ips);
                Some(change)
            }
        }
    }

    /// Forget every name not in `names` (nodes that left the table).
    pub fn keep_only(&mut self, names: &HashSet<String>) {
        self.states.retain(|name, _| names.contains(name));
    }

    /// The addresses `name` gave at its last look that succeeded, if one did.
    pub fn known(&self, name: &str) -> Option<&[IpAddr]> {
        self.states.get(name)?.known.as_deref()
    }

    /// The addresses of every name that resolved at least once.
    pub fn resolved(&self) -> Resolved {
        Resolved {
            by_host: self
                .states
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.known.clone()?)))
                .collect(),
        }
    }
}

/// One look at `addr`'s host (`HOST:PORT`) through the system resolver, bounded by
/// `timeout`: every address it gives (A and AAAA records), or why there are none — what
/// [`Watch::observe`] takes.
pub async fn look(addr: &str, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(timeout, resolve::lookup(addr)).await {
        Ok(Ok(found)) => Ok(found.iter().map(|a| a.ip()).collect()),
        Ok(Err(crate::backend::BackendError::Resolve { reason, .. })) => Err(reason),
        Ok(Err(other)) => Err(other.to_string()),
        Err(_) => Err(format!(
            "no answer from the resolver within {} ms",
            timeout.as_millis()
        )),
    }
}

/// One address per distinct host name among the table's nodes (masters and replicas).
fn names_of(topology: &Topology) -> HashMap<String, Arc<str>> {
    let table = topology.table();
    let mut names = HashMap::new();
    for shard in table.shards() {
        for addr in std::iter::once(&shard.master).chain(&shard.replicas) {
            if is_name(addr) {
                names
                    .entry(host(addr).to_string())
                    .or_insert_with(|| Arc::clone(addr));
            }
        }
    }
    names
}

/// Addresses for a log line: `10.0.0.1, 10.0.0.2`.
pub fn show(ips: &[IpAddr]) -> String {
    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    shown.join(", ")
}

/// Resolve the table's names every `interval` (each lookup bounded by `timeout`), log their
/// changes, and publish the addresses when they changed. A zero interval: never returns,
/// does nothing (every connect still resolves afresh).
pub async fn run(topology: Arc<Topology>, interval: Duration, timeout: Duration) {
    if interval.is_zero() {
        return std::future::pending().await;
    }
    let mut watch = Watch::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let names = names_of(&topology);
        let mut looks = tokio::task::JoinSet::new();
        for (name, addr) in &names {
            let (name, addr) = (name.clone(), Arc::clone(addr));
            looks.spawn(async move { (name, look(&addr, timeout).await) });
        }
        let mut changed = false;
        while let Some(joined) = looks.join_next().await {
            let Ok((name, look)) = joined else { continue };
            match watch.observe(&name, look) {
                None => {}
                Some(Change::First(ips)) => {
                    changed = true;
                    tracing::debug!(name = %name, "backend name resolves to {}", show(&ips));
                }
                Some(Change::Moved { from, to }) => {
                    changed = true;
                    tracing::info!(
                        name = %name,
                        "backend name now resolves to {} (was {}): connections to the old \
                         address are replaced",
                        show(&to),
                        show(&from)
                    );
                }
                Some(Change::Back(ips)) => tracing::info!(
                    name = %name,
                    "backend name resolves again, to {}",
                    show(&ips)
                ),
                Some(Change::Failing(reason)) => tracing::warn!(
                    name = %name,
                    "backend name does not resolve ({reason}): new connections to it fail \
                     until it does; tried again every {} ms and on every connect",
                    interval.as_millis()
                ),
            }
        }
        watch.keep_only(&names.into_keys().collect());
        if changed {
            topology.names().publish(watch.resolved());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn one_change_per_state_change() {
        let mut watch = Watch::default();
        let n = "redis-0.redis";
        assert_eq!(
            watch.observe(n, Ok(ips(&["10.0.0.2", "10.0.0.1", "10.0.0.2"]))),
            Some(Change::First(ips(&["10.0.0.1", "10.0.0.2"])))
        );
        assert_eq!(watch.observe(n, Ok(ips(&["10.0.0.2", "10.0.0.1"]))), None);
        let failing = watch.observe(n, Err("Name or service not known".into()));
        assert_eq!(
            failing,
            Some(Change::Failing("Name or service not known".into()))
        );
        assert_eq!(watch.observe(n, Err("again".into())), None);
        assert_eq!(
            watch.observe(n, Ok(ips(&["10.0.0.1", "10.0.0.2"]))),
            Some(Change::Back(ips(&["10.0.0.1", "10.0.0.2"])))
        );
        assert_eq!(
            watch.observe(n, Ok(ips(&["10.0.0.7"]))),
            Some(Change::Moved {
                from: ips(&["10.0.0.1", "10.0.0.2"]),
                to: ips(&["10.0.0.7"])
            })
        );
        // Failing, then back somewhere else: a move.
        watch.observe(n, Err("gone".into()));
        assert!(matches!(
            watch.observe(n, Ok(ips(&["10.0.0.8"]))),
            Some(Change::Moved { .. })
        ));
        // Never resolved: a failure, once.
        assert!(matches!(
            watch.observe("new", Err("x".into())),
            Some(Change::Failing(_))
        ));
        assert_eq!(watch.observe("new", Err("x".into())), None);
    }

    #[test]
    fn failing_names_keep_their_addresses_and_forgotten_ones_go() {
        let mut watch = Watch::default();
        watch.observe("a", Ok(ips(&["10.0.0.1"])));
        watch.observe("a", Err("hiccup".into()));
        watch.observe("b", Err("never".into()));
        let resolved = watch.resolved();
        assert_eq!(resolved.addresses("a"), Some(&ips(&["10.0.0.1"])[..]));
        assert_eq!(watch.known("a"), Some(&ips(&["10.0.0.1"])[..]));
        assert_eq!(watch.known("b"), None);
        assert_eq!(resolved.addresses("b"), None);
        watch.keep_only(&HashSet::from(["b".to_string()]));
        assert_eq!(watch.resolved().addresses("a"), None);
    }

    #[test]
    fn a_connection_moved_only_when_its_name_resolves_elsewhere() {
        let mut watch = Watch::default();
        watch.observe("redis-0.redis", Ok(ips(&["10.0.0.7"])));
        let resolved = watch.resolved();
        let old = "10.0.0.1".parse().unwrap();
        let new = "10.0.0.7".parse().unwrap();
        assert!(resolved.moved("redis-0.redis:6379", old));
        assert!(!resolved.moved("redis-0.redis:6379", new));
        // Unknown names and IP literals never count as moved.
        assert!(!resolved.moved("redis-1.redis:6379", old));
        assert!(!resolved.moved("10.0.0.1:6379", new));
    }
}
