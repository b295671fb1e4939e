//! `CLIENT PAUSE` / `UNPAUSE`: the proxy holds its clients' commands for a while, as one Redis
//! holds its own (failovers and maintenance use it to stop writes), without asking any node.
//!
//! The state is one atomic word — the end of the pause in milliseconds since the proxy's
//! epoch and its mode — so a session's check per request is one relaxed load that finds it
//! zero when no pause was ever asked. Starting and ending a pause take a lock (rare) and wake
//! every held session on every worker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What a pause holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// `WRITE`: commands that may write (and EVAL, EVALSHA, FCALL, PUBLISH, PFCOUNT, WAIT
    /// and EXEC, which may), as Redis holds them.
    Write = 1,
    /// `ALL`: every command.
    All = 2,
}

/// The proxy-wide pause (one per proxy, in [`super::Ops`]).
#[derive(Debug)]
pub struct Pause {
    epoch: Instant,
    /// `end_ms << 2 | mode`: zero when no pause is in force or was ever asked.
    state: AtomicU64,
    /// Serialises the writers (PAUSE merges with the pause in force).
    change: Mutex<()>,
    /// Woken when a pause ends early (UNPAUSE) or changes.
    changed: Notify,
}

impl Default for Pause {
    fn default() -> Pause {
        Pause {
            epoch: Instant::now(),
            state: AtomicU64::new(0),
            changed: Notify::new(),
            change: Mutex::new(()),
        }
    }
}

impl Pause {
    /// Whether a pause may be in force: one relaxed load, for the request path. `true` may
    /// be a pause that already ended ([`Pause::holds`] decides).
    #[inline(always)]
    pub fn may_hold(&self) -> bool {
        self.state.load(Relaxed) != 0
    }

    /// The pause in force at `now`, and when it ends.
    pub fn current(&self, now: Instant) -> Option<(Mode, Instant)> {
        let state = self.state.load(Relaxed);
        let mode = match state & 3 {
            1 => Mode::Write,
            2 => Mode::All,
            _ => return None,
        };
        let end = self.epoch + Duration::from_millis(state >> 2);
        if now >= end {
            // Over: the request path is back to one load that finds zero (unless a new
            // pause was set meanwhile, which the exchange leaves alone).
            let _ = self.state.compare_exchange(state, 0, Relaxed, Relaxed);
            return None;
        }
        Some((mode, end))
    }

    /// Whether a command that writes (`writes`) or not is held at `now`.
    pub fn holds(&self, writes: bool, now: Instant) -> bool {
        match self.current(now) {
            Some((Mode::All, _)) => true,
            Some((Mode::Write, _)) => writes,
            None => false,
        }
    }

    /// `CLIENT PAUSE timeout mode`: merged with a pause in force as Redis merges them, the
    /// later end and the stricter mode.
    pub fn pause(&self, for_ms: u64, mode: Mode) {
        let _guard = self.change.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut end = now + Duration::from_millis(for_ms);
        let mut mode = mode;
        if let Some((old_mode, old_end)) = self.current(now) {
            end = end.max(old_end);
            mode = mode.max(old_mode);
        }
        // Rounded up, so the pause never ends before the asked time; at least 1 ms, so the
        // word is never zero while a pause is in force.
        let ms = end
            .duration_since(self.epoch)
            .as_micros()
            .div_ceil(1000)
            .max(1);
        let ms = u64::try_from(ms)
            .unwrap_or(u64::MAX >> 2)
            .min(u64::MAX >> 2);
        self.state.store(ms << 2 | mode as u64, Relaxed);
        self.changed.notify_waiters();
    }

    /// `CLIENT UNPAUSE`: ends a pause at once and wakes every held client.
    pub fn unpause(&self) {
        let _guard = self.change.lock().unwrap_or_else(|e| e.into_inner());
        self.state.store(0, Relaxed);
        self.changed.notify_waiters();
    }

    /// Resolves when a command that writes (`writes`) or not is no longer held: the pause
    /// ended, was lifted, or changed to a mode that lets it through.
    pub async fn released(&self, writes: bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the state is read: an UNPAUSE in between still wakes it.
            notified.as_mut().enable();
            let now = Instant::now();
            let Some((_, end)) = self.current(now).filter(|_| self.holds(writes, now)) else {
                return;
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(end.into()) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pause_holds_nothing() {
        let pause = Pause::default();
        assert!(!pause.may_hold());
        assert!(!pause.holds(true, Instant::now()));
    }

    #[test]
    fn write_pause_holds_writes_only_until_its_end() {
        let pause = Pause::default();
        pause.pause(10_000, Mode::Write);
        let now = Instant::now();
        assert!(pause.may_hold());
        assert!(pause.holds(true, now));
        assert!(!pause.holds(false, now));
        assert!(!pause.holds(true, now + Duration::from_secs(11)));
    }

    #[test]
    fn pauses_merge_to_the_later_end_and_the_stricter_mode() {
        let pause = Pause::default();
        pause.pause(10_000, Mode::All);
        pause.pause(1, Mode::Write);
        let (mode, end) = pause.current(Instant::now()).unwrap();
        assert_eq!(mode, Mode::All);
        assert!(end > Instant::now() + Duration::from_secs(9));
        pause.unpause();
        assert!(pause.current(Instant::now()).is_none());
        assert!(!pause.may_hold());
    }

    #[tokio::test]
    async fn unpause_releases_a_held_command() {
        let pause = std::sync::Arc::new(Pause::default());
        pause.pause(60_000, Mode::All);
        let held = tokio::spawn({
            let pause = std::sync::Arc::clone(&pause);
            async move { pause.released(false).await }
        });
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        pause.unpause();
        tokio::time::timeout(Duration::from_secs(5), held)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test]
    async fn a_pause_ends_by_itself() {
        let pause = Pause::default();
        pause.pause(30, Mode::Write);
        let start = Instant::now();
        pause.released(true).await;
        assert!(start.elapsed() >= Duration::from_millis(29));
        pause.released(true).await;
    }
}
