//! The ordered reply queue of one client session.
//!
//! Each request takes the next sequence number and a place in the queue; replies may arrive in
//! any order (different backends answer at different speeds) but leave only from the front, so
//! the client sees them strictly in request order, including in a pipeline that spans nodes.
//! Backend connections hold a [`ReplyTarget`] (the queue plus a sequence number) and fill it.
//!
//! The queue also times requests for the slow log: each place carries the instant its reply
//! turns slow (read time + threshold), and a reply that comes in with its request
//! ([`ReplyTarget::answer`]) is compared with it then, while the request's bytes are still at
//! hand; only a slow one is kept ([`ReplyQueue::take_slow`]). Nothing per request is copied or
//! counted for it.
//!
//! Replies to one read leave in one write, as Redis answers one read's commands with one write:
//! the session marks where each read's requests end ([`ReplyQueue::end_batch`]) and the queue
//! holds a ready front back ([`ReplyQueue::holding`]) while later replies of the same read are
//! still owed, unless `HOLD_LIMIT` bytes are already waiting. A pipeline spread over several
//! backends, whose replies come in at different moments, then costs one write to the client
//! instead of one per backend. The session is still woken when the front becomes ready, to
//! time the hold, and ends one that lasts too long ([`ReplyQueue::release_hold`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use crate::backend::reply::ReplyTarget;
use crate::backend::reply::Waiter;
use crate::wake::LocalSignal;

use super::limits::{OutputLimit, Overflow};

/// Ready replies are never held back once this many bytes of them wait to be written.
pub const HOLD_LIMIT: usize = 64 * 1024;
/// Most read batches whose ends the queue keeps; ends past it are not recorded, so their
/// replies are held with the next recorded batch's (never longer than that batch's).
const MAX_BATCHES: usize = 64;

/// Replies of one session, in request order. Shared (`Rc`) with the backend connections that
/// owe it replies; all on one worker thread.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    /// One place per request, in request order.
    slots: RefCell<VecDeque<Place>>,
    /// The command index new places are tagged with ([`ReplyQueue::set_command`]).
    command: Cell<u16>,
    /// When a reply to the requests being read becomes slow: the read time plus the
    /// threshold ([`ReplyQueue::set_read_at`]); new places are stamped with it. `None`: never
    /// (the slow log is off).
    slow_at: Cell<Option<Instant>>,
    /// Requests answered at least this long after they were read are slow (`None`: the slow
    /// log is off).
    slow_threshold: Option<Duration>,
    /// Slow requests answered and not yet logged: how long each took, and its bytes.
    slow: RefCell<Vec<(Duration, Bytes)>>,
    /// `slow` is not empty: checked once per write turn without borrowing it.
    slow_kept: Cell<bool>,
    /// Sequence number of the front slot.
    base: Cell<u64>,
    /// How many places at the front have their replies in.
    ready_len: Cell<usize>,
    /// Where the requests of the oldest read not yet written through end (the sequence number
    /// after its last request; 0: none), checked on every reply without a borrow. Only reads
    /// of more than one request are recorded.
    hold_until: Cell<u64>,
    /// The same for the reads after it, oldest first.
    batch_ends: RefCell<VecDeque<u64>>,
    /// Set when the client is gone: late replies are dropped instead of queued.
    closed: Cell<bool>,
    /// Raised when the front slot becomes ready.
    ready: LocalSignal,
    /// Bytes of the replies queued or taken but not yet written to the client (the client's
    /// output buffer, in Redis' terms); see [`ReplyQueue::written`].
    unwritten: Cell<usize>,
    /// When the unwritten output went over the soft output limit, while it is.
    over_soft_since: Cell<Option<tokio::time::Instant>>,
    /// Set when pushed messages broke the output limit: the session closes.
    overflow: Cell<Option<Overflow>>,
    /// Raised with `overflow`.
    cut: LocalSignal,
}

/// The place of one request in the queue.
#[derive(Debug)]
struct Place {
    /// The command index it answers (for per-command error counts).
    command: u16,
    /// From when its reply is slow (`None`: never).
    slow_at: Option<Instant>,
    /// The reply, once it is in.
    reply: Option<Bytes>,
}

impl Waiter for ReplyQueue {
    #[inline]
    fn deliver(&self, place: u64, reply: Bytes, answered: Option<(&Bytes, Instant)>) {
        self.fill(place, reply, answered);
    }
}

impl ReplyQueue {
    /// An empty queue, the slow log off.
    pub fn new() -> Rc<ReplyQueue> {
        ReplyQueue::with_slow_log(None)
    }

    /// An empty queue that keeps requests answered at least `threshold` after they were read
    /// ([`ReplyQueue::take_slow`]; `None`: none).
    pub fn with_slow_log(threshold: Option<Duration>) -> Rc<ReplyQueue> {
        let queue = ReplyQueue {
            slow_threshold: threshold,
            ..ReplyQueue::default()
        };
        queue.set_command(crate::command::stat_index::OTHER);
        Rc::new(queue)
    }

    /// Whether the slow log times this queue's requests.
    #[inline]
    pub fn times_requests(&self) -> bool {
        self.slow_threshold.is_some()
    }

    /// Reserve the next place for a reply that will arrive later.
    pub fn reserve(self: &Rc<Self>) -> ReplyTarget {
        let mut slots = self.slots.borrow_mut();
        let seq = self.base.get() + slots.len() as u64;
        slots.push_back(Place {
            command: self.command.get(),
            slow_at: self.slow_at.get(),
            reply: None,
        });
        ReplyTarget::new(Rc::clone(self) as Rc<dyn Waiter>, seq)
    }

    /// Queue a reply that is already known (local commands, immediate errors).
    pub fn push_ready(&self, reply: Bytes) {
        self.unwritten.set(self.unwritten.get() + reply.len());
        let mut slots = self.slots.borrow_mut();
        let front_was_ready = self.ready_len.get() > 0;
        if slots.len() == self.ready_len.get() {
            self.ready_len.set(slots.len() + 1);
        }
        slots.push_back(Place {
            command: self.command.get(),
            slow_at: self.slow_at.get(),
            reply: Some(reply),
        });
        drop(slots);
        self.raise_if_ready(front_was_ready);
    }

    /// Queue the reply the proxy made itself to `request`, one of the requests being read,
    /// timing it for the slow log.
    pub fn push_answer(&self, reply: Bytes, request: &Bytes) {
        if let Some(slow_at) = self.slow_at.get() {
            let now = Instant::now();
            if now >= slow_at {
                self.slow_answer(slow_at, request, now);
            }
        }
        self.push_ready(reply);
    }

    fn fill(&self, seq: u64, reply: Bytes, answered: Option<(&Bytes, Instant)>) {
        if self.closed.get() {
            return;
        }
        let mut slots = self.slots.borrow_mut();
        let Some(index) = seq.checked_sub(self.base.get()) else {
            return;
        };
        if let Some(place) = slots.get_mut(index as usize) {
            // One comparison per reply; the duration only for a slow one.
            if let (Some(slow_at), Some((request, now))) = (place.slow_at, answered) {
                if now >= slow_at {
                    self.slow_answer(slow_at, request, now);
                }
            }
            // A place is filled once; were it twice, the count must not drift.
            let replaced = place.reply.as_ref().map_or(0, Bytes::len);
            let unwritten = self.unwritten.get() + reply.len();
            self.unwritten.set(unwritten.saturating_sub(replaced));
            place.reply = Some(reply);
            let mut ready = self.ready_len.get();
            let front_was_ready = ready > 0;
            if index as usize == ready {
                while slots.get(ready).is_some_and(|place| place.reply.is_some()) {
                    ready += 1;
                }
                self.ready_len.set(ready);
            }
            drop(slots);
            self.raise_if_ready(front_was_ready);
        }
    }

    /// Wake the session when the front has just become ready (so that it times a hold, see
    /// [`ReplyQueue::release_hold`]) or when there is a ready front it may write now.
    #[inline]
    fn raise_if_ready(&self, front_was_ready: bool) {
        if self.ready_len.get() > 0 && (!front_was_ready || !self.holding()) {
            self.ready.raise();
        }
    }

    /// Whether the reply at the front is in.
    #[inline]
    pub fn front_ready(&self) -> bool {
        self.ready_len.get() > 0
    }

    /// Stop holding: the replies of every read so far go out as they come. The session calls
    /// it when a ready front has waited too long for a slow reply of its read.
    pub fn release_hold(&self) {
        self.hold_until.set(0);
        self.batch_ends.borrow_mut().clear();
    }

    /// The requests of one read have all been dispatched: hold their replies until the last
    /// of them is in (see [`ReplyQueue::holding`]). Call once per read that dispatched more
    /// than one request.
    pub fn end_batch(&self) {
        let end = self.next_seq();
        if end <= self.base.get() + self.ready_len.get() as u64 {
            return; // All answered already.
        }
        let current = self.current_end();
        if current == 0 {
            self.hold_until.set(end);
            return;
        }
        let mut ends = self.batch_ends.borrow_mut();
        if ends.len() < MAX_BATCHES && ends.back().map_or(current, |&last| last) < end {
            ends.push_back(end);
        }
    }

    /// Whether the ready front should wait: a reply of the oldest read not yet written through
    /// is still owed, and fewer than `HOLD_LIMIT` bytes are waiting.
    #[inline]
    pub fn holding(&self) -> bool {
        let ready_through = self.base.get() + self.ready_len.get() as u64;
        self.current_end() > ready_through && self.unwritten.get() < HOLD_LIMIT
    }

    /// The end of the oldest read whose replies have not all been taken (0: none).
    #[inline]
    fn current_end(&self) -> u64 {
        let end = self.hold_until.get();
        if end == 0 || end > self.base.get() {
            return end;
        }
        self.next_end()
    }

    /// The oldest read's replies have all been taken: move on to the next read.
    #[cold]
    fn next_end(&self) -> u64 {
        let base = self.base.get();
        let mut ends = self.batch_ends.borrow_mut();
        let next = std::iter::from_fn(|| ends.pop_front())
            .find(|&end| end > base)
            .unwrap_or(0);
        self.hold_until.set(next);
        next
    }

    /// Whether slow requests were kept since the last [`ReplyQueue::take_slow`].
    #[inline(always)]
    pub fn kept_slow(&self) -> bool {
        self.slow_kept.get()
    }

    /// The slow requests answered since the last call (how long each took, its bytes); check
    /// [`ReplyQueue::kept_slow`] first, which is cheaper.
    pub fn take_slow(&self) -> Vec<(Duration, Bytes)> {
        self.slow_kept.set(false);
        std::mem::take(&mut *self.slow.borrow_mut())
    }

    /// Queue a message nobody asked for (pub/sub) unless that breaks `limit`; then cut the
    /// client off instead ([`ReplyQueue::cut_off`] resolves) and drop what else comes.
    pub fn push_message(&self, message: Bytes, limit: &OutputLimit) {
        if self.overflow.get().is_some() {
            return;
        }
        let bytes = self.unwritten.get() + message.len();
        match limit.check(bytes, &self.over_soft_since, tokio::time::Instant::now) {
            None => self.push_ready(message),
            Some(overflow) => {
                self.overflow.set(Some(overflow));
                self.cut.raise();
            }
        }
    }

    /// Resolves when pushed messages broke the client's output limit.
    pub async fn cut_off(&self) -> Overflow {
        loop {
            if let Some(overflow) = self.overflow.get() {
                return overflow;
            }
            self.cut.wait().await;
        }
    }

    /// `n` bytes of replies taken with [`ReplyQueue::pop_ready`] were written to the client.
    #[inline]
    pub fn written(&self, n: usize) {
        self.unwritten.set(self.unwritten.get().saturating_sub(n));
    }

    /// Bytes of replies not yet written to the client.
    #[inline]
    pub fn unwritten(&self) -> usize {
        self.unwritten.get()
    }

    /// Sequence number of the front place (every reply before it has been taken).
    #[inline]
    pub fn front_seq(&self) -> u64 {
        self.base.get()
    }

    /// Sequence number the next place will take.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.base.get() + self.slots.borrow().len() as u64
    }

    /// Tag the places reserved or filled from now on with command index `index`
    /// ([`crate::command::stat_index`]): the session sets it before dispatching each request.
    #[inline]
    pub fn set_command(&self, index: usize) {
        self.command.set(u16::try_from(index).unwrap_or(u16::MAX));
    }

    /// Stamp the places reserved or filled from now on with read time `at` (the session sets
    /// it once per read).
    #[inline]
    pub fn set_read_at(&self, at: Instant) {
        if let Some(threshold) = self.slow_threshold {
            self.slow_at.set(at.checked_add(threshold));
        }
    }

    /// Keep `request`, answered at `now`, slow since `slow_at`.
    #[cold]
    fn slow_answer(&self, slow_at: Instant, request: &Bytes, now: Instant) {
        let threshold = self.slow_threshold.unwrap_or_default();
        let took = threshold.saturating_add(now.saturating_duration_since(slow_at));
        self.slow.borrow_mut().push((took, request.clone()));
        self.slow_kept.set(true);
    }

    /// Take the next reply, with the command index its place was tagged with, if the front
    /// one has arrived. Its bytes still count as unwritten until [`ReplyQueue::written`].
    #[inline]
    pub fn pop_ready(&self) -> Option<(Bytes, usize)> {
        let mut slots = self.slots.borrow_mut();
        let front = slots.front_mut()?;
        let reply = front.reply.take()?;
        let command = usize::from(front.command);
        slots.pop_front();
        self.base.set(self.base.get() + 1);
        self.ready_len.set(self.ready_len.get().saturating_sub(1));
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
        self.ready_len.set(0);
        self.hold_until.set(0);
        self.batch_ends.borrow_mut().clear();
        self.unwritten.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ready reply at the front, taken in order.
    fn take_replies(q: &ReplyQueue) -> Vec<Bytes> {
        std::iter::from_fn(|| q.pop_ready().map(|(reply, _)| reply)).collect()
    }

    /// Two reads of two requests each, their ends marked as the session marks them.
    fn two_reads_of_two(q: &Rc<ReplyQueue>) -> [ReplyTarget; 4] {
        let (a, b) = (q.reserve(), q.reserve());
        q.end_batch();
        let (c, d) = (q.reserve(), q.reserve());
        q.end_batch();
        [a, b, c, d]
    }

    #[test]
    fn replies_leave_in_request_order() {
        let q = ReplyQueue::new();
        let a = q.reserve();
        let b = q.reserve();
        q.push_ready(Bytes::from_static(b"+c\r\n"));
        b.fill(Bytes::from_static(b"+b\r\n"));
        assert_eq!(q.pop_ready(), None, "a has not answered yet");
        a.fill(Bytes::from_static(b"+a\r\n"));
        let got = take_replies(&q);
        assert_eq!(got, [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
        assert_eq!(q.outstanding(), 0);
    }

    #[test]
    fn unwritten_bytes_count_until_written() {
        let q = ReplyQueue::new();
        let a = q.reserve();
        q.push_ready(Bytes::from_static(b"+later\r\n"));
        assert_eq!(q.unwritten(), 8);
        a.fill(Bytes::from_static(b"+ok\r\n"));
        assert_eq!((q.unwritten(), q.front_seq(), q.next_seq()), (13, 0, 2));
        let taken: usize = std::iter::from_fn(|| q.pop_ready())
            .map(|(r, _)| r.len())
            .sum();
        assert_eq!(
            (q.unwritten(), q.front_seq()),
            (13, 2),
            "taken, not written"
        );
        q.written(taken);
        assert_eq!(q.unwritten(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn messages_over_the_limit_cut_the_client_off() {
        let limit = OutputLimit {
            hard: 20,
            soft: 0,
            soft_for: std::time::Duration::ZERO,
        };
        let q = ReplyQueue::new();
        q.push_message(Bytes::from_static(b"+0123456789\r\n"), &limit);
        assert_eq!(q.unwritten(), 13);
        q.push_message(Bytes::from_static(b"+0123456789\r\n"), &limit);
        assert_eq!(
            q.unwritten(),
            13,
            "the message that would cross it is dropped"
        );
        assert_eq!(
            q.cut_off().await,
            Overflow {
                bytes: 26,
                limit: 20,
                soft: false
            }
        );
        q.push_message(Bytes::from_static(b"+x\r\n"), &limit);
        assert_eq!(q.outstanding(), 1, "nothing more after the cut");
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
    fn answers_slower_than_the_threshold_are_kept_for_the_slow_log() {
        let q = ReplyQueue::with_slow_log(Some(Duration::from_millis(10)));
        let read = Instant::now();
        q.set_read_at(read);
        let (slow, fast, untimed) = (q.reserve(), q.reserve(), q.reserve());
        let request = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
        slow.answer(
            Bytes::from_static(b"+a\r\n"),
            &request,
            read + Duration::from_millis(12),
        );
        fast.answer(
            Bytes::from_static(b"+b\r\n"),
            &request,
            read + Duration::from_millis(9),
        );
        untimed.fill(Bytes::from_static(b"+c\r\n"));
        q.push_answer(Bytes::from_static(b"+d\r\n"), &request);
        assert!(q.kept_slow());
        assert_eq!(
            q.take_slow(),
            vec![(Duration::from_millis(12), request.clone())]
        );
        assert!(!q.kept_slow(), "taken once");
        assert!(q.take_slow().is_empty(), "taken once");
        assert_eq!(q.outstanding(), 4);

        let off = ReplyQueue::new();
        let place = off.reserve();
        place.answer(
            Bytes::from_static(b"+a\r\n"),
            &request,
            read + Duration::from_secs(9),
        );
        assert!(!off.kept_slow(), "the slow log is off");
        assert!(off.take_slow().is_empty(), "the slow log is off");
    }

    /// Whether the session would be woken now (lowers the signal, as its wait does).
    fn woken(q: &ReplyQueue) -> bool {
        use futures_util::FutureExt;
        q.wait_ready().now_or_never().is_some()
    }

    #[test]
    fn a_read_s_replies_are_held_until_the_last_is_in() {
        let q = ReplyQueue::new();
        let (a, b, c) = (q.reserve(), q.reserve(), q.reserve());
        q.end_batch();
        a.fill(Bytes::from_static(b"+a\r\n"));
        assert!(q.holding(), "b and c are still owed");
        assert!(woken(&q), "the front is ready: the session times the hold");
        c.fill(Bytes::from_static(b"+c\r\n"));
        assert!(q.holding() && !woken(&q), "b is still owed");
        b.fill(Bytes::from_static(b"+b\r\n"));
        assert!(!q.holding(), "the read is answered");
        assert!(woken(&q));
        let got = take_replies(&q);
        assert_eq!(got, [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
        assert!(!q.holding());
    }

    #[test]
    fn a_finished_read_is_not_held_for_the_next_one() {
        let q = ReplyQueue::new();
        let [a, b, c, d] = two_reads_of_two(&q);
        b.fill(Bytes::from_static(b"+b\r\n"));
        c.fill(Bytes::from_static(b"+c\r\n"));
        assert!(q.holding(), "a is owed");
        a.fill(Bytes::from_static(b"+a\r\n"));
        assert!(
            !q.holding(),
            "the first read is answered; the second's d is owed"
        );
        assert!(woken(&q));
        let got = take_replies(&q);
        assert_eq!(got.len(), 3, "a, b and c go out together");
        assert!(q.holding(), "the second read still owes d");
        d.fill(Bytes::from_static(b"+d\r\n"));
        assert!(!q.holding() && woken(&q));
    }

    #[test]
    fn reads_without_a_recorded_end_are_not_held() {
        let q = ReplyQueue::new();
        let (a, _b) = (q.reserve(), q.reserve());
        a.fill(Bytes::from_static(b"+a\r\n"));
        assert!(
            !q.holding() && woken(&q),
            "no end_batch: written as it comes"
        );
        let answered = ReplyQueue::new();
        answered.push_ready(Bytes::from_static(b"+PONG\r\n"));
        answered.push_ready(Bytes::from_static(b"+PONG\r\n"));
        answered.end_batch();
        assert!(!answered.holding(), "a read answered at once is not held");
    }

    #[test]
    fn a_released_hold_lets_every_read_so_far_go() {
        let q = ReplyQueue::new();
        let [a, _b, c, _d] = two_reads_of_two(&q);
        a.fill(Bytes::from_static(b"+a\r\n"));
        assert!(q.holding() && q.front_ready());
        q.release_hold();
        assert!(!q.holding(), "b is slow: a goes without it");
        assert_eq!(
            q.pop_ready().map(|(r, _)| r).as_deref(),
            Some(&b"+a\r\n"[..])
        );
        c.fill(Bytes::from_static(b"+c\r\n"));
        assert!(!q.holding(), "the second read was released too");
        let (e, _f) = (q.reserve(), q.reserve());
        q.end_batch();
        e.fill(Bytes::from_static(b"+e\r\n"));
        assert!(q.holding(), "a read after the release is held again");
    }

    #[test]
    fn replies_past_the_hold_limit_go_out_at_once() {
        let q = ReplyQueue::new();
        let (a, _b) = (q.reserve(), q.reserve());
        q.end_batch();
        a.fill(Bytes::from(vec![b'x'; HOLD_LIMIT]));
        assert!(!q.holding(), "{HOLD_LIMIT} bytes wait: write them");
        assert!(woken(&q));
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A read of this many requests, all sent to backends.
        Read(usize),
        /// The reply to the n-th (mod count) request still owed.
        Fill(usize),
        /// The session's write turn.
        Write,
        /// The hold timed out.
        Release,
    }

    proptest! {
        /// Against a model of the rule: the front waits exactly while the oldest read of more
        /// than one request that is not written through still owes a reply; replies leave in
        /// order, and once every reply is in nothing waits.
        #[test]
        fn holding_follows_the_oldest_unanswered_read(ops in proptest::collection::vec(
            prop_oneof![
                (1usize..5).prop_map(Op::Read),
                (0usize..8).prop_map(Op::Fill),
                Just(Op::Write),
                Just(Op::Release),
            ],
            0..60,
        )) {
            let q = ReplyQueue::new();
            let mut owed: Vec<(u64, ReplyTarget)> = Vec::new();
            let mut filled: Vec<bool> = Vec::new(); // by sequence number
            let mut ends: Vec<u64> = Vec::new();
            let mut written = 0u64;
            for op in ops {
                match op {
                    Op::Read(n) => {
                        for _ in 0..n {
                            owed.push((filled.len() as u64, q.reserve()));
                            filled.push(false);
                        }
                        if n > 1 {
                            q.end_batch();
                            ends.push(filled.len() as u64);
                        }
                    }
                    Op::Fill(i) if !owed.is_empty() => {
                        let (seq, target) = owed.remove(i % owed.len());
                        target.fill(Bytes::from(format!("+{seq}\r\n")));
                        filled[seq as usize] = true;
                    }
                    Op::Fill(_) => {}
                    Op::Release => {
                        q.release_hold();
                        ends.clear();
                    }
                    Op::Write => {
                        if !q.holding() {
                            while let Some((reply, _)) = q.pop_ready() {
                                prop_assert_eq!(reply, Bytes::from(format!("+{written}\r\n")));
                                written += 1;
                            }
                        }
                    }
                }
                let ready_through = written
                    + filled[written as usize..].iter().take_while(|&&f| f).count() as u64;
                let oldest = ends.iter().copied().find(|&end| end > written);
                let model = oldest.is_some_and(|end| end > ready_through);
                prop_assert_eq!(q.holding(), model);
            }
            for (_, target) in owed.drain(..) {
                target.fill(Bytes::from_static(b"+late\r\n"));
            }
            prop_assert!(!q.holding(), "every reply is in");
        }
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
