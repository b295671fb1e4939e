//! Per-client resource limits: what one client may make the proxy hold, and for how long.
//!
//! ```text
//!  client ──requests──► read only while  pending = request bytes unanswered + reply bytes unwritten
//!                                         < proxy.max_pending_bytes       (InFlight + ReplyQueue)
//!  client ◄──replies──  written even while reading is stopped; a subscriber whose unwritten output
//!                       crosses its hard limit, or its soft limit for too long, is cut off (OutputLimit)
//!  idle client ──────── closed after proxy.client_idle_timeout_ms with nothing owed (IdleTimer)
//! ```
//!
//! The request size limit (`proxy.max_request_bytes`) lives in the decoder
//! ([`Limits::max_request_len`](crate::resp::Limits)), which refuses a request from its headers
//! before its data is buffered; the session then closes the client gently ([`linger`]).
//!
//! Costs on the request path: a few integer updates per read and per write turn. The idle
//! timer is one `Sleep` per session, re-armed only when it fires, never per request.

use std::cell::Cell;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::config::ProxyConfig;

/// How long a client closed for a protocol error (an oversized request …) has to read the
/// error: meanwhile its input is read and discarded, so closing does not reset the connection
/// (and destroy the unread error) while it is still sending.
const LINGER: Duration = Duration::from_secs(2);

/// The per-client limits of `[proxy]`, as each worker applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Request bytes unanswered plus reply bytes unwritten beyond which a client is not read.
    pub max_pending_bytes: usize,
    /// Close a client idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Output limits of subscribed clients.
    pub pubsub_output: OutputLimit,
    /// Longest a ready reply waits for the rest of its read (`None`: it does not wait).
    pub reply_hold: Option<Duration>,
}

impl ClientLimits {
    /// The limits `proxy` configures.
    pub fn from_config(proxy: &ProxyConfig) -> ClientLimits {
        ClientLimits {
            max_pending_bytes: proxy.max_pending_bytes,
            idle_timeout: (proxy.client_idle_timeout_ms > 0)
                .then(|| Duration::from_millis(proxy.client_idle_timeout_ms)),
            pubsub_output: OutputLimit {
                hard: proxy.pubsub_output_hard_limit_bytes,
                soft: proxy.pubsub_output_soft_limit_bytes,
                soft_for: Duration::from_millis(proxy.pubsub_output_soft_limit_ms),
            },
            reply_hold: (proxy.reply_hold_ms > 0)
                .then(|| Duration::from_millis(proxy.reply_hold_ms)),
        }
    }
}

/// Redis' `client-output-buffer-limit`: a hard limit, and a soft limit one may exceed for a
/// while. A limit of 0 is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimit {
    /// Unwritten bytes at which the client is cut off at once.
    pub hard: usize,
    /// Unwritten bytes the client may stay at or above for `soft_for` only.
    pub soft: usize,
    /// How long the soft limit may be exceeded.
    pub soft_for: Duration,
}

/// Why a client's output was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// Unwritten bytes when it happened.
    pub bytes: usize,
    /// The limit crossed.
    pub limit: usize,
    /// The soft limit (exceeded for too long) rather than the hard one.
    pub soft: bool,
}

impl OutputLimit {
    /// Whether `bytes` of unwritten output breaks the limit. `over_soft_since` remembers when
    /// the output went over the soft limit (cleared when it is back under); `now` is read only
    /// while over it.
    pub fn check(
        &self,
        bytes: usize,
        over_soft_since: &Cell<Option<Instant>>,
        now: impl FnOnce() -> Instant,
    ) -> Option<Overflow> {
        if self.hard > 0 && bytes >= self.hard {
            return Some(Overflow {
                bytes,
                limit: self.hard,
                soft: false,
            });
        }
        if self.soft == 0 || bytes < self.soft {
            over_soft_since.set(None);
            return None;
        }
        let now = now();
        let since = over_soft_since.get().unwrap_or(now);
        over_soft_since.set(Some(since));
        (now.duration_since(since) >= self.soft_for).then_some(Overflow {
            bytes,
            limit: self.soft,
            soft: true,
        })
    }
}

/// Bytes of requests dispatched whose replies have not all been written yet, kept per read
/// batch (not per request): a batch is released once the reply queue's front has passed the
/// last reply place it took.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// (reply sequence number after the batch, its request bytes), oldest first.
    batches: crate::fifo::Fifo<(u64, usize)>,
    bytes: usize,
}

impl InFlight {
    /// A batch of `bytes` of requests was dispatched; its replies take places before `end`.
    pub(super) fn dispatched(&mut self, end: u64, bytes: usize) {
        if bytes > 0 {
            self.batches.push_back((end, bytes));
            self.bytes += bytes;
        }
    }

    /// Every reply before sequence number `front` has been taken from the queue.
    pub(super) fn answered(&mut self, front: u64) {
        while let Some(&(end, bytes)) = self.batches.front() {
            if end > front {
                break;
            }
            self.bytes -= bytes;
            self.batches.pop_front();
        }
    }

    /// Request bytes still waiting for replies.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// `proxy.client_idle_timeout_ms` for one session: the time of the client's last read, and a
/// sleep armed for when it would be idle long enough. Reads only store the time; the sleep is
/// re-armed when it fires, so an active client costs one timer wake-up per timeout period.
pub(super) struct IdleTimer {
    timeout: Duration,
    last_read: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    /// A timer for `timeout`, or `None` when idle clients are kept.
    pub(super) fn new(timeout: Option<Duration>) -> Option<IdleTimer> {
        let timeout = timeout?;
        let now = Instant::now();
        Some(IdleTimer {
            timeout,
            last_read: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        })
    }

    /// Ready when the timer went off: then see [`IdleTimer::expired`].
    #[inline]
    pub(super) fn poll_fired(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::future::Future::poll(self.sleep.as_mut(), cx)
    }

    /// The client was heard from (or answered, after a blocking command) at `at`.
    #[inline]
    pub(super) fn touch(&mut self, at: Instant) {
        self.last_read = at;
    }

    /// After [`IdleTimer::poll_fired`]: true if the client has been idle for the timeout and
    /// `may_close` (it is owed nothing, not subscribed); otherwise the timer is re-armed.
    pub(super) fn expired(&mut self, may_close: bool) -> bool {
        let now = Instant::now();
        let due = self.last_read + self.timeout;
        if may_close && now >= due {
            return true;
        }
        // Busy or subscribed: look again a whole timeout later.
        let next = if due > now { due } else { now + self.timeout };
        self.sleep.as_mut().reset(next);
        false
    }
}

/// Close a client after a protocol error without destroying the error reply: shut down our
/// sending side, then read and discard what the client still sends, until it closes or
/// [`LINGER`] has passed. (Closing a socket with unread input sends a reset, which can discard
/// the reply before the client reads it.)
pub(super) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let discard = async {
        stream.shutdown().await?;
        let mut sink = vec![0u8; 64 * 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_bytes_are_released_per_batch() {
        let mut f = InFlight::default();
        f.dispatched(3, 300); // replies 0..3
        f.dispatched(3, 0); // nothing read: no batch
        f.dispatched(5, 50); // replies 3..5
        assert_eq!(f.bytes(), 350);
        f.answered(2);
        assert_eq!(f.bytes(), 350, "the first batch still owes reply 2");
        f.answered(3);
        assert_eq!(f.bytes(), 50);
        f.answered(9);
        assert_eq!(f.bytes(), 0);
    }

    #[test]
    fn output_limits_follow_redis() {
        let limit = OutputLimit {
            hard: 100,
            soft: 10,
            soft_for: Duration::from_secs(60),
        };
        let since = Cell::new(None);
        let t0 = Instant::now();
        assert_eq!(limit.check(9, &since, || t0), None);
        assert_eq!(since.get(), None);
        // Over the soft limit: allowed for 60 s from the first time.
        assert_eq!(limit.check(10, &since, || t0), None);
        assert_eq!(since.get(), Some(t0));
        let later = t0 + Duration::from_secs(59);
        assert_eq!(limit.check(50, &since, || later), None);
        let late = t0 + Duration::from_secs(60);
        assert_eq!(
            limit.check(11, &since, || late),
            Some(Overflow {
                bytes: 11,
                limit: 10,
                soft: true
            })
        );
        // Back under it: the clock starts again.
        assert_eq!(limit.check(3, &since, || late), None);
        assert_eq!(since.get(), None);
        assert_eq!(limit.check(20, &since, || late), None);
        // The hard limit needs no time.
        assert_eq!(
            limit.check(100, &since, || late),
            Some(Overflow {
                bytes: 100,
                limit: 100,
                soft: false
            })
        );
        let off = OutputLimit {
            hard: 0,
            soft: 0,
            soft_for: Duration::ZERO,
        };
        assert_eq!(off.check(usize::MAX, &since, || late), None);
    }

    /// Resolves when `timer`'s sleep has run out (as the session's wait sees it).
    async fn fired(timer: &mut Option<IdleTimer>) {
        let timer = timer.as_mut().expect("a timer");
        std::future::poll_fn(|cx| timer.poll_fired(cx)).await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn idle_timer_fires_once_per_period_and_rearms() {
        let mut timer = IdleTimer::new(Some(Duration::from_secs(10)));
        assert!(IdleTimer::new(None).is_none());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        if let Some(t) = timer.as_mut() {
            t.touch(Instant::now()); // read at 4 s
        }
        fired(&mut timer).await; // armed for 10 s
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        let t = timer.as_mut().unwrap();
        assert!(!t.expired(true), "read at 4 s: idle only at 14 s");
        fired(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(14));
        let t = timer.as_mut().unwrap();
        assert!(!t.expired(false), "owed a reply: not idle");
        fired(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(24));
        assert!(timer.as_mut().unwrap().expired(true));
    }
}
