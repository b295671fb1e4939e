//! The reply queue's write hold: replies to one read leave in one write, as Redis answers one
//! read's commands with one write. The session marks where each read's requests end; while a
//! reply of the oldest read not yet written through is owed, the ready replies before it
//! wait (unless [`HOLD_LIMIT`] bytes already do). Sequence numbers are the queue's.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

/// Ready replies are never held back once this many bytes of them wait to be written.
pub(super) const HOLD_LIMIT: usize = 64 * 1024;
/// Most read batches whose ends are kept; ends past it are not recorded, so their replies
/// are held with the next recorded batch's (never longer than that batch's).
const MAX_BATCHES: usize = 64;

/// Where the reads not yet written through end.
#[derive(Debug, Default)]
pub(super) struct WriteHold {
    /// Where the requests of the oldest read not yet written through end (the sequence
    /// number after its last request; 0: none), checked on every reply without a borrow.
    until: Cell<u64>,
    /// The same for the reads after it, oldest first.
    ends: RefCell<VecDeque<u64>>,
}

impl WriteHold {
    /// A read's requests end before sequence number `end`; replies are ready through
    /// `ready_through` (exclusive).
    pub(super) fn end_batch(&self, end: u64, ready_through: u64, base: u64) {
        if end <= ready_through {
            return; // All answered already.
        }
        let current = self.current_end(base);
        if current == 0 {
            self.until.set(end);
            return;
        }
        let mut ends = self.ends.borrow_mut();
        if ends.len() < MAX_BATCHES && ends.back().map_or(current, |&last| last) < end {
            ends.push_back(end);
        }
    }

    /// Whether the ready front should wait: replies are ready through `ready_through`, the
    /// front is `base`, `unwritten` bytes wait.
    #[inline]
    pub(super) fn holding(&self, base: u64, ready_through: u64, unwritten: usize) -> bool {
        self.current_end(base) > ready_through && unwritten < HOLD_LIMIT
    }

    /// The end of the oldest read whose replies have not all been taken (0: none).
    #[inline]
    fn current_end(&self, base: u64) -> u64 {
        let end = self.until.get();
        if end == 0 || end > base {
            return end;
        }
        self.next_end(base)
    }

    /// The oldest read's replies have all been taken: move on to the next read.
    #[cold]
    fn next_end(&self, base: u64) -> u64 {
        let mut ends = self.ends.borrow_mut();
        let next = std::iter::from_fn(|| ends.pop_front())
            .find(|&end| end > base)
            .unwrap_or(0);
        self.until.set(next);
        next
    }

    /// Hold nothing: the replies of every read so far go out as they come.
    pub(super) fn release(&self) {
        self.until.set(0);
        self.ends.borrow_mut().clear();
    }
}
