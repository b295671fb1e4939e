//! What the shared pipelined connections cannot carry: transactions (MULTI … EXEC, WATCH),
//! blocking commands and WAIT. These run on dedicated backend connections.
//!
//! ```text
//!  MULTI            → the session queues commands itself (+QUEUED), checking each is in the
//!                     transaction's slot (CROSSSLOT + EXECABORT otherwise, as Redis does)
//!  EXEC             → MULTI + queued + EXEC in one write, on a dedicated connection to the
//!                     slot's master (the WATCH connection if there is one)
//!  WATCH            → a dedicated connection, pinned to the session until EXEC/DISCARD/UNWATCH
//!  BLPOP, XREAD BLOCK … → alone on a dedicated connection; released when it answers
//! ```
//!
//! Ordering: an *exclusive* request (EXEC, WATCH, blocking, WAIT) starts only once every
//! earlier request of the session has its reply, and nothing after it is dispatched until it
//! has its own, exactly the order one Redis connection gives. While it waits the session keeps
//! reading (up to a bound) only to notice a client that hangs up: that drops the dedicated
//! connection, which releases whatever the node was blocking on the client's behalf.
//!
//! Redirects: a MOVED/ASK/TRYAGAIN answer to a blocking command or to any command of a
//! transaction means the node executed nothing (a transaction gets EXECABORT), so the whole
//! request is sent again where it belongs. With WATCH that would lose the watch, so EXEC then
//! answers a null array, the reply for "a watched key changed", and the client retries.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::context::Databases;
use super::WorkerContext;
use crate::backend::connect::ASKING;
use crate::backend::dedicated::{DedicatedConn, Lease};
use crate::backend::redirect::Redirect;
use crate::backend::BackendError;
use crate::placement::{KeyReply, KeySpace, Unit};
use crate::resp::{Reply, Request};
use crate::router::rule::{self, Attempts, Next};
use crate::router::NotYet;

use super::dispatch::{error, printable, Route};
use super::local::Local;
use super::queue::Expect;
use super::Session;

pub(super) const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
pub(super) const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
const OK: &[u8] = b"+OK\r\n";
const QUEUED: &[u8] = b"+QUEUED\r\n";
const NULL_ARRAY: &[u8] = b"*-1\r\n";
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// Commands that change the session's state rather than being forwarded one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pinned {
    /// MULTI: start queueing.
    Multi,
    /// DISCARD: drop the queued transaction.
    Discard,
    /// UNWATCH: release the WATCH connection.
    Unwatch,
    /// RESET: back to a fresh connection's state.
    Reset,
    /// Needs the session alone; see [`Exclusive`].
    Exclusive(Exclusive),
}

/// Requests that run alone on a dedicated connection, in the session's request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exclusive {
    /// EXEC of the queued transaction.
    Exec,
    /// WATCH of keys in `unit`.
    Watch {
        /// The routing unit of every watched key.
        unit: Unit,
    },
    /// A blocking command whose keys are in `unit`.
    Blocking {
        /// The routing unit of its keys.
        unit: Unit,
    },
    /// WAIT for replicas to acknowledge this client's writes.
    Wait,
    /// SCAN, which may walk over several masters in one call.
    Scan,
    /// SCRIPT KILL / FUNCTION KILL, on connections of their own to every master.
    Kill,
    /// CLIENT UNBLOCK of a proxy client: sent to the node it is blocked on.
    Unblock,
    /// A script of a client on the shared lane that is owed replies: it waits for them, then
    /// is sent pipelined on the scripts lane (`script_lane`), not alone.
    Script {
        /// The routing unit of its keys (`None`: it has none).
        unit: Option<Unit>,
        /// EVAL_RO, EVALSHA_RO, FCALL_RO.
        readonly: bool,
    },
    /// A command that writes keys of several slots, in steps
    /// (`commands.non_atomic_cross_slot_writes`).
    CrossSlot(super::cross_slot::Plan),
    /// SELECT checked on the nodes, or a command about a whole emulated database.
    Database(super::databases::Op),
}

/// A transaction being queued, between MULTI and EXEC.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    queued: Vec<Bytes>,
    /// The slot of each queued command (`None`: key-less), when the transaction may span
    /// slots (`commands.non_atomic_cross_slot_writes`).
    units: Vec<Option<Unit>>,
    /// Bytes of `queued`, bounded by `proxy.max_pending_bytes`.
    bytes: usize,
    unit: Option<Unit>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    failed: bool,
    /// Co-location rules in cluster mode: the queued commands whose replies carry key names
    /// (position in EXEC's array, shape, the key space they were queued in).
    key_replies: Vec<(usize, KeyReply, KeySpace)>,
    /// The slot of the command being queued (recorded in `units`).
    current: Option<Unit>,
    /// Pool mode: the SELECTs queued (their position in `queued`, the database each names,
    /// `None` for an argument the node will refuse); the session moves to the last one the
    /// node accepted.
    selects: Vec<(usize, Option<u32>)>,
    /// Cluster mode: the SELECTs queued, answered by the proxy — each one's position in
    /// EXEC's array and its reply, put into the nodes' array at EXEC.
    answered: Vec<(usize, Bytes)>,
    /// Cluster mode: the database the last accepted SELECT queued names; the commands
    /// queued after it are already in its key space (the session's, until EXEC).
    db_after: Option<u32>,
}

/// The connection WATCH pinned and the slot it watches. `conn` is `None` once the watch is
/// known to be void (its slot moved, or the connection broke): EXEC then fails as if a
/// watched key had changed.
#[derive(Debug)]
pub(super) struct Watched {
    pub(super) conn: Option<DedicatedConn>,
    pub(super) unit: Unit,
}

impl Transaction {
    /// A command was refused while queueing: EXEC will answer EXECABORT.
    pub(super) fn fail(&mut self) {
        self.failed = true;
    }

    /// Queue `command` unless the transaction would hold more than `limit` bytes (the
    /// session's pending-bytes bound: queued commands are requests not yet answered). Over it,
    /// the transaction fails and lets go of what it queued; a failed one stores nothing, since
    /// EXEC will only answer EXECABORT.
    fn enqueue(&mut self, command: &Bytes, limit: usize) -> Bytes {
        if self.bytes + command.len() > limit {
            self.failed = true;
            self.queued = Vec::new();
            return error(&format!(
                "ERR slotgate: transaction too large: its queued commands exceed \
                 proxy.max_pending_bytes ({limit} bytes)"
            ));
        }
        if !self.failed {
            self.bytes += command.len();
            self.queued.push(command.clone());
            self.units.push(self.current);
        }
        Bytes::from_static(QUEUED)
    }

    /// Commands queued so far (CLIENT LIST's `multi`).
    pub(super) fn queued(&self) -> usize {
        self.queued.len() + self.answered.len()
    }

    /// The position in EXEC's array of the next command queued.
    fn next_position(&self) -> usize {
        self.queued()
    }

    /// Whether the commands and watches involve more than one slot.
    fn spans_slots(&self, watched: Option<&Watched>, watched_also: &[Watched]) -> bool {
        let first = self.unit.or(watched.map(|w| w.unit));
        !watched_also.is_empty()
            || self
                .units
                .iter()
                .flatten()
                .chain(watched.map(|w| &w.unit))
                .any(|u| Some(*u) != first)
    }

    /// The queued commands with their slots (`None`: key-less).
    pub(super) fn commands(&self) -> impl Iterator<Item = (&Bytes, Option<Unit>)> {
        self.queued
            .iter()
            .zip(self.units.iter().copied().chain(std::iter::repeat(None)))
    }
}

impl Session {
    /// Serve a transaction or blocking command outside MULTI. Exclusive ones are deferred to
    /// the session loop, which runs them once earlier replies are in.
    pub(super) fn pinned(&mut self, request: Request, pinned: Pinned) {
        match pinned {
            Pinned::Multi => {
                self.tx = Some(Box::default());
                self.queue.push_ready(Bytes::from_static(OK));
            }
            Pinned::Discard => self.queue.push_ready(error("ERR DISCARD without MULTI")),
            Pinned::Unwatch => {
                self.release_watch();
                self.queue.push_ready(Bytes::from_static(OK));
            }
            Pinned::Reset => {
                self.reset();
                self.queue.push_ready(Bytes::from_static(b"+RESET\r\n"));
            }
            Pinned::Exclusive(Exclusive::Exec) => {
                self.queue.push_ready(error("ERR EXEC without MULTI"))
            }
            Pinned::Exclusive(exclusive) => self.deferred = Some(Box::new((request, exclusive))),
        }
    }

    /// Between MULTI and EXEC: queue the request (checking it belongs to the transaction's
    /// slot) or act on it at once, as Redis does for EXEC, DISCARD, MULTI, WATCH, QUIT, RESET.
    /// Kept out of `dispatch`, whose every request would otherwise carry its code.
    #[inline(never)]
    pub(super) fn in_transaction(&mut self, request: Request, route: Route) {
        let limit = self.worker.settings().client_limits.max_pending_bytes;
        // PUBLISH has no key: a cluster node runs it in any transaction and broadcasts it.
        let publish = self.last_spec.is_some_and(|spec| spec.name == "publish");
        let across = self.worker.settings().cross_slot_writes;
        let databases = self.worker.settings().databases;
        // Cluster mode: how many databases there are (1 when none is emulated).
        let emulated = match databases {
            Databases::Emulated(count) => Some(count),
            Databases::Real => None,
        };
        let Some(tx) = self.tx.as_mut() else { return };
        tx.current = None;
        let reply = match route {
            Route::Pinned(Pinned::Exclusive(Exclusive::Exec)) => {
                if !tx.key_replies.is_empty() {
                    let key_replies = std::mem::take(&mut tx.key_replies);
                    self.queue.expect_key_names(Expect::Exec(key_replies));
                }
                self.deferred = Some(Box::new((request, Exclusive::Exec)));
                return;
            }
            Route::Pinned(Pinned::Discard) => {
                let switched = tx.db_after.is_some();
                self.tx = None;
                if switched {
                    // Back to the session's own key space.
                    super::databases::switch(self, self.db);
                }
                self.release_watch();
                Bytes::from_static(OK)
            }
            Route::Pinned(Pinned::Reset) => {
                self.reset();
                Bytes::from_static(b"+RESET\r\n")
            }
            Route::Pinned(Pinned::Multi) => error("ERR MULTI calls can not be nested"),
            Route::Pinned(Pinned::Exclusive(Exclusive::Watch { .. })) => {
                error("ERR WATCH inside MULTI is not allowed")
            }
            Route::Local(Local::Quit) => {
                self.closing = true;
                Bytes::from_static(OK)
            }
            // Queued like Redis does: EXEC's array has its `+OK` (EXEC unwatches anyway).
            Route::Pinned(Pinned::Unwatch) => tx.enqueue(request.raw(), limit),
            // Cluster mode: a node has database 0 only. Answered here, its reply put in EXEC's
            // array; the commands queued after it go to its database's key space.
            Route::Local(Local::Select) if emulated.is_some() => {
                let count = emulated.unwrap_or(1);
                let reply = match super::databases::emulated_select(request.arg(1), count) {
                    Ok(db) => {
                        tx.db_after = Some(db);
                        self.space = databases.space(db);
                        Bytes::from_static(OK)
                    }
                    Err(reply) => reply,
                };
                let at = tx.next_position();
                tx.answered.push((at, reply));
                Bytes::from_static(QUEUED)
            }
            // Pool mode: the node runs it inside EXEC (accepting or refusing it as one Redis
            // does) and the commands after it in its database; see `exec`.
            Route::Local(Local::Select) => {
                let db = request
                    .arg(1)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse::<u32>().ok());
                let at = tx.queued.len();
                let reply = tx.enqueue(request.raw(), limit);
                if tx.queued.len() > at {
                    tx.selects.push((at, db));
                }
                reply
            }
            // Queued whatever the transaction's slot (see `publish`).
            Route::Unit { .. } if publish => tx.enqueue(request.raw(), limit),
            // Inside a transaction a blocking command does not block (Redis' rule).
            Route::Unit { unit, .. }
            | Route::Script {
                unit: Some(unit), ..
            }
            | Route::Pinned(Pinned::Exclusive(Exclusive::Blocking { unit })) => {
                let expected = tx.unit.or(self.watched.as_ref().map(|w| w.unit));
                // The placement may have changed since the first queued command (a move onto
                // a cluster starting, turning back or ending): keys that stay together pass.
                let placed_again = || {
                    tx.unit.is_some()
                        && self.watched.is_none()
                        && all_queued_in(&self.worker, &tx.queued, unit)
                };
                let mismatch = expected.is_some_and(|s| s != unit) && !across;
                if mismatch && !placed_again() {
                    tx.failed = true;
                    error(CROSSSLOT)
                } else {
                    // Placed again: the transaction runs where its keys are placed now.
                    tx.unit = if mismatch {
                        Some(unit)
                    } else {
                        tx.unit.or(Some(unit))
                    };
                    tx.current = Some(unit);
                    let shape = self.worker.settings().key_tags.as_ref().and(self.last_spec);
                    if let Some(shape) = shape.and_then(|spec| KeyReply::of(spec.name)) {
                        let at = tx.next_position();
                        tx.key_replies.push((at, shape, self.space.clone()));
                    }
                    tx.enqueue(request.raw(), limit)
                }
            }
            // Answered by the node inside EXEC like any queued command.
            Route::Local(Local::Ping | Local::Echo | Local::Time) | Route::Script { .. } => {
                tx.enqueue(request.raw(), limit)
            }
            Route::Split { .. } => {
                tx.failed = true;
                error(CROSSSLOT)
            }
            Route::Refused(reply) => {
                tx.failed = true;
                reply
            }
            Route::Local(_)
            | Route::FanOut { .. }
            | Route::Scan
            | Route::Sub(_)
            | Route::Pinned(Pinned::Exclusive(
                Exclusive::Wait
                | Exclusive::Scan
                | Exclusive::Kill
                | Exclusive::Unblock
                | Exclusive::CrossSlot(_)
                | Exclusive::Script { .. }
                | Exclusive::Database(_),
            )) => {
                tx.failed = true;
                let name = request
                    .args()
                    .first()
                    .map(|n| printable(n))
                    .unwrap_or_default();
                error(&format!(
                    "ERR slotgate: '{name}' inside MULTI is not supported: a transaction runs on one node"
                ))
            }
        };
        self.queue.push_ready(reply);
    }

    /// Run an exclusive request; every earlier reply of the session has arrived. Its reply,
    /// or `None` for a script now sent pipelined, whose reply reaches the queue by itself.
    pub(super) async fn exclusive(
        &mut self,
        request: Request,
        exclusive: Exclusive,
    ) -> Option<Bytes> {
        Some(match exclusive {
            Exclusive::Exec => self.exec().await,
            Exclusive::CrossSlot(super::cross_slot::Plan::Watch) => {
                self.watch_across(&request.args()).await
            }
            Exclusive::CrossSlot(plan) => {
                let (reply, wrote) = super::cross_slot::run(
                    &self.worker,
                    &request.args(),
                    plan,
                    self.lease(),
                    &self.space,
                )
                .await;
                if !wrote.is_empty() {
                    self.wrote_to_all(wrote.into_iter());
                }
                reply
            }
            Exclusive::Watch { unit } => self.watch(request.raw(), unit).await,
            Exclusive::Blocking { unit } => {
                // Blocking for ever (timeout 0) is bounded by a century: `on_master` tells a
                // blocking command by a bound beyond the request timeout.
                let wait = blocking_timeout(&request.args()).unwrap_or(FOREVER);
                let bound = Some(wait + self.worker.settings().request_timeout);
                self.wrote_to(unit);
                self.run_alone(Some(unit), request.raw(), 1, bound, true)
                    .await
            }
            Exclusive::Wait => {
                let mut wrote: Vec<Unit> = self.last_write.into_iter().collect();
                wrote.extend_from_slice(&self.last_write_also);
                super::wait::wait(&self.worker, &wrote, &request.args()).await
            }
            Exclusive::Scan => {
                super::scan::scan(&self.worker, &request.args(), self.backend_db).await
            }
            Exclusive::Database(op) => super::databases::run(self, op).await,
            Exclusive::Kill => super::kill::kill(&self.worker, request.raw()).await,
            Exclusive::Unblock => super::kill::unblock(&self.worker, &request.args()).await,
            Exclusive::Script { unit, readonly } => {
                self.send_script(request, unit, readonly, Instant::now());
                return None;
            }
        })
    }

    async fn exec(&mut self) -> Bytes {
        let Some(mut tx) = self.tx.take().map(|tx| *tx) else {
            return error("ERR EXEC without MULTI");
        };
        let watched = self.watched.take().map(|watched| *watched);
        let watched_also = std::mem::take(&mut self.watched_also);
        if tx.db_after.is_some() {
            // Cluster mode: the commands were queued in the key space of the last SELECT;
            // the session takes it only if the transaction runs (below).
            super::databases::switch(self, self.db);
        }
        if tx.failed {
            self.release(watched);
            for w in watched_also {
                self.release(Some(w));
            }
            return error(EXECABORT);
        }
        if tx.spans_slots(watched.as_ref(), &watched_also) {
            if !tx.selects.is_empty() || !tx.answered.is_empty() {
                self.release(watched);
                for w in watched_also {
                    self.release(Some(w));
                }
                return error(
                    "ERR slotgate: SELECT inside a transaction across slots is not supported",
                );
            }
            let watches: Vec<Watched> = watched.into_iter().chain(watched_also).collect();
            return self.exec_across(tx, watches).await;
        }
        if !tx.selects.is_empty() {
            let selects = std::mem::take(&mut tx.selects);
            let reply = self.exec_on_one_node(tx, watched, false).await;
            if let Some(db) = selected(&reply, &selects, self.worker.settings().limits) {
                super::databases::switch(self, db);
            }
            return reply;
        }
        if !tx.answered.is_empty() {
            let answered = std::mem::take(&mut tx.answered);
            let db_after = tx.db_after;
            let reply = self.exec_on_one_node(tx, watched, true).await;
            let Some(reply) = with_answers(&reply, &answered, self.worker.settings().limits) else {
                return reply; // Nothing ran (a watched key changed, or an error).
            };
            if let Some(db) = db_after {
                super::databases::switch(self, db);
            }
            return reply;
        }
        self.exec_on_one_node(tx, watched, true).await
    }

    /// EXEC of a transaction whose commands and watch are all in one slot (or key-less), on
    /// the watch's connection or one of its own; the connection goes back to the idle set
    /// when `give_back` (not after a SELECT inside: its socket's database changed).
    async fn exec_on_one_node(
        &mut self,
        tx: Transaction,
        watched: Option<Watched>,
        give_back: bool,
    ) -> Bytes {
        let mut payload = BytesMut::with_capacity(
            MULTI.len() + EXEC.len() + tx.queued.iter().map(Bytes::len).sum::<usize>(),
        );
        payload.extend_from_slice(MULTI);
        for command in &tx.queued {
            payload.extend_from_slice(command);
        }
        payload.extend_from_slice(EXEC);
        let replies = tx.queued.len() + 2;
        let unit = tx.unit.or(watched.as_ref().map(|w| w.unit));
        if let Some(unit) = unit {
            self.wrote_to(unit);
        }
        let timeout = self.worker.settings().request_timeout;
        match watched {
            // The watched slot has moved to another pool since WATCH (a migration): the
            // watch is void, like a changed key.
            Some(Watched {
                conn: Some(conn),
                unit,
            }) if master_of(&self.worker, Some(unit)).as_ref() != Some(conn.addr()) => {
                drop(conn);
                self.null_array()
            }
            Some(Watched {
                conn: Some(mut conn),
                ..
            }) => match exec_on(&mut conn, &payload, replies, timeout).await {
                Ok(replies) => {
                    if give_back {
                        self.worker.router().give_back(conn);
                    }
                    if replies.iter().any(|r| redirect_of(r).is_some()) {
                        // The watched slot moved: the watch is void, like a changed key.
                        self.null_array()
                    } else {
                        last(replies)
                    }
                }
                Err(e) => e.to_reply(),
            },
            Some(Watched { conn: None, .. }) => self.null_array(),
            None => {
                self.run_alone(unit, &payload, replies, Some(timeout), give_back)
                    .await
            }
        }
    }

    /// [`on_master`] in the session's protocol; the last reply (or the error) is the answer.
    /// The connection goes back to the idle set when `give_back` (else it is closed).
    async fn run_alone(
        &self,
        unit: Option<Unit>,
        payload: &[u8],
        replies: usize,
        bound: Option<Duration>,
        give_back: bool,
    ) -> Bytes {
        match on_master(&self.worker, unit, payload, replies, bound, self.lease()).await {
            Ok((conn, replies)) => {
                if give_back {
                    self.worker.router().give_back(conn);
                }
                last(replies)
            }
            Err(reply) => reply,
        }
    }

    pub(super) async fn watch(&mut self, request: &Bytes, unit: Unit) -> Bytes {
        let timeout = Some(self.worker.settings().request_timeout);
        let across = self.worker.settings().cross_slot_writes;
        if self.watched.as_ref().is_some_and(|w| w.unit != unit) && !across {
            return error(CROSSSLOT);
        }
        if self.watched.as_ref().is_some_and(|w| w.unit != unit)
            && across
            && !self.watched_also.iter().any(|w| w.unit == unit)
        {
            return match on_master(&self.worker, Some(unit), request, 1, timeout, self.lease())
                .await
            {
                Ok((conn, replies)) => {
                    if !replies.iter().any(Reply::is_error) {
                        self.watched_also.push(Watched {
                            conn: Some(conn),
                            unit,
                        });
                    }
                    last(replies)
                }
                Err(reply) => reply,
            };
        }
        let watched = match self.watched.as_deref_mut() {
            Some(w) if w.unit != unit => self.watched_also.iter_mut().find(|w| w.unit == unit),
            other => other,
        };
        if let Some(watched) = watched {
            let Some(conn) = watched.conn.as_mut() else {
                return Bytes::from_static(OK);
            };
            return match exec_on(conn, request, 1, self.worker.settings().request_timeout).await {
                Ok(replies) if replies.iter().any(|r| redirect_of(r).is_some()) => {
                    watched.conn = None;
                    Bytes::from_static(OK)
                }
                Ok(replies) => last(replies),
                Err(e) => {
                    watched.conn = None;
                    e.to_reply()
                }
            };
        }
        match on_master(&self.worker, Some(unit), request, 1, timeout, self.lease()).await {
            Ok((conn, replies)) => {
                if !replies.iter().any(Reply::is_error) {
                    self.watched = Some(Box::new(Watched {
                        conn: Some(conn),
                        unit,
                    }));
                }
                last(replies)
            }
            Err(reply) => reply,
        }
    }

    /// EXEC's answer when a watched key changed: `*-1`, or `_` in RESP3.
    pub(super) fn null_array(&self) -> Bytes {
        Bytes::from_static(if self.resp3 { b"_\r\n" } else { NULL_ARRAY })
    }

    /// Back to a fresh connection's state (RESET): RESP2, database 0, no transaction, no
    /// watch, no subscription.
    fn reset(&mut self) {
        self.resp3 = false;
        super::databases::switch(self, 0);
        // RESET also logs the client out, where logging in is required.
        if self.worker.users().required() {
            self.authenticated = false;
            self.user = None;
            self.info.set_user(None);
        }
        self.tx = None;
        self.release_watch();
        self.unsubscribe_all();
        self.monitor = None;
    }

    fn release_watch(&mut self) {
        let watched = self.watched.take().map(|watched| *watched);
        self.release(watched);
        for watched in std::mem::take(&mut self.watched_also) {
            self.release(Some(watched));
        }
    }

    /// Give a WATCH connection back to the worker's idle set once UNWATCH has cleared it.
    pub(super) fn release(&self, watched: Option<Watched>) {
        let Some(mut conn) = watched.and_then(|w| w.conn) else {
            return;
        };
        let worker = Rc::downgrade(&self.worker);
        let timeout = self.worker.settings().request_timeout;
        tokio::task::spawn_local(async move {
            if exec_on(&mut conn, UNWATCH, 1, timeout).await.is_ok() {
                if let Some(worker) = worker.upgrade() {
                    worker.router().give_back(conn);
                }
            }
        });
    }
}

/// Send `payload` (which draws `replies` replies) on a dedicated connection to the master of
/// `unit` (any serving master when `None`), following MOVED/ASK and waiting out TRYAGAIN or
/// CLUSTERDOWN until the request deadline. Each attempt's reading is bounded by `bound`.
/// Returns the connection (clean, for reuse) and the replies, or the client's error reply.
pub(super) async fn on_master(
    worker: &WorkerContext,
    unit: Option<Unit>,
    payload: &[u8],
    replies: usize,
    bound: Option<Duration>,
    lease: Lease,
) -> Result<(DedicatedConn, Vec<Reply>), Bytes> {
    let mut deadline = Instant::now() + worker.settings().request_timeout;
    let mut node: Option<Arc<str>> = None;
    let mut asking = false;
    let mut attempts = Attempts::default();
    // A migration phase change waits for this request, unless it may block for long (a
    // blocking command's bound is its own timeout plus the request timeout).
    let blocking = bound.is_some_and(|b| b > worker.settings().request_timeout);
    let mut turn = (!blocking).then(|| worker.router().dedicated_turn());
    loop {
        let redirected = node.is_some();
        // Placed again if keys started moving between the pools and a cluster meanwhile.
        let unit = unit.map(|u| worker.router().unit_now(u, payload));
        let Some(addr) = node.take().or_else(|| master_of(worker, unit)) else {
            worker.router().topology().request_refresh();
            let unit = unit.map_or(0, Unit::get);
            let reply = BackendError::SlotUnserved(unit).to_reply();
            pause(deadline, &mut attempts, reply).await?;
            continue;
        };
        if let Some(unit) = unit.filter(|_| !redirected) {
            match worker
                .router()
                .move_keys_first(unit, payload, lease.db, deadline)
                .await
            {
                Ok(()) => {}
                Err(NotYet::Held(reply)) => {
                    // Waiting, it holds nothing: the phase change that holds its slot must
                    // not wait for it (it would wait out the request's deadline).
                    drop(turn.take());
                    pause(deadline, &mut attempts, reply).await?;
                    turn = (!blocking).then(|| worker.router().dedicated_turn());
                    continue;
                }
                Err(NotYet::Failed(reply)) => return Err(reply),
            }
        }
        let mut conn = match worker.router().lease_for(&addr, lease).await {
            Ok(conn) => conn,
            // The database is out of the node's range: its own error, as one Redis gives.
            Err(BackendError::Refused { reason, .. }) => return Err(error(&reason)),
            Err(e) => {
                worker.router().topology().request_refresh();
                if !worker.router().policy().hold_when_down {
                    return Err(e.to_reply());
                }
                pause(deadline, &mut attempts, e.to_reply()).await?;
                continue;
            }
        };
        let sent: std::borrow::Cow<[u8]> = if asking {
            [ASKING, payload].concat().into()
        } else {
            payload.into()
        };
        let expected = replies + usize::from(asking);
        let mut got = if blocking {
            // The node's id for this connection leads the same write: a migration phase change
            // unblocks the command (CLIENT UNBLOCK), and it runs again by the new routing.
            let sent = [CLIENT_ID, &sent[..]].concat();
            let call = async {
                conn.write(&sent).await?;
                let id = conn.read().await?;
                let node_id = crate::resp::parse_frame(id.raw(), &worker.settings().limits)
                    .ok()
                    .and_then(|f| f.as_int());
                let turn = node_id.filter(|_| lease.client != 0).map(|id| {
                    let index = worker.index();
                    worker
                        .ops()
                        .blocked
                        .register(lease.client, index, &addr, id)
                });
                let mut got = Vec::with_capacity(expected);
                for _ in 0..expected {
                    got.push(conn.read().await?);
                }
                Ok((got, turn))
            };
            let (got, turn) = bounded(bound, call, &addr)
                .await
                .map_err(|e| e.to_reply())?;
            let unblocked = got
                .last()
                .and_then(Reply::error_message)
                .is_some_and(|e| e.starts_with(b"UNBLOCKED"));
            if unblocked && turn.as_ref().is_some_and(|t| t.unblocked_by_proxy()) {
                worker.router().give_back(conn);
                deadline = Instant::now() + worker.settings().request_timeout;
                continue;
            }
            got
        } else {
            bounded(bound, conn.call(&sent, expected), &addr)
                .await
                .map_err(|e| e.to_reply())?
        };
        if asking {
            got.remove(0);
        }
        let Some((redirect, raw)) = got
            .iter()
            .find_map(|r| redirect_of(r).map(|d| (d, r.raw().clone())))
        else {
            return Ok((conn, got));
        };
        // The node executed nothing (a transaction was aborted): the connection is clean.
        worker.router().give_back(conn);
        let now = Instant::now();
        let next = rule::decide(
            &redirect,
            attempts,
            worker.router().policy().max_redirects,
            now,
            deadline,
        );
        worker.router().take_note(&redirect, &next);
        match next {
            Next::Resend {
                addr, asking: ask, ..
            } => {
                node = Some(addr);
                asking = ask;
                attempts.redirects += 1;
            }
            Next::RetryAt(at) => {
                asking = false;
                attempts.retries = attempts.retries.saturating_add(1);
                tokio::time::sleep_until(at).await;
            }
            // NOSCRIPT is filtered out by `redirect_of`: inside a transaction the script
            // cannot be loaded first, so the client gets the node's reply.
            Next::LoadScript => return Err(raw),
            Next::GiveUp(give_up) => return Err(give_up.to_reply(raw)),
        }
    }
}

/// The master serving `unit`, or any serving master for `None`.
fn master_of(worker: &WorkerContext, unit: Option<Unit>) -> Option<Arc<str>> {
    let table = worker.router().topology().table();
    match unit {
        Some(unit) => {
            let shard = table.shard_of(unit)?;
            table.shards().get(shard).map(|s| Arc::clone(&s.master))
        }
        None => table.serving_masters().into_iter().next().map(|(m, _)| m),
    }
}

/// A blocking command's wait with timeout 0.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `CLIENT ID`, sent ahead of a blocking command.
const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

/// Wait before another attempt, or give up with `reply` if the deadline would pass first.
async fn pause(deadline: Instant, attempts: &mut Attempts, reply: Bytes) -> Result<(), Bytes> {
    let at = rule::retry_at(attempts.retries, Instant::now(), deadline).ok_or(reply)?;
    attempts.retries = attempts.retries.saturating_add(1);
    tokio::time::sleep_until(at).await;
    Ok(())
}

/// Await `call`, bounded by `bound` if given.
pub(super) async fn bounded<T>(
    bound: Option<Duration>,
    call: impl std::future::Future<Output = Result<T, BackendError>>,
    addr: &str,
) -> Result<T, BackendError> {
    match bound {
        None => call.await,
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(BackendError::Timeout {
                addr: addr.to_string(),
                ms: limit.as_millis() as u64,
            })
        }),
    }
}

/// `call` on `conn`, bounded by `timeout`.
pub(super) async fn exec_on(
    conn: &mut DedicatedConn,
    payload: &[u8],
    replies: usize,
    timeout: Duration,
) -> Result<Vec<Reply>, BackendError> {
    let addr = Arc::clone(conn.addr());
    bounded(Some(timeout), conn.call(payload, replies), &addr).await
}

/// A redirect the dedicated path follows (NOSCRIPT is passed to the client here: inside a
/// transaction the script cannot be loaded first).
pub(super) fn redirect_of(reply: &Reply) -> Option<Redirect> {
    reply
        .error_message()
        .and_then(Redirect::classify)
        .filter(|r| *r != Redirect::NoScript)
}

/// The database a transaction's SELECTs leave the connection in: the last one the node
/// accepted (`+OK` at its place in EXEC's array), `None` when none did or EXEC ran nothing.
fn selected(
    exec_reply: &Bytes,
    selects: &[(usize, Option<u32>)],
    limits: crate::resp::Limits,
) -> Option<u32> {
    let Ok(crate::resp::Frame::Array(results)) = crate::resp::parse_frame(exec_reply, &limits)
    else {
        return None;
    };
    selects
        .iter()
        .rev()
        .filter(|(at, _)| {
            matches!(results.get(*at), Some(crate::resp::Frame::Simple(ok)) if &ok[..] == b"OK")
        })
        .find_map(|&(_, db)| db)
}

/// EXEC's array from the node with the replies the proxy gave (`answered`: each one's
/// position in the client's array) put in their places; `None` when EXEC did not answer an
/// array (nothing ran).
fn with_answers(
    exec_reply: &Bytes,
    answered: &[(usize, Bytes)],
    limits: crate::resp::Limits,
) -> Option<Bytes> {
    let crate::resp::Frame::Array(mut results) =
        crate::resp::parse_frame(exec_reply, &limits).ok()?
    else {
        return None;
    };
    for (at, reply) in answered {
        let frame = crate::resp::parse_frame(reply, &limits).ok()?;
        results.insert((*at).min(results.len()), frame);
    }
    let mut out = BytesMut::with_capacity(exec_reply.len() + 16 * answered.len());
    crate::resp::Frame::Array(results).encode(&mut out);
    Some(out.freeze())
}

fn last(mut replies: Vec<Reply>) -> Bytes {
    replies
        .pop()
        .map(|r| r.raw().clone())
        .unwrap_or_else(|| error("ERR slotgate: no reply"))
}

/// How long a blocking command may block, from its own arguments; `None` for "forever" (a
/// zero timeout) or an argument the node will reject at once anyway.
pub(super) fn blocking_timeout(args: &[&[u8]]) -> Option<Duration> {
    let name = args.first()?.to_ascii_lowercase();
    let (value, unit_ms) = match &name[..] {
        b"blmpop" | b"bzmpop" => (args.get(1)?, false),
        b"xread" | b"xreadgroup" => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"block"))?;
            (args.get(at + 1)?, true)
        }
        _ => (args.last()?, false),
    };
    let value: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    if !(value.is_finite() && value > 0.0) {
        return None;
    }
    let seconds = if unit_ms { value / 1000.0 } else { value };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Whether every key of the `queued` commands is in `unit` as the table places keys now (a
/// transaction whose first command was placed by another placement). Off the request path:
/// only when a queued command's unit differs from the transaction's.
#[cold]
fn all_queued_in(worker: &WorkerContext, queued: &[Bytes], unit: Unit) -> bool {
    let table = worker.router().table();
    let custom = worker.custom_commands();
    queued.iter().all(|raw| {
        crate::migration::touch::keys_of(raw, custom)
            .iter()
            .all(|key| table.placement().unit_of(key) == unit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::test_args as args;

    #[test]
    fn blocking_timeouts_come_from_the_right_argument() {
        let t = |words: &[&str]| blocking_timeout(&args(words));
        assert_eq!(
            t(&["BLPOP", "a", "b", "1.5"]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(t(&["BLPOP", "a", "0"]), None);
        assert_eq!(
            t(&["BLMPOP", "2", "1", "l", "LEFT"]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            t(&["XREAD", "BLOCK", "250", "STREAMS", "s", "$"]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(t(&["BRPOPLPUSH", "a", "b", "x"]), None);
    }

    #[test]
    fn a_transaction_is_bounded_by_the_pending_bytes() {
        let mut tx = Transaction::default();
        let command = Bytes::from(vec![b'x'; 40]);
        assert_eq!(&tx.enqueue(&command, 100)[..], QUEUED);
        assert_eq!(&tx.enqueue(&command, 100)[..], QUEUED);
        let refused = tx.enqueue(&command, 100);
        assert!(refused.starts_with(b"-ERR slotgate: transaction too large"));
        assert!(tx.failed && tx.queued.is_empty(), "the memory is let go");
        // Later commands are acknowledged as Redis does, but not stored.
        assert_eq!(&tx.enqueue(&Bytes::from_static(b"x"), 100)[..], QUEUED);
        assert!(tx.queued.is_empty());
    }
}
