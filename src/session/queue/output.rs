//! The reply queue's output limit for messages nobody asked for (pub/sub): Redis' hard and
//! soft client-output-buffer rule; a client over it is cut off, even mid-write.

use std::cell::Cell;
use std::task::{Context, Poll};

use crate::wake::LocalSignal;

use super::super::limits::{OutputLimit, Overflow};

/// Whether pushed messages broke the client's output limit.
#[derive(Debug, Default)]
pub(super) struct OutputGuard {
    /// When the unwritten output went over the soft limit, while it is.
    over_soft_since: Cell<Option<tokio::time::Instant>>,
    /// Set when pushed messages broke the limit: the session closes.
    overflow: Cell<Option<Overflow>>,
    /// Raised with `overflow`.
    cut: LocalSignal,
}

impl OutputGuard {
    /// Whether a message may be queued with `unwritten` bytes then waiting; if not, the
    /// client is cut off ([`OutputGuard::cut_off`] resolves) and nothing more is admitted.
    pub(super) fn admit(&self, unwritten: usize, limit: &OutputLimit) -> bool {
        if self.overflow.get().is_some() {
            return false;
        }
        match limit.check(unwritten, &self.over_soft_since, tokio::time::Instant::now) {
            None => true,
            Some(overflow) => {
                self.overflow.set(Some(overflow));
                self.cut.raise();
                false
            }
        }
    }

    /// Resolves when pushed messages broke the client's output limit.
    pub(super) async fn cut_off(&self) -> Overflow {
        std::future::poll_fn(|cx| self.poll_cut_off(cx)).await
    }

    /// [`OutputGuard::cut_off`] as a poll.
    pub(super) fn poll_cut_off(&self, cx: &mut Context<'_>) -> Poll<Overflow> {
        loop {
            if let Some(overflow) = self.overflow.get() {
                return Poll::Ready(overflow);
            }
            std::task::ready!(self.cut.poll_wait(cx));
        }
    }
}
