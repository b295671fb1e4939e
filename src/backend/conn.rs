//! One multiplexed, pipelined connection from a worker to a backend node.
//!
//! ```text
//!  sessions ──send()──► queued ──writer task: one write per turn──► socket
//!                                   │ (now in flight: one list, the written ones first)
//!  sessions ◄──fill()── in-flight ◄──reader task: replies matched FIFO── socket
//! ```
//!
//! Many clients of one worker share the connection. Everything queued since the writer last
//! ran goes out in a single `write`, and replies are matched to requests by order, as Redis
//! answers a connection's commands in order. The connection is opened lazily by the first
//! request and re-opened by the first request after it was lost.
//!
//! Redirects: a reply that is a cluster redirect (MOVED, ASK, TRYAGAIN …) is not delivered;
//! the request goes back to the worker through [`Hooks::redirect`] to be sent where it belongs.
//! An ASK resend is queued as `ASKING` + request, so both leave in the same write.
//!
//! Databases (pool mode, `SELECT n`): each request carries its client's database; the
//! connection knows which one its socket will be in once everything queued has run, and
//! queues a `SELECT` (its reply is nobody's) only before a request for another one. A new
//! socket starts in database 0. A node that refuses such a `SELECT` drops the connection, as
//! for garbage: what follows it would run in the wrong database.
//!
//! Failure: a connection that breaks, answers garbage, or leaves its oldest request
//! unanswered past `request_timeout_ms` is dropped (the FIFO pairing cannot survive a lost or
//! late reply). What it held is sorted honestly: requests never written, and read-only ones,
//! go back to the worker to be routed again ([`Hooks::reroute`]); writes that were sent but not
//! answered may or may not have been applied, so they fail with a clear error. A failed connect
//! puts the node in a short back-off during which requests are handed back at once instead of
//! piling up on a dead node.
//!
//! Scripts: a node running a script reads none of its connections until the script has run
//! `busy-reply-threshold`, then answers BUSY on every connection but the script's, which it
//! does not read until the script ends. So scripts travel on a lane of their own
//! ([`Lane::Scripts`], chosen by the session), and a script late past `request_timeout_ms`
//! may be killed (`backend.kill_slow_scripts`, [`super::script_kill`]) before its connection
//! is given up.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::placement::Unit;
use crate::resp::{Limits, Reply, ReplyDecoder};
use crate::stats::{BackendState, ProxyStats, WorkerStats};
use crate::tls::{BackendTls, ReadHalf, WriteHalf};
use crate::wake::LocalSignal;

use super::connect::{self, Handshake, ASKING};
use super::redirect::Redirect;
use super::reply::ReplyTarget;
use super::script_kill::{self, KillCommand, KillOutcome};
use super::BackendError;

/// The writer's buffer is given back after a write that grew it past this.
const KEEP_WRITE_BUFFER: usize = 1024 * 1024;

/// Whether connections follow cluster redirects: fixed, or the topology's flag (on from the
/// moment keys move from pools onto a cluster). Read on an error reply and when a pool opens
/// replica connections, never per successful reply.
#[derive(Clone, Debug)]
pub struct FollowRedirects(Arc<std::sync::atomic::AtomicBool>);

impl FollowRedirects {
    /// Always `on`, or never.
    pub fn fixed(on: bool) -> FollowRedirects {
        FollowRedirects(Arc::new(std::sync::atomic::AtomicBool::new(on)))
    }

    /// As `flag` says when asked.
    pub fn shared(flag: Arc<std::sync::atomic::AtomicBool>) -> FollowRedirects {
        FollowRedirects(flag)
    }

    /// True when redirects are followed now.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Timeouts and limits shared by a worker's backend connections.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time a request may wait for its reply.
    pub request_timeout: Duration,
    /// Fail-fast period after a failed connect.
    pub reconnect_backoff: Duration,
    /// Reply parsing limits.
    pub limits: Limits,
    /// Follow cluster redirects (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): cluster mode. In pool
    /// mode only LOADING and MASTERDOWN are retried; the rest reach the client as replies.
    /// Shared with the topology: it turns on when keys start moving from pools onto a cluster.
    pub follow_redirects: FollowRedirects,
    /// TLS to the nodes (`None`: plaintext), loaded afresh for every new socket.
    pub tls: Option<Arc<crate::tls::TlsContext>>,
    /// The process counters, and the index of this worker's block in them: bytes, round trips
    /// and connection states are counted there (relaxed adds on the worker's own cache lines).
    pub stats: Arc<ProxyStats>,
    /// Index of the worker these connections belong to.
    pub worker: usize,
    /// `backend.kill_slow_scripts`: a script whose reply is late past `request_timeout` is
    /// killed (SCRIPT KILL / FUNCTION KILL on a connection of its own) before the connection
    /// is given up.
    pub kill_slow_scripts: bool,
}

impl ConnSettings {
    /// The backend TLS connector in force now, if backends use TLS.
    pub fn backend_tls(&self) -> Option<Arc<BackendTls>> {
        self.tls.as_ref().and_then(|t| t.backend())
    }

    /// This worker's counters.
    #[inline]
    fn stats(&self) -> &WorkerStats {
        self.stats.worker(self.worker)
    }
}

/// Per-node counters of one connection, registered with the `metrics` recorder once, when the
/// connection is created; counting is then a relaxed add on the handle, once per write batch
/// (requests) or per read (error replies), never a registry lookup per request.
struct NodeCounters {
    /// `slotgate_backend_requests_total{node}`: client requests written to the node.
    requests: metrics::Counter,
    /// `slotgate_backend_errors_total{node}`: error replies the node sent to them.
    errors: metrics::Counter,
    /// The same requests in the proxy's own counters (admin `/topology`, the dashboard).
    traffic: Arc<crate::stats::NodeTraffic>,
}

impl NodeCounters {
    fn new(addr: &str, settings: &ConnSettings) -> Self {
        NodeCounters {
            requests: metrics::counter!("slotgate_backend_requests_total", "node" => addr.to_string()),
            errors: metrics::counter!("slotgate_backend_errors_total", "node" => addr.to_string()),
            traffic: settings.stats.node_traffic(settings.worker, addr),
        }
    }
}

/// Which of a node's pipelined connections a request takes. A client that has a script
/// (EVAL, EVALSHA, FCALL and their `_RO` forms) in flight sends everything on the scripts
/// lane until it has every reply, so the shared lane never waits behind a script and a
/// client's commands to one node still share one connection, in order (`session` decides).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lane {
    /// The connections every client shares.
    #[default]
    Shared = 0,
    /// The connections of clients with a script in flight (opened when first used).
    Scripts = 1,
}

/// A client request on its way to a backend, with everything needed to send it again.
#[derive(Debug)]
pub struct Outbound {
    /// The request as RESP, forwarded unchanged.
    pub request: Bytes,
    /// Where the reply goes.
    pub reply: ReplyTarget,
    /// The routing unit (hash slot, or ketama server) the request was routed by.
    pub unit: Unit,
    /// Send to this node whatever the slot table says (one part of a fan-out to every master).
    pub node: Option<Arc<str>>,
    /// The client's id: it picks the connection, so a client's commands to a node keep order.
    pub client_id: u64,
    /// No retry or redirect after this instant: the request then fails.
    pub deadline: Instant,
    /// Redirects (MOVED/ASK) followed so far.
    pub redirects: u8,
    /// Retries after TRYAGAIN, CLUSTERDOWN, a dead node … so far (for the back-off).
    pub retries: u8,
    /// Safe to execute twice (a read), so it may be resent after a connection died with it.
    pub readonly: bool,
    /// Send `ASKING` first (the slot is being imported by the target node).
    pub asking: bool,
    /// The client speaks RESP3: the request goes on a connection that does too, so the
    /// reply passes through unchanged.
    pub resp3: bool,
    /// Held and retried while its node is down (`cluster.when_node_down = "hold"`); false
    /// for INFO's parts, which a master that is down must not delay.
    pub hold: bool,
    /// The node's connections it takes: shared, or the scripts lane.
    pub lane: Lane,
    /// The database the request runs in (the client's `SELECT`; always 0 in cluster mode).
    pub db: u32,
}

impl Outbound {
    /// A request the proxy sends on behalf of this one — a `MIGRATE` that moves its keys
    /// first, a script load before its resend — to `node` (pinned there: handed back, it goes
    /// there again, never routed as a request of the slot), its reply to `reply`. It takes
    /// this client's connection (client id, protocol, lane, database) and deadline, and is
    /// never resent as a read.
    pub fn on_behalf(&self, request: Bytes, reply: ReplyTarget, node: Arc<str>) -> Outbound {
        Outbound {
            request,
            reply,
            unit: self.unit,
            node: Some(node),
            client_id: self.client_id,
            deadline: self.deadline,
            redirects: 0,
            retries: 0,
            readonly: false,
            asking: false,
            resp3: self.resp3,
            hold: self.hold,
            lane: self.lane,
            db: self.db,
        }
    }
}

/// What a connection hands back to its worker. Called with no connection state borrowed, so
/// implementations may send on any connection, this one included.
pub trait Hooks {
    /// The reply to `out` was a cluster redirect; `reply` is the raw error, for the client if
    /// the redirect cannot be followed.
    fn redirect(&self, out: Outbound, redirect: Redirect, reply: Bytes);
    /// `out` could not be (or was not known to be) executed because of `error`; it may be
    /// routed again.
    fn reroute(&self, out: Outbound, error: &BackendError);
    /// `out`, a write, was sent but its connection failed before the reply: it may or may not
    /// have been applied, so it must fail with `error`, not be retried.
    fn lost(&self, out: Outbound, error: &BackendError);
    /// The connection failed; the topology may have changed.
    fn failed(&self, error: &BackendError);
}

/// Handle to one pipelined backend connection. Cheap to clone; all clones are the same
/// connection.
#[derive(Clone)]
pub struct BackendConn {
    inner: Rc<Inner>,
}

struct Inner {
    addr: Arc<str>,
    /// Said on every new socket before any request: `AUTH`, `HELLO 3` for RESP3 clients,
    /// `READONLY` for a cluster replica (which then serves reads of its master's slots
    /// instead of answering MOVED).
    handshake: Handshake,
    settings: Rc<ConnSettings>,
    hooks: Rc<dyn Hooks>,
    node: NodeCounters,
    state: RefCell<State>,
    /// Raised when requests are queued (or the connection must wind down).
    writer_wake: LocalSignal,
    /// Raised when in-flight goes from empty to non-empty, so the reader arms its timer.
    reader_wake: LocalSignal,
}

struct State {
    phase: Phase,
    /// Identifies the current socket; tasks of an older socket stop when it changes.
    generation: u64,
    /// Every request awaiting its reply, in send order: the first `written` are in flight
    /// (written, oldest first), the rest queued. One list, so writing a batch moves no entry.
    pending: VecDeque<Pending>,
    /// How many requests at the front of `pending` were written.
    written: usize,
    /// Replies received on this connection: tells which request is oldest in flight when a
    /// script kill was sent for it.
    answered: u64,
    /// No new requests will come; wind down once everything is answered.
    retired: bool,
    /// The database the socket is in once everything queued has run.
    db: u32,
    /// The address the current socket is connected to (its node's name resolved when it
    /// connected); `None` without a socket.
    peer: Option<std::net::IpAddr>,
}

enum Phase {
    /// No socket; the next request opens one.
    Idle,
    /// A connect is under way; requests queue up meanwhile.
    Connecting,
    /// Connected.
    Up,
    /// The last connect failed; requests fail at once until `until`.
    BackOff { until: Instant, error: BackendError },
}

impl Phase {
    /// The connection gauge this phase counts in.
    fn gauge(&self) -> Option<BackendState> {
        match self {
            Phase::Idle => None,
            Phase::Connecting => Some(BackendState::Connecting),
            Phase::Up => Some(BackendState::Connected),
            Phase::BackOff { .. } => Some(BackendState::Down),
        }
    }
}

impl State {
    /// Requests queued and not yet written.
    fn queued(&self) -> usize {
        self.pending.len() - self.written
    }

    /// The oldest request in flight.
    fn oldest_in_flight(&self) -> Option<&Pending> {
        self.pending.front().filter(|_| self.written > 0)
    }

    /// Take the oldest request in flight: its reply has come.
    fn answered(&mut self) -> Option<Pending> {
        self.written = self.written.checked_sub(1)?;
        self.answered = self.answered.wrapping_add(1);
        self.pending.pop_front()
    }

    /// Enter `phase`, moving this connection between the worker's state gauges.
    fn set_phase(&mut self, phase: Phase, stats: &WorkerStats) {
        stats.backend_state(self.phase.gauge(), phase.gauge());
        self.phase = phase;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.set_phase(Phase::Idle, self.settings.stats());
    }
}

/// One entry of the pending list: one reply is expected for each. Kept within 128 bytes, so
/// queueing and answering one moves it inline rather than through a `memcpy` call.
struct Pending {
    /// When it was queued, then when it was written (set with the batch it left in): the
    /// node must answer within `request_timeout` of that write; also the start of the
    /// round trip for the latency histogram.
    sent_at: Instant,
    /// What was said.
    said: Said,
}

/// What one pending entry sent.
enum Said {
    /// A client request.
    Request(Outbound),
    /// The `ASKING` that precedes an ASK resend (its `+OK` is dropped).
    Asking,
    /// `SELECT db` before a request of another database (its `+OK` is dropped).
    Select(u32),
}

impl BackendConn {
    /// The node this connection goes to.
    pub fn addr(&self) -> &Arc<str> {
        &self.inner.addr
    }

    /// True when `other` is a handle to this same connection.
    pub fn same(&self, other: &BackendConn) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// A handle for `addr` whose every new socket starts with `handshake` (`AUTH`, `HELLO 3`,
    /// `READONLY`); nothing is connected until the first request.
    pub fn new(
        addr: Arc<str>,
        handshake: Handshake,
        settings: Rc<ConnSettings>,
        hooks: Rc<dyn Hooks>,
    ) -> Self {
        let node = NodeCounters::new(&addr, &settings);
        BackendConn {
            inner: Rc::new(Inner {
                node,
                addr,
                handshake,
                settings,
                hooks,
                state: RefCell::new(State {
                    phase: Phase::Idle,
                    generation: 0,
                    pending: VecDeque::new(),
                    written: 0,
                    answered: 0,
                    retired: false,
                    db: 0,
                    peer: None,
                }),
                writer_wake: LocalSignal::new(),
                reader_wake: LocalSignal::new(),
            }),
        }
    }

    /// Queue `out`. If the node is in its post-failure back-off, `out` goes straight back to
    /// the worker ([`Hooks::reroute`]) instead.
    pub fn send(&self, out: Outbound, now: Instant) {
        let inner = &self.inner;
        let mut state = inner.state.borrow_mut();
        match &state.phase {
            Phase::BackOff { until, error } if now < *until => {
                let error = error.clone();
                drop(state);
                inner.hooks.reroute(out, &error);
                return;
            }
            Phase::Idle | Phase::BackOff { .. } => {
                state.set_phase(Phase::Connecting, inner.settings.stats());
                state.generation += 1;
                // The handshake leaves a new socket in database 0.
                state.db = 0;
                tokio::task::spawn_local(connect(Rc::clone(inner), state.generation));
            }
            Phase::Connecting | Phase::Up => {}
        }
        // Database 0 only (cluster mode, most clients): this compare is all it costs.
        if out.db != state.db {
            state.db = out.db;
            state.pending.push_back(Pending {
                sent_at: now,
                said: Said::Select(out.db),
            });
        }
        if out.asking {
            state.pending.push_back(Pending {
                sent_at: now,
                said: Said::Asking,
            });
        }
        state.pending.push_back(Pending {
            sent_at: now,
            said: Said::Request(out),
        });
        if state.queued() <= 2 {
            inner.writer_wake.raise();
        }
    }

    /// The IP address the connection's socket goes to, while it has one (a node known by name
    /// may have moved since: see `topology::names`).
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.inner.state.borrow().peer
    }

    /// No more requests will be sent: close the socket once pending replies are in.
    pub fn retire(&self) {
        let mut state = self.inner.state.borrow_mut();
        state.retired = true;
        if matches!(state.phase, Phase::Idle | Phase::BackOff { .. }) {
            return;
        }
        drop(state);
        self.inner.writer_wake.raise();
    }
}

impl Inner {
    /// Drop the socket of `generation`, reset to `phase`, and settle every request it held:
    /// unwritten and read-only ones are handed back for rerouting, sent writes fail.
    fn fail(&self, generation: u64, error: BackendError, phase: Phase) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.generation != generation {
            return; // Already handled for this socket.
        }
        state.generation += 1;
        state.peer = None;
        state.set_phase(phase, self.settings.stats());
        let pending = std::mem::take(&mut state.pending);
        let sent = std::mem::take(&mut state.written);
        drop(guard);
        let (mut rerouted, mut failed) = (0usize, 0usize);
        for (index, pending) in pending.into_iter().enumerate() {
            let written = index < sent;
            let Said::Request(out) = pending.said else {
                continue;
            };
            if !written || out.readonly {
                rerouted += 1;
                self.hooks.reroute(out, &error);
            } else {
                failed += 1;
                self.hooks.lost(out, &error);
            }
        }
        if rerouted + failed > 0 {
            tracing::warn!(
                backend = %self.addr,
                rerouted,
                failed,
                "backend connection failed: {error}"
            );
        }
        self.hooks.failed(&error);
        // Let the other half of this socket notice the generation change and stop.
        self.writer_wake.raise();
        self.reader_wake.raise();
    }

    /// Connecting failed: fail what is queued and refuse requests for the back-off period.
    fn back_off(&self, generation: u64, error: BackendError) {
        let until = Instant::now() + self.settings.reconnect_backoff;
        self.fail(generation, error.clone(), Phase::BackOff { until, error });
    }

    fn is_current(&self, generation: u64) -> bool {
        self.state.borrow().generation == generation
    }
}

/// Open the socket (TLS and the handshake included), then run the writer as a task and the
/// reader in this one.
async fn connect(inner: Rc<Inner>, generation: u64) {
    let settings = Rc::clone(&inner.settings);
    let tls = settings.backend_tls();
    let opened = connect::open(
        &inner.addr,
        tls.as_deref(),
        &inner.handshake,
        settings.connect_timeout,
        settings.limits,
    );
    let stream = match opened.await {
        Ok(stream) => stream,
        Err(error) => return inner.back_off(generation, error),
    };
    {
        let mut state = inner.state.borrow_mut();
        if state.generation != generation {
            return;
        }
        state.peer = stream.tcp().peer_addr().ok().map(|a| a.ip());
        state.set_phase(Phase::Up, settings.stats());
    }
    tracing::debug!(backend = %inner.addr, "backend connected");
    let (reader, writer) = stream.into_split();
    tokio::task::spawn_local(write_loop(Rc::clone(&inner), generation, writer));
    read_loop(inner, generation, reader).await;
}

/// Write everything queued in one go (it is then in flight); repeat while the socket lives.
async fn write_loop(inner: Rc<Inner>, generation: u64, mut socket: WriteHalf) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let Some(requests) = take_queued(&inner, generation, &mut buf) else {
            return;
        };
        if buf.is_empty() && inner.state.borrow().retired {
            // Half-close: the node answers what it has, then the reader sees EOF.
            let _ = socket.shutdown().await;
            return;
        }
        if buf.is_empty() {
            inner.writer_wake.wait().await;
            continue;
        }
        // The flush is free on plain TCP; TLS may hold the tail of a record until it.
        let written = match socket.write_all(&buf).await {
            Ok(()) => socket.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let error = BackendError::Lost {
                addr: inner.addr.to_string(),
                reason: e.to_string(),
            };
            inner.fail(generation, error, Phase::Idle);
            return;
        }
        // Once per batch: the bytes written and the client requests among them.
        inner.settings.stats().backend_wrote(buf.len());
        inner.node.requests.increment(requests);
        inner.node.traffic.add(requests);
        buf.clear();
        if buf.capacity() > KEEP_WRITE_BUFFER {
            // One burst (a client's deep pipeline of large values) must not pin its size.
            buf = BytesMut::with_capacity(16 * 1024);
        }
        // Give the sessions a turn to queue more before the next write.
        tokio::task::yield_now().await;
    }
}

/// Append every queued request to `buf`, in order, and count it in flight: the number of
/// client requests taken (`ASKING` excluded), or `None` when the socket of `generation` is no
/// longer current.
fn take_queued(inner: &Inner, generation: u64, buf: &mut BytesMut) -> Option<u64> {
    let mut guard = inner.state.borrow_mut();
    let state = &mut *guard;
    if state.generation != generation {
        return None;
    }
    if state.queued() == 0 {
        return Some(0);
    }
    let was_idle = state.written == 0;
    // One clock read per batch: the send time of everything in it.
    let now = Instant::now();
    let mut requests = 0;
    // Order matters: requests are in flight in the order they are written.
    for p in state.pending.range_mut(state.written..) {
        match &p.said {
            Said::Request(out) => {
                buf.extend_from_slice(&out.request);
                requests += 1;
            }
            Said::Asking => buf.extend_from_slice(ASKING),
            Said::Select(db) => connect::select(*db, buf),
        }
        p.sent_at = now;
    }
    state.written = state.pending.len();
    if was_idle {
        inner.reader_wake.raise();
    }
    Some(requests)
}

/// Read replies and hand each to the oldest in-flight request; time out a stuck node.
async fn read_loop(inner: Rc<Inner>, generation: u64, mut socket: ReadHalf) {
    let settings = Rc::clone(&inner.settings);
    let mut decoder = ReplyDecoder::new(settings.limits);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // Armed at the oldest in-flight deadline; a stale (earlier) arming only costs a re-check.
    let far = || Instant::now() + Duration::from_secs(86_400);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut armed = false;
    // A kill sent for the late script oldest in flight: the reply count when it was sent
    // (which request that was) and the end of the grace its reply then has.
    let mut killing: Option<(u64, Instant)> = None;
    loop {
        if !inner.is_current(generation) {
            return;
        }
        if !armed {
            let state = inner.state.borrow();
            if let Some(front) = state.oldest_in_flight() {
                let due = match killing {
                    Some((at, grace)) if at == state.answered => grace,
                    _ => front.sent_at + settings.request_timeout,
                };
                timer.as_mut().reset(due);
                armed = true;
            }
        }
        tokio::select! {
            biased;
            read = socket.read_buf(&mut buf) => {
                let lost = match read {
                    Ok(0) => Some("closed by the node".to_string()),
                    Ok(n) => {
                        settings.stats().backend_read(n);
                        None
                    }
                    Err(e) => Some(e.to_string()),
                };
                if let Some(reason) = lost {
                    let retired = {
                        let state = inner.state.borrow();
                        state.retired && state.pending.is_empty()
                    };
                    if !retired {
                        let error = BackendError::Lost { addr: inner.addr.to_string(), reason };
                        inner.fail(generation, error, Phase::Idle);
                    }
                    return;
                }
                if let Err(error) = deliver(&inner, &mut decoder, &mut buf) {
                    inner.fail(generation, error, Phase::Idle);
                    return;
                }
                if let Some(needed) = decoder.needed() {
                    buf.reserve(needed.saturating_sub(buf.len()));
                }
            }
            () = &mut timer, if armed => {
                armed = false;
                let now = Instant::now();
                let (late, answered) = {
                    let state = inner.state.borrow();
                    let late = state
                        .oldest_in_flight()
                        .filter(|p| p.sent_at + settings.request_timeout <= now)
                        .map(|p| match &p.said {
                            Said::Request(o) => script_kill::kill_command(&o.request),
                            _ => None,
                        });
                    (late, state.answered)
                };
                let Some(script) = late else { continue };
                // A kill was sent for this very request: its reply has until the grace ends.
                let grace = killing.filter(|&(at, _)| at == answered).map(|(_, grace)| grace);
                match (grace, script) {
                    (Some(grace), _) if now < grace => continue,
                    (None, Some(command)) if settings.kill_slow_scripts => {
                        killing = Some((answered, now + settings.request_timeout));
                        let kill = kill_script(Rc::clone(&inner), generation, answered, command);
                        tokio::task::spawn_local(kill);
                        continue;
                    }
                    _ => {}
                }
                let error = BackendError::Timeout {
                    addr: inner.addr.to_string(),
                    ms: settings.request_timeout.as_millis() as u64,
                };
                inner.fail(generation, error, Phase::Idle);
                return;
            }
            () = inner.reader_wake.wait() => {}
        }
    }
}

/// Kill the script oldest in flight on the socket of `generation` (when `answered` replies
/// had come): it outlived the request timeout. If the node will not kill it, the connection is
/// given up at once, and the script's client gets [`BackendError::ScriptUnkillable`].
async fn kill_script(inner: Rc<Inner>, generation: u64, answered: u64, command: KillCommand) {
    let settings = &inner.settings;
    let tls = settings.backend_tls();
    let outcome = script_kill::kill(
        &inner.addr,
        inner.handshake.auth.as_ref(),
        tls.as_deref(),
        command,
        settings.request_timeout,
        settings.limits,
    )
    .await;
    let ms = settings.request_timeout.as_millis() as u64;
    match outcome {
        KillOutcome::Killed => tracing::warn!(
            backend = %inner.addr,
            "killed a script that ran past backend.request_timeout_ms ({ms} ms; backend.kill_slow_scripts)"
        ),
        KillOutcome::NotBusy => {}
        KillOutcome::Refused(reason) => {
            {
                let state = inner.state.borrow();
                if state.generation != generation || state.answered != answered {
                    return; // Its reply came meanwhile.
                }
            }
            tracing::warn!(
                backend = %inner.addr,
                "a script ran past backend.request_timeout_ms ({ms} ms) and could not be killed \
                 ({reason}); a script that wrote cannot be: the node answers BUSY until it ends \
                 (or SHUTDOWN NOSAVE on it)"
            );
            let error = BackendError::ScriptUnkillable {
                addr: inner.addr.to_string(),
                ms,
                reason,
            };
            inner.fail(generation, error, Phase::Idle);
        }
    }
}

/// Hand every complete reply in `buf` to its request, observing each one's round trip (one
/// clock read per call, two relaxed adds per written batch the replies answer) and counting
/// the node's error replies (one add per call).
fn deliver(
    inner: &Inner,
    decoder: &mut ReplyDecoder,
    buf: &mut BytesMut,
) -> Result<(), BackendError> {
    let now = Instant::now();
    let round_trip = inner.settings.stats().backend_latency();
    let mut errors = 0u64;
    // Replies to one written batch share its send time: recorded together.
    let mut batch: Option<(Instant, u64)> = None;
    let record = |(sent_at, count): (Instant, u64)| {
        round_trip.record(now.saturating_duration_since(sent_at), count);
    };
    let result = deliver_each(inner, decoder, buf, now, |reply, sent_at| {
        match &mut batch {
            Some((at, count)) if *at == sent_at => *count += 1,
            _ => {
                if let Some(done) = batch.replace((sent_at, 1)) {
                    record(done);
                }
            }
        }
        if reply.error_message().is_some() {
            errors += 1;
        }
    });
    if let Some(done) = batch {
        record(done);
    }
    if errors > 0 {
        inner.node.errors.increment(errors);
    }
    result
}

/// The loop of [`deliver`]: replies read at `now`; `observe` sees each (ASKING's included)
/// with its send time.
fn deliver_each(
    inner: &Inner,
    decoder: &mut ReplyDecoder,
    buf: &mut BytesMut,
    now: Instant,
    mut observe: impl FnMut(&Reply, Instant),
) -> Result<(), BackendError> {
    loop {
        let reply = match decoder.decode(buf) {
            Ok(Some(reply)) => reply,
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(BackendError::Protocol {
                    addr: inner.addr.to_string(),
                    source,
                })
            }
        };
        let pending = inner.state.borrow_mut().answered();
        let Some(pending) = pending else {
            return Err(BackendError::Lost {
                addr: inner.addr.to_string(),
                reason: "reply to a request that was never sent".into(),
            });
        };
        observe(&reply, pending.sent_at);
        let out = match pending.said {
            Said::Request(out) => out,
            // The ASKING before an ASK resend: its +OK is not for anyone.
            Said::Asking => continue,
            Said::Select(db) => match reply.error_message() {
                None => continue,
                // The socket stayed in its last database; what follows must not run there.
                Some(refusal) => {
                    return Err(BackendError::Refused {
                        addr: inner.addr.to_string(),
                        command: "SELECT",
                        reason: format!("{} (database {db})", String::from_utf8_lossy(refusal)),
                    })
                }
            },
        };
        let redirect = reply
            .error_message()
            .and_then(Redirect::classify)
            .filter(|r| !r.is_cluster_only() || inner.settings.follow_redirects.get());
        match redirect {
            Some(Redirect::NoScript) => {
                // The script must be loaded here, on this very node, before the resend.
                let mut out = out;
                out.node = Some(Arc::clone(&inner.addr));
                inner
                    .hooks
                    .redirect(out, Redirect::NoScript, reply.into_raw())
            }
            Some(redirect) => inner.hooks.redirect(out, redirect, reply.into_raw()),
            None => out.reply.answer(reply.into_raw(), &out.request, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::RefCell;

    use tokio::net::TcpListener;

    use crate::backend::testing::{local, node, until, Replies};
    use crate::placement::Unit;

    /// What the connection handed back to its worker.
    #[derive(Default)]
    struct FakeHooks {
        events: RefCell<Vec<String>>,
    }

    impl Hooks for FakeHooks {
        fn redirect(&self, _: Outbound, redirect: Redirect, _: Bytes) {
            self.events
                .borrow_mut()
                .push(format!("redirect {}", redirect.kind()));
        }
        fn reroute(&self, out: Outbound, error: &BackendError) {
            let what = if out.readonly { "read" } else { "write" };
            self.events
                .borrow_mut()
                .push(format!("reroute {what} ({})", error.kind()));
        }
        fn lost(&self, out: Outbound, error: &BackendError) {
            let what = if out.readonly { "read" } else { "write" };
            self.events
                .borrow_mut()
                .push(format!("lost {what} ({})", error.kind()));
        }
        fn failed(&self, error: &BackendError) {
            self.events
                .borrow_mut()
                .push(format!("failed ({})", error.kind()));
        }
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// A connection to `addr` whose hand-backs go to `hooks`.
    fn conn(addr: Arc<str>, hooks: &Rc<FakeHooks>) -> BackendConn {
        let settings = ConnSettings {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            reconnect_backoff: Duration::from_millis(100),
            limits: crate::resp::Limits::default(),
            follow_redirects: FollowRedirects::fixed(true),
            tls: None,
            stats: Arc::new(ProxyStats::new(1, "127.0.0.1:1".parse().unwrap())),
            worker: 0,
            kill_slow_scripts: false,
        };
        BackendConn::new(addr, Handshake::default(), Rc::new(settings), hooks.clone())
    }

    fn outbound(replies: &Rc<Replies>, place: u64, readonly: bool) -> Outbound {
        Outbound {
            request: Bytes::from_static(PING),
            reply: ReplyTarget::new(replies.clone(), place),
            unit: Unit::ZERO,
            node: None,
            client_id: 1,
            deadline: Instant::now() + Duration::from_secs(1),
            redirects: 0,
            retries: 0,
            readonly,
            asking: false,
            resp3: false,
            hold: true,
            lane: Lane::Shared,
            db: 0,
        }
    }

    /// A connection to a scripted node that reads `expect` bytes and answers `answer` (then
    /// closes, with `close`), the hooks it hands back to, and the replies it delivers.
    async fn scripted(
        expect: usize,
        answer: &'static [u8],
        close: bool,
    ) -> (BackendConn, Rc<FakeHooks>, Rc<Replies>) {
        let addr = node(expect, answer, close).await;
        let hooks = Rc::new(FakeHooks::default());
        (conn(addr, &hooks), hooks, Rc::new(Replies::default()))
    }

    #[test]
    fn replies_are_matched_to_requests_in_order() {
        local(async {
            let (conn, hooks, replies) =
                scripted(2 * PING.len(), b"+first\r\n+second\r\n", false).await;
            conn.send(outbound(&replies, 7, false), Instant::now());
            conn.send(outbound(&replies, 8, false), Instant::now());
            until(|| replies.0.borrow().len() == 2).await;
            assert_eq!(
                *replies.0.borrow(),
                [
                    (7, Bytes::from_static(b"+first\r\n")),
                    (8, Bytes::from_static(b"+second\r\n"))
                ]
            );
            assert!(hooks.events.borrow().is_empty());
        });
    }

    /// `SELECT 2` as the connection writes it.
    const SELECT_2: &[u8] = b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n";

    #[test]
    fn a_select_goes_only_before_a_request_of_another_database_and_its_reply_to_no_one() {
        local(async {
            // PING (db 0), SELECT 2, PING (db 2), PING (db 2): one SELECT for the two.
            let (conn, hooks, replies) = scripted(
                3 * PING.len() + SELECT_2.len(),
                b"+zero\r\n+OK\r\n+two\r\n+again\r\n",
                false,
            )
            .await;
            conn.send(outbound(&replies, 1, false), Instant::now());
            for place in [2, 3] {
                let out = Outbound {
                    db: 2,
                    ..outbound(&replies, place, false)
                };
                conn.send(out, Instant::now());
            }
            until(|| replies.0.borrow().len() == 3).await;
            let got: Vec<(u64, Bytes)> = replies.0.borrow().clone();
            assert_eq!(
                got,
                [
                    (1, Bytes::from_static(b"+zero\r\n")),
                    (2, Bytes::from_static(b"+two\r\n")),
                    (3, Bytes::from_static(b"+again\r\n"))
                ]
            );
            assert!(hooks.events.borrow().is_empty());
        });
    }

    #[test]
    fn a_refused_select_drops_the_connection_rather_than_run_in_the_wrong_database() {
        local(async {
            let (conn, hooks, replies) = scripted(
                PING.len() + SELECT_2.len(),
                b"-ERR DB index is out of range\r\n+PONG\r\n",
                false,
            )
            .await;
            let out = Outbound {
                db: 2,
                ..outbound(&replies, 1, false)
            };
            conn.send(out, Instant::now());
            until(|| hooks.events.borrow().len() >= 2).await;
            assert_eq!(
                *hooks.events.borrow(),
                ["lost write (refused)", "failed (refused)"],
                "the write after the refused SELECT may have run in database 0: it fails"
            );
            assert!(replies.0.borrow().is_empty());
        });
    }

    #[test]
    fn a_redirect_goes_back_to_the_worker_not_to_the_client() {
        local(async {
            let (conn, hooks, replies) =
                scripted(PING.len(), b"-MOVED 5 127.0.0.1:1\r\n", false).await;
            conn.send(outbound(&replies, 0, false), Instant::now());
            until(|| !hooks.events.borrow().is_empty()).await;
            assert_eq!(*hooks.events.borrow(), ["redirect moved"]);
            assert!(replies.0.borrow().is_empty());
        });
    }

    #[test]
    fn a_lost_connection_fails_the_written_write_and_reroutes_the_read() {
        local(async {
            let (conn, hooks, replies) = scripted(2 * PING.len(), b"", true).await;
            conn.send(outbound(&replies, 0, false), Instant::now());
            conn.send(outbound(&replies, 1, true), Instant::now());
            until(|| hooks.events.borrow().len() >= 3).await;
            let events = hooks.events.borrow();
            assert!(
                events.contains(&"lost write (lost)".to_string()),
                "{events:?}"
            );
            assert!(
                events.contains(&"reroute read (lost)".to_string()),
                "{events:?}"
            );
            assert!(events.contains(&"failed (lost)".to_string()), "{events:?}");
        });
    }

    #[test]
    fn a_dead_node_hands_requests_back_at_once_during_the_back_off() {
        local(async {
            let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: Arc<str> = closed.local_addr().unwrap().to_string().into();
            drop(closed);
            let (hooks, replies) = (Rc::new(FakeHooks::default()), Rc::new(Replies::default()));
            let conn = conn(addr, &hooks);
            conn.send(outbound(&replies, 0, false), Instant::now());
            until(|| hooks.events.borrow().len() >= 2).await;
            // In the back-off a new request is not queued on the dead node.
            conn.send(outbound(&replies, 1, false), Instant::now());
            let events = hooks.events.borrow();
            assert_eq!(
                *events,
                [
                    "reroute write (connect)",
                    "failed (connect)",
                    "reroute write (connect)"
                ],
                "never-sent writes are safe to route again; the failure is reported once"
            );
        });
    }
}
