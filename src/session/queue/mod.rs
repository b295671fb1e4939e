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
//!
//! Rooms: this file keeps the order (places, the ready front, unwritten bytes, the command
//! tag of each place); `slow.rs` the slow-log timing, `hold.rs` the write hold, `output.rs`
//! the pub/sub output limit, `names.rs` the key names given back untagged (co-location rules
//! in cluster mode).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use crate::backend::reply::ReplyTarget;
use crate::backend::reply::Waiter;
use crate::placement::Colocation;
use crate::wake::LocalSignal;

use super::limits::{OutputLimit, Overflow};

mod direct;
mod hold;
mod names;
mod output;
mod slow;

pub use direct::SlowLogger;
pub use names::Expect;

/// Replies of one session, in request order. Shared (`Rc`) with the backend connections that
/// owe it replies; all on one worker thread. Ordering is its own job; the slow-log timing
/// (`slow`), the write hold (`hold`) and the pub/sub output limit (`output`) are parts it
/// consults.
///
/// Laid out in this order (`repr(C)`): what delivering a reply and reserving a place touch
/// first, so that with thousands of clients (each queue out of the cache when its reply comes)
/// a reply costs few cache lines.
#[derive(Debug, Default)]
#[repr(C)]
pub struct ReplyQueue {
    /// One place per request, in request order.
    places: RefCell<VecDeque<Place>>,
    /// Sequence number of the front place.
    base: Cell<u64>,
    /// How many places at the front have their replies in.
    ready_len: Cell<usize>,
    /// Bytes of the replies queued or taken but not yet written to the client (the client's
    /// output buffer, in Redis' terms); see [`ReplyQueue::written`].
    unwritten: Cell<usize>,
    /// Set when the client is gone: late replies are dropped instead of queued.
    closed: Cell<bool>,
    /// The command index new places are tagged with ([`ReplyQueue::set_command`]), for
    /// per-command error counts.
    command: Cell<u16>,
    /// Co-location rules in cluster mode: replies that carry key names are rewritten (boxed:
    /// every reply tests for them, few queues have them).
    names: Option<Box<names::KeyNames>>,
    /// Raised when the front place becomes ready.
    ready: LocalSignal,
    /// A plaintext client's socket: replies that leave nothing owed are written from here
    /// while the session is parked (`direct`).
    direct: std::cell::OnceCell<direct::DirectWrite>,
    slow: slow::SlowTimer,
    /// Reply latency for the worker's histogram (admin `/metrics`).
    clock: RefCell<crate::stats::ReplyClock>,
    hold: hold::WriteHold,
    output: output::OutputGuard,
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
        ReplyQueue::for_session(threshold, None)
    }

    /// An empty queue with the slow log's `threshold` that, when `key_tags` are given (the
    /// co-location rules in cluster mode), gives the key names in replies back under the
    /// client's names ([`ReplyQueue::expect_key_names`]).
    pub fn for_session(
        threshold: Option<Duration>,
        key_tags: Option<Arc<Colocation>>,
    ) -> Rc<ReplyQueue> {
        let queue = ReplyQueue {
            slow: slow::SlowTimer::new(threshold),
            names: key_tags.map(|tags| Box::new(names::KeyNames::new(tags))),
            ..ReplyQueue::default()
        };
        queue.set_command(crate::command::stat_index::OTHER);
        Rc::new(queue)
    }

    /// Whether the slow log times this queue's requests.
    #[inline]
    pub fn times_requests(&self) -> bool {
        self.slow.is_on()
    }

    /// Reserve the next place for a reply that will arrive later.
    pub fn reserve(self: &Rc<Self>) -> ReplyTarget {
        let mut places = self.places.borrow_mut();
        let seq = self.base.get() + places.len() as u64;
        places.push_back(Place {
            command: self.command.get(),
            slow_at: self.slow.stamp(),
            reply: None,
        });
        ReplyTarget::new(Rc::clone(self) as Rc<dyn Waiter>, seq)
    }

    /// The reply of the next place (reserved or pushed next) carries key names as `expect`
    /// says. Does nothing in a queue without key tags.
    pub fn expect_key_names(&self, expect: Expect) {
        if let Some(names) = &self.names {
            names.expect(self.next_seq(), expect);
        }
    }

    /// Queue a reply that is already known (local commands, immediate errors).
    pub fn push_ready(&self, reply: Bytes) {
        let reply = match &self.names {
            Some(names) => names.rewrite(self.next_seq(), reply),
            None => reply,
        };
        self.unwritten.set(self.unwritten.get() + reply.len());
        let mut places = self.places.borrow_mut();
        let front_was_ready = self.ready_len.get() > 0;
        if places.len() == self.ready_len.get() {
            self.ready_len.set(places.len() + 1);
        }
        places.push_back(Place {
            command: self.command.get(),
            slow_at: self.slow.stamp(),
            reply: Some(reply),
        });
        drop(places);
        self.raise_if_ready(front_was_ready);
    }

    /// Queue the reply the proxy made itself to `request`, one of the requests being read,
    /// timing it for the slow log.
    pub fn push_answer(&self, reply: Bytes, request: &Bytes) {
        self.slow.check_now(request);
        self.push_ready(reply);
    }

    fn fill(&self, seq: u64, reply: Bytes, answered: Option<(&Bytes, Instant)>) {
        if self.closed.get() {
            return;
        }
        let reply = match &self.names {
            Some(names) => names.rewrite(seq, reply),
            None => reply,
        };
        let mut places = self.places.borrow_mut();
        let Some(index) = seq.checked_sub(self.base.get()) else {
            return;
        };
        if let Some(place) = places.get_mut(index as usize) {
            if let Some((request, now)) = answered {
                self.slow.check(place.slow_at, request, now);
            }
            // A place is filled once; were it twice, the count must not drift.
            let replaced = place.reply.as_ref().map_or(0, Bytes::len);
            let unwritten = self.unwritten.get() + reply.len();
            self.unwritten.set(unwritten.saturating_sub(replaced));
            place.reply = Some(reply);
            let mut ready = self.ready_len.get();
            let front_was_ready = ready > 0;
            if index as usize == ready {
                while places.get(ready).is_some_and(|place| place.reply.is_some()) {
                    ready += 1;
                }
                self.ready_len.set(ready);
            }
            let all_ready = ready == places.len();
            drop(places);
            if all_ready && self.write_direct(answered.map(|(_, now)| now)) {
                return;
            }
            self.raise_if_ready(front_was_ready);
        }
    }

    /// Write every reply owed, all of them in, to the client from here, when its session is
    /// parked ([`ReplyQueue::arm_direct`]). True when nothing is left for the session (it is
    /// not woken); false when it must write (the rest of) them itself. `arrived`: when the
    /// last reply was read, if known; the latency clock stops there (no second clock read).
    fn write_direct(&self, arrived: Option<Instant>) -> bool {
        let Some(direct) = self.direct.get().filter(|d| d.armed()) else {
            return false;
        };
        // Slow requests are in the slow log before their replies reach the client.
        if self.slow.any_kept() {
            for (took, request) in self.slow.take() {
                direct.log_slow(took, &request);
            }
        }
        let mut places = self.places.borrow_mut();
        if places.is_empty() || places.len() > direct::MAX_REPLIES {
            return false;
        }
        let written = direct.write(
            places
                .iter()
                .map(|place| place.reply.as_deref().unwrap_or_default()),
        );
        let Some(mut written) = written else {
            return false;
        };
        let stats = direct.stats();
        stats.client_wrote(written);
        self.unwritten
            .set(self.unwritten.get().saturating_sub(written));
        while let Some(front) = places.front_mut() {
            let Some(reply) = front.reply.as_mut() else {
                break;
            };
            let error = matches!(reply.first(), Some(b'-' | b'!'));
            if written < reply.len() {
                if written > 0 {
                    // Its rest goes through the session, its error counted here.
                    if error {
                        stats.commands_by().error(usize::from(front.command));
                    }
                    front.command = u16::MAX;
                    *reply = reply.slice(written..);
                }
                break;
            }
            if error {
                stats.commands_by().error(usize::from(front.command));
            }
            written -= reply.len();
            places.pop_front();
            self.base.set(self.base.get() + 1);
        }
        let left = places.len();
        self.ready_len.set(left);
        drop(places);
        let mut clock = self.clock.borrow_mut();
        match arrived {
            Some(now) => clock.written_at(left, stats, now),
            None => clock.written(left, stats),
        }
        left == 0
    }

    /// Let replies be written to the client's socket `fd` by the task that receives them
    /// while the session is parked ([`ReplyQueue::arm_direct`]); for plaintext TCP clients.
    /// Counted as worker `worker`'s in `stats`; slow requests answered there logged by
    /// `log_slow` before their replies are written.
    pub fn write_directly_to(
        &self,
        fd: std::os::fd::RawFd,
        stats: Arc<crate::stats::ProxyStats>,
        worker: usize,
        log_slow: SlowLogger,
    ) {
        let _ = self
            .direct
            .set(direct::DirectWrite::new(fd, stats, worker, log_slow));
    }

    /// The session parks with nothing of its own to write and may read (`true`), or runs
    /// again (`false`): replies are written from where they arrive only in between.
    #[inline]
    pub fn arm_direct(&self, armed: bool) {
        if let Some(direct) = self.direct.get() {
            direct.set_armed(armed);
        }
    }

    /// `count` requests were read at `at` (the reply latency's start).
    #[inline]
    pub fn clock_read(&self, at: Instant, count: u64) {
        self.clock.borrow_mut().read(at, count);
    }

    /// Replies were written by the session: record the latency of those answered.
    #[inline]
    pub fn clock_written(&self, stats: &crate::stats::WorkerStats) {
        self.clock.borrow_mut().written(self.outstanding(), stats);
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
        self.hold.release();
    }

    /// The requests of one read have all been dispatched: hold their replies until the last
    /// of them is in (see [`ReplyQueue::holding`]). Call once per read that dispatched more
    /// than one request.
    pub fn end_batch(&self) {
        self.hold
            .end_batch(self.next_seq(), self.ready_through(), self.base.get());
    }

    /// Whether the ready front should wait: a reply of the oldest read not yet written through
    /// is still owed, and fewer than `HOLD_LIMIT` bytes are waiting.
    #[inline]
    pub fn holding(&self) -> bool {
        self.hold
            .holding(self.base.get(), self.ready_through(), self.unwritten.get())
    }

    /// The sequence number after the last ready place of the front.
    #[inline]
    fn ready_through(&self) -> u64 {
        self.base.get() + self.ready_len.get() as u64
    }

    /// Whether slow requests were kept since the last [`ReplyQueue::take_slow`].
    #[inline(always)]
    pub fn kept_slow(&self) -> bool {
        self.slow.any_kept()
    }

    /// The slow requests answered since the last call (how long each took, its bytes); check
    /// [`ReplyQueue::kept_slow`] first, which is cheaper.
    pub fn take_slow(&self) -> Vec<(Duration, Bytes)> {
        self.slow.take()
    }

    /// Queue a message nobody asked for (pub/sub) unless that breaks `limit`; then cut the
    /// client off instead ([`ReplyQueue::cut_off`] resolves) and drop what else comes.
    pub fn push_message(&self, message: Bytes, limit: &OutputLimit) {
        if self
            .output
            .admit(self.unwritten.get() + message.len(), limit)
        {
            self.push_ready(message);
        }
    }

    /// Resolves when pushed messages broke the client's output limit.
    pub async fn cut_off(&self) -> Overflow {
        self.output.cut_off().await
    }

    /// [`ReplyQueue::cut_off`] as a poll.
    #[inline]
    pub fn poll_cut_off(&self, cx: &mut Context<'_>) -> Poll<Overflow> {
        self.output.poll_cut_off(cx)
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
        self.base.get() + self.places.borrow().len() as u64
    }

    /// Tag the places reserved or filled from now on with command index `index`
    /// ([`crate::command::stat_index`]): the session sets it before dispatching each request.
    #[inline]
    pub fn set_command(&self, index: usize) {
        self.command.set(u16::try_from(index).unwrap_or(u16::MAX));
    }

    /// The slow log's threshold, as it is now (the session sets it once per read: `CONFIG
    /// SET slowlog-log-slower-than` applies from a session's next read).
    #[inline]
    pub fn set_slow_threshold(&self, threshold: Option<Duration>) {
        self.slow.set_threshold(threshold);
    }

    /// Stamp the places reserved or filled from now on with read time `at` (the session sets
    /// it once per read).
    #[inline]
    pub fn set_read_at(&self, at: Instant) {
        self.slow.set_read_at(at);
    }

    /// Take the next reply, with the command index its place was tagged with, if the front
    /// one has arrived. Its bytes still count as unwritten until [`ReplyQueue::written`].
    #[inline]
    pub fn pop_ready(&self) -> Option<(Bytes, usize)> {
        let mut places = self.places.borrow_mut();
        let front = places.front_mut()?;
        let reply = front.reply.take()?;
        let command = usize::from(front.command);
        places.pop_front();
        self.base.set(self.base.get() + 1);
        self.ready_len.set(self.ready_len.get().saturating_sub(1));
        Some((reply, command))
    }

    /// Requests whose replies have not yet been taken.
    pub fn outstanding(&self) -> usize {
        self.places.borrow().len()
    }

    /// Wait until the front reply may have arrived.
    pub async fn wait_ready(&self) {
        self.ready.wait().await
    }

    /// [`ReplyQueue::wait_ready`] as a poll.
    #[inline]
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.ready.poll_wait(cx)
    }

    /// The client is gone: drop queued replies and any that arrive later.
    pub fn close(&self) {
        self.arm_direct(false);
        self.closed.set(true);
        self.places.borrow_mut().clear();
        self.ready_len.set(0);
        self.hold.release();
        self.unwritten.set(0);
    }
}

#[cfg(test)]
mod tests;
