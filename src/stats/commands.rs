//! Requests and error replies per command, for one worker: a boxed array indexed by
//! [`crate::command::stat_index`], so counting is an index and an add (the worker's own
//! counters: [`super::add_own`], no locked instruction).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::command::stat_index::COUNT;

/// Requests and error replies of one command.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// One worker's per-command counters.
#[derive(Debug)]
pub struct CommandCounters(Box<[Counts]>);

impl Default for CommandCounters {
    fn default() -> Self {
        CommandCounters((0..COUNT).map(|_| Counts::default()).collect())
    }
}

impl CommandCounters {
    /// A request for command `index` was received.
    #[inline]
    pub fn request(&self, index: usize) {
        if let Some(c) = self.0.get(index) {
            super::add_own(&c.requests, 1);
        }
    }

    /// An error reply to command `index` was written to its client.
    #[inline]
    pub fn error(&self, index: usize) {
        if let Some(c) = self.0.get(index) {
            super::add_own(&c.errors, 1);
        }
    }

    /// Add this worker's `(requests, errors)` per index into `into` (which has [`COUNT`]
    /// entries).
    pub fn add_to(&self, into: &mut [(u64, u64)]) {
        for (o, c) in into.iter_mut().zip(self.0.iter()) {
            o.0 += c.requests.load(Relaxed);
            o.1 += c.errors.load(Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_index_and_ignores_out_of_range() {
        let c = CommandCounters::default();
        c.request(3);
        c.request(3);
        c.error(3);
        c.request(COUNT + 7);
        let mut sums = vec![(0, 0); COUNT];
        c.add_to(&mut sums);
        c.add_to(&mut sums);
        assert_eq!(sums[3], (4, 2));
        assert_eq!(sums.iter().map(|s| s.0).sum::<u64>(), 4);
    }
}
