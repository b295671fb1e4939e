//! `fleet.peers_dns`: the fleet's instances found through one DNS name (a Kubernetes headless
//! Service: one A/AAAA record per ready pod), resolved again before every round of checks.
//!
//! ```text
//!  fleet.peers_dns = "slotgate-fleet:9180"
//!    ──getaddrinfo──► 10.1.0.7, 10.1.0.9, 10.1.2.4      (every A/AAAA record)
//!    ──► 10.1.0.7:9180, 10.1.0.9:9180, 10.1.2.4:9180     (admin listeners: checked as peers)
//! ```
//!
//! The records give the instances' IPs and the setting's port is their admin port (a headless
//! Service maps no port), so each address is one admin listener to check beside `fleet.peers`;
//! this instance's own address is among them, and the checker recognises it by its answer. The
//! name watch's state machine (`topology::names::Watch`) says what changed: one log line per
//! change of state (first answer, other addresses, stops resolving, resolves again), none per
//! look. A name that stops resolving keeps the addresses it gave last: those instances are
//! still checked and leave only by failing their checks, so a resolver hiccup does not shrink
//! the view; it is looked up again at the next round.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::backend::resolve::host;
use crate::topology::names::{self, show, Change, Watch};

/// The instances a DNS name gives, across rounds.
#[derive(Debug, Default)]
pub struct PeersByName {
    watch: Watch,
}

impl PeersByName {
    /// The admin listeners `setting` (`NAME:ADMIN_PORT`, `fleet.peers_dns`) gives now, or gave
    /// last when it does not resolve (none when it never did); its look bounded by `within`.
    /// Logs the name's changes of state (`every`: the time between looks, for the log).
    pub async fn admin_addresses(
        &mut self,
        setting: &str,
        within: Duration,
        every: Duration,
    ) -> Vec<String> {
        let Some(port) = port(setting) else {
            // Empty (or, never after validation, not NAME:PORT): no name to follow.
            self.watch.keep_only(&HashSet::new());
            return Vec::new();
        };
        let name = host(setting);
        let look = names::look(setting, within).await;
        if let Some(change) = self.watch.observe(name, look) {
            log(setting, change, every);
        }
        // A name changed by a reload: the old one's state goes.
        self.watch.keep_only(&HashSet::from([name.to_string()]));
        self.watch
            .known(name)
            .map(|ips| admin_addresses(ips, port))
            .unwrap_or_default()
    }
}

/// The port of `NAME:PORT`, when it is one.
fn port(setting: &str) -> Option<u16> {
    let (name, port) = setting.rsplit_once(':')?;
    (!name.is_empty()).then_some(())?;
    port.parse().ok()
}

/// `HOST:PORT` of each IP at `port` (`[V6]:PORT` for IPv6), in the order given.
fn admin_addresses(ips: &[IpAddr], port: u16) -> Vec<String> {
    ips.iter()
        .map(|ip| SocketAddr::new(*ip, port).to_string())
        .collect()
}

/// One log line for a change of the name's state.
fn log(setting: &str, change: Change, every: Duration) {
    match change {
        Change::First(ips) => tracing::info!(
            name = %setting,
            "fleet.peers_dns resolves to {}: each is checked as a peer",
            show(&ips)
        ),
        Change::Moved { from, to } => tracing::info!(
            name = %setting,
            "fleet.peers_dns now resolves to {} (was {})",
            show(&to),
            show(&from)
        ),
        Change::Back(ips) => tracing::info!(
            name = %setting,
            "fleet.peers_dns resolves again, to {}",
            show(&ips)
        ),
        Change::Failing(reason) => tracing::warn!(
            name = %setting,
            "fleet.peers_dns does not resolve ({reason}): the instances it gave last (if any) \
             are still checked; looked up again every {} ms",
            every.as_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_is_an_admin_listener_at_the_settings_port() {
        let ips: Vec<IpAddr> = ["10.1.0.7", "fd00::9"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(
            admin_addresses(&ips, 9180),
            ["10.1.0.7:9180", "[fd00::9]:9180"]
        );
        assert_eq!(port("slotgate-fleet.ns.svc:9180"), Some(9180));
        assert_eq!(port("[::1]:9180"), Some(9180));
        assert_eq!(port(""), None);
        assert_eq!(port(":9180"), None);
        assert_eq!(port("no-port"), None);
    }

    #[tokio::test]
    async fn a_name_is_looked_up_each_time_and_one_that_never_resolved_gives_none() {
        let mut peers = PeersByName::default();
        let (within, every) = (Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            peers.admin_addresses("127.0.0.1:9180", within, every).await,
            ["127.0.0.1:9180"]
        );
        // No name any more (a reload): nothing, and the name's state is forgotten.
        assert!(peers.admin_addresses("", within, every).await.is_empty());
        assert_eq!(peers.watch.known("127.0.0.1"), None);
        // `.invalid` never resolves (RFC 6761).
        let none = peers
            .admin_addresses("slotgate-fleet.invalid:9180", within, every)
            .await;
        assert!(none.is_empty(), "{none:?}");
    }
}
