//! Sending a request to the node that owns its slot, and following it when the cluster says
//! it is elsewhere or not ready: the reason clients never see MOVED, ASK or TRYAGAIN.
//!
//! ```text
//!  route(out) ── table: slot → master (reads: replica by read policy) ──► BackendConn::send
//!      ▲                                   │ reply is MOVED  → patch the slot, refresh soon, resend to the named node
//!      │                                   │ reply is ASK    → resend to the named node as ASKING + request
//!      │                                   │ TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN → retry later
//!      │                                   │ node down / connection lost → reroute (never-sent and reads only)
//!      └──── held: retried after a capped back-off, until the request's deadline ◄┘
//! ```
//!
//! Every retry path ends at the request's deadline (`backend.request_timeout_ms` after it was
//! received) or after `cluster.max_redirects` redirects, with a clear error, never a hang.
//! Held requests are re-routed through the *current* table, so a failover's new master is
//! used as soon as a refresh publishes it.

use std::cell::RefCell;
use std::rc::Weak;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::backend::conn::{Hooks, Outbound};
use crate::backend::pool::Pick;
use crate::backend::redirect::Redirect;
use crate::backend::BackendError;
use crate::config::ReadPolicy;
use crate::topology::SlotTable;
use crate::wake::LocalSignal;
use crate::worker::Worker;

pub mod rule;

use rule::{Attempts, Next};

/// How the router treats requests it cannot send right now.
#[derive(Clone, Copy, Debug)]
pub struct RoutePolicy {
    /// MOVED/ASK redirects one request may follow.
    pub max_redirects: u8,
    /// Hold requests for a down node (until their deadline) instead of failing them at once.
    pub hold_when_down: bool,
}

/// Requests waiting for a retry, with the error to give if their deadline passes first.
#[derive(Default)]
pub struct Held {
    entries: RefCell<Vec<HeldRequest>>,
    wake: LocalSignal,
}

struct HeldRequest {
    due: Instant,
    out: Outbound,
    /// The reply the client gets if the request cannot be retried in time.
    error: Bytes,
}

impl Worker {
    /// Send `out` to the node of its slot in the current table (or to its pinned node): the
    /// master, or for a read-only request the master or a replica as the shard's read policy
    /// says.
    pub fn route(&self, out: Outbound, now: Instant) {
        self.route_in(&self.table(), out, now);
    }

    /// [`Worker::route`] by `table`, which the caller has just loaded (one table load per
    /// request on the hot path).
    pub fn route_in(&self, table: &SlotTable, out: Outbound, now: Instant) {
        if let Some(node) = out.node.clone() {
            return self.send_to(&node, out, now);
        }
        let Some(shard) = table.shard_of(out.slot) else {
            self.topology.request_refresh();
            let error = BackendError::SlotUnserved(out.slot.get()).to_reply();
            return self.hold_or_fail(out, error, now);
        };
        let mut pool = self.pool_for(&out).borrow_mut();
        let pick = if out.readonly {
            let topology = &self.topology;
            pool.read_conn(
                table,
                topology.health_generation(),
                || Arc::clone(&topology.health()),
                shard,
                out.client_id,
                out.retries,
            )
        } else {
            match pool.master_conn(table, shard, out.client_id) {
                Some(conn) => Pick::Conn(conn),
                None => Pick::NoShard,
            }
        };
        let conn = match pick {
            Pick::Conn(conn) => conn.clone(),
            Pick::NoShard => {
                drop(pool);
                let error = BackendError::SlotUnserved(out.slot.get()).to_reply();
                return self.fail(out, error);
            }
            Pick::NoHealthyReplica => {
                drop(pool);
                let error = BackendError::NoReplica(out.slot.get()).to_reply();
                return self.fail(out, error);
            }
        };
        drop(pool);
        conn.send(out, now);
    }

    /// A read handed back by a failed connection, on its first try, for a shard that reads
    /// from replicas: send it again at once (to the master, or the next healthy replica)
    /// rather than hold it until the health checker ejects the replica. Returns it otherwise.
    fn reroute_read(&self, mut out: Outbound, now: Instant) -> Option<Outbound> {
        if !out.readonly || out.node.is_some() || out.retries > 0 {
            return Some(out);
        }
        let table = self.table();
        let Some(shard) = table.shard_of(out.slot) else {
            return Some(out);
        };
        let policy = self.pool_for(&out).borrow_mut().read_policy(&table, shard);
        if policy == ReadPolicy::Master {
            return Some(out);
        }
        drop(table);
        out.retries = 1;
        self.stats().retried();
        self.route(out, now);
        None
    }

    /// Send `out` to the node at `addr`, whatever the table says (a redirect named it).
    fn send_to(&self, addr: &Arc<str>, out: Outbound, now: Instant) {
        let table = self.table();
        let conn = self
            .pool_for(&out)
            .borrow_mut()
            .conn_for_addr(&table, addr, out.client_id);
        conn.send(out, now);
    }

    /// The connections for `out`'s protocol.
    #[inline]
    fn pool_for(&self, out: &Outbound) -> &std::cell::RefCell<crate::backend::BackendPool> {
        if out.resp3 {
            &self.pool3
        } else {
            &self.pool
        }
    }

    /// Retry `out` later if policy and deadline allow, else fail it with `error`.
    fn hold_or_fail(&self, out: Outbound, error: Bytes, now: Instant) {
        if self.policy.hold_when_down {
            self.retry_later(out, error, now);
        } else {
            self.fail(out, error);
        }
    }

    /// Queue `out` for another attempt after a capped back-off, unless that would pass its
    /// deadline: then it fails now with `error`.
    fn retry_later(&self, out: Outbound, error: Bytes, now: Instant) {
        match rule::retry_at(out.retries, now, out.deadline) {
            Some(due) => self.hold_until(due, out, error),
            None => self.fail(out, error),
        }
    }

    /// Hold `out` until `due`, then route it again (or fail it with `error` if its deadline
    /// has passed by then).
    fn hold_until(&self, due: Instant, mut out: Outbound, error: Bytes) {
        out.retries = out.retries.saturating_add(1);
        self.stats().retried();
        self.held
            .entries
            .borrow_mut()
            .push(HeldRequest { due, out, error });
        self.held.wake.raise();
    }

    fn fail(&self, out: Outbound, error: Bytes) {
        self.stats().failed();
        // Timed: a request that waited out a dead node belongs in the slow log.
        out.reply.answer(error, &out.request, Instant::now());
    }

    /// Carry out the redirect rule for a request the cluster bounced with `reply`.
    fn follow(&self, mut out: Outbound, redirect: Redirect, reply: Bytes) {
        let now = Instant::now();
        let attempts = Attempts {
            redirects: out.redirects,
            retries: out.retries,
        };
        let next = rule::decide(
            &redirect,
            attempts,
            self.policy.max_redirects,
            now,
            out.deadline,
        );
        self.take_note(&redirect, &next);
        match next {
            Next::Resend { addr, asking, .. } => {
                out.redirects += 1;
                out.asking = asking;
                self.send_to(&addr, out, now);
            }
            Next::RetryAt(at) => {
                out.asking = false;
                self.hold_until(at, out, reply);
            }
            Next::LoadScript => self.load_script_and_resend(out, reply, now),
            Next::GiveUp(give_up) => {
                if let rule::GiveUp::TooManyRedirects { slot, addr } = &give_up {
                    tracing::warn!(%slot, %addr, "request gave up after {} redirects", out.redirects);
                }
                self.fail(out, give_up.to_reply(reply));
            }
        }
    }

    /// What the redirect rule's answer `next` to `redirect` means beyond the one request, for
    /// the pipelined and the dedicated paths alike: the redirect counted, a MOVED slot patched
    /// in the table, a topology refresh asked for.
    pub(crate) fn take_note(&self, redirect: &Redirect, next: &Next) {
        self.redirects.count(redirect);
        match next {
            // Given up for the cap: the stats count only redirects followed.
            Next::GiveUp(rule::GiveUp::TooManyRedirects { .. }) => return,
            Next::Resend {
                addr,
                moved: Some(slot),
                ..
            } => self.topology.patch_moved(*slot, addr),
            _ => {}
        }
        if rule::refreshes(redirect) {
            self.topology.request_refresh();
        }
        let stats = self.stats();
        match redirect {
            Redirect::Moved { .. } => stats.moved(),
            Redirect::Ask { .. } => stats.asked(),
            Redirect::TryAgain
            | Redirect::Loading
            | Redirect::ClusterDown
            | Redirect::MasterDown => stats.try_again(),
            Redirect::NoScript => {}
        }
    }

    /// NOSCRIPT on the node `out` was pinned to: load the script there, then resend on the
    /// same connection; the client gets `reply` when the proxy does not know the script.
    fn load_script_and_resend(&self, mut out: Outbound, reply: Bytes, now: Instant) {
        let script = self.script_of(&out.request);
        let (Some(body), Some(node)) = (script, out.node.clone()) else {
            return out.reply.answer(reply, &out.request, now);
        };
        out.redirects += 1;
        let load = Outbound {
            request: crate::resp::Request::from_args([
                Bytes::from_static(b"SCRIPT"),
                Bytes::from_static(b"LOAD"),
                body,
            ])
            .raw()
            .clone(),
            reply: crate::session::ReplyTarget::discard(),
            slot: out.slot,
            node: Some(Arc::clone(&node)),
            client_id: out.client_id,
            deadline: out.deadline,
            redirects: out.redirects,
            retries: 0,
            readonly: false,
            asking: false,
            resp3: out.resp3,
        };
        // Same connection (same client id): the load runs before the resend.
        self.send_to(&node, load, now);
        self.send_to(&node, out, now);
    }
}

impl Worker {
    /// The body of the script an EVALSHA / EVALSHA_RO request names, if the proxy has seen it.
    fn script_of(&self, request: &Bytes) -> Option<Bytes> {
        let mut buf = bytes::BytesMut::from(&request[..]);
        let request = crate::resp::RequestDecoder::new(self.limits)
            .decode(&mut buf)
            .ok()??;
        let args = request.args();
        let name = args.first()?.to_ascii_lowercase();
        if name != b"evalsha" && name != b"evalsha_ro" {
            return None;
        }
        self.scripts.body(args.get(1)?)
    }
}

/// Retry held requests when they are due, until the worker stops.
pub async fn retry_loop(worker: Weak<Worker>) {
    loop {
        let Some(w) = worker.upgrade() else { return };
        let next = w.held.entries.borrow().iter().map(|h| h.due).min();
        match next {
            None => w.held.wake.wait().await,
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = w.held.wake.wait() => {}
                }
            }
        }
        let now = Instant::now();
        let due: Vec<HeldRequest> = {
            let mut entries = w.held.entries.borrow_mut();
            let (due, waiting) = entries.drain(..).partition(|h| h.due <= now);
            *entries = waiting;
            due
        };
        for held in due {
            if now >= held.out.deadline {
                w.fail(held.out, held.error);
            } else {
                w.route(held.out, now);
            }
        }
    }
}

/// The worker's side of its backend connections' [`Hooks`]. Holds the worker weakly: the
/// worker owns the connections, which own this.
pub struct WorkerHooks(pub Weak<Worker>);

impl Hooks for WorkerHooks {
    fn redirect(&self, out: Outbound, redirect: Redirect, reply: Bytes) {
        match self.0.upgrade() {
            Some(worker) => worker.follow(out, redirect, reply),
            None => out.reply.fill(reply),
        }
    }

    fn reroute(&self, out: Outbound, error: &BackendError) {
        match self.0.upgrade() {
            Some(worker) => {
                let now = Instant::now();
                if let Some(out) = worker.reroute_read(out, now) {
                    worker.hold_or_fail(out, error.to_reply(), now);
                }
            }
            None => out.reply.fill(error.to_reply()),
        }
    }

    fn lost(&self, out: Outbound, error: &BackendError) {
        match self.0.upgrade() {
            Some(worker) => worker.fail(out, error.to_reply()),
            None => out.reply.fill(error.to_reply()),
        }
    }

    fn failed(&self, error: &BackendError) {
        metrics::counter!("slotgate_backend_failures_total", "kind" => error.kind()).increment(1);
        if let Some(worker) = self.0.upgrade() {
            worker.topology.request_refresh();
        }
    }
}
