//! Requests for slots on the move between pools (pool mode, `[migration]`): the keys a
//! request touches are first moved from the source pool with one `MIGRATE` there
//! (`migration::touch`), then the request runs on the destination. Also the worker's part in
//! a phase change: settling what it sent by an older table.
//!
//! ```text
//!  route_in ── unit moving from shard S ──► MIGRATE … KEYS k… on S (the client's connection)
//!                                             │ +OK / +NOKEY → the request to the destination
//!                                             │ IOERR / no reply → held, retried (deadline)
//!                                             │ error        → the client gets TRYAGAIN + why
//!  unit held (phase change) ──► retried after a short back-off through the then current table
//!  keys moving from pools onto the cluster ──► MIGRATE … KEYS k… on each pool that placed a key
//!                                             │ (size-guarded, as between pools)
//!                                             │ all +OK / +NOKEY → the request to the slot's node
//!                                             │ BIGKEY i         → copied in steps; held, retried
//!                                             │ MOVED (target)   → slot patched, routed again
//!                                             │ ASK / TRYAGAIN   → the slot is resharded inside
//!                                             │                    the cluster: held, retried
//!                                             │ IOERR / no reply → held, retried
//!                                             │ other error      → the client gets TRYAGAIN + why
//!  keys moving back onto the pools (abort) ──► EVAL "MIGRATE …" KEYS k… on the cluster node of
//!                                             each slot of its keys (no size guard: big keys
//!                                             move whole); the same replies (MOVED, ASK,
//!                                             TRYAGAIN from the node itself, IOERR), then the
//!                                             request to the pool the placement names
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Router;
use crate::backend::conn::{Lane, Outbound};
use crate::backend::dedicated::Lease;
use crate::backend::reply::Waiter;
use crate::backend::ReplyTarget;
use crate::migration::touch::{self, Outcome, Refusal};
use crate::placement::Unit;
use crate::topology::{MoveRoute, SlotTable, Toward};
use crate::wake::LocalSignal;

/// The reply of the `MIGRATE` sent for one request: when it comes, the request goes on.
struct AfterMigrate {
    router: Weak<Router>,
    out: RefCell<Option<Outbound>>,
    dest: Arc<str>,
}

impl Waiter for AfterMigrate {
    fn deliver(&self, _place: u64, reply: Bytes, _answered: Option<(&Bytes, Instant)>) {
        let Some(out) = self.out.borrow_mut().take() else {
            return;
        };
        match self.router.upgrade() {
            Some(router) => router.after_migrate(out, &self.dest, &reply),
            None => out.reply.fill(reply),
        }
    }
}

/// The replies of the `MIGRATE`s sent for one request moving keys between the pools and the
/// cluster (one per pool that placed one of its keys, or per cluster slot they are in): when
/// the last comes, the request goes on, after its client's earlier ones (`OnTouch::legacy`).
struct AfterLegacy {
    router: Weak<Router>,
    me: Weak<AfterLegacy>,
    out: RefCell<Option<Outbound>>,
    dest: Arc<str>,
    /// Which way the keys moved.
    toward: Toward,
    /// Moving back: each `MIGRATE` (by its place), until a cluster node sent it on with `ASK`
    /// (followed once: `ASKING` and the same request on the node importing the slot).
    unasked: RefCell<Vec<Option<Bytes>>>,
    client: u64,
    left: Cell<usize>,
    /// Every reply is in.
    done: Cell<bool>,
    /// The first failure's error line.
    failure: RefCell<Option<String>>,
    /// The keys of each `MIGRATE` (its reply's place), to name a big one (`BIGKEY i`).
    groups: Vec<Vec<Bytes>>,
    /// The first key a pool found too big to move whole: copied in steps first.
    big: RefCell<Option<Bytes>>,
}

impl Waiter for AfterLegacy {
    fn deliver(&self, place: u64, reply: Bytes, _answered: Option<(&Bytes, Instant)>) {
        match Outcome::of(&reply) {
            Outcome::Failed(error) if self.ask(place, &error) => return,
            Outcome::Failed(error) => {
                self.failure.borrow_mut().get_or_insert(error);
            }
            Outcome::Big(i) => {
                let key = self.groups.get(place as usize).and_then(|keys| keys.get(i));
                if let Some(key) = key {
                    self.big.borrow_mut().get_or_insert_with(|| key.clone());
                }
            }
            Outcome::Moved => {
                if let Some(router) = self.router.upgrade() {
                    router.topology.move_counters().moved_on_touch();
                }
            }
            Outcome::NoKey => {}
        }
        self.left.set(self.left.get().saturating_sub(1));
        if self.left.get() > 0 {
            return;
        }
        self.done.set(true);
        match self.router.upgrade() {
            Some(router) => router.flush_legacy(self.client),
            None => {
                if let Some(out) = self.out.borrow_mut().take() {
                    out.reply.fill(reply);
                }
            }
        }
    }
}

impl AfterLegacy {
    /// Moving back, a cluster node answered the `MIGRATE` at `place` with `ASK` (none of its
    /// keys is there any more: the slot is being resharded): send it once to the node the ASK
    /// names, after `ASKING`, on the client's connection there. True if it was sent: its reply
    /// counts instead.
    fn ask(&self, place: u64, error: &str) -> bool {
        let Some(addr) = touch::ask_target(error) else {
            return false;
        };
        let migrate = usize::try_from(place)
            .ok()
            .and_then(|i| self.unasked.borrow_mut().get_mut(i).and_then(Option::take));
        let (Some(migrate), Some(router), Some(me)) =
            (migrate, self.router.upgrade(), self.me.upgrade())
        else {
            return false;
        };
        let step = {
            let out = self.out.borrow();
            let Some(out) = out.as_ref() else {
                return false;
            };
            let target = ReplyTarget::new(me as Rc<dyn Waiter>, place);
            let mut step = out.on_behalf(migrate, target, Arc::clone(&addr));
            step.asking = true;
            step
        };
        router.send_to(&addr, step, Instant::now());
        true
    }
}

/// Counts one worker's requests a phase change must wait for: those between their on-touch
/// `MIGRATE` and their forwarding, and the dedicated-connection requests under way.
#[derive(Default)]
pub(super) struct OnTouch {
    in_flight: Cell<usize>,
    dedicated: Cell<usize>,
    idle: LocalSignal,
    /// Keys moving from pools onto the cluster: per client, its requests between their
    /// `MIGRATE`s and their forwarding, in arrival order. They go on in that order: a request
    /// whose keys two pools placed waits for both, and its client's later requests wait
    /// behind it.
    legacy: RefCell<HashMap<u64, VecDeque<Rc<AfterLegacy>>>>,
}

impl OnTouch {
    fn busy(&self) -> bool {
        self.in_flight.get() > 0 || self.dedicated.get() > 0
    }
}

/// One dedicated-connection request under way (a transaction, WATCH …), counted until
/// dropped so a phase change waits for it.
pub struct DedicatedTurn {
    router: Weak<Router>,
}

impl Drop for DedicatedTurn {
    fn drop(&mut self) {
        if let Some(router) = self.router.upgrade() {
            let on_touch = &router.on_touch;
            on_touch
                .dedicated
                .set(on_touch.dedicated.get().saturating_sub(1));
            if !on_touch.busy() {
                on_touch.idle.raise();
            }
        }
    }
}

/// Why a dedicated-connection request cannot go to its slot's node yet.
#[derive(Debug)]
pub enum NotYet {
    /// The slot is changing migration phase: try again shortly.
    Held(Bytes),
    /// Its keys could not be moved: the client's error reply.
    Failed(Bytes),
}

impl Router {
    /// Serve `out`, whose unit moves its keys from shard `source` to shard `dest` of `table`:
    /// move the keys it touches, then run it on `dest`'s master.
    pub(super) fn route_moving(
        &self,
        table: &SlotTable,
        source: usize,
        dest: usize,
        out: Outbound,
        now: Instant,
    ) {
        let (Some(from), Some(to)) = (table.shards().get(source), table.shards().get(dest)) else {
            let reply = touch::failure_reply(out.unit.get(), "no such pool");
            return self.fail(out, reply);
        };
        let keys = touch::keys_of(&out.request, self.custom);
        let big_key_bytes = self.big_key_bytes(out.deadline, now);
        if big_key_bytes > 0 && self.topology.stepped_copy().holds(out.db, &keys) {
            // One of its keys is being copied in steps: a MIGRATE now would block the source.
            let error = touch::stepping_reply(out.unit.get());
            return self.retry_later(out, error, now);
        }
        let migrate = touch::migrate_request(
            &to.master,
            to.auth.as_deref(),
            out.db,
            self.migrate_timeout_ms,
            &keys,
            big_key_bytes,
        );
        let dest_addr = Arc::clone(&to.master);
        let Some(migrate) = migrate else {
            // No key to move (or a destination that is not HOST:PORT, refused by config).
            return self.send_to(&dest_addr, out, now);
        };
        self.on_touch
            .in_flight
            .set(self.on_touch.in_flight.get() + 1);
        let source_addr = Arc::clone(&from.master);
        // The waiter owns the request until the MIGRATE's reply. The MIGRATE runs in the
        // client's database: the keys it names are that database's.
        let waiter = Rc::new(AfterMigrate {
            router: self.me.clone(),
            out: RefCell::new(None),
            dest: dest_addr,
        });
        let target = ReplyTarget::new(Rc::clone(&waiter) as Rc<dyn Waiter>, 0);
        let step = out.on_behalf(migrate, target, Arc::clone(&source_addr));
        *waiter.out.borrow_mut() = Some(out);
        // The client's own connection to the source: its earlier requests there run first.
        self.send_to(&source_addr, step, now);
    }

    /// Serve `out` while keys move between the pools and the cluster (`table` is the side
    /// they move to, [`SlotTable::other_side`] the one they move from): move the keys it
    /// touches from the pools that placed them to its slot's node (one `MIGRATE` per pool,
    /// on the client's connection there) — or, moving back, from the cluster nodes of their
    /// slots to the pool the placement names (one per slot) — then run it there.
    pub(super) fn route_legacy(&self, table: &SlotTable, mut out: Outbound, now: Instant) {
        let Some((toward, source)) = table.other_side() else {
            return self.send_to_unit(table, out, now);
        };
        let mut keys = touch::keys_of(&out.request, self.custom);
        // Placed as the table places it (a request held across the phase change that started
        // or turned the move was placed by the other side).
        if let Some(key) = keys.first() {
            out.unit = table.placement().unit_of(key);
        }
        if !touch::all_on(table, out.unit, &keys) {
            // Split by the other side's placement before the move turned: its keys now live
            // in more than one place. Nothing moved; the client sends it again.
            let error = touch::cluster_move_failure_reply(
                toward,
                out.unit.get(),
                "its keys were grouped by the placement in force before the phase change; send it again",
            );
            return self.fail(out, error);
        }
        if toward == Toward::Pools && out.db != 0 {
            // A cluster has database 0 only: no key of another database left the pools.
            keys.clear();
        }
        // Onto the cluster, big keys are copied in steps (size-guarded MIGRATE); moving back,
        // they move whole.
        let big_key_bytes = match toward {
            Toward::Cluster => self.big_key_bytes(out.deadline, now),
            Toward::Pools => 0,
        };
        if big_key_bytes > 0 && self.topology.stepped_copy().holds(out.db, &keys) {
            // One of its keys is being copied in steps: a MIGRATE now would block its pool.
            let error = touch::stepping_reply(out.unit.get());
            return self.retry_later(out, error, now);
        }
        let Some(shard) = table.shard_of(out.unit).and_then(|i| table.shards().get(i)) else {
            self.topology.request_refresh();
            let error = crate::backend::BackendError::SlotUnserved(out.unit.get()).to_reply();
            return self.hold_or_fail(out, error, now);
        };
        let dest = Arc::clone(&shard.master);
        let mut groups = Vec::new();
        let migrates: Vec<(Arc<str>, Bytes)> = touch::by_source(source, &keys)
            .into_iter()
            .filter_map(|(from, keys)| {
                let source = &source.shards().get(from)?.master;
                let migrate = match toward {
                    Toward::Cluster => touch::migrate_request(
                        &dest,
                        shard.auth.as_deref(),
                        out.db,
                        self.migrate_timeout_ms,
                        &keys,
                        big_key_bytes,
                    ),
                    Toward::Pools => touch::migrate_back_request(
                        &dest,
                        shard.auth.as_deref(),
                        self.migrate_timeout_ms,
                        &keys,
                    ),
                }?;
                groups.push(keys);
                Some((Arc::clone(source), migrate))
            })
            .collect();
        if migrates.is_empty() {
            return self.send_to(&dest, out, now);
        }
        self.on_touch
            .in_flight
            .set(self.on_touch.in_flight.get() + 1);
        // Moving back, each MIGRATE is kept for an ASK to follow.
        let unasked = match toward {
            Toward::Pools => migrates.iter().map(|(_, m)| Some(m.clone())).collect(),
            Toward::Cluster => Vec::new(),
        };
        let waiter = Rc::new_cyclic(|me| AfterLegacy {
            router: self.me.clone(),
            me: me.clone(),
            out: RefCell::new(None),
            dest,
            toward,
            unasked: RefCell::new(unasked),
            client: out.client_id,
            left: Cell::new(migrates.len()),
            done: Cell::new(false),
            failure: RefCell::new(None),
            groups,
            big: RefCell::new(None),
        });
        self.on_touch
            .legacy
            .borrow_mut()
            .entry(out.client_id)
            .or_default()
            .push_back(Rc::clone(&waiter));
        let mut steps = Vec::with_capacity(migrates.len());
        for (place, (source, migrate)) in migrates.into_iter().enumerate() {
            let target = ReplyTarget::new(Rc::clone(&waiter) as Rc<dyn Waiter>, place as u64);
            let step = out.on_behalf(migrate, target, Arc::clone(&source));
            steps.push((source, step));
        }
        // The waiter owns the request until the MIGRATEs' replies.
        *waiter.out.borrow_mut() = Some(out);
        for (source, step) in steps {
            // The client's own connection to each pool: its MIGRATEs there stay in order.
            self.send_to(&source, step, now);
        }
    }

    /// While keys move between the pools and a cluster: the unit `table` places `out`'s keys
    /// on, if it is another one than `out`'s and has a shard (a request placed by the other
    /// side's placement before the move turned).
    pub(super) fn placed_again(&self, table: &SlotTable, out: &Outbound) -> Option<Unit> {
        placed_again(table, out.unit, &out.request, self.custom)
    }

    /// The unit the live table places the keys of `payload` (a request for `unit`, or a
    /// MULTI … EXEC batch) on: `unit`, unless keys move between the pools and a cluster and
    /// the request was placed by the other side before the move started or turned.
    pub fn unit_now(&self, unit: Unit, payload: &[u8]) -> Unit {
        placed_again(&self.table(), unit, payload, self.custom).unwrap_or(unit)
    }

    /// Let `client`'s requests whose `MIGRATE`s all answered go on, in arrival order, up to
    /// the first still waiting.
    fn flush_legacy(&self, client: u64) {
        loop {
            let next = {
                let mut waiting = self.on_touch.legacy.borrow_mut();
                let Some(queue) = waiting.get_mut(&client) else {
                    return;
                };
                if !queue.front().is_some_and(|w| w.done.get()) {
                    return;
                }
                let next = queue.pop_front();
                if queue.is_empty() {
                    waiting.remove(&client);
                }
                next
            };
            let Some(next) = next else { return };
            let out = next.out.borrow_mut().take();
            if let Some(out) = out {
                let failure = next.failure.borrow_mut().take();
                let big = next.big.borrow_mut().take();
                // May route a request again (MOVED), which queues it anew: no borrow held.
                self.after_legacy(out, &next.dest, next.toward, failure, big);
            }
        }
    }

    /// Send `out` to its unit's master in `table`, whatever the table's moving overlay says.
    fn send_to_unit(&self, table: &SlotTable, out: Outbound, now: Instant) {
        match table.shard_of(out.unit).and_then(|i| table.shards().get(i)) {
            Some(shard) => {
                let master = Arc::clone(&shard.master);
                self.send_to(&master, out, now)
            }
            None => {
                let error = crate::backend::BackendError::SlotUnserved(out.unit.get()).to_reply();
                self.hold_or_fail(out, error, now)
            }
        }
    }

    /// Every `MIGRATE` for `out` (keys moving `toward` the cluster or the pools, to `dest`)
    /// answered: run `out` on its unit's owner; or, when a pool found `big` too big to move
    /// whole (onto the cluster), ask for its copy in steps and hold `out` meanwhile; or, when
    /// the cluster refused the keys, route it again (MOVED: the slot patched) or hold it while
    /// the slot is resharded (ASK, TRYAGAIN) or the `MIGRATE` timed out (IOERR), within its
    /// deadline; or fail it.
    fn after_legacy(
        &self,
        mut out: Outbound,
        dest: &Arc<str>,
        toward: Toward,
        failure: Option<String>,
        big: Option<Bytes>,
    ) {
        let left = self.on_touch.in_flight.get().saturating_sub(1);
        self.on_touch.in_flight.set(left);
        if !self.on_touch.busy() {
            self.on_touch.idle.raise();
        }
        let now = Instant::now();
        let stepping = big.is_some();
        if let Some(key) = big {
            self.topology.stepped_copy().want(out.db, key);
        }
        let Some(error) = failure else {
            if stepping {
                // Nothing of that pool moved: retried once the copy in steps is done.
                let error = touch::stepping_reply(out.unit.get());
                return self.retry_later(out, error, now);
            }
            let table = self.table();
            if table.other_side().map(|(t, _)| t) == Some(toward) {
                // The unit's owner now (the table may have changed since the MIGRATEs were
                // sent: a reshard inside the cluster), so a client's requests reach it in
                // order.
                return self.send_to_unit(&table, out, now);
            }
            // The move turned (or is turning: held) since: the request runs where its keys
            // were just moved, before any of its client's later requests (held, or moving its
            // keys back on the same connection there); the phase change's settle waits for
            // it (`Router::settle`).
            return self.send_to(dest, out, now);
        };
        let reply = touch::cluster_move_failure_reply(toward, out.unit.get(), &error);
        match touch::cluster_refusal(&error) {
            Some(Refusal::Moved { slot, addr }) if out.redirects < self.policy.max_redirects => {
                out.redirects += 1;
                self.topology.patch_moved(slot, &addr);
                self.topology.request_refresh();
                self.route(out, now);
            }
            Some(Refusal::Wait) => self.retry_later(out, reply, now),
            _ if touch::is_passing(&error) => self.retry_later(out, reply, now),
            _ => {
                self.topology.move_counters().on_touch_failed();
                tracing::warn!(
                    unit = out.unit.get(),
                    dest = %dest,
                    ?toward,
                    "keys moving between the pools and the cluster could not be moved on touch: {error}"
                );
                self.fail(out, reply);
            }
        }
    }

    /// The `MIGRATE` for `out` answered `reply`: run `out` on `dest`, or fail it.
    fn after_migrate(&self, out: Outbound, dest: &Arc<str>, reply: &[u8]) {
        let left = self.on_touch.in_flight.get().saturating_sub(1);
        self.on_touch.in_flight.set(left);
        if !self.on_touch.busy() {
            self.on_touch.idle.raise();
        }
        let outcome = Outcome::of(reply);
        if let Outcome::Big(i) = outcome {
            // Too big to move whole: copied in steps first, the request retried meanwhile.
            self.want_copied(&out.request, out.db, i);
            let error = touch::stepping_reply(out.unit.get());
            return self.retry_later(out, error, Instant::now());
        }
        if let Outcome::Failed(error) = &outcome {
            if touch::is_passing(error) {
                let reply = touch::failure_reply(out.unit.get(), error);
                return self.retry_later(out, reply, Instant::now());
            }
        }
        match self.on_touch_outcome(outcome) {
            Ok(()) => self.send_to(dest, out, Instant::now()),
            Err(error) => {
                tracing::warn!(
                    unit = out.unit.get(),
                    dest = %dest,
                    "keys of a moving slot could not be moved on touch: {error}"
                );
                let reply = touch::failure_reply(out.unit.get(), &error);
                self.fail(out, reply);
            }
        }
    }

    /// The size from which an on-touch move leaves a key to be copied in steps: 0 (move
    /// whole) once the request, due at `deadline`, has waited long enough.
    fn big_key_bytes(&self, deadline: Instant, now: Instant) -> u64 {
        if deadline.saturating_duration_since(now) > self.big_key_patience {
            self.big_key_bytes
        } else {
            0
        }
    }

    /// Ask for the copy in steps of the `index`th key of `request` (database `db`).
    fn want_copied(&self, request: &[u8], db: u32, index: usize) {
        if let Some(key) = touch::keys_of(request, self.custom).into_iter().nth(index) {
            self.topology.stepped_copy().want(db, key);
        }
    }

    /// Count an on-touch `MIGRATE`'s outcome: `Ok` when the request may go on (its keys
    /// moved, or none was left to move), the node's error otherwise.
    fn on_touch_outcome(&self, outcome: Outcome) -> Result<(), String> {
        let counters = self.topology.move_counters();
        match outcome {
            Outcome::Moved => {
                counters.moved_on_touch();
                Ok(())
            }
            Outcome::NoKey => Ok(()),
            Outcome::Big(_) => Err("a key too big to move whole".into()),
            Outcome::Failed(error) => {
                counters.on_touch_failed();
                Err(error)
            }
        }
    }

    /// Unblock this worker's blocking commands under way (each on a connection of its own to
    /// its node; `blocked` marks them as the proxy's doing): they run again, by the routing
    /// then in force.
    fn unblock_all(&self, blocked: &crate::ops::blocked::Blocked) {
        for (addr, id) in blocked.unblock_worker(self.index) {
            let router = self.me.clone();
            tokio::task::spawn_local(async move {
                let Some(router) = router.upgrade() else {
                    return;
                };
                let request = crate::resp::Request::from_args([
                    b"CLIENT" as &[u8],
                    b"UNBLOCK",
                    id.to_string().as_bytes(),
                    b"ERROR",
                ]);
                match router.lease(&addr, false).await {
                    Ok(mut conn) => {
                        if conn.call(request.raw(), 1).await.is_ok() {
                            router.give_back(conn);
                        }
                    }
                    Err(e) => tracing::debug!(%addr, "cannot unblock a blocking command: {e}"),
                }
            });
        }
    }

    /// Count a dedicated-connection request (not a blocking command: it may wait for long,
    /// see docs/GROWING-POOLS.md) until the returned guard is dropped.
    pub fn dedicated_turn(&self) -> DedicatedTurn {
        self.on_touch
            .dedicated
            .set(self.on_touch.dedicated.get() + 1);
        DedicatedTurn {
            router: self.me.clone(),
        }
    }

    /// Before `payload` (one request or a MULTI … EXEC batch for `unit`, in database `db`)
    /// goes to the unit's master on a dedicated connection: if the unit is moving, move the
    /// keys it touches to that master first (one `MIGRATE` on the source, on a connection of
    /// its own in the same database).
    pub async fn move_keys_first(
        &self,
        unit: Unit,
        payload: &[u8],
        db: u32,
        deadline: Instant,
    ) -> Result<(), NotYet> {
        let (source, dest) = {
            let table = self.table();
            match table.moving(unit) {
                None => return Ok(()),
                Some(MoveRoute::Hold) => {
                    return Err(NotYet::Held(super::touch_held_reply(unit.get())));
                }
                Some(MoveRoute::Legacy) => {
                    drop(table);
                    return self
                        .move_legacy_keys_first(unit, payload, db, deadline)
                        .await;
                }
                Some(MoveRoute::From(source)) => {
                    let shards = table.shards();
                    let (Some(from), Some(to)) = (
                        shards.get(source),
                        table.shard_of(unit).and_then(|i| shards.get(i)),
                    ) else {
                        return Ok(());
                    };
                    (
                        Arc::clone(&from.master),
                        (Arc::clone(&to.master), to.auth.clone()),
                    )
                }
            }
        };
        // Counted even for a blocking command: a phase change waits for its MIGRATE.
        let _turn = self.dedicated_turn();
        let keys = touch::keys_of(payload, self.custom);
        let big_key_bytes = self.big_key_bytes(deadline, Instant::now());
        if big_key_bytes > 0 && self.topology.stepped_copy().holds(db, &keys) {
            return Err(NotYet::Held(touch::stepping_reply(unit.get())));
        }
        let Some(migrate) = touch::migrate_request(
            &dest.0,
            dest.1.as_deref(),
            db,
            self.migrate_timeout_ms,
            &keys,
            big_key_bytes,
        ) else {
            return Ok(());
        };
        let held = |error: &str| NotYet::Held(touch::failure_reply(unit.get(), error));
        match self.migrate_on(&source, db, &migrate).await {
            Ok(Outcome::Big(i)) => {
                self.want_copied(payload, db, i);
                Err(NotYet::Held(touch::stepping_reply(unit.get())))
            }
            Ok(Outcome::Failed(error)) if touch::is_passing(&error) => Err(held(&error)),
            Ok(outcome) => self
                .on_touch_outcome(outcome)
                .map_err(|error| NotYet::Failed(touch::failure_reply(unit.get(), &error))),
            // No reply in time (the source busy, or gone): tried again within the deadline.
            Err(error) => Err(held(&error)),
        }
    }

    /// [`Router::move_keys_first`] while keys move between the pools and the cluster: one
    /// `MIGRATE` on each pool that placed one of the keys, to the node of `unit` — or, moving
    /// back, on the cluster node of each slot of the keys, to the pool of `unit` — on
    /// connections of their own, one after the other. A cluster refusal is `Held` (MOVED: the
    /// slot patched first), so the request tries again within its deadline; so is, onto the
    /// cluster, a key too big to move whole (`BIGKEY`), once its copy in steps is asked for.
    async fn move_legacy_keys_first(
        &self,
        unit: Unit,
        payload: &[u8],
        db: u32,
        deadline: Instant,
    ) -> Result<(), NotYet> {
        let mut keys = touch::keys_of(payload, self.custom);
        let (groups, dest, dest_auth, toward) = {
            let table = self.table();
            let (Some((toward, source)), Some(shard)) = (
                table.other_side(),
                table.shard_of(unit).and_then(|i| table.shards().get(i)),
            ) else {
                return Ok(());
            };
            if !touch::all_on(&table, unit, &keys) {
                let error = "its keys were grouped by the placement in force before the phase change; send it again";
                let reply = touch::cluster_move_failure_reply(toward, unit.get(), error);
                return Err(NotYet::Failed(reply));
            }
            if toward == Toward::Pools && db != 0 {
                // A cluster has database 0 only: no key of another database left the pools.
                keys.clear();
            }
            // The other side's logins: `lease_for` finds them by address in the table.
            let groups: Vec<(Arc<str>, Vec<Bytes>)> = touch::by_source(source, &keys)
                .into_iter()
                .filter_map(|(i, keys)| Some((Arc::clone(&source.shards().get(i)?.master), keys)))
                .collect();
            (
                groups,
                Arc::clone(&shard.master),
                shard.auth.clone(),
                toward,
            )
        };
        // Onto the cluster, big keys are copied in steps (size-guarded MIGRATE); moving back,
        // they move whole.
        let big_key_bytes = match toward {
            Toward::Cluster => self.big_key_bytes(deadline, Instant::now()),
            Toward::Pools => 0,
        };
        if big_key_bytes > 0 && self.topology.stepped_copy().holds(db, &keys) {
            return Err(NotYet::Held(touch::stepping_reply(unit.get())));
        }
        let _turn = self.dedicated_turn();
        for (source, keys) in groups {
            let (migrate, source_db) = match toward {
                Toward::Cluster => (
                    touch::migrate_request(
                        &dest,
                        dest_auth.as_deref(),
                        db,
                        self.migrate_timeout_ms,
                        &keys,
                        big_key_bytes,
                    ),
                    db,
                ),
                Toward::Pools => (
                    touch::migrate_back_request(
                        &dest,
                        dest_auth.as_deref(),
                        self.migrate_timeout_ms,
                        &keys,
                    ),
                    0,
                ),
            };
            let Some(migrate) = migrate else {
                continue;
            };
            let outcome = self.migrate_on(&source, source_db, &migrate).await;
            let error = match outcome {
                Ok(Outcome::Moved) => {
                    self.topology.move_counters().moved_on_touch();
                    continue;
                }
                Ok(Outcome::NoKey) => continue,
                Ok(Outcome::Big(i)) => {
                    if let Some(key) = keys.get(i) {
                        self.topology.stepped_copy().want(db, key.clone());
                    }
                    return Err(NotYet::Held(touch::stepping_reply(unit.get())));
                }
                Ok(Outcome::Failed(error)) => error,
                // No reply in time (the source busy, or gone): tried again within the deadline.
                Err(error) => {
                    let reply = touch::cluster_move_failure_reply(toward, unit.get(), &error);
                    return Err(NotYet::Held(reply));
                }
            };
            let reply = touch::cluster_move_failure_reply(toward, unit.get(), &error);
            return Err(match touch::cluster_refusal(&error) {
                Some(Refusal::Moved { slot, addr }) => {
                    self.topology.patch_moved(slot, &addr);
                    self.topology.request_refresh();
                    NotYet::Held(reply)
                }
                Some(Refusal::Wait) => NotYet::Held(reply),
                _ if touch::is_passing(&error) => NotYet::Held(reply),
                _ => {
                    self.topology.move_counters().on_touch_failed();
                    NotYet::Failed(reply)
                }
            });
        }
        Ok(())
    }

    /// Send `migrate` on a connection of its own to `source` (database `db`) and read its
    /// outcome; `Err` when no reply came (no connection, or none within the `MIGRATE`'s
    /// timeout and the connect timeout).
    async fn migrate_on(
        &self,
        source: &Arc<str>,
        db: u32,
        migrate: &[u8],
    ) -> Result<Outcome, String> {
        let lease = Lease {
            resp3: false,
            db,
            client: 0,
        };
        let mut conn = self
            .lease_for(source, lease)
            .await
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_millis(self.migrate_timeout_ms) + self.connect_timeout;
        let reply = match tokio::time::timeout(timeout, conn.call(migrate, 1)).await {
            Ok(Ok(mut replies)) => replies.pop(),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no reply from {source} in {timeout:?}")),
        };
        self.give_back(conn);
        reply
            .map(|reply| Outcome::of(reply.raw()))
            .ok_or_else(|| "no reply".to_string())
    }

    /// Settle what this worker sent by older tables, for a migration phase change: every
    /// request already on a master connection has its reply (a `PING` behind it on each
    /// connection answered) and no request waits between its `MIGRATE` and its forwarding.
    /// Blocking commands are unblocked instead (`blocked`) and run again by the new routing.
    /// Bounded by `within`; returns false if that passed first.
    pub async fn settle(&self, within: Duration, blocked: &crate::ops::blocked::Blocked) -> bool {
        let deadline = Instant::now() + within;
        self.unblock_all(blocked);
        let settled = async {
            self.ping_masters(deadline).await;
            let mut forwarded = false;
            while self.on_touch.busy() {
                forwarded = true;
                self.on_touch.idle.wait().await;
            }
            if forwarded {
                // Requests forwarded after their MIGRATE since the first PINGs: behind them.
                self.ping_masters(deadline).await;
            }
        };
        tokio::time::timeout_at(deadline, settled).await.is_ok()
    }

    /// A `PING` behind everything on every master connection of this worker, answered.
    async fn ping_masters(&self, deadline: Instant) {
        let pings = Rc::new(Pings::default());
        let mut conns = Vec::new();
        for (index, pool) in self.pools.iter().enumerate() {
            let resp3 = index & 1 == 1;
            let lane = if index >> 1 == 1 {
                Lane::Scripts
            } else {
                Lane::Shared
            };
            conns.extend(pool.borrow().master_conns().map(|c| (c, resp3, lane)));
        }
        pings.left.set(conns.len());
        for (i, (conn, resp3, lane)) in conns.into_iter().enumerate() {
            conn.send(
                Outbound {
                    request: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
                    reply: ReplyTarget::new(Rc::clone(&pings) as Rc<dyn Waiter>, i as u64),
                    unit: Unit::ZERO,
                    node: None,
                    client_id: 0,
                    deadline,
                    redirects: 0,
                    retries: 0,
                    readonly: true,
                    asking: false,
                    resp3,
                    hold: false,
                    lane,
                    db: 0,
                },
                Instant::now(),
            );
        }
        while pings.left.get() > 0 {
            pings.done.wait().await;
        }
    }
}

/// See [`Router::unit_now`]: `None` when `table` places `request`'s keys on `unit` (or no
/// move between the pools and a cluster is under way, or the request has no key).
fn placed_again(
    table: &SlotTable,
    unit: Unit,
    request: &[u8],
    custom: Option<&'static crate::command::custom::CustomCommands>,
) -> Option<Unit> {
    table.other_side()?;
    let key = touch::keys_of(request, custom).into_iter().next()?;
    let now = table.placement().unit_of(&key);
    (now != unit && table.shard_of(now).is_some()).then_some(now)
}

/// Counts the settling `PING`s still unanswered.
#[derive(Default)]
struct Pings {
    left: Cell<usize>,
    done: LocalSignal,
}

impl Waiter for Pings {
    fn deliver(&self, _place: u64, _reply: Bytes, _answered: Option<(&Bytes, Instant)>) {
        self.left.set(self.left.get().saturating_sub(1));
        if self.left.get() == 0 {
            self.done.raise();
        }
    }
}
