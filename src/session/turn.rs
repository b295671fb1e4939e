//! What ends a parked session's wait, polled in one place.
//!
//! A session parks between turns of its loop until one of several things happens: it is
//! killed, a reply is ready, the write hold is over, the client sent more, CLIENT PAUSE let a
//! held request through, the drain began, a subscriber broke its output limit, or the idle
//! timer went off. [`Waits`] polls them in that order (the first one ready wins) and costs
//! nothing for a source that is off this turn: no future is built for it, nothing of it is
//! dropped after. With thousands of clients each turn's memory is what a request pays in
//! cache misses, so a wait is a handful of flag tests and waker checks on the session's own
//! state.
//!
//! Fairness between sessions comes from the read: a socket read spends the task's tokio budget
//! and answers `Pending` (the task rescheduled) once it is spent, so a client that always has
//! more to send yields like any other task. The other sources are one-shot signals.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Sleep;

use crate::ops::clients::Killed;
use crate::wake::LocalSignal;

use super::limits::{IdleTimer, Overflow};
use super::ReplyQueue;

/// What ended the wait.
#[derive(Debug)]
pub(super) enum Turn {
    /// CLIENT KILL (from any client, on any worker).
    Killed,
    /// The reply at the front may be in.
    Ready,
    /// The ready replies were held back long enough for the rest of their read.
    HoldOver,
    /// The client sent bytes (`Ok(0)`: it closed its side), or reading failed; `room` is
    /// how much the read could have taken.
    Read {
        read: io::Result<usize>,
        room: usize,
    },
    /// CLIENT PAUSE no longer holds the held request.
    Released,
    /// Graceful shutdown began, or an upgrade's hand-over.
    Drain,
    /// A subscriber's pushed messages broke its output limit.
    CutOff(Overflow),
    /// The idle timer went off: see [`IdleTimer::expired`].
    Idle,
}

/// The sources one wait listens to; `None` (or `false`) for those that are off this turn.
pub(super) struct Waits<'a, S> {
    pub killed: Killed<'a>,
    pub queue: &'a ReplyQueue,
    pub hold: Option<Pin<&'a mut Sleep>>,
    pub read: Option<Read<'a, S>>,
    pub released: Option<Pin<&'a mut dyn Future<Output = ()>>>,
    pub drain: Option<&'a LocalSignal>,
    pub subscriber: bool,
    pub idle: Option<&'a mut IdleTimer>,
}

/// The client read of a wait: the stream, the session's read buffer, and the room a read
/// should have (`want`).
pub(super) struct Read<'a, S> {
    pub stream: &'a mut S,
    pub buf: &'a mut BytesMut,
    pub want: usize,
}

impl<S> Read<'_, S> {
    /// Makes room for the read, as cheaply as it can be made, and says how much there is.
    ///
    /// The requests of earlier reads were split off the buffer's front and share its memory
    /// until they are answered. Room is made when the wait is polled, which is mostly when the
    /// client has sent more: a client that waits for its replies (pipeline 1, or a pipeline
    /// sent a batch at a time) has dropped those requests by then, and the same memory is
    /// reused (`try_reclaim`) instead of a new buffer allocated for every read, and touched
    /// anew in the cache. A buffer still shared is replaced only when its spare room is
    /// under a quarter of `want`; above that the read takes what fits.
    fn make_room(&mut self) -> usize {
        let spare = self.buf.capacity() - self.buf.len();
        if spare >= self.want / 2 {
            return spare;
        }
        if !self.buf.try_reclaim(self.want) && spare < self.want / 4 {
            self.buf.reserve(self.want);
        }
        self.buf.capacity() - self.buf.len()
    }
}

impl<S: AsyncRead + Unpin> Future for Waits<'_, S> {
    type Output = Turn;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn> {
        // Every field is a reference or `Unpin`: the wait itself never needs pinning.
        let this = self.get_mut();
        if Pin::new(&mut this.killed).poll(cx).is_ready() {
            return Poll::Ready(Turn::Killed);
        }
        if this.queue.poll_ready(cx).is_ready() {
            return Poll::Ready(Turn::Ready);
        }
        if let Some(hold) = this.hold.as_mut() {
            if hold.as_mut().poll(cx).is_ready() {
                this.hold = None; // A Sleep that fired must not be polled again.
                return Poll::Ready(Turn::HoldOver);
            }
        }
        if let Some(read) = this.read.as_mut() {
            let room = read.make_room();
            let buf = &mut *read.buf;
            if let Poll::Ready(read) = std::pin::pin!(read.stream.read_buf(buf)).poll(cx) {
                return Poll::Ready(Turn::Read { read, room });
            }
        }
        if let Some(released) = this.released.as_mut() {
            if released.as_mut().poll(cx).is_ready() {
                this.released = None;
                return Poll::Ready(Turn::Released);
            }
        }
        if let Some(drain) = this.drain {
            if drain.poll_wait(cx).is_ready() {
                return Poll::Ready(Turn::Drain);
            }
        }
        if this.subscriber {
            if let Poll::Ready(overflow) = this.queue.poll_cut_off(cx) {
                return Poll::Ready(Turn::CutOff(overflow));
            }
        }
        if let Some(idle) = this.idle.as_mut() {
            if idle.poll_fired(cx).is_ready() {
                return Poll::Ready(Turn::Idle);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a read's room was made.
    #[derive(Debug, PartialEq)]
    enum Place {
        /// Where it was: after the bytes split off.
        Unchanged,
        /// The same allocation, from its start again.
        Reclaimed,
        /// A new allocation.
        New,
    }

    /// The room made for a read on a buffer of `capacity` whose first `taken` bytes were split
    /// off (and kept, as requests in flight, when `in_flight`), and where.
    fn room_after(capacity: usize, taken: usize, in_flight: bool, want: usize) -> (usize, Place) {
        let mut buf = BytesMut::with_capacity(capacity);
        let start = buf.as_ptr();
        buf.extend_from_slice(&vec![b'x'; taken]);
        let request = buf.split_to(taken).freeze();
        let after = buf.as_ptr();
        if !in_flight {
            drop(request);
        }
        let mut stream = tokio::io::empty();
        let mut read = Read {
            stream: &mut stream,
            buf: &mut buf,
            want,
        };
        let room = read.make_room();
        let place = match buf.as_ptr() {
            p if p == after => Place::Unchanged,
            p if p == start => Place::Reclaimed,
            _ => Place::New,
        };
        (room, place)
    }

    #[test]
    fn room_is_left_alone_while_there_is_enough() {
        assert_eq!(room_after(1024, 100, true, 1024), (924, Place::Unchanged));
    }

    #[test]
    fn answered_requests_give_their_memory_back_to_the_next_read() {
        assert_eq!(room_after(1024, 600, false, 1024), (1024, Place::Reclaimed));
    }

    #[test]
    fn requests_in_flight_keep_the_buffer_until_the_room_runs_low() {
        // A quarter of `want` or more: the read takes what fits, nothing is allocated.
        assert_eq!(room_after(1024, 600, true, 1024), (424, Place::Unchanged));
        // Under a quarter: a new buffer.
        let (room, place) = room_after(1024, 900, true, 1024);
        assert!(room >= 1024, "{room}");
        assert_eq!(place, Place::New);
    }
}
