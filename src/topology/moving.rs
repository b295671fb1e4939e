//! Slots on the move between pools (pool mode): for each routing unit being moved, the shard
//! its keys may still be on, or that its requests are held while a phase change settles.
//! While keys move from the pools onto a cluster, every slot of the cluster's table moves
//! from the *legacy* pools: the pool table that placed them ([`Moving::legacy`]); while that
//! move is aborted, every unit of the pools' table moves back from the cluster, whose table
//! it carries ([`Moving::back`]).
//! Part of a [`SlotTable`](super::SlotTable); pure.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::Notify;

use super::SlotTable;
use crate::placement::Unit;
use crate::slot::SLOT_COUNT;

/// Process-wide counters of keys moved between pools (every worker's on-touch moves and the
/// background mover's), for INFO, `/metrics` and the admin API. Relaxed atomics, bumped once
/// per `MIGRATE`; `/metrics` renders them at scrape time (they are this proxy's own, not the
/// process-wide `metrics` recorder's).
#[derive(Debug, Default)]
pub struct MoveCounters {
    on_touch: AtomicU64,
    on_touch_failures: AtomicU64,
    background: AtomicU64,
    background_bytes: AtomicU64,
    background_failures: AtomicU64,
}

impl MoveCounters {
    /// A request's `MIGRATE` moved its keys.
    pub fn moved_on_touch(&self) {
        self.on_touch.fetch_add(1, Relaxed);
    }

    /// A request's `MIGRATE` failed: the request did not run.
    pub fn on_touch_failed(&self) {
        self.on_touch_failures.fetch_add(1, Relaxed);
    }

    /// The background mover moved `keys` keys.
    pub fn moved_in_background(&self, keys: u64) {
        self.background.fetch_add(keys, Relaxed);
    }

    /// The background mover moved keys the source measured at `bytes` bytes (`MEMORY USAGE`).
    pub fn moved_bytes_in_background(&self, bytes: u64) {
        self.background_bytes.fetch_add(bytes, Relaxed);
    }

    /// A background `MIGRATE` (or the scan feeding it) failed.
    pub fn background_failed(&self) {
        self.background_failures.fetch_add(1, Relaxed);
    }

    /// `(on-touch moves, on-touch failures, keys moved in background, background failures)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.on_touch.load(Relaxed),
            self.on_touch_failures.load(Relaxed),
            self.background.load(Relaxed),
            self.background_failures.load(Relaxed),
        )
    }

    /// Bytes the background mover moved, as the source measured them (`MEMORY USAGE`).
    pub fn background_bytes(&self) -> u64 {
        self.background_bytes.load(Relaxed)
    }
}

/// The keys being copied in steps (`migration::stepped`) and those requests asked to be:
/// this instance's requests for a key being copied wait until its copy ends, so none moves
/// it whole meanwhile (the long block of the source the steps avoid). One load per request
/// for a moving slot; a lock only to ask for a copy (a request met a big key).
#[derive(Debug, Default)]
pub struct SteppedCopy {
    copying: ArcSwap<Vec<Arc<CopyingKey>>>,
    wanted: Mutex<Vec<(u32, Bytes)>>,
    asked: Notify,
}

/// A key being copied in steps.
#[derive(Debug)]
pub struct CopyingKey {
    db: u32,
    key: Bytes,
}

/// While alive, requests for the key [`SteppedCopy::begin`] named wait.
pub struct Copying<'a> {
    set: &'a SteppedCopy,
    key: Arc<CopyingKey>,
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        self.set.copying.rcu(|keys| {
            let mut keys = Vec::clone(keys);
            keys.retain(|k| !Arc::ptr_eq(k, &self.key));
            keys
        });
    }
}

impl SteppedCopy {
    /// A copy of `key` of database `db` begins; it ends when the guard is dropped (done or
    /// given up: requests for the key go on). `None` if that key is being copied already.
    pub fn begin(&self, db: u32, key: Bytes) -> Option<Copying<'_>> {
        // Under the lock of the asked-for keys: two tasks cannot both begin one key.
        let _writers = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        if self.holds(db, std::slice::from_ref(&key)) {
            return None;
        }
        let copying = Arc::new(CopyingKey { db, key });
        self.copying.rcu(|keys| {
            let mut keys = Vec::clone(keys);
            keys.push(Arc::clone(&copying));
            keys
        });
        Some(Copying {
            set: self,
            key: copying,
        })
    }

    /// True when a request of database `db` touching `keys` must wait for a copy.
    pub fn holds(&self, db: u32, keys: &[Bytes]) -> bool {
        let copying = self.copying.load();
        copying
            .iter()
            .any(|c| c.db == db && keys.iter().any(|k| *k == c.key))
    }

    /// The keys being copied, as `(database, name)`.
    pub fn current(&self) -> Vec<(u32, Bytes)> {
        let copying = self.copying.load();
        copying.iter().map(|c| (c.db, c.key.clone())).collect()
    }

    /// A request met `key` of database `db`, too big to move whole: ask for its copy in steps
    /// (once: asking again while it is asked for or copied does nothing).
    pub fn want(&self, db: u32, key: Bytes) {
        if self.holds(db, std::slice::from_ref(&key)) {
            return;
        }
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        if !wanted.iter().any(|(d, k)| *d == db && *k == key) {
            wanted.push((db, key));
            self.asked.notify_one();
        }
    }

    /// The keys asked for since the last call, waiting for one if there is none.
    pub async fn wanted(&self) -> Vec<(u32, Bytes)> {
        loop {
            let asked = self.asked.notified();
            let taken = std::mem::take(&mut *self.wanted.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            asked.await;
        }
    }
}

/// Not moving.
const STILL: u16 = u16::MAX;
/// Requests wait: a phase change is settling on every worker.
const HOLD: u16 = u16::MAX - 1;
/// The keys may still be on the other side of a move between the pools and a cluster
/// ([`Moving::other_side`]).
const LEGACY: u16 = u16::MAX - 2;

/// Which way keys move between the pools and a cluster (`migration.to_cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    /// From the pools onto the cluster (moving, paused): the table is the cluster's, the other
    /// side the pools'.
    Cluster,
    /// Back from the cluster onto the pools (the move aborted): the table is the pools', the
    /// other side the cluster's.
    Pools,
}

/// How a request for a moving unit is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveRoute {
    /// Move the request's keys here from shard `.0` (the source) first, then run it on the
    /// shard the table names.
    From(usize),
    /// Hold the request and route it again shortly: the unit's phase is changing.
    Hold,
    /// Move the request's keys here from the other side of a move between the pools and a
    /// cluster ([`Moving::other_side`]: the pools that placed them, or the cluster nodes
    /// owning their slots) first, then run it on the node the table names.
    Legacy,
}

/// The moving units of a table.
#[derive(Clone)]
pub struct Moving {
    /// Unit → source shard index, [`HOLD`], [`LEGACY`] or [`STILL`].
    route: Box<[u16]>,
    /// While [`LEGACY`] units exist: the other side of the move, and which way keys go —
    /// the pools keys move from onto the cluster, as a pool-mode table (their placement and
    /// masters), or the cluster they move back from (its table: slots and masters).
    legacy: Option<(Toward, Arc<SlotTable>)>,
}

impl PartialEq for Moving {
    fn eq(&self, other: &Moving) -> bool {
        let same_legacy = match (&self.legacy, &other.legacy) {
            (None, None) => true,
            (Some((ta, a)), Some((tb, b))) => ta == tb && (Arc::ptr_eq(a, b) || a.same_routing(b)),
            _ => false,
        };
        self.route == other.route && same_legacy
    }
}

impl Eq for Moving {}

impl Default for Moving {
    fn default() -> Self {
        Moving {
            route: vec![STILL; SLOT_COUNT].into_boxed_slice(),
            legacy: None,
        }
    }
}

impl std::fmt::Debug for Moving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let moving = self.route.iter().filter(|&&r| r != STILL).count();
        write!(f, "Moving({moving} units)")
    }
}

impl Moving {
    /// Units `first..=last` move their keys from shard `source`.
    pub fn set_source(&mut self, first: u16, last: u16, source: usize) {
        let source = u16::try_from(source).unwrap_or(STILL).min(HOLD - 1);
        for unit in first..=last {
            if let Some(r) = self.route.get_mut(unit as usize) {
                *r = source;
            }
        }
    }

    /// Every unit moves its keys from the pools of `pools` (a pool-mode table) onto the
    /// cluster whose table carries this.
    pub fn legacy(pools: Arc<SlotTable>) -> Moving {
        Moving {
            route: vec![LEGACY; SLOT_COUNT].into_boxed_slice(),
            legacy: Some((Toward::Cluster, pools)),
        }
    }

    /// Every unit moves its keys back from the cluster of `cluster` (its table) onto the pools
    /// whose table carries this (a move onto the cluster aborted).
    pub fn back(cluster: Arc<SlotTable>) -> Moving {
        Moving {
            route: vec![LEGACY; SLOT_COUNT].into_boxed_slice(),
            legacy: Some((Toward::Pools, cluster)),
        }
    }

    /// The pools keys move from onto the cluster, if they do.
    pub fn legacy_pools(&self) -> Option<&Arc<SlotTable>> {
        match &self.legacy {
            Some((Toward::Cluster, pools)) => Some(pools),
            _ => None,
        }
    }

    /// While keys move between the pools and a cluster (either way): which way, and the
    /// table of the side they move from.
    pub fn other_side(&self) -> Option<(Toward, &Arc<SlotTable>)> {
        self.legacy.as_ref().map(|(toward, t)| (*toward, t))
    }

    /// Requests for units `first..=last` are held.
    pub fn hold(&mut self, first: u16, last: u16) {
        for unit in first..=last {
            if let Some(r) = self.route.get_mut(unit as usize) {
                *r = HOLD;
            }
        }
    }

    /// How `unit` is served, if it is moving.
    #[inline]
    pub fn route(&self, unit: Unit) -> Option<MoveRoute> {
        match *self.route.get(unit.index())? {
            STILL => None,
            HOLD => Some(MoveRoute::Hold),
            LEGACY => Some(MoveRoute::Legacy),
            source => Some(MoveRoute::From(source as usize)),
        }
    }

    /// True when no unit moves or waits.
    pub fn is_empty(&self) -> bool {
        self.route.iter().all(|&r| r == STILL)
    }

    /// The distinct source shards.
    pub fn sources(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .route
            .iter()
            .filter(|&&r| r != STILL && r != HOLD && r != LEGACY)
            .map(|&r| r as usize)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The first unit moving out of shard `source`.
    pub fn first_from(&self, source: usize) -> Option<Unit> {
        let at = self.route.iter().position(|&r| r as usize == source)?;
        Unit::new(at as u16)
    }

    /// Ranges of units moving, as `"0-99 from SOURCE"` (source named by `name`), for logs.
    pub fn describe(&self, name: &dyn Fn(usize) -> String) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.route.len() {
            let r = self.route[start];
            let mut end = start;
            while end + 1 < self.route.len() && self.route[end + 1] == r {
                end += 1;
            }
            match r {
                STILL => {}
                HOLD => out.push(format!("{start}-{end} held")),
                LEGACY => out.push(match self.legacy {
                    Some((Toward::Pools, _)) => {
                        format!("{start}-{end} moving back from the cluster")
                    }
                    _ => format!("{start}-{end} moving from the pools"),
                }),
                source => out.push(format!(
                    "{start}-{end} moving from {}",
                    name(source as usize)
                )),
            }
            start = end + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_move_from_their_source_or_wait() {
        let mut m = Moving::default();
        assert!(m.is_empty());
        m.set_source(10, 20, 2);
        m.hold(15, 15);
        let at = |u| m.route(Unit::new(u).unwrap());
        assert_eq!(at(9), None);
        assert_eq!(at(10), Some(MoveRoute::From(2)));
        assert_eq!(at(15), Some(MoveRoute::Hold));
        assert_eq!(at(20), Some(MoveRoute::From(2)));
        assert_eq!(m.sources(), vec![2]);
        assert_eq!(m.first_from(2), Unit::new(10));
        assert_eq!(
            m.describe(&|i| format!("s{i}")),
            ["10-14 moving from s2", "15-15 held", "16-20 moving from s2"]
        );
    }

    #[test]
    fn requests_for_keys_copied_in_steps_wait_and_copies_are_asked_for_once() {
        let copy = SteppedCopy::default();
        let keys = [Bytes::from_static(b"a"), Bytes::from_static(b"big")];
        assert!(!copy.holds(0, &keys));
        let first = copy.begin(0, Bytes::from_static(b"big")).unwrap();
        let second = copy.begin(2, Bytes::from_static(b"a")).unwrap();
        assert!(
            copy.begin(2, Bytes::from_static(b"a")).is_none(),
            "copied already"
        );
        assert!(!copy.holds(1, &keys), "another database's key of that name");
        assert!(copy.holds(0, &keys));
        assert!(copy.holds(2, &keys[..1]));
        assert!(!copy.holds(0, &keys[..1]));
        drop(first);
        assert!(!copy.holds(0, &keys));
        assert_eq!(copy.current(), [(2, Bytes::from_static(b"a"))]);
        copy.want(2, Bytes::from_static(b"a")); // being copied: nothing to ask
        drop(second);
        copy.want(0, Bytes::from_static(b"big"));
        copy.want(0, Bytes::from_static(b"big"));
        copy.want(1, Bytes::from_static(b"big"));
        let wanted = tokio_test_block_on(copy.wanted());
        assert_eq!(
            wanted,
            [
                (0, Bytes::from_static(b"big")),
                (1, Bytes::from_static(b"big"))
            ]
        );
    }

    fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn onto_a_cluster_every_unit_moves_from_the_pools_unless_held() {
        let pools = Arc::new(SlotTable::empty());
        let mut m = Moving::legacy(Arc::clone(&pools));
        m.hold(0, 9);
        let at = |u| m.route(Unit::new(u).unwrap());
        assert_eq!(at(0), Some(MoveRoute::Hold));
        assert_eq!(at(10), Some(MoveRoute::Legacy));
        assert_eq!(at(16383), Some(MoveRoute::Legacy));
        assert!(m.sources().is_empty());
        assert!(Arc::ptr_eq(m.legacy_pools().unwrap(), &pools));
        assert_eq!(
            m.describe(&|i| format!("s{i}")),
            ["0-9 held", "10-16383 moving from the pools"]
        );
        assert_eq!(m.other_side().map(|(t, _)| t), Some(Toward::Cluster));
    }

    #[test]
    fn an_abort_moves_every_unit_back_from_the_cluster() {
        let cluster = Arc::new(SlotTable::empty());
        let mut back = Moving::back(Arc::clone(&cluster));
        back.hold(5, 5);
        assert_eq!(back.route(Unit::new(4).unwrap()), Some(MoveRoute::Legacy));
        assert_eq!(back.route(Unit::new(5).unwrap()), Some(MoveRoute::Hold));
        assert!(back.legacy_pools().is_none(), "the other side is no pools");
        let (toward, other) = back.other_side().unwrap();
        assert_eq!(toward, Toward::Pools);
        assert!(Arc::ptr_eq(other, &cluster));
        assert_ne!(back, {
            let mut forward = Moving::legacy(cluster);
            forward.hold(5, 5);
            forward
        });
        assert_eq!(
            back.describe(&|i| format!("s{i}")),
            [
                "0-4 moving back from the cluster",
                "5-5 held",
                "6-16383 moving back from the cluster"
            ]
        );
    }
}
