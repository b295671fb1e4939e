//! The fleet view for cluster-aware clients: which instances of the fleet (`[fleet] peers`,
//! and the addresses `fleet.peers_dns` resolves to) are alive, and where clients reach them
//! (each one's `proxy.announce`).
//!
//! ```text
//!  control thread, every fleet.check_interval_ms:
//!    peers = fleet.peers + every A/AAAA record of fleet.peers_dns (looked up again: dns.rs)
//!    GET /fleet/self ──► each peer's admin listener ──► {"announce": "HOST:PORT", "draining": false}
//!    answered with our own announce   → this instance (found through the name): not a peer
//!    answered, not draining           → in the view
//!    fleet.failures failed checks     → out of the view (draining: out at once)
//!    no longer among the peers        → out at once (its DNS record went)
//!    FleetView (this instance + live peers, by address) ──ArcSwap::store──► CLUSTER SLOTS/SHARDS/NODES
//! ```
//!
//! The sessions read the view only to answer `CLUSTER …` (never on the request path); the
//! checks run on the control thread. Without `proxy.announce` there is no view: each
//! instance shows a one-node cluster at the address the client connected to.

pub mod dns;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::admin::client;
use crate::config::{Config, FleetConfig};
use crate::fleet::dns::PeersByName;
use crate::reload::Reloader;

pub use view::{FleetView, Member};

/// What an instance tells its peers about itself (`GET /fleet/self`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfReport {
    /// Its `proxy.announce` (empty: it shows no fleet view and is left out of others').
    pub announce: String,
    /// True once it began draining: it is going away, so its peers drop it at once.
    pub draining: bool,
}

/// This instance's announce address and the live fleet view.
#[derive(Debug)]
pub struct Fleet {
    /// `proxy.announce`, when set.
    announce: Option<String>,
    /// The view; `Some` exactly when `announce` is set. This instance alone until its
    /// peers answer.
    view: ArcSwapOption<FleetView>,
}

impl Fleet {
    /// The fleet of an instance configured by `config` (validated: `proxy.announce` is
    /// empty or `HOST:PORT`).
    pub fn new(config: &Config) -> Arc<Fleet> {
        let announce = Some(config.proxy.announce.clone()).filter(|a| !a.is_empty());
        let view = announce
            .as_deref()
            .and_then(|own| FleetView::new(own, []))
            .map(Arc::new);
        Arc::new(Fleet {
            announce,
            view: ArcSwapOption::new(view),
        })
    }

    /// `proxy.announce`, when set.
    pub fn announce(&self) -> Option<&str> {
        self.announce.as_deref()
    }

    /// The live view, when `proxy.announce` is set.
    pub fn view(&self) -> Option<Arc<FleetView>> {
        self.view.load_full()
    }

    /// The checker that keeps the view, reading the peers and check settings from the
    /// configuration in force (`[fleet]` is reloadable).
    pub fn checker(self: &Arc<Self>, reloader: Arc<Reloader>) -> Checker {
        Checker {
            fleet: Arc::clone(self),
            reloader,
            peers: HashMap::new(),
            by_name: PeersByName::default(),
        }
    }
}

/// What the checker knows of one peer (by its admin address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Peer {
    /// Its announce address, from its last good answer.
    announce: Option<String>,
    /// Consecutive failed checks.
    failures: u32,
    /// In the view.
    live: bool,
    /// It answered with this instance's own announce address: it is this instance (or the
    /// other process of an upgrade in place), never counted as a peer.
    myself: bool,
}

/// One check's outcome.
type Answer = Result<SelfReport, String>;

/// The fleet's health checker: one task on the control thread.
pub struct Checker {
    fleet: Arc<Fleet>,
    reloader: Arc<Reloader>,
    peers: HashMap<String, Peer>,
    /// The addresses `fleet.peers_dns` gives.
    by_name: PeersByName,
}

impl Checker {
    /// Check every peer each `fleet.check_interval_ms`, forever.
    pub async fn run(mut self) {
        loop {
            let interval = self.reloader.config().fleet.check_interval_ms.max(1);
            tokio::time::sleep(Duration::from_millis(interval)).await;
            self.round().await;
        }
    }

    /// Look `fleet.peers_dns` up, check every peer once (concurrently, each bounded by
    /// `fleet.check_timeout_ms`) and publish the view if it changed. Does nothing without
    /// `proxy.announce`.
    pub async fn round(&mut self) {
        let Some(own) = self.fleet.announce.clone() else {
            return;
        };
        let settings = self.reloader.config().fleet;
        let within = Duration::from_millis(settings.check_timeout_ms);
        let targets = self.targets(&settings).await;
        let mut checks = tokio::task::JoinSet::new();
        for (i, peer) in targets.iter().enumerate() {
            let peer = peer.clone();
            checks.spawn(async move { (i, ask(&peer, within).await) });
        }
        let mut answers: Vec<Option<Answer>> = vec![None; targets.len()];
        while let Some(done) = checks.join_next().await {
            if let Ok((i, answer)) = done {
                if let Some(slot) = answers.get_mut(i) {
                    *slot = Some(answer);
                }
            }
        }
        self.forget_all_but(&targets);
        for (addr, answer) in targets.iter().zip(answers) {
            let answer = answer.unwrap_or_else(|| Err("the check did not finish".into()));
            let peer = self.peers.entry(addr.clone()).or_default();
            if let Some(change) = judge(peer, answer, &own, settings.failures) {
                match change {
                    Change::Joined => tracing::info!(
                        peer = %addr,
                        announce = peer.announce.as_deref().unwrap_or_default(),
                        "fleet: peer joined the view"
                    ),
                    Change::Left(why) => {
                        tracing::warn!(peer = %addr, "fleet: peer left the view: {why}")
                    }
                    Change::Myself => tracing::info!(
                        peer = %addr,
                        "fleet: this instance's own admin listener (it answers with our \
                         announce address {own}): not counted as a peer"
                    ),
                }
            }
        }
        let live = self
            .peers
            .values()
            .filter(|p| p.live)
            .filter_map(|p| p.announce.as_deref());
        let Some(next) = FleetView::new(&own, live) else {
            return;
        };
        if self.fleet.view().as_deref() != Some(&next) {
            tracing::info!(instances = ?next.addresses(), "fleet view changed");
            self.fleet.view.store(Some(Arc::new(next)));
        }
    }
}

impl Checker {
    /// The admin listeners to check this round: `fleet.peers`, then the addresses
    /// `fleet.peers_dns` gives (looked up now) that are not among them.
    async fn targets(&mut self, settings: &FleetConfig) -> Vec<String> {
        let found = self
            .by_name
            .admin_addresses(
                &settings.peers_dns,
                Duration::from_millis(settings.check_timeout_ms),
                Duration::from_millis(settings.check_interval_ms),
            )
            .await;
        let mut targets = settings.peers.clone();
        targets.extend(found.into_iter().filter(|a| !settings.peers.contains(a)));
        targets
    }

    /// Forget the peers not among `targets` (removed from `fleet.peers`, or their DNS record
    /// went): a live one leaves the view at once.
    fn forget_all_but(&mut self, targets: &[String]) {
        self.peers.retain(|addr, peer| {
            let kept = targets.contains(addr);
            if !kept && peer.live {
                tracing::warn!(
                    peer = %addr,
                    "fleet: peer left the view: it is no longer in fleet.peers nor among the \
                     addresses of fleet.peers_dns"
                );
            }
            kept
        });
    }
}

/// A peer entering or leaving the view, or found to be this instance.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Joined,
    Left(String),
    Myself,
}

/// Apply one check's `answer` to `peer` (leaving after `failures` consecutive failures) of
/// the instance announced at `own`; the change of its place in the view, if any. Pure.
fn judge(peer: &mut Peer, answer: Answer, own: &str, failures: u32) -> Option<Change> {
    let was = peer.live;
    if let Ok(report) = &answer {
        if report.announce == own {
            let first = !std::mem::replace(&mut peer.myself, true);
            peer.failures = 0;
            peer.live = false;
            peer.announce = None;
            return first.then_some(Change::Myself);
        }
        peer.myself = false;
    }
    let why_out = match answer {
        Ok(report) if report.announce.is_empty() => {
            peer.failures = 0;
            peer.live = false;
            Some("it has no proxy.announce".to_string())
        }
        Ok(report) if report.draining => {
            peer.failures = 0;
            peer.live = false;
            Some("it is draining".to_string())
        }
        Ok(report) => {
            peer.failures = 0;
            peer.live = true;
            peer.announce = Some(report.announce);
            None
        }
        Err(e) => {
            peer.failures = peer.failures.saturating_add(1);
            if peer.failures >= failures {
                peer.live = false;
            }
            Some(e)
        }
    };
    match (was, peer.live) {
        (false, true) => Some(Change::Joined),
        (true, false) => Some(Change::Left(why_out.unwrap_or_default())),
        _ => None,
    }
}

/// Ask the peer whose admin listener is `peer` about itself.
async fn ask(peer: &str, within: Duration) -> Answer {
    let body = tokio::time::timeout(within, client::request(peer, Method::GET, "/fleet/self"))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{peer} did not answer within {} ms",
                within.as_millis()
            ))
        })?;
    serde_json::from_str(&body).map_err(|e| format!("{peer}: not a fleet report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The announce address of the instance that judges.
    const ME: &str = "me:1";

    fn report(announce: &str, draining: bool) -> Answer {
        Ok(SelfReport {
            announce: announce.into(),
            draining,
        })
    }

    #[test]
    fn a_peer_joins_at_its_first_answer_and_leaves_after_n_failures() {
        let mut peer = Peer::default();
        assert_eq!(judge(&mut peer, Err("refused".into()), ME, 2), None);
        assert!(!peer.live);
        assert_eq!(
            judge(&mut peer, report("h:1", false), ME, 2),
            Some(Change::Joined)
        );
        assert_eq!(peer.announce.as_deref(), Some("h:1"));
        assert_eq!(judge(&mut peer, report("h:1", false), ME, 2), None);
        assert_eq!(judge(&mut peer, Err("timeout".into()), ME, 2), None);
        assert!(peer.live, "one failure is not enough");
        assert_eq!(
            judge(&mut peer, Err("timeout".into()), ME, 2),
            Some(Change::Left("timeout".into()))
        );
        assert_eq!(judge(&mut peer, Err("timeout".into()), ME, 2), None);
        assert_eq!(
            judge(&mut peer, report("h:1", false), ME, 2),
            Some(Change::Joined)
        );
        assert_eq!(peer.failures, 0);
    }

    #[test]
    fn a_draining_peer_or_one_without_announce_is_out_at_once() {
        let mut peer = Peer::default();
        judge(&mut peer, report("h:1", false), ME, 3);
        assert_eq!(
            judge(&mut peer, report("h:1", true), ME, 3),
            Some(Change::Left("it is draining".into()))
        );
        let mut bare = Peer::default();
        assert_eq!(judge(&mut bare, report("", false), ME, 3), None);
        assert!(!bare.live);
    }

    #[test]
    fn an_address_that_answers_as_this_instance_is_never_a_peer() {
        // Found through fleet.peers_dns, this instance's own admin listener answers.
        let mut me = Peer::default();
        assert_eq!(
            judge(&mut me, report(ME, false), ME, 2),
            Some(Change::Myself)
        );
        assert_eq!(judge(&mut me, report(ME, false), ME, 2), None, "said once");
        assert!(!me.live && me.announce.is_none());
        assert_eq!(judge(&mut me, Err("refused".into()), ME, 2), None);
        // Another instance at that address later (a reused pod IP): a peer again.
        assert_eq!(
            judge(&mut me, report("h:2", false), ME, 2),
            Some(Change::Joined)
        );
        assert!(me.live && !me.myself);
    }

    #[test]
    fn the_view_starts_with_this_instance_alone() {
        let mut config = Config::default();
        assert!(Fleet::new(&config).view().is_none());
        config.proxy.announce = "127.0.0.1:7001".into();
        let fleet = Fleet::new(&config);
        assert_eq!(fleet.view().unwrap().addresses(), ["127.0.0.1:7001"]);
        assert_eq!(fleet.announce(), Some("127.0.0.1:7001"));
    }
}
