//! Where a backend delivers a reply: the contract between the connections, which know
//! nothing of clients, and whoever waits (a session's reply queue, a split request's merge),
//! which implements [`Waiter`].

use std::rc::Rc;

use bytes::Bytes;
use tokio::time::Instant;

/// Something that waits for replies at numbered places.
pub trait Waiter {
    /// The reply for `place` (raw RESP bytes). `answered`: the request as sent and when it
    /// came in, for timing it (the slow log); `None` when it is not timed.
    fn deliver(&self, place: u64, reply: Bytes, answered: Option<(&Bytes, Instant)>);
}

/// One reply's destination: a place of a [`Waiter`], or nowhere.
pub struct ReplyTarget {
    waiter: Option<Rc<dyn Waiter>>,
    place: u64,
}

impl ReplyTarget {
    /// Place `place` of `waiter`.
    #[inline]
    pub fn new(waiter: Rc<dyn Waiter>, place: u64) -> ReplyTarget {
        ReplyTarget {
            waiter: Some(waiter),
            place,
        }
    }

    /// A reply nobody waits for (a command the proxy sends on its own, e.g. SCRIPT LOAD
    /// before resending an EVALSHA).
    pub fn discard() -> ReplyTarget {
        ReplyTarget {
            waiter: None,
            place: 0,
        }
    }

    /// Deliver the reply (raw RESP bytes), not timed.
    #[inline]
    pub fn fill(self, reply: Bytes) {
        if let Some(waiter) = self.waiter {
            waiter.deliver(self.place, reply, None);
        }
    }

    /// Deliver the reply to `request` (its bytes as sent), which came in at `now`: the
    /// waiter times it.
    #[inline]
    pub fn answer(self, reply: Bytes, request: &Bytes, now: Instant) {
        if let Some(waiter) = self.waiter {
            waiter.deliver(self.place, reply, Some((request, now)));
        }
    }
}

impl std::fmt::Debug for ReplyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.waiter {
            Some(_) => write!(f, "ReplyTarget({})", self.place),
            None => f.write_str("ReplyTarget(discard)"),
        }
    }
}
