//! Cluster error replies that the proxy absorbs instead of passing to the client.
//!
//! Pure: classifies a backend error line by its code, never by free-text matching. The retry
//! policy for each kind lives with the caller.

use std::sync::Arc;

use crate::slot::Slot;

/// A backend error reply that means "not here" or "not now" rather than "no".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot now lives on that node, permanently.
    Moved {
        /// The slot.
        slot: Slot,
        /// The node that owns it now.
        addr: Arc<str>,
    },
    /// `ASK slot host:port`: this one request goes to that node, preceded by ASKING.
    Ask {
        /// The slot being migrated.
        slot: Slot,
        /// The node importing it.
        addr: Arc<str>,
    },
    /// `TRYAGAIN`: a multi-key request hit a slot mid-migration; retry shortly.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve right now (e.g. during failover).
    ClusterDown,
    /// `LOADING`: the node is loading its dataset.
    Loading,
    /// `MASTERDOWN`: a replica lost its master.
    MasterDown,
    /// `NOSCRIPT`: this node lacks the script an EVALSHA names (a promoted replica does: Redis
    /// does not replicate scripts). Resent after loading the script, if the proxy knows it.
    NoScript,
}

impl Redirect {
    /// Classify an error reply's text (without the leading `-`). `None` for ordinary errors,
    /// which go to the client unchanged.
    pub fn classify(message: &[u8]) -> Option<Redirect> {
        let mut words = message.split(|&b| b == b' ');
        let code = words.next()?;
        match code {
            b"MOVED" | b"ASK" => {
                let slot = std::str::from_utf8(words.next()?).ok()?.parse().ok();
                let slot = Slot::new(slot?)?;
                let addr: Arc<str> = std::str::from_utf8(words.next()?).ok()?.into();
                if addr.is_empty() {
                    return None;
                }
                Some(if code == b"MOVED" {
                    Redirect::Moved { slot, addr }
                } else {
                    Redirect::Ask { slot, addr }
                })
            }
            b"TRYAGAIN" => Some(Redirect::TryAgain),
            b"CLUSTERDOWN" => Some(Redirect::ClusterDown),
            b"LOADING" => Some(Redirect::Loading),
            b"MASTERDOWN" => Some(Redirect::MasterDown),
            b"NOSCRIPT" => Some(Redirect::NoScript),
            _ => None,
        }
    }

    /// True for the replies only a Redis Cluster node gives (MOVED, ASK, TRYAGAIN,
    /// CLUSTERDOWN). In pool mode they are not followed: a standalone server never sends them,
    /// so one that does is misconfigured and the client sees the reply as it is.
    pub fn is_cluster_only(&self) -> bool {
        matches!(
            self,
            Redirect::Moved { .. }
                | Redirect::Ask { .. }
                | Redirect::TryAgain
                | Redirect::ClusterDown
        )
    }

    /// A stable short label, for metrics.
    pub fn kind(&self) -> &'static str {
        REDIRECT_KINDS[self.kind_index()]
    }

    /// Index of [`Redirect::kind`] in [`REDIRECT_KINDS`].
    fn kind_index(&self) -> usize {
        match self {
            Redirect::Moved { .. } => 0,
            Redirect::Ask { .. } => 1,
            Redirect::TryAgain => 2,
            Redirect::ClusterDown => 3,
            Redirect::Loading => 4,
            Redirect::MasterDown => 5,
            Redirect::NoScript => 6,
        }
    }
}

/// Every `kind` label of `slotgate_redirects_total`.
pub const REDIRECT_KINDS: [&str; 7] = [
    "moved",
    "ask",
    "tryagain",
    "clusterdown",
    "loading",
    "masterdown",
    "noscript",
];

/// `slotgate_redirects_total{kind}` handles, registered once per worker so counting a
/// redirect is one relaxed add, not a registry lookup.
pub struct RedirectCounters([metrics::Counter; REDIRECT_KINDS.len()]);

impl RedirectCounters {
    /// Register (or find) the counters with the installed `metrics` recorder.
    pub fn register() -> RedirectCounters {
        RedirectCounters(
            REDIRECT_KINDS
                .map(|kind| metrics::counter!("slotgate_redirects_total", "kind" => kind)),
        )
    }

    /// Count one `redirect` absorbed (pipelined or dedicated connection alike).
    pub fn count(&self, redirect: &Redirect) {
        self.0[redirect.kind_index()].increment(1);
    }
}

impl std::fmt::Debug for RedirectCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedirectCounters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_cluster_errors_by_code() {
        assert_eq!(
            Redirect::classify(b"MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: Slot::new(3999).unwrap(),
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            Redirect::classify(b"ASK 1 10.0.0.1:7000"),
            Some(Redirect::Ask {
                slot: Slot::new(1).unwrap(),
                addr: "10.0.0.1:7000".into()
            })
        );
        assert_eq!(
            Redirect::classify(b"TRYAGAIN Multiple keys request during rehashing of slot"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            Redirect::classify(b"CLUSTERDOWN The cluster is down"),
            Some(Redirect::ClusterDown)
        );
        assert_eq!(
            Redirect::classify(b"LOADING Redis is loading the dataset in memory"),
            Some(Redirect::Loading)
        );
    }

    #[test]
    fn ordinary_and_malformed_errors_are_not_redirects() {
        assert_eq!(Redirect::classify(b"ERR unknown command"), None);
        assert_eq!(
            Redirect::classify(b"WRONGTYPE Operation against a key"),
            None
        );
        assert_eq!(Redirect::classify(b"MOVED 99999 h:1"), None);
        assert_eq!(Redirect::classify(b"MOVED x h:1"), None);
        assert_eq!(Redirect::classify(b"MOVED 1"), None);
        assert_eq!(Redirect::classify(b"ERR MOVED 1 h:1"), None);
    }
}
