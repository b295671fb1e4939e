//! The new process's side of an upgrade (`slotgate --take-over`): connect to the running
//! process once this one has started up, take its listeners, report ready, then adopt each
//! client it hands over into a worker (round robin, a fresh client id), and finally listen on
//! the upgrade socket itself.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::giver::Giver;
use super::wire::{self, Receiver};
use super::{Adopted, Message, VERSION};
use crate::worker::NewClient;

/// How long the old process may take to answer `Hello`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening sockets taken from the old process.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The plaintext listener.
    pub plain: Option<std::net::TcpListener>,
    /// The TLS listener.
    pub tls: Option<std::net::TcpListener>,
    /// The admin listener, when the old process has one (used if this one's configuration
    /// has `admin.listen`, whatever its address: the port stays).
    pub admin: Option<std::net::TcpListener>,
}

/// A connection to the old process that has passed its listeners.
#[derive(Debug)]
pub struct Taker {
    stream: Arc<Mutex<UnixStream>>,
    rx: Receiver,
}

/// Connect to the running process at `path` and take its listeners. `want_plain` /
/// `want_tls`: which ones this process's configuration has; they must match the old one's.
pub fn connect(
    path: &Path,
    want_plain: bool,
    want_tls: bool,
) -> Result<(Taker, Inherited), String> {
    let stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the running slotgate on its upgrade socket {}: {e} (is it running \
             with proxy.upgrade_socket set to this path?)",
            path.display()
        )
    })?;
    let reader = stream.try_clone().map_err(|e| e.to_string())?;
    let _ = reader.set_read_timeout(Some(ANSWER_TIMEOUT));
    let mut rx = Receiver::new(reader);
    let hello = Message::Hello {
        version: VERSION,
        pid: std::process::id(),
    };
    wire::send(&stream, &hello.encode(), &[]).map_err(|e| format!("upgrade socket: {e}"))?;
    let frame = match rx.recv() {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err("the running slotgate closed the upgrade connection".into()),
        Err(e) => return Err(format!("no answer on the upgrade socket: {e}")),
    };
    let (plain, tls, admin) = match Message::decode(&frame.body)? {
        Message::Listeners {
            version: VERSION,
            plain,
            tls,
            admin,
        } => (plain, tls, admin),
        Message::Refused { reason } => {
            return Err(format!(
                "the running slotgate refused the take-over: {reason}"
            ))
        }
        other => {
            return Err(format!(
                "unexpected answer on the upgrade socket: {other:?}"
            ))
        }
    };
    if plain.is_some() != want_plain || tls.is_some() != want_tls {
        return Err(format!(
            "the running slotgate listens on plaintext {} and TLS {}; this configuration \
             (proxy.listen, tls.listen) asks for plaintext {} and TLS {}: listeners cannot \
             change in an upgrade (restart instead)",
            plain.as_deref().unwrap_or("(none)"),
            tls.as_deref().unwrap_or("(none)"),
            if want_plain { "on" } else { "(none)" },
            if want_tls { "on" } else { "(none)" },
        ));
    }
    let mut fds = frame.fds.into_iter();
    let mut take = |present: bool| -> Result<Option<std::net::TcpListener>, String> {
        if !present {
            return Ok(None);
        }
        let fd: OwnedFd = fds.next().ok_or("the listeners' descriptors are missing")?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Some(listener))
    };
    let inherited = Inherited {
        plain: take(want_plain)?,
        tls: take(want_tls)?,
        admin: take(admin.is_some())?,
    };
    let _ = rx.stream().set_read_timeout(None);
    Ok((
        Taker {
            stream: Arc::new(Mutex::new(stream)),
            rx,
        },
        inherited,
    ))
}

/// What the adopting thread needs of the running (new) proxy.
pub struct Adopt {
    /// The workers' client channels (round robin).
    pub workers: Vec<mpsc::UnboundedSender<NewClient>>,
    /// The proxy's client ids (shared with the accept loop).
    pub ids: Arc<AtomicU64>,
    /// `proxy.max_clients` permits.
    pub permits: Arc<Semaphore>,
    /// This process's own upgrade side, started once the hand-over is done.
    pub giver: Arc<Giver>,
}

impl Taker {
    /// Tell the old process this one serves, then adopt its clients on a thread until it is
    /// done (after which this process listens on the upgrade socket itself).
    pub fn ready(self, adopt: Adopt) -> Result<(), String> {
        wire::send(&lock(&self.stream), &Message::Ready.encode(), &[])
            .map_err(|e| format!("upgrade socket: {e}"))?;
        std::thread::Builder::new()
            .name("slotgate-take-over".into())
            .spawn(move || self.adopt(adopt))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn adopt(mut self, adopt: Adopt) {
        let mut released: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
        let mut turn = 0usize;
        let end = loop {
            let frame = match self.rx.recv() {
                Ok(Some(frame)) => frame,
                Ok(None) => break Err("the old process closed the connection".to_string()),
                Err(e) => break Err(e.to_string()),
            };
            match Message::decode(&frame.body) {
                Ok(Message::Session { token, state }) => {
                    let Some(fd) = frame.fds.into_iter().next() else {
                        tracing::warn!("upgrade: a client came without its socket");
                        continue;
                    };
                    let stream = std::net::TcpStream::from(fd);
                    let (subscribed, wait) = if state.subscribed() {
                        let (tx, rx) = oneshot::channel();
                        released.insert(token, tx);
                        let writer = Arc::clone(&self.stream);
                        let tell: Box<dyn FnOnce() + Send> = Box::new(move || {
                            let message = Message::Subscribed { token };
                            let _ = wire::send(&lock(&writer), &message.encode(), &[]);
                        });
                        (Some(tell), Some(rx))
                    } else {
                        (None, None)
                    };
                    let Some(worker) = adopt.workers.get(turn % adopt.workers.len().max(1)) else {
                        break Err("no worker".into());
                    };
                    turn = turn.wrapping_add(1);
                    let client = NewClient {
                        stream,
                        id: adopt.ids.fetch_add(1, Ordering::Relaxed),
                        tls: false,
                        permit: Arc::clone(&adopt.permits).try_acquire_owned().ok(),
                        adopted: Some(Box::new(Adopted {
                            state,
                            subscribed,
                            released: wait,
                        })),
                    };
                    if worker.send(client).is_err() {
                        break Err("shutting down".into());
                    }
                }
                Ok(Message::Released { token }) => {
                    if let Some(tx) = released.remove(&token) {
                        let _ = tx.send(());
                    }
                }
                Ok(Message::Done { handed, closed }) => break Ok((handed, closed)),
                Ok(other) => tracing::warn!("upgrade: unexpected message {other:?}"),
                Err(e) => break Err(e),
            }
        };
        // Subscribers still waiting go on (the old process let go of them, one way or another).
        drop(released);
        match end {
            Ok((handed, closed)) => tracing::info!(
                handed,
                closed,
                "upgrade: take-over done: {handed} clients adopted, {closed} closed by the old \
                 process"
            ),
            Err(e) => tracing::error!("upgrade: the hand-over ended early: {e}"),
        }
        if let Err(e) = Arc::clone(&adopt.giver).start(true) {
            tracing::error!(
                "upgrade socket {}: {e}; no further upgrade in place is possible",
                adopt.giver.path.display()
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
