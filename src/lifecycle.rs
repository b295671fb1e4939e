//! Graceful drain: stop accepting, let every client's in-flight requests finish, close clients.
//!
//! ```text
//!  ProxyHandle::drain ──watch──► control thread: the listener is closed (no new clients)
//!                     └─watch──► each worker: SessionDrain::start raises every session's signal
//!  session: on its signal, stops reading; ends once every reply it owes has been written
//!  ProxyHandle::drain returns when no client is left, or at the timeout (DrainReport)
//! ```
//!
//! A session never drops a reply it owes: a request that was read is answered before the
//! connection closes, so every write a client saw acknowledged was applied. Requests the client
//! sent but the proxy had not read yet get no reply (the connection closes), which a client
//! sees as a connection error, never as a success.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::wake::LocalSignal;

/// The outcome of [`crate::ProxyHandle::drain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Clients connected when the drain began.
    pub clients_at_start: u64,
    /// Clients still connected when it ended (0 unless it timed out).
    pub clients_left: u64,
    /// How long the drain took.
    pub elapsed: Duration,
    /// True when the timeout passed with clients still connected.
    pub timed_out: bool,
}

/// One worker's drain broadcast to its sessions. Each session registers once, when it
/// starts, and gets its own [`LocalSignal`], so waiting costs no lock and no allocation per
/// request; the worker raises them all when the drain begins.
#[derive(Debug, Default)]
pub struct SessionDrain {
    draining: Cell<bool>,
    sessions: RefCell<Vec<Weak<LocalSignal>>>,
    /// Length of `sessions` at which dead entries are pruned next.
    prune_at: Cell<usize>,
}

impl SessionDrain {
    /// A signal for one session; already raised if the drain has begun.
    pub fn listen(&self) -> Rc<LocalSignal> {
        let signal = Rc::new(LocalSignal::new());
        self.add(&signal);
        signal
    }

    /// Raise `signal` too when the drain begins (at once if it has begun): one session's
    /// signal can serve several broadcasts (the drain and an upgrade's hand-over), so it
    /// waits on one.
    pub fn add(&self, signal: &Rc<LocalSignal>) {
        if self.draining.get() {
            signal.raise();
            return;
        }
        let mut sessions = self.sessions.borrow_mut();
        if sessions.len() >= self.prune_at.get() {
            sessions.retain(|s| s.strong_count() > 0);
            self.prune_at.set((sessions.len() * 2).max(64));
        }
        sessions.push(Rc::downgrade(signal));
    }

    /// Begin the drain: raise every live session's signal.
    pub fn start(&self) {
        self.draining.set(true);
        for session in self.sessions.take() {
            if let Some(signal) = session.upgrade() {
                signal.raise();
            }
        }
    }

    /// True once [`SessionDrain::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn every_live_session_and_every_late_one_is_told() {
        let drain = SessionDrain::default();
        let a = drain.listen();
        let gone = drain.listen();
        drop(gone);
        drain.start();
        a.wait().await;
        drain.listen().wait().await;
        assert!(drain.is_draining());
    }

    #[test]
    fn dead_sessions_are_pruned() {
        let drain = SessionDrain::default();
        for _ in 0..1000 {
            drop(drain.listen());
        }
        assert!(drain.sessions.borrow().len() <= 64);
    }
}
