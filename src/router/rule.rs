//! The redirect rule: what to do with a request a node bounced (MOVED, ASK, TRYAGAIN,
//! CLUSTERDOWN, LOADING, MASTERDOWN, NOSCRIPT) or could not take (no node serves its slot, the
//! node is down). Pure: the pipelined path (`router`) and the dedicated path
//! (`session::pinned`) both ask [`decide`] / [`retry_at`] and only carry the answer out, so
//! the cap on redirects, the back-off and the give-up text exist once.
//!
//! ```text
//!  MOVED slot addr   → resend to addr (the slot moved for good: patch the table, refresh)
//!  ASK slot addr     → resend to addr, preceded by ASKING
//!  NOSCRIPT          → load the script on the same node, resend
//!  TRYAGAIN LOADING  → retry after a capped back-off
//!  CLUSTERDOWN MASTERDOWN → retry after a capped back-off (and refresh the topology)
//!  more than max_redirects MOVED/ASK, or the next retry past the deadline → give up
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::backend::redirect::Redirect;
use crate::slot::Slot;

/// First pause before retrying a held request; doubled on each retry up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between two retries of a held request.
pub const RETRY_CAP: Duration = Duration::from_millis(100);

/// What one request has been through so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Redirects (MOVED, ASK, NOSCRIPT resends) followed.
    pub redirects: u8,
    /// Retries after a pause (TRYAGAIN, CLUSTERDOWN, a dead node …): they set the back-off.
    pub retries: u8,
}

/// The next step for a bounced request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send it again now, to `addr`.
    Resend {
        /// The node the redirect named.
        addr: Arc<str>,
        /// Precede it with `ASKING` (the node is importing the slot).
        asking: bool,
        /// MOVED: the slot lives on `addr` for good; patch the table and refresh.
        moved: Option<Slot>,
    },
    /// NOSCRIPT: load the script on the same node first, then resend.
    LoadScript,
    /// Try again at `at`, through the table in force then, without `ASKING`.
    RetryAt(Instant),
    /// Give up: the client gets this error.
    GiveUp(GiveUp),
}

/// Why a request is given up, and so what its client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The node's own reply reaches the client (the deadline would pass before a retry, or a
    /// NOSCRIPT after too many resends).
    NodeReply,
    /// MOVED/ASK more than `cluster.max_redirects` times.
    TooManyRedirects {
        /// The slot.
        slot: Slot,
        /// The node the last redirect named.
        addr: Arc<str>,
    },
}

impl GiveUp {
    /// The error reply for the client; `node_reply` is the bounced reply as the node sent it.
    pub fn to_reply(&self, node_reply: Bytes) -> Bytes {
        match self {
            GiveUp::NodeReply => node_reply,
            GiveUp::TooManyRedirects { slot, addr } => Bytes::from(format!(
                "-ERR slotgate: too many redirects for slot {slot} (last to {addr})\r\n"
            )),
        }
    }
}

/// The step after `redirect` for a request that has been through `attempts`, at `now`, that
/// must be answered by `deadline`, when at most `max_redirects` redirects may be followed.
pub fn decide(
    redirect: &Redirect,
    attempts: Attempts,
    max_redirects: u8,
    now: Instant,
    deadline: Instant,
) -> Next {
    let capped = attempts.redirects >= max_redirects;
    match redirect {
        Redirect::Moved { slot, addr } | Redirect::Ask { slot, addr } if capped => {
            Next::GiveUp(GiveUp::TooManyRedirects {
                slot: *slot,
                addr: Arc::clone(addr),
            })
        }
        Redirect::Moved { slot, addr } => Next::Resend {
            addr: Arc::clone(addr),
            asking: false,
            moved: Some(*slot),
        },
        Redirect::Ask { addr, .. } => Next::Resend {
            addr: Arc::clone(addr),
            asking: true,
            moved: None,
        },
        Redirect::NoScript if capped => Next::GiveUp(GiveUp::NodeReply),
        Redirect::NoScript => Next::LoadScript,
        Redirect::TryAgain | Redirect::Loading | Redirect::ClusterDown | Redirect::MasterDown => {
            match retry_at(attempts.retries, now, deadline) {
                Some(at) => Next::RetryAt(at),
                None => Next::GiveUp(GiveUp::NodeReply),
            }
        }
    }
}

/// True when `redirect` says the cluster's layout changed or is changing (MOVED, CLUSTERDOWN,
/// MASTERDOWN), so the topology should be discovered again, whatever becomes of the request.
pub fn refreshes(redirect: &Redirect) -> bool {
    matches!(
        redirect,
        Redirect::Moved { .. } | Redirect::ClusterDown | Redirect::MasterDown
    )
}

/// When a request retried `retries` times so far may be tried again: [`RETRY_FIRST`] doubled
/// per retry, at most [`RETRY_CAP`]; `None` when that is not before its `deadline`.
pub fn retry_at(retries: u8, now: Instant, deadline: Instant) -> Option<Instant> {
    let at = now + back_off(retries);
    (at < deadline).then_some(at)
}

/// The pause before retry number `retries + 1`.
pub fn back_off(retries: u8) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << retries.min(8))
        .min(RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u8 = 5;

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    fn moved(n: u16, addr: &str) -> Redirect {
        Redirect::Moved {
            slot: slot(n),
            addr: addr.into(),
        }
    }

    fn ask(n: u16, addr: &str) -> Redirect {
        Redirect::Ask {
            slot: slot(n),
            addr: addr.into(),
        }
    }

    fn after(redirects: u8, retries: u8) -> Attempts {
        Attempts { redirects, retries }
    }

    #[test]
    fn moved_resends_to_the_named_node_and_patches_the_slot() {
        let now = Instant::now();
        let next = decide(&moved(7, "n:1"), after(0, 0), MAX, now, now + RETRY_CAP);
        assert_eq!(
            next,
            Next::Resend {
                addr: "n:1".into(),
                asking: false,
                moved: Some(slot(7))
            }
        );
    }

    #[test]
    fn ask_resends_with_asking_and_leaves_the_table() {
        let now = Instant::now();
        let next = decide(&ask(7, "n:2"), after(MAX - 1, 3), MAX, now, now);
        assert_eq!(
            next,
            Next::Resend {
                addr: "n:2".into(),
                asking: true,
                moved: None
            },
            "a redirect is followed at once, whatever the deadline"
        );
    }

    #[test]
    fn redirects_past_the_cap_give_up_naming_the_slot_and_node() {
        let now = Instant::now();
        for redirect in [moved(9, "n:3"), ask(9, "n:3")] {
            let next = decide(&redirect, after(MAX, 0), MAX, now, now + RETRY_CAP);
            let Next::GiveUp(give_up) = next else {
                panic!("followed past the cap: {next:?}");
            };
            assert_eq!(
                &give_up.to_reply(Bytes::from_static(b"-MOVED 9 n:3\r\n"))[..],
                b"-ERR slotgate: too many redirects for slot 9 (last to n:3)\r\n"
            );
        }
    }

    #[test]
    fn noscript_loads_the_script_until_the_cap_then_passes_the_reply() {
        let now = Instant::now();
        assert_eq!(
            decide(&Redirect::NoScript, after(0, 0), MAX, now, now),
            Next::LoadScript
        );
        let next = decide(&Redirect::NoScript, after(MAX, 0), MAX, now, now);
        assert_eq!(next, Next::GiveUp(GiveUp::NodeReply));
        let reply = Bytes::from_static(b"-NOSCRIPT No matching script\r\n");
        assert_eq!(GiveUp::NodeReply.to_reply(reply.clone()), reply);
    }

    #[test]
    fn not_now_replies_retry_after_the_back_off_and_down_ones_refresh() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        for (redirect, refresh) in [
            (Redirect::TryAgain, false),
            (Redirect::Loading, false),
            (Redirect::ClusterDown, true),
            (Redirect::MasterDown, true),
        ] {
            assert_eq!(
                decide(&redirect, after(0, 2), MAX, now, deadline),
                Next::RetryAt(now + Duration::from_millis(20))
            );
            assert_eq!(refreshes(&redirect), refresh, "{redirect:?}");
        }
        assert!(refreshes(&moved(1, "n:1")) && !refreshes(&ask(1, "n:1")));
    }

    #[test]
    fn a_retry_that_would_pass_the_deadline_gives_up_with_the_node_reply() {
        let now = Instant::now();
        let deadline = now + RETRY_FIRST;
        let next = decide(&Redirect::TryAgain, after(0, 0), MAX, now, deadline);
        assert_eq!(next, Next::GiveUp(GiveUp::NodeReply), "due == deadline");
        assert_eq!(
            retry_at(0, now, deadline + Duration::from_millis(1)),
            Some(deadline)
        );
    }

    #[test]
    fn the_back_off_doubles_from_the_first_pause_to_the_cap() {
        let pauses: Vec<u64> = (0..10).map(|r| back_off(r).as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 100, 100, 100, 100, 100]);
        assert_eq!(back_off(u8::MAX), RETRY_CAP);
    }
}
