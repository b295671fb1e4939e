//! Replies written by the task that received them. While a plaintext client's session waits
//! for its next request with nothing of its own to write, a reply that leaves nothing owed is
//! written to the client's socket by the backend connection that delivered it, in the same
//! turn, instead of waking the session to write it: at pipeline 1 a request then costs one
//! session poll (its read) instead of two, and the session's memory is not touched again.
//!
//! The session arms it each time it parks (its write buffer empty, every ready reply written,
//! reading allowed: see `Session::run`) and disarms it when it runs again, so a reply written
//! here never overtakes one the session is writing. A slow request is logged here first, as
//! the session would before writing its reply. Anything unusual goes back to the session: a
//! reply that would block, a partial write's rest, a write error.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::stats::{ProxyStats, WorkerStats};

/// The most replies written in one system call here; more go through the session.
pub(super) const MAX_REPLIES: usize = 32;

/// Logs one of the session's slow requests (how long it took, its bytes) in the slow log.
pub type SlowLogger = Box<dyn Fn(Duration, &Bytes)>;

/// A plaintext client's socket, for writing replies to it from the task that received them.
pub(super) struct DirectWrite {
    /// The client's socket; open as long as the session's queue is (the session closes the
    /// queue before it drops its stream).
    fd: RawFd,
    /// The session is parked and may be written for.
    armed: Cell<bool>,
    /// The proxy's statistics, and the index of the worker counted.
    stats: Arc<ProxyStats>,
    worker: usize,
    /// Logs the session's slow requests.
    log_slow: SlowLogger,
}

impl std::fmt::Debug for DirectWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWrite")
            .field("fd", &self.fd)
            .field("armed", &self.armed.get())
            .finish()
    }
}

impl DirectWrite {
    /// Writes to `fd`, counted as worker `worker`'s in `stats`, slow requests logged by
    /// `log_slow`; disarmed.
    pub(super) fn new(
        fd: RawFd,
        stats: Arc<ProxyStats>,
        worker: usize,
        log_slow: SlowLogger,
    ) -> DirectWrite {
        DirectWrite {
            fd,
            armed: Cell::new(false),
            stats,
            worker,
            log_slow,
        }
    }

    /// Log a slow request of the session.
    pub(super) fn log_slow(&self, took: Duration, request: &Bytes) {
        (self.log_slow)(took, request);
    }

    /// Whether the session is parked and replies may be written here.
    #[inline]
    pub(super) fn armed(&self) -> bool {
        self.armed.get()
    }

    /// Arm (the session parks) or disarm (it runs, or its socket is going away).
    #[inline]
    pub(super) fn set_armed(&self, armed: bool) {
        self.armed.set(armed);
    }

    /// The worker's statistics, for the bytes and errors written here.
    #[inline]
    pub(super) fn stats(&self) -> &WorkerStats {
        self.stats.worker(self.worker)
    }

    /// Write `replies` in one non-blocking system call: the bytes written (maybe fewer than
    /// all), or `None` when none could be (the socket's buffer is full, or it failed: the
    /// session finds out on its own write).
    pub(super) fn write(&self, replies: &[&[u8]]) -> Option<usize> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_REPLIES];
        let count = replies.len().min(MAX_REPLIES);
        for (slot, reply) in iov.iter_mut().zip(replies) {
            slot.iov_base = reply.as_ptr() as *mut libc::c_void;
            slot.iov_len = reply.len();
        }
        // SAFETY: an all-zero msghdr is valid (no name, no control data); `iov` lives across
        // the call and its first `count` entries point into `replies`, which outlive it.
        let written = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        usize::try_from(written).ok().filter(|&n| n > 0)
    }
}
