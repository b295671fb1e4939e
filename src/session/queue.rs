//! The ordered reply queue of one client session.
//!
//! Each request takes the next sequence number and a place in the queue; replies may arrive in
//! any order (different backends answer at different speeds) but leave only from the front, so
//! the client sees them strictly in request order, including in a pipeline that spans nodes.
//! Backend connections hold a [`ReplyTarget`] (the queue plus a sequence number) and fill it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use crate::wake::LocalSignal;

use super::merge::Merge;

/// Replies of one session, in request order. Shared (`Rc`) with the backend connections that
/// owe it replies; all on one worker thread.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    /// Each place: the command index it answers (for per-command error counts) and the reply
    /// once it is in.
    slots: RefCell<VecDeque<(u16, Option<Bytes>)>>,
    /// The command index new places are tagged with ([`ReplyQueue::set_command`]).
    command: Cell<u16>,
    /// Sequence number of the front slot.
    base: Cell<u64>,
    /// Set when the client is gone: late replies are dropped instead of queued.
    closed: Cell<bool>,
    /// Raised when the front slot becomes ready.
    ready: LocalSignal,
}

/// Where a backend delivers one reply: a place in a session's queue, or one part of a split
/// request whose merged reply takes such a place.
#[derive(Debug)]
pub struct ReplyTarget(Target);

#[derive(Debug)]
enum Target {
    Queue { queue: Rc<ReplyQueue>, seq: u64 },
    Part { merge: Rc<Merge>, index: usize },
    Discard,
}

impl ReplyTarget {
    /// The reply to part `index` of a split request.
    pub fn part(merge: &Rc<Merge>, index: usize) -> ReplyTarget {
        ReplyTarget(Target::Part {
            merge: Rc::clone(merge),
            index,
        })
    }

    /// A reply nobody waits for (a command the proxy sends on its own, e.g. SCRIPT LOAD
    /// before resending an EVALSHA).
    pub fn discard() -> ReplyTarget {
        ReplyTarget(Target::Discard)
    }

    /// Deliver the reply (raw RESP bytes).
    #[inline]
    pub fn fill(self, reply: Bytes) {
        match self.0 {
            Target::Queue { queue, seq } => queue.fill(seq, reply),
            Target::Part { merge, index } => merge.deliver(index, reply),
            Target::Discard => {}
        }
    }
}

impl ReplyQueue {
    /// An empty queue.
    pub fn new() -> Rc<ReplyQueue> {
        let queue = ReplyQueue::default();
        queue.set_command(crate::command::stat_index::OTHER);
        Rc::new(queue)
    }

    /// Reserve the next place for a reply that will arrive later.
    pub fn reserve(self: &Rc<Self>) -> ReplyTarget {
        let mut slots = self.slots.borrow_mut();
        let seq = self.base.get() + slots.len() as u64;
        slots.push_back((self.command.get(), None));
        ReplyTarget(Target::Queue {
            queue: Rc::clone(self),
            seq,
        })
    }

    /// Queue a reply that is already known (local commands, immediate errors).
    pub fn push_ready(&self, reply: Bytes) {
        let mut slots = self.slots.borrow_mut();
        slots.push_back((self.command.get(), Some(reply)));
        if slots.len() == 1 {
            self.ready.raise();
        }
    }

    fn fill(&self, seq: u64, reply: Bytes) {
        if self.closed.get() {
            return;
        }
        let mut slots = self.slots.borrow_mut();
        let Some(index) = seq.checked_sub(self.base.get()) else {
            return;
        };
        if let Some((_, slot)) = slots.get_mut(index as usize) {
            *slot = Some(reply);
            if index == 0 {
                self.ready.raise();
            }
        }
    }

    /// Tag the places reserved or filled from now on with command index `index`
    /// ([`crate::command::stat_index`]): the session sets it before dispatching each request.
    #[inline]
    pub fn set_command(&self, index: usize) {
        self.command.set(u16::try_from(index).unwrap_or(u16::MAX));
    }

    /// Take the next reply, with the command index its place was tagged with, if the front
    /// one has arrived.
    #[inline]
    pub fn pop_ready(&self) -> Option<(Bytes, usize)> {
        let mut slots = self.slots.borrow_mut();
        let front = slots.front_mut()?;
        let reply = front.1.take()?;
        let command = usize::from(front.0);
        slots.pop_front();
        self.base.set(self.base.get() + 1);
        Some((reply, command))
    }

    /// Requests whose replies have not yet been taken.
    pub fn outstanding(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Wait until the front reply may have arrived.
    pub async fn wait_ready(&self) {
        self.ready.wait().await
    }

    /// The client is gone: drop queued replies and any that arrive later.
    pub fn close(&self) {
        self.closed.set(true);
        self.slots.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_in_request_order() {
        let q = ReplyQueue::new();
        let a = q.reserve();
        let b = q.reserve();
        q.push_ready(Bytes::from_static(b"+c\r\n"));
        b.fill(Bytes::from_static(b"+b\r\n"));
        assert_eq!(q.pop_ready(), None, "a has not answered yet");
        a.fill(Bytes::from_static(b"+a\r\n"));
        let got: Vec<_> = std::iter::from_fn(|| q.pop_ready().map(|(r, _)| r)).collect();
        assert_eq!(got, [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
        assert_eq!(q.outstanding(), 0);
    }

    #[test]
    fn places_keep_the_command_they_were_tagged_with() {
        let q = ReplyQueue::new();
        q.push_ready(Bytes::from_static(b"-ERR protocol\r\n"));
        q.set_command(7);
        let a = q.reserve();
        q.set_command(9);
        q.push_ready(Bytes::from_static(b"+b\r\n"));
        a.fill(Bytes::from_static(b"+a\r\n"));
        let tags: Vec<_> = std::iter::from_fn(|| q.pop_ready().map(|(_, c)| c)).collect();
        assert_eq!(tags, [crate::command::stat_index::OTHER, 7, 9]);
    }

    #[test]
    fn late_replies_after_close_are_dropped() {
        let q = ReplyQueue::new();
        let a = q.reserve();
        q.close();
        a.fill(Bytes::from_static(b"+late\r\n"));
        assert_eq!(q.outstanding(), 0);
    }
}
