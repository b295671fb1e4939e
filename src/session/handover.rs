//! A plaintext client's session across an upgrade in place (`crate::upgrade`): leaving this
//! process at a request boundary, or arriving from the predecessor.
//!
//! ```text
//!  old: run() ends at a boundary (nothing in flight, every reply written; not in MULTI,
//!       WATCH, a blocking command, MONITOR, a CLIENT PAUSE hold)
//!       ├─ no subscription: state + socket to the giver; done
//!       └─ subscriber: state + a duplicate of the socket; go on forwarding messages until the
//!          successor has subscribed; UNSUBSCRIBE on the nodes, forward until they confirm
//!          (no message for us after that); write everything; Released
//!  new: state restored (user, name, protocol, database, unread bytes); a subscriber first
//!       subscribes (confirmations kept from the client), says Subscribed, and writes
//!       nothing until Released — then its buffered messages go out, then run()
//! ```
//!
//! A message published between the successor's subscription and the predecessor's
//! unsubscription reaches the client twice (once through each); none is lost, since each
//! node delivers in order and the old side forwards until its node confirmed leaving.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use super::pubsub::PubSub;
use super::{RunEnd, Session, WorkerContext, FIRST_READ};
use crate::ops::clients::Registration;
use crate::placement::Unit;
use crate::session::context::Databases;
use crate::upgrade::{Adopted, Event, Outgoing, SessionState};

/// How long a leaving subscriber waits for its nodes to confirm the unsubscription, and a
/// new one for the old process to let go, before going on regardless.
const LET_GO_LIMIT: Duration = Duration::from_secs(5);

/// Serve one plaintext client: like [`super::serve`], but the session can move to a
/// successor process, and `adopted` is the state it had in the predecessor when it came
/// from there.
pub(crate) async fn serve_tcp(
    mut stream: TcpStream,
    info: Registration,
    worker: Rc<WorkerContext>,
    adopted: Option<Box<Adopted>>,
) {
    let mut session = Session::new(info, worker);
    session.movable = session.worker.outbox().is_some();
    session.queue.write_directly_to(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        std::sync::Arc::clone(session.worker.proxy()),
        session.worker.index(),
        session.slow_logger(),
    );
    let mut rbuf = BytesMut::with_capacity(FIRST_READ);
    if let Some(adopted) = adopted {
        arriving(&mut session, adopted, &mut rbuf).await;
    }
    match session.run(&mut stream, &mut rbuf).await {
        Ok(RunEnd::Move) => leaving(&mut session, stream, &rbuf).await,
        Ok(RunEnd::Closed) => {}
        Err(e) => tracing::debug!(client = session.info.id, "client connection ended: {e}"),
    }
    session.finish();
}

/// A hand-over step, on the heap and out of line: arriving and leaving come once per upgrade,
/// and must neither size every client's task nor bloat the code that serves its requests.
type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

#[inline(never)]
fn arriving<'a>(
    session: &'a mut Session,
    adopted: Box<Adopted>,
    rbuf: &'a mut BytesMut,
) -> Step<'a> {
    Box::pin(session.arrive(*adopted, rbuf))
}

#[inline(never)]
fn leaving<'a>(session: &'a mut Session, stream: TcpStream, rbuf: &'a BytesMut) -> Step<'a> {
    Box::pin(session.leave(stream, rbuf))
}

impl Session {
    /// The session's drain signal was raised: by the drain (finish what is owed and close),
    /// or by a successor taking the clients (plaintext sessions move at their next boundary;
    /// TLS ones, whose state cannot move, close at it).
    pub(super) fn signalled(&mut self) {
        if self.worker.drain().is_draining() || !self.movable {
            self.closing = true;
        } else if !self.move_off {
            self.moving = true;
        }
    }

    /// The state a successor needs.
    fn export(&self, rbuf: &BytesMut) -> SessionState {
        let [channels, patterns, shard_channels] =
            self.pubsub.as_ref().map(PubSub::names).unwrap_or_default();
        SessionState {
            authenticated: self.authenticated,
            user: self.user.as_ref().map(|u| u.name.clone()),
            name: self.info.name().map(|n| n.to_vec()),
            resp3: self.resp3,
            db: self.db,
            channels,
            patterns,
            shard_channels,
            unread: rbuf.to_vec(),
            last_write: self
                .last_write
                .iter()
                .chain(&self.last_write_also)
                .map(|u| u.get())
                .collect(),
        }
    }

    /// Hand the session over (at a boundary: nothing owed, nothing in flight).
    async fn leave(&mut self, stream: TcpStream, rbuf: &BytesMut) {
        let worker = Rc::clone(&self.worker);
        let Some(outbox) = worker.outbox() else {
            return;
        };
        let state = self.export(rbuf);
        let token = self.info.id;
        if !state.subscribed() {
            let Ok(stream) = stream.into_std() else {
                return;
            };
            outbox.send(Event::Move(Outgoing {
                token,
                state,
                stream,
                subscribed: None,
            }));
            return;
        }
        // A subscriber: the successor gets a duplicate; this one keeps writing messages
        // until the successor has subscribed.
        let Ok(copy) = socket2::SockRef::from(&stream).try_clone() else {
            return;
        };
        let (subscribed, successor_ready) = tokio::sync::oneshot::channel();
        if !outbox.send(Event::Move(Outgoing {
            token,
            state,
            stream: copy.into(),
            subscribed: Some(subscribed),
        })) {
            return;
        }
        let mut stream = stream;
        let mut wbuf = BytesMut::new();
        if self
            .forward_until(&mut stream, &mut wbuf, successor_ready)
            .await
        {
            if let Some(pubsub) = &self.pubsub {
                let left = pubsub.leave_quietly();
                let confirmed = async { left.wait().await };
                let _ = tokio::time::timeout(
                    LET_GO_LIMIT,
                    self.forward_until(&mut stream, &mut wbuf, confirmed),
                )
                .await;
            }
        }
        // Nothing more is forwarded from here.
        self.pubsub = None;
        let _ = self.write_ready(&mut stream, &mut wbuf).await;
        outbox.send(Event::Released(token));
    }

    /// Write messages as they come until `until` completes (`true`) or the client is gone
    /// (`false`).
    async fn forward_until<F: std::future::Future>(
        &mut self,
        stream: &mut TcpStream,
        wbuf: &mut BytesMut,
        until: F,
    ) -> bool {
        tokio::pin!(until);
        let queue = Rc::clone(&self.queue);
        loop {
            tokio::select! {
                biased;
                _ = &mut until => return true,
                () = queue.wait_ready() => {
                    if self.write_ready(stream, wbuf).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// Take over the predecessor's session: its state, then (a subscriber) its subscriptions,
    /// made here before the predecessor lets go.
    async fn arrive(&mut self, adopted: Adopted, rbuf: &mut BytesMut) {
        let Adopted {
            state,
            subscribed,
            released,
        } = adopted;
        self.resp3 = state.resp3;
        let users = self.worker.users();
        let user = state
            .user
            .as_deref()
            .and_then(|name| users.user(name.as_bytes()));
        // A named user this configuration no longer has: logged out (where login is needed).
        self.authenticated =
            !users.required() || (state.authenticated && (state.user.is_none() || user.is_some()));
        self.info.set_user(user.as_ref().map(|u| u.name.as_str()));
        self.user = user;
        self.info.set_name(state.name.clone().map(Bytes::from));
        let db = match self.worker.settings().databases {
            Databases::Emulated(n) if state.db >= n.max(1) => 0,
            _ => state.db,
        };
        super::databases::switch(self, db);
        let mut wrote = state.last_write.iter().filter_map(|&n| Unit::new(n));
        self.last_write = wrote.next();
        self.last_write_also = wrote.collect();
        rbuf.extend_from_slice(&state.unread);
        if state.subscribed() {
            let names = [state.channels, state.patterns, state.shard_channels];
            let (pubsub, made) = PubSub::restore(
                Rc::clone(&self.queue),
                Rc::clone(&self.worker),
                self.resp3,
                names,
            );
            self.pubsub = Some(pubsub);
            let _ = tokio::time::timeout(LET_GO_LIMIT, made.wait()).await;
            if let Some(tell) = subscribed {
                tell();
            }
            if let Some(released) = released {
                let _ = tokio::time::timeout(LET_GO_LIMIT * 2, released).await;
            }
        }
        if !rbuf.is_empty() {
            self.process(rbuf);
        }
    }

    /// Neither in a transaction nor watching nor monitoring: the states that end only with
    /// the client's next requests (which a moving session still reads).
    pub(super) fn pinned_state(&self) -> bool {
        self.tx.is_some()
            || self.watched.is_some()
            || !self.watched_also.is_empty()
            || self.monitor.is_some()
    }

    /// Nothing in flight, nothing unwritten, no state that cannot move: a boundary where the
    /// session can be handed over.
    pub(super) fn at_boundary(&self) -> bool {
        self.queue.outstanding() == 0
            && self.deferred.is_none()
            && self.held.is_none()
            && !self.closing
            && !self.pinned_state()
    }
}
