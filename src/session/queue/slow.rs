//! The reply queue's slow-log timing: each place is stamped with the instant its reply turns
//! slow (read time + threshold), and a reply that comes in with its request is compared with
//! it then, while the request's bytes are at hand; only a slow one is kept.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Times one session's requests for the slow log.
#[derive(Debug, Default)]
#[repr(C)] // In this order: `kept` is touched only for a slow request.
pub(super) struct SlowTimer {
    /// Requests answered at least this long after they were read are slow (`None`: the slow
    /// log is off); the slow log's setting, taken at each read.
    threshold: Cell<Option<Duration>>,
    /// When a reply to the requests being read becomes slow: the read time plus the
    /// threshold; new places are stamped with it. `None`: never.
    slow_at: Cell<Option<Instant>>,
    /// `kept` is not empty: checked once per write turn without borrowing it.
    any_kept: Cell<bool>,
    /// Slow requests answered and not yet logged: how long each took, and its bytes.
    kept: RefCell<Vec<(Duration, Bytes)>>,
}

impl SlowTimer {
    /// A timer keeping requests answered at least `threshold` after their read (`None`: off).
    pub(super) fn new(threshold: Option<Duration>) -> SlowTimer {
        SlowTimer {
            threshold: Cell::new(threshold),
            ..SlowTimer::default()
        }
    }

    /// Whether it times requests at all.
    #[inline]
    pub(super) fn is_on(&self) -> bool {
        self.threshold.get().is_some()
    }

    /// The slow log's threshold changed (`CONFIG SET slowlog-log-slower-than`).
    #[inline]
    pub(super) fn set_threshold(&self, threshold: Option<Duration>) {
        self.threshold.set(threshold);
        if threshold.is_none() {
            self.slow_at.set(None);
        }
    }

    /// The requests read from now on were read at `at`.
    #[inline]
    pub(super) fn set_read_at(&self, at: Instant) {
        if let Some(threshold) = self.threshold.get() {
            self.slow_at.set(at.checked_add(threshold));
        }
    }

    /// The stamp for a new place: when its reply turns slow (`None`: never).
    #[inline]
    pub(super) fn stamp(&self) -> Option<Instant> {
        self.slow_at.get()
    }

    /// `request`, stamped `slow_at`, was answered at `now`: keep it if that is slow. One
    /// comparison per reply; the duration only for a slow one.
    #[inline]
    pub(super) fn check(&self, slow_at: Option<Instant>, request: &Bytes, now: Instant) {
        if let Some(slow_at) = slow_at {
            if now >= slow_at {
                self.keep(slow_at, request, now);
            }
        }
    }

    /// `request`, one of those being read, is answered now by the proxy itself.
    #[inline]
    pub(super) fn check_now(&self, request: &Bytes) {
        if self.slow_at.get().is_some() {
            self.check(self.slow_at.get(), request, Instant::now());
        }
    }

    #[cold]
    fn keep(&self, slow_at: Instant, request: &Bytes, now: Instant) {
        let threshold = self.threshold.get().unwrap_or_default();
        let took = threshold.saturating_add(now.saturating_duration_since(slow_at));
        self.kept.borrow_mut().push((took, request.clone()));
        self.any_kept.set(true);
    }

    /// Whether slow requests were kept since the last [`SlowTimer::take`].
    #[inline(always)]
    pub(super) fn any_kept(&self) -> bool {
        self.any_kept.get()
    }

    /// The slow requests kept since the last call.
    pub(super) fn take(&self) -> Vec<(Duration, Bytes)> {
        self.any_kept.set(false);
        std::mem::take(&mut *self.kept.borrow_mut())
    }
}
