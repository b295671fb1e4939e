//! A wake-up flag for tasks on one thread: the cheap, lock-free cousin of `tokio::sync::Notify`.
//!
//! Every request wakes somebody (a backend writer, a session waiting for its replies), so this
//! sits on the hot path. `Notify` takes a mutex on each call; within one worker thread a `Cell`
//! and a stored `Waker` suffice. Like `Notify::notify_one`, a signal raised while nobody waits
//! is kept until the next wait, so no wake-up is lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A single-waiter, single-thread wake-up flag. Not `Send`: it lives inside one worker.
#[derive(Default, Debug)]
pub struct LocalSignal {
    raised: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl LocalSignal {
    /// A lowered signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raise the signal and wake the waiting task, if any.
    #[inline]
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Wait until the signal is raised, then lower it.
    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self }
    }

    /// [`LocalSignal::wait`] as a poll: `Ready` (and lowered) if raised, else the task's
    /// waker is kept (cloned only when it is not the one kept already).
    #[inline]
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.replace(false) {
            return Poll::Ready(());
        }
        let mut waiter = self.waiter.borrow_mut();
        match waiter.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Future returned by [`LocalSignal::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    signal: &'a LocalSignal,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll_wait(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test(flavor = "current_thread")]
    async fn a_raise_before_wait_is_not_lost() {
        let s = LocalSignal::new();
        s.raise();
        s.wait().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn wakes_a_waiting_task() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let s = Rc::new(LocalSignal::new());
                let s2 = s.clone();
                let waiter = tokio::task::spawn_local(async move { s2.wait().await });
                tokio::task::yield_now().await;
                s.raise();
                waiter.await.unwrap();
            })
            .await;
    }
}
