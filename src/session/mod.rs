//! One client connection: read requests, route each one, write replies back in request order.
//!
//! ```text
//!  socket ──read──► RequestDecoder ──► dispatch ──► local reply ─────────┐
//!                                          └──► backend conn … fill() ──►│ ReplyQueue (in order)
//!  socket ◄──one write per turn── ready replies from the queue front ◄───┘
//! ```
//!
//! A session lives on one worker thread for its whole life and shares nothing with other
//! threads on the request path. All requests decoded from one read are dispatched before the
//! worker's backend writers run, so a pipeline leaves in one write per backend, and their
//! replies are written together once the last of them is in, so it comes back in one write to
//! the client. A ready reply waits for the rest at most `proxy.reply_hold_ms` (a slow node must
//! not hold back the replies before its own) and not at all once 64 KiB are waiting.

mod admin;
mod client;
mod cluster_view;
mod context;
mod cross_slot;
mod cross_slot_tx;
mod databases;
mod dispatch;
mod handover;
pub mod info;
mod key_tags;
mod kill;
mod limits;
mod local;
mod merge;
mod pinned;
mod pubsub;
mod queue;
mod scan;
mod script_lane;
mod slow_requests;
mod turn;
mod wait;

use std::pin::Pin;
use std::rc::Rc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::conn::Lane;
use crate::backend::dedicated::Lease;
use crate::ops::clients::Registration;
use crate::placement::{KeySpace, Unit};
use crate::resp::{ParseError, Request, RequestDecoder};

use pinned::{Exclusive, Transaction, Watched};
use pubsub::PubSub;
use turn::Turn;

pub use context::{SessionSettings, WorkerContext};
pub use dispatch::service;
pub(crate) use handover::serve_tcp;
pub use limits::{ClientLimits, OutputLimit, Overflow};
pub use merge::Merge;
pub use queue::{ReplyQueue, ReplyTarget};

/// Replies at least this large are written straight from their buffer instead of being
/// copied into the session's write buffer.
const LARGE_REPLY: usize = 64 * 1024;
/// The most a session reads at once (its read buffer grows to this from `FIRST_READ`).
const BUFFER_SIZE: usize = 16 * 1024;
/// A session's first read buffer: small, so an idle client costs little memory; a read that
/// fills the buffer doubles the room made for the next one, up to `BUFFER_SIZE`.
const FIRST_READ: usize = 1024;
/// A write buffer grown past this is given back after the write.
const KEEP_BUFFER: usize = 1024 * 1024;
/// While an exclusive request (a blocking command, EXEC …) runs, the client is still read, to
/// notice it hanging up, but only up to this many unprocessed bytes.
const READ_AHEAD_WHILE_PINNED: usize = 1024 * 1024;

/// State of one client connection.
///
/// Laid out in this order (`repr(C)`), what every request reads first: with thousands of
/// clients each session's state is out of the CPU's cache by the time its next request comes,
/// so a request pays for each cache line of it that it touches. The per-request fields share
/// the first lines; the states that are mostly absent (a transaction, a deferred or held
/// request, a WATCH) are boxed, so testing for them reads one word each, side by side.
#[repr(C)]
pub(crate) struct Session {
    worker: Rc<WorkerContext>,
    queue: Rc<ReplyQueue>,
    /// The client's entry in the proxy-wide registry (id, addresses, name; CLIENT LIST).
    info: Registration,
    /// The command of the last request dispatched, and the id CLIENT LIST knows the last
    /// one published by (cached: a client mostly repeats its command).
    last_spec: Option<&'static crate::command::CommandSpec>,
    published_cmd: Option<(&'static crate::command::CommandSpec, u16)>,
    /// The transaction being queued (after MULTI).
    tx: Option<Box<Transaction>>,
    /// An exclusive request waiting for every earlier reply; nothing after it is dispatched.
    deferred: Option<Box<(Request, Exclusive)>>,
    /// A request held by CLIENT PAUSE (and whether it may write); nothing after it is read
    /// or dispatched until the pause lets it through.
    held: Option<Box<(Request, bool)>>,
    /// Subscriptions, once the client subscribed.
    pubsub: Option<PubSub>,
    /// The named user the client authenticated as (`None`: the unrestricted default user).
    user: Option<std::sync::Arc<crate::auth::User>>,
    /// The connection WATCH pinned.
    watched: Option<Box<Watched>>,
    /// The client's place among the monitors, after MONITOR.
    monitor: Option<crate::ops::monitor::Monitoring>,
    /// The slot of the client's last write, for WAIT.
    last_write: Option<Unit>,
    /// The database the client selected (`SELECT`).
    db: u32,
    /// The database its requests run in on the nodes: `db` in pool mode, 0 in cluster mode
    /// (where `space` stands for `db`).
    backend_db: u32,
    /// Stop reading: QUIT was received or the client broke the protocol. The session ends
    /// once every reply before that point has been written.
    closing: bool,
    /// The backend connections the client's requests take: the scripts lane while it has a
    /// script in flight (see `script_lane`).
    lane: Lane,
    /// The client switched to RESP3 with `HELLO 3`.
    resp3: bool,
    /// The client may run commands (authenticated, or no authentication is configured).
    authenticated: bool,
    /// Plaintext with an upgrade socket: the session can be handed over to a successor.
    movable: bool,
    /// A successor takes this process's clients: move at the next request boundary (see
    /// `handover`).
    moving: bool,
    /// A hand-over this session was to join broke: it stays here.
    move_off: bool,
    /// What the client holds against `proxy.max_pending_bytes`, and how it is closed.
    usage: Usage,
    /// The last command looked up, to skip the lookup when the client repeats it.
    lookup: crate::command::LookupCache,
    decoder: RequestDecoder,
    /// Which keys of the cluster are the client's, and under what names (cluster mode with
    /// emulated databases; [`KeySpace::Whole`] otherwise).
    space: KeySpace,
    /// With `commands.non_atomic_cross_slot_writes`: WATCH connections of other slots than
    /// `watched`'s, one per slot.
    watched_also: Vec<Watched>,
    /// The other slots of the last write when it was split or sent to every master.
    last_write_also: Vec<Unit>,
}

/// How [`Session::run`] ended.
#[derive(Debug, PartialEq, Eq)]
enum RunEnd {
    /// The client is gone, or the session closed it.
    Closed,
    /// At a request boundary, to be handed over to the successor process.
    Move,
}

/// A session's use of its limits (see [`limits`]).
#[derive(Debug, Default)]
struct Usage {
    /// Request bytes dispatched and not yet answered.
    in_flight: limits::InFlight,
    /// Closing for a protocol error: let the client read it before the socket closes.
    linger: bool,
}

/// Serve one client until it disconnects, QUITs, breaks the protocol or is killed. `stream`
/// is a `TcpStream` or a TLS stream (the caller sets `TCP_NODELAY` and runs any handshake);
/// `info` is its registration (id and TCP addresses, for CLIENT and INFO).
pub async fn serve<S>(mut stream: S, info: Registration, worker: Rc<WorkerContext>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(info, worker);
    let mut rbuf = BytesMut::with_capacity(FIRST_READ);
    if let Err(e) = session.run(&mut stream, &mut rbuf).await {
        tracing::debug!(client = session.info.id, "client connection ended: {e}");
    }
    session.finish();
}

impl Session {
    /// A fresh client's session.
    fn new(info: Registration, worker: Rc<WorkerContext>) -> Session {
        let authenticated = !worker.users().required();
        let lookup = crate::command::LookupCache::with_custom(worker.custom_commands());
        let queue = ReplyQueue::for_session(
            worker.ops().slowlog.threshold(),
            worker.settings().key_tags.clone(),
        );
        let space = worker.settings().databases.space(0);
        Session {
            decoder: RequestDecoder::new(worker.settings().limits),
            worker,
            queue,
            info,
            closing: false,
            deferred: None,
            lane: Lane::Shared,
            tx: None,
            watched: None,
            watched_also: Vec::new(),
            last_write: None,
            last_write_also: Vec::new(),
            pubsub: None,
            resp3: false,
            db: 0,
            backend_db: 0,
            space,
            authenticated,
            user: None,
            usage: Usage::default(),
            last_spec: None,
            lookup,
            published_cmd: None,
            monitor: None,
            held: None,
            movable: false,
            moving: false,
            move_off: false,
        }
    }

    /// The session is over: what it still owes is dropped.
    fn finish(&mut self) {
        // Slow requests answered after the last write are logged all the same.
        self.log_slow_answered();
        self.queue.close();
    }

    /// What the client's dedicated connections must be: its protocol and database.
    fn lease(&self) -> Lease {
        Lease {
            resp3: self.resp3,
            db: self.backend_db,
            client: self.info.id,
        }
    }

    /// Generic over the stream, so the plaintext path is compiled for `TcpStream` itself.
    /// Reads and writes never overlap (writes happen between reads), so the stream is used
    /// whole, without splitting it.
    /// `rbuf` holds what was read and not yet processed (a hand-over's unread bytes) and,
    /// when the session moves, what it leaves unprocessed.
    async fn run<S>(&mut self, stream: &mut S, rbuf: &mut BytesMut) -> std::io::Result<RunEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Grown by the first replies: an idle client costs no write buffer.
        let mut wbuf = BytesMut::new();
        let max_outstanding = self.worker.settings().max_pipeline_depth;
        let bounds = self.worker.settings().client_limits;
        let mut idle = limits::IdleTimer::new(bounds.idle_timeout);
        // Armed while a ready reply waits for the rest of its read (see `ReplyQueue::holding`).
        let hold_timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(hold_timer);
        let mut hold_armed = false;
        // The drain's signal is also the hand-over's (with an upgrade socket): one branch
        // below serves both.
        let drain = self.worker.drain().listen();
        if self.worker.outbox().is_some() {
            self.worker.moving().add(&drain);
        }
        let queue = Rc::clone(&self.queue);
        let worker = Rc::clone(&self.worker);
        let mut read_size = FIRST_READ;
        loop {
            // Running: replies are written here, in order, not where they arrive.
            self.queue.arm_direct(false);
            // Only subscribers and monitors get messages pushed (the output limit applies to
            // them).
            let subscriber = self.pubsub.is_some() || self.monitor.is_some();
            if subscriber {
                // A subscriber over its output limit is cut off even in the middle of a
                // write that a client not reading would block forever.
                tokio::select! {
                    biased;
                    overflow = queue.cut_off() => return self.cut_off(overflow),
                    written = self.write_ready(stream, &mut wbuf) => written?,
                }
            } else {
                self.write_ready(stream, &mut wbuf).await?;
            }
            if let Some(hold) = bounds.reply_hold {
                // A ready front left unwritten is held: time it from the first turn it waits.
                let held = self.queue.front_ready();
                if held && !hold_armed {
                    hold_timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + hold);
                }
                hold_armed = held;
            }
            // An upgrade in place: one flag test per turn while none is under way.
            if self.moving && self.at_boundary() {
                if self
                    .worker
                    .outbox()
                    .is_some_and(crate::upgrade::Outbox::is_active)
                {
                    return Ok(RunEnd::Move);
                }
                (self.moving, self.move_off) = (false, true);
            }
            if self.deferred.is_some() && self.queue.outstanding() == 0 {
                // On the heap: transactions and blocking commands would otherwise size
                // every session's task, idle ones included.
                if !Box::pin(self.run_deferred(stream, rbuf)).await? {
                    return Ok(RunEnd::Closed); // The client hung up meanwhile.
                }
                let now = self.process(rbuf);
                // Blocked clients wait for their own timeout: idle time counts from the reply.
                if let Some(idle) = idle.as_mut() {
                    idle.touch(now);
                }
                continue;
            }
            if self.closing && self.queue.outstanding() == 0 {
                if self.usage.linger {
                    limits::linger(stream).await;
                }
                return Ok(RunEnd::Closed);
            }
            // Backpressure: a client owed this many replies, or holding this many bytes of
            // requests unanswered and replies unwritten, is not read until it drains.
            let may_read = !self.closing
                && self.deferred.is_none()
                && self.held.is_none()
                && self.queue.outstanding() < max_outstanding
                && self.usage.in_flight.bytes() + self.queue.unwritten() < bounds.max_pending_bytes
                // Moving: read no further than the boundary (unless in MULTI, WATCH …).
                && (!self.moving || self.pinned_state());
            // Parked with every ready reply written: a reply that leaves nothing owed may be
            // written by the task that receives it (`queue::direct`; plaintext clients only).
            self.queue
                .arm_direct(may_read && !subscriber && !self.moving);
            // Room for the next read is made when the wait is polled (`turn::Read`): once
            // the client has sent more, the requests split off the buffer's front have
            // usually been answered and dropped, and the buffer is reused, not reallocated.
            // On the heap, and only while a request is held: a pause is rare, and its
            // future would otherwise be built and dropped on every turn of every session.
            let mut released = self
                .held
                .as_ref()
                .map(|held| Box::pin(worker.ops().pause.released(held.1)));
            let turn = turn::Waits {
                killed: self.info.killed(),
                queue: &queue,
                hold: hold_armed.then_some(hold_timer.as_mut()),
                read: may_read.then_some(turn::Read {
                    stream: &mut *stream,
                    buf: &mut *rbuf,
                    want: read_size,
                }),
                released: released
                    .as_mut()
                    .map(|f| f.as_mut() as Pin<&mut dyn std::future::Future<Output = ()>>),
                drain: (!self.closing).then_some(&*drain),
                subscriber,
                idle: idle.as_mut(),
            }
            .await;
            drop(released);
            match turn {
                // CLIENT KILL from any client: close now, owed replies or not. First, so a
                // client that always has more to read cannot keep it waiting.
                Turn::Killed => return Ok(RunEnd::Closed),
                Turn::Ready => {}
                // A reply of the read is slow: the ready ones go without it.
                Turn::HoldOver => {
                    self.queue.release_hold();
                    hold_armed = false;
                }
                Turn::Read { read, room } => {
                    let n = read?;
                    if n == 0 {
                        return Ok(RunEnd::Closed);
                    }
                    if n >= room && read_size < BUFFER_SIZE {
                        read_size *= 2; // More may be waiting: read more at once.
                    }
                    self.worker.stats().client_read(n);
                    let now = self.process(rbuf);
                    if let Some(idle) = idle.as_mut() {
                        idle.touch(now);
                    }
                }
                // CLIENT PAUSE let the held request through: on with it and the rest read.
                Turn::Released => {
                    if let Some((request, _)) = self.held.take().map(|held| *held) {
                        let now = tokio::time::Instant::now();
                        self.dispatch(request, now);
                        self.process(rbuf);
                        if let Some(idle) = idle.as_mut() {
                            idle.touch(now);
                        }
                    }
                }
                // Graceful shutdown: finish what is owed (above), read nothing more; or an
                // upgrade's hand-over (`handover::signalled`).
                Turn::Drain => self.signalled(),
                Turn::CutOff(overflow) => return self.cut_off(overflow),
                // Redis' `timeout`: never for subscribers (nor blocked clients, which are
                // not here but in run_deferred); clients in MULTI or WATCH do time out.
                Turn::Idle => {
                    let may_close = self.queue.outstanding() == 0
                        && !self.subscribed()
                        && self.monitor.is_none();
                    if idle.as_mut().is_some_and(|idle| idle.expired(may_close)) {
                        tracing::debug!(client = self.info.id, peer = ?self.info.peer,
                            "closing idle client (proxy.client_idle_timeout_ms)");
                        return Ok(RunEnd::Closed);
                    }
                }
            }
        }
    }

    /// Write every reply ready at the front of the queue, in one write when they are small.
    async fn write_ready<W: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        wbuf: &mut BytesMut,
    ) -> std::io::Result<()> {
        let mut wrote = 0;
        // Replies to one read go out together (see `ReplyQueue::holding`).
        let hold = self.queue.holding();
        while let Some((reply, command)) = if hold { None } else { self.queue.pop_ready() } {
            wrote += reply.len();
            // RESP2 `-` or RESP3 blob error `!`: one byte compare per reply.
            if matches!(reply.first(), Some(b'-' | b'!')) {
                self.worker.stats().commands_by().error(command);
            }
            if reply.len() >= LARGE_REPLY {
                if !wbuf.is_empty() {
                    stream.write_all(wbuf).await?;
                    wbuf.clear();
                }
                stream.write_all(&reply).await?;
            } else {
                wbuf.extend_from_slice(&reply);
            }
        }
        // Log slow requests before writing, so a client that has its reply finds a slow
        // request already in the slow log (as with Redis).
        self.log_slow_answered();
        if !wbuf.is_empty() {
            stream.write_all(wbuf).await?;
            wbuf.clear();
        }
        if wbuf.capacity() > KEEP_BUFFER {
            // A burst (a subscriber catching up) must not pin its size for the session's life.
            *wbuf = BytesMut::new();
        }
        if wrote > 0 {
            // Free on plain TCP; TLS may hold the tail of a record until it.
            stream.flush().await?;
            self.worker.stats().client_wrote(wrote);
            self.queue.written(wrote);
        }
        // Replies written from where they arrived (`queue::direct`) count too.
        self.usage.in_flight.answered(self.queue.front_seq());
        self.queue.clock_written(self.worker.stats());
        Ok(())
    }

    /// The client broke its output limit: log it, count it, and end the session.
    fn cut_off(&self, overflow: Overflow) -> std::io::Result<RunEnd> {
        tracing::warn!(
            client = self.info.id,
            peer = ?self.info.peer,
            bytes = overflow.bytes,
            limit = overflow.limit,
            "subscriber disconnected: output over the {} limit (proxy.pubsub_output_{}_limit_bytes)",
            if overflow.soft { "soft" } else { "hard" },
            if overflow.soft { "soft" } else { "hard" },
        );
        self.worker.stats().output_limit_disconnected();
        Ok(RunEnd::Closed)
    }

    /// Run the deferred exclusive request and queue its reply, reading ahead from the client
    /// meanwhile only to notice a hang-up. `false` if the client is gone (which drops the
    /// dedicated connection and so releases the node).
    async fn run_deferred<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        rbuf: &mut BytesMut,
    ) -> std::io::Result<bool> {
        let Some((request, exclusive)) = self.deferred.take().map(|deferred| *deferred) else {
            return Ok(true);
        };
        let client = std::sync::Arc::clone(self.info.client());
        let worker = Rc::clone(&self.worker);
        let reply = {
            let run = self.exclusive(request, exclusive);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    reply = &mut run => break reply,
                    read = reader.read_buf(rbuf), if rbuf.len() < READ_AHEAD_WHILE_PINNED => {
                        let n = read?;
                        if n == 0 {
                            return Ok(false);
                        }
                        worker.stats().client_read(n);
                    }
                    () = client.killed() => return Ok(false),
                }
            }
        };
        if let Some(reply) = reply {
            self.queue.push_ready(reply);
        }
        Ok(true)
    }

    /// Decode and dispatch every complete request in `buf`, up to an exclusive one. Returns
    /// the time it read (for the idle timer).
    fn process(&mut self, buf: &mut BytesMut) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let mut count = 0u64;
        let unread = buf.len();
        self.settle_lane();
        self.queue
            .set_slow_threshold(self.worker.ops().slowlog.threshold());
        self.queue.set_read_at(now);
        while !self.closing && self.deferred.is_none() && self.held.is_none() {
            // Per request: an AUTH earlier in this batch lifts the limits for the next one.
            self.decoder.set_unauthenticated(!self.authenticated);
            match self.decoder.decode(buf) {
                Ok(Some(request)) => {
                    count += 1;
                    // CLIENT PAUSE: one relaxed load while no pause was asked.
                    if self.worker.ops().pause.may_hold() {
                        if let Some(writes) = self.paused(&request) {
                            self.held = Some(Box::new((request, writes)));
                            break;
                        }
                    }
                    self.dispatch(request, now);
                }
                Ok(None) => {
                    if let Some(needed) = self.decoder.needed() {
                        buf.reserve(needed.saturating_sub(buf.len()));
                    }
                    break;
                }
                Err(e) => {
                    if let ParseError::RequestTooLarge { size, limit } = e {
                        tracing::info!(client = self.info.id, peer = ?self.info.peer, size, limit,
                            "request over proxy.max_request_bytes; closing the client");
                        self.worker.stats().request_too_large();
                    } else {
                        tracing::debug!(client = self.info.id, "protocol error: {e}");
                    }
                    self.queue.set_command(crate::command::stat_index::OTHER);
                    self.queue.push_ready(e.to_reply());
                    self.closing = true;
                    self.usage.linger = true;
                }
            }
        }
        if count > 1 && self.worker.settings().client_limits.reply_hold.is_some() {
            self.queue.end_batch();
        }
        self.worker.stats().add_commands(count);
        self.queue.clock_read(now, count);
        let dispatched = unread - buf.len();
        self.usage
            .in_flight
            .dispatched(self.queue.next_seq(), dispatched);
        if count > 0 {
            // CLIENT LIST's `cmd`: the batch's last request, when the batch ended on one.
            let last_cmd = if buf.is_empty() {
                self.last_cmd_id()
            } else {
                0
            };
            self.publish_activity(now.into_std(), last_cmd);
        }
        now
    }
}
