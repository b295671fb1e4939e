//! The old process's side of an upgrade: a thread (`slotgate-upgrade`) listening on
//! `proxy.upgrade_socket` for a successor, then handing it the listeners and the sessions.
//!
//! Blocking I/O on a thread of its own: the protocol is a handful of messages per client,
//! once per upgrade, and never meets the request path. What it touches of the running proxy:
//! the `handing` watch (the accept loop pauses, each worker raises its sessions' move
//! signal), the [`Outbox`] sessions send themselves through, the drain watch (sessions that
//! could not move in `proxy.upgrade_timeout_ms` are closed at a request boundary) and the
//! client count.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::wire::{self, Receiver};
use super::{Event, Message, Outbox, VERSION};
use crate::stats::ProxyStats;

/// How long a connected successor may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the successor may take from the listeners to `Ready`, beyond its
/// `cluster.startup_wait_ms` (it starts its threads and checks the cluster once more).
const READY_GRACE: Duration = Duration::from_secs(30);
/// How often the hand-over loop looks at the client count and the clock.
const TICK: Duration = Duration::from_millis(20);

/// Everything the old process's side needs; built by `Proxy::start`.
pub struct Giver {
    /// `proxy.upgrade_socket`.
    pub path: PathBuf,
    /// Duplicates of the client listeners: plaintext, TLS.
    pub plain: Option<std::net::TcpListener>,
    /// The TLS listener's duplicate.
    pub tls: Option<std::net::TcpListener>,
    /// The admin listener's duplicate (the successor's admin serves on the same port).
    pub admin: Option<std::net::TcpListener>,
    /// Where sessions send themselves.
    pub outbox: Arc<Outbox>,
    /// The outbox's other end (taken by the thread).
    pub events: Mutex<Option<std::sync::mpsc::Receiver<Event>>>,
    /// True while handing over: the accept loop pauses, the workers tell their sessions.
    pub handing: Arc<watch::Sender<bool>>,
    /// The proxy's drain signal (for sessions that did not move in time).
    pub drain: Arc<watch::Sender<bool>>,
    /// Client count.
    pub stats: Arc<ProxyStats>,
    /// `proxy.upgrade_timeout_ms`.
    pub timeout: Duration,
    /// `proxy.drain_timeout_ms`: after the timeout, how long sessions have to reach a
    /// boundary before the process exits anyway.
    pub drain_timeout: Duration,
    /// `cluster.startup_wait_ms` (the successor's second look at the cluster).
    pub startup_wait: Duration,
    /// Set to the successor's pid when the hand-over is done: the process exits (or, as a
    /// container's PID 1, stays to wait for it).
    pub done: watch::Sender<Option<u32>>,
}

/// How a successor's attempt ended.
enum Outcome {
    /// Every client handed over or closed (to the successor with this pid).
    Done(u32),
    /// Nothing was handed over: the proxy goes on as before.
    Untouched(String),
    /// Broken after `Ready`: the proxy accepts again and keeps the clients it still has.
    Broken(String),
}

impl Giver {
    /// Bind the upgrade socket and start the thread that waits for a successor. `replace`:
    /// take the path even from a live listener (a successor replacing its predecessor, which
    /// is about to exit).
    pub fn start(self: Arc<Self>, replace: bool) -> io::Result<()> {
        let listener = bind(&self.path, replace)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        tracing::info!(socket = %self.path.display(), "upgrade socket ready (slotgate --take-over)");
        std::thread::Builder::new()
            .name("slotgate-upgrade".into())
            .spawn(move || self.run(listener))?;
        Ok(())
    }

    fn run(&self, listener: UnixListener) {
        let Some(events) = self.events.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("upgrade socket: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            match self.hand_over(stream, &events) {
                Outcome::Done(successor) => {
                    let _ = self.done.send(Some(successor));
                    return;
                }
                Outcome::Untouched(why) => tracing::error!(
                    "upgrade: take-over failed before the hand-over: {why}; this process keeps \
                     serving, untouched"
                ),
                Outcome::Broken(why) => {
                    self.outbox.set_active(false);
                    let _ = self.handing.send(false);
                    let stale = drop_stale(&events);
                    tracing::error!(
                        stale,
                        "upgrade: the hand-over broke: {why}; this process accepts clients \
                         again and keeps those it still has (closed: those on their way)"
                    );
                }
            }
        }
    }

    /// One successor, from `Hello` to `Done`.
    fn hand_over(&self, stream: UnixStream, events: &std::sync::mpsc::Receiver<Event>) -> Outcome {
        if let Err(why) = same_user(&stream) {
            return Outcome::Untouched(why);
        }
        let reader = match stream.try_clone() {
            Ok(reader) => reader,
            Err(e) => return Outcome::Untouched(e.to_string()),
        };
        let mut rx = Receiver::new(reader);
        let pid = match self.pass_listeners(&stream, &mut rx) {
            Ok(pid) => pid,
            Err(why) => return Outcome::Untouched(why),
        };
        // Committed: the successor serves on the listeners.
        let clients = self.stats.clients();
        tracing::info!(
            successor = pid,
            clients,
            "upgrade: listeners passed, successor serving; handing over the clients"
        );
        self.outbox.set_active(true);
        let _ = self.handing.send(true);
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let listen = {
            let (pending, broken) = (Arc::clone(&pending), Arc::clone(&broken));
            std::thread::Builder::new()
                .name("slotgate-upgrade-rx".into())
                .spawn(move || read_subscribed(rx, &pending, &broken))
        };
        if let Err(e) = listen {
            return Outcome::Broken(e.to_string());
        }
        let started = Instant::now();
        let mut handed = 0u64;
        let mut draining = false;
        let mut pending_event = None;
        loop {
            let next = match pending_event.take() {
                Some(event) => Ok(event),
                None => events.recv_timeout(TICK),
            };
            match next {
                Ok(Event::Move(out)) => {
                    let message = Message::Session {
                        token: out.token,
                        state: out.state,
                    };
                    if let Some(subscribed) = out.subscribed {
                        lock(&pending).insert(out.token, subscribed);
                    }
                    let sent = wire::send(&stream, &message.encode(), &[out.stream.as_raw_fd()]);
                    // Our copy closes here; the successor's stays open.
                    drop(out.stream);
                    if let Err(e) = sent {
                        return Outcome::Broken(format!("cannot send a client: {e}"));
                    }
                    handed += 1;
                }
                Ok(Event::Released(token)) => {
                    let message = Message::Released { token };
                    if let Err(e) = wire::send(&stream, &message.encode(), &[]) {
                        return Outcome::Broken(format!("cannot release a subscriber: {e}"));
                    }
                }
                Err(_) => {}
            }
            if broken.load(Ordering::Acquire) {
                return Outcome::Broken("the successor closed the upgrade connection".into());
            }
            let left = self.stats.clients();
            if left == 0 {
                // The last session sent itself just before it left the count: take what is
                // still on its way first (a tick's grace: the count is not ordered with the
                // channel).
                match events.recv_timeout(TICK) {
                    Ok(event) => {
                        pending_event = Some(event);
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let elapsed = started.elapsed();
            if !draining && elapsed >= self.timeout {
                draining = true;
                tracing::warn!(
                    left,
                    "upgrade: clients that could not move within proxy.upgrade_timeout_ms are \
                     closed at a request boundary"
                );
                let _ = self.drain.send(true);
            }
            if elapsed >= self.timeout + self.drain_timeout {
                tracing::warn!(left, "upgrade: closing the clients still not at a boundary");
                break;
            }
        }
        let closed = clients.saturating_sub(handed);
        tracing::info!(
            handed,
            closed,
            "upgrade: done: {handed} clients handed over, {closed} closed; exiting"
        );
        let _ = wire::send(&stream, &Message::Done { handed, closed }.encode(), &[]);
        Outcome::Done(pid)
    }

    /// `Hello` → `Listeners` → `Ready`; the successor's pid, or why not.
    fn pass_listeners(&self, stream: &UnixStream, rx: &mut Receiver) -> Result<u32, String> {
        let _ = rx.stream().set_read_timeout(Some(HELLO_TIMEOUT));
        let pid = match receive(rx)? {
            Message::Hello { version, pid } if version == VERSION => pid,
            Message::Hello { version, pid } => {
                let reason = format!("protocol version {version}, this process speaks {VERSION}");
                let _ = wire::send(
                    stream,
                    &Message::Refused {
                        reason: reason.clone(),
                    }
                    .encode(),
                    &[],
                );
                return Err(format!("successor pid {pid}: {reason}"));
            }
            other => return Err(format!("expected hello, got {other:?}")),
        };
        let addr = |l: &Option<std::net::TcpListener>| {
            l.as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.to_string())
        };
        let fds: Vec<_> = [&self.plain, &self.tls, &self.admin]
            .into_iter()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect();
        let listeners = Message::Listeners {
            version: VERSION,
            plain: addr(&self.plain),
            tls: addr(&self.tls),
            admin: addr(&self.admin),
        };
        wire::send(stream, &listeners.encode(), &fds)
            .map_err(|e| format!("cannot send the listeners: {e}"))?;
        tracing::info!(
            successor = pid,
            "upgrade: successor connected; listening sockets passed, waiting for it to be ready"
        );
        let _ = rx
            .stream()
            .set_read_timeout(Some(self.startup_wait + READY_GRACE));
        match receive(rx)? {
            Message::Ready => {
                let _ = rx.stream().set_read_timeout(None);
                Ok(pid)
            }
            other => Err(format!("expected ready, got {other:?}")),
        }
    }
}

/// Sessions that sent themselves after the successor was lost: closed (their socket dropped),
/// not left waiting for a later successor. Returns how many.
fn drop_stale(events: &std::sync::mpsc::Receiver<Event>) -> usize {
    // Sessions that saw the hand-over active just before it broke may still be sending.
    std::thread::sleep(TICK);
    events
        .try_iter()
        .filter(|e| matches!(e, Event::Move(_)))
        .count()
}

/// Only a process of this process's user (or root) may take it over: the socket file's mode
/// says so too, this checks the peer itself (`SO_PEERCRED`).
fn same_user(stream: &UnixStream) -> Result<(), String> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket, a pointer to `cred` and its size.
    let status = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if status != 0 {
        return Err(format!("peer credentials: {}", io::Error::last_os_error()));
    }
    // SAFETY: getuid cannot fail.
    let own = unsafe { libc::getuid() };
    if cred.uid == own || cred.uid == 0 {
        Ok(())
    } else {
        Err(format!(
            "refused a successor of user {} (pid {}): only user {own} or root may take over",
            cred.uid, cred.pid
        ))
    }
}

/// The next message; an error names what happened (the successor exited, timed out …).
fn receive(rx: &mut Receiver) -> Result<Message, String> {
    match rx.recv() {
        Ok(Some(frame)) => Message::decode(&frame.body),
        Ok(None) => Err("the successor closed the connection (did it fail to start?)".into()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            Err("the successor did not answer in time".into())
        }
        Err(e) => Err(format!("upgrade connection: {e}")),
    }
}

/// The successor's `Subscribed` messages, each releasing its session's wait, until the
/// connection ends (then `broken` is set and every wait is dropped).
fn read_subscribed(
    mut rx: Receiver,
    pending: &Mutex<HashMap<u64, oneshot::Sender<()>>>,
    broken: &AtomicBool,
) {
    while let Ok(Some(frame)) = rx.recv() {
        if let Ok(Message::Subscribed { token }) = Message::decode(&frame.body) {
            if let Some(tx) = lock(pending).remove(&token) {
                let _ = tx.send(());
            }
        }
    }
    broken.store(true, Ordering::Release);
    lock(pending).clear();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bind the upgrade socket at `path`, owner-only. A file left by a process that is gone is
/// replaced; one a live process listens on is an error (two instances configured alike)
/// unless `replace`.
pub fn bind(path: &Path, replace: bool) -> io::Result<UnixListener> {
    if !replace && UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "upgrade socket {} is in use by a running process",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_the_same_user_is_accepted() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(same_user(&a), Ok(()));
    }

    #[test]
    fn a_live_socket_is_not_taken_unless_replacing() {
        let path = std::env::temp_dir().join(format!("slotgate-giver-{}.sock", std::process::id()));
        let first = bind(&path, false).unwrap();
        let err = bind(&path, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = bind(&path, true).unwrap();
        drop((first, second));
        // A file left by a process that is gone is replaced.
        bind(&path, false).unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
