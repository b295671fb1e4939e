//! Upgrade in place: a running slotgate hands its listening sockets, then each client
//! connection with its session's state, to a successor started with `slotgate --take-over`,
//! over the Unix socket `proxy.upgrade_socket`.
//!
//! ```text
//!  new process: config, start-up discovery ─┐
//!                                           │ connect ─► Hello{version, pid}
//!  old (giver thread) ◄─────────────────────┘
//!          Listeners + fds (plain, TLS) ─────────────────► new: workers, accept loop
//!          (old keeps accepting: the kernel accept queue is shared)      │ pid file
//!          ◄────────────────────────────────────────────────────── Ready │
//!  old: stops accepting; every session, at a request boundary:
//!          Session{token, state} + fd ───────────────────► new worker (round robin), fresh id
//!          subscriber: keeps forwarding ... ◄──── Subscribed{token} (new has subscribed)
//!          unsubscribes, forwards what is left, Released{token} ─► new starts writing
//!          Done{handed, closed} ─────────────────────────► new binds the upgrade socket
//!  old exits 0 (as PID 1: waits for the successor, passing it signals)
//! ```
//!
//! Anything that fails before `Ready` leaves the old process as it was (it says so in a log
//! line) and makes the new one exit non-zero. If the connection breaks after `Ready` (the new
//! process died), the old one accepts again and keeps the clients it still holds.
//!
//! Rooms: [`wire`] (framing and descriptor passing), [`state`] (the messages and a session's
//! state, versioned JSON), [`giver`] (the old process's side, a thread of its own), [`taker`]
//! (the new process's side), [`init`] (a container's PID 1 staying as its successor's init).
//! The sessions' part is `session::handover`; they are woken for it through their drain
//! signal, so the request path pays nothing while no hand-over runs.

pub mod giver;
pub mod init;
pub mod state;
pub mod taker;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub use state::{Message, SessionState, VERSION};

/// What a session of the old process gives the giver at its request boundary.
#[derive(Debug)]
pub struct Outgoing {
    /// Names the session in `Subscribed` / `Released` (its client id in the old process).
    pub token: u64,
    /// The session's state.
    pub state: SessionState,
    /// The client's socket (a duplicate while a subscriber still forwards messages).
    pub stream: std::net::TcpStream,
    /// A subscriber's: fired when the successor has made its subscriptions.
    pub subscribed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What sessions tell the giver.
#[derive(Debug)]
pub enum Event {
    /// Hand this session over.
    Move(Outgoing),
    /// A subscriber stopped forwarding and wrote everything it had: the successor may write.
    Released(u64),
}

/// The sessions' way to the giver (one per process, shared by the workers).
#[derive(Debug)]
pub struct Outbox {
    /// True from `Ready` until the hand-over ends or breaks: sessions may move.
    active: AtomicBool,
    events: Mutex<std::sync::mpsc::Sender<Event>>,
}

impl Outbox {
    /// An outbox and the giver's end of it.
    pub fn new() -> (Outbox, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (
            Outbox {
                active: AtomicBool::new(false),
                events: Mutex::new(tx),
            },
            rx,
        )
    }

    /// True while a successor takes sessions.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    /// Give the giver `event`; `false` if it is gone (then the session stays).
    pub fn send(&self, event: Event) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.send(event).is_ok()
    }
}

/// A client adopted from the old process, as the new process's worker gets it.
pub struct Adopted {
    /// Its state in the old process.
    pub state: SessionState,
    /// For a subscriber: tell the old process the subscriptions are made here.
    pub subscribed: Option<Box<dyn FnOnce() + Send>>,
    /// For a subscriber: fires when the old process let go (wrote its last message); an
    /// error (the old process is gone) means the same.
    pub released: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl std::fmt::Debug for Adopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adopted")
            .field("state", &self.state)
            .field("subscriber", &self.subscribed.is_some())
            .finish()
    }
}
