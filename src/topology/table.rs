//! The slot table: an immutable map from each of the 16384 slots to the shard serving it.
//!
//! A table is built once (from a discovery answer, or from the pools of the config) and never
//! mutated;
//! a change of topology is a new table published through `ArcSwap`, so the request path reads
//! it without locks and never sees a half-built map.

use std::fmt;
use std::sync::Arc;

use crate::backend::Credentials;
use crate::config::ReadPolicy;
use crate::placement::Placement;
use crate::placement::Unit;
use crate::slot::{Slot, SLOT_COUNT};

use super::moving::{MoveRoute, Moving};

/// Marks a slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// One shard as discovered: its slot ranges, its master and its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// Inclusive slot ranges `(first, last)`.
    pub ranges: Vec<(u16, u16)>,
    /// The master's `HOST:PORT`.
    pub master: String,
    /// The replicas' `HOST:PORT`, healthy ones only.
    pub replicas: Vec<String>,
    /// Replicas the answering node reports as `loading`: never synced, or synced but not yet
    /// heard of by that node (gossip lag). Not read from unless already in the table.
    pub loading: Vec<String>,
}

/// A node of the table: the master of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The master's `HOST:PORT`; also the key backend connections are pooled by.
    pub master: Arc<str>,
    /// The replicas' `HOST:PORT`.
    pub replicas: Vec<Arc<str>>,
    /// Credentials for `AUTH` on new connections to its master and replicas (a pool's own,
    /// or in cluster mode the cluster's), if configured.
    pub auth: Option<Arc<Credentials>>,
    /// Where this shard's read-only commands go.
    pub read_policy: ReadPolicy,
}

/// Per-shard settings a config adds to a table: credentials and read policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardSettings {
    /// Credentials for `AUTH` on new connections, if any.
    pub auth: Option<Arc<Credentials>>,
    /// Where the shard's read-only commands go.
    pub read_policy: ReadPolicy,
}

/// Why a set of shards does not make a table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A range names a slot outside 0..16384 or ends before it starts.
    #[error("invalid slot range {0}-{1}")]
    BadRange(u16, u16),
    /// Two shards claim the same slot.
    #[error("slot {slot} is claimed by both {first} and {second}")]
    Overlap {
        /// The slot.
        slot: u16,
        /// The shard that claimed it first.
        first: String,
        /// The shard that claimed it again.
        second: String,
    },
    /// More shards than the table can index.
    #[error("too many shards ({0})")]
    TooManyShards(usize),
}

/// Immutable slot → shard map with a version number, and the placement that turns keys into
/// slots (routing units) for it.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotTable {
    version: u64,
    placement: Arc<Placement>,
    shards: Vec<Shard>,
    /// Routing unit (a hash slot, or a ketama server index) → index into `shards`, or
    /// `UNASSIGNED`.
    units: Box<[u16]>,
    /// Cluster mode: the credentials of every node, including ones no shard names yet (a
    /// MOVED or ASK target). Pool mode: `None`, each shard has its own.
    cluster_auth: Option<Arc<Credentials>>,
    /// Pool mode: units whose keys are moving between pools (`None`: nothing moves, the
    /// request path's one check).
    moving: Option<Arc<Moving>>,
}

impl fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotTable")
            .field("version", &self.version)
            .field("placement", &self.placement.describe())
            .field("shards", &self.shards)
            .field("covered", &self.covered_units())
            .field("moving", &self.moving)
            .finish()
    }
}

impl SlotTable {
    /// An empty table (no slot served), version 0.
    pub fn empty() -> SlotTable {
        SlotTable {
            version: 0,
            placement: Arc::new(Placement::SLOTS),
            shards: Vec::new(),
            units: vec![UNASSIGNED; SLOT_COUNT].into_boxed_slice(),
            cluster_auth: None,
            moving: None,
        }
    }

    /// Build a table from discovered shards. Shards with the same master are merged.
    pub fn from_shards(shards: &[ShardInfo], version: u64) -> Result<SlotTable, TableError> {
        let mut table = SlotTable::empty();
        table.version = version;
        for info in shards {
            let index = match table.shards.iter().position(|s| *s.master == *info.master) {
                Some(i) => i,
                None => {
                    if table.shards.len() >= UNASSIGNED as usize {
                        return Err(TableError::TooManyShards(table.shards.len()));
                    }
                    table.shards.push(Shard {
                        master: info.master.as_str().into(),
                        replicas: info.replicas.iter().map(|r| r.as_str().into()).collect(),
                        auth: None,
                        read_policy: ReadPolicy::Master,
                    });
                    table.shards.len() - 1
                }
            };
            for &(first, last) in &info.ranges {
                if first > last || last as usize >= SLOT_COUNT {
                    return Err(TableError::BadRange(first, last));
                }
                for slot in first..=last {
                    let entry = &mut table.units[slot as usize];
                    if *entry != UNASSIGNED && *entry as usize != index {
                        return Err(TableError::Overlap {
                            slot,
                            first: table.shards[*entry as usize].master.to_string(),
                            second: info.master.clone(),
                        });
                    }
                    *entry = index as u16;
                }
            }
        }
        Ok(table)
    }

    /// This table with `placement` (how keys become slots) and, per shard index, the
    /// credentials its connections authenticate with and its read policy. Extra entries are
    /// ignored.
    pub fn with_pool_settings(
        mut self,
        placement: Placement,
        settings: Vec<ShardSettings>,
    ) -> SlotTable {
        self.placement = Arc::new(placement);
        for (shard, settings) in self.shards.iter_mut().zip(settings) {
            shard.auth = settings.auth;
            shard.read_policy = settings.read_policy;
        }
        self
    }

    /// This table with every shard reading by `policy` and authenticating with `auth`
    /// (cluster mode: one policy and one set of credentials for every node).
    pub fn with_cluster_settings(
        mut self,
        policy: ReadPolicy,
        auth: Option<Arc<Credentials>>,
    ) -> SlotTable {
        for shard in &mut self.shards {
            shard.read_policy = policy;
            shard.auth = auth.clone();
        }
        self.cluster_auth = auth;
        self
    }

    /// The credentials a new connection to `addr` authenticates with: those of the shard
    /// whose master or replica it is, else (cluster mode: a node the table does not know
    /// yet) the cluster's.
    pub fn credentials_for(&self, addr: &str) -> Option<Arc<Credentials>> {
        let known = |s: &&Shard| &*s.master == addr || s.replicas.iter().any(|r| &**r == addr);
        if let Some(shard) = self.shards.iter().find(known) {
            return shard.auth.clone();
        }
        // Keys moving between pools and a cluster: a node of the other side (a pool's
        // master, or a cluster node keys move back from) has that side's login.
        let other = self.other_side();
        if let Some(shard) = other.and_then(|(_, t)| t.shards.iter().find(known)) {
            return shard.auth.clone();
        }
        // A node not known yet is the cluster's: this table's, or the one keys move back from.
        match other {
            Some((super::Toward::Pools, cluster)) => cluster.cluster_auth.clone(),
            _ => self.cluster_auth.clone(),
        }
    }

    /// This table with `moving` units (pool mode: slots moving between pools). An empty
    /// overlay is dropped.
    pub fn with_moving(mut self, moving: Moving) -> SlotTable {
        self.moving = (!moving.is_empty()).then(|| Arc::new(moving));
        self
    }

    /// How a request for `unit` is served if the unit is moving: its keys first moved from a
    /// source shard, or held for a phase change. `None` (the common case) otherwise.
    #[inline]
    pub fn moving(&self, unit: Unit) -> Option<MoveRoute> {
        self.moving.as_ref()?.route(unit)
    }

    /// The moving units, if any.
    pub fn moving_units(&self) -> Option<&Moving> {
        self.moving.as_deref()
    }

    /// While keys move from pools onto this (cluster) table's nodes: the pools, as the
    /// pool-mode table that placed the keys.
    pub fn legacy_pools(&self) -> Option<&Arc<SlotTable>> {
        self.moving.as_deref()?.legacy_pools()
    }

    /// While keys move between the pools and a cluster, either way: which way, and the table
    /// of the side they move from (see [`Moving::other_side`]).
    pub fn other_side(&self) -> Option<(super::Toward, &Arc<SlotTable>)> {
        self.moving.as_deref()?.other_side()
    }

    /// How keys map to this table's slots (routing units).
    #[inline]
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// This table with another version number.
    pub fn with_version(mut self, version: u64) -> SlotTable {
        self.version = version;
        self
    }

    /// Monotonic version; a newer table has a larger number.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The index of the shard serving routing unit `unit`, if any.
    #[inline]
    pub fn shard_of(&self, unit: Unit) -> Option<usize> {
        match self.units.get(unit.index()) {
            Some(&i) if i != UNASSIGNED => Some(i as usize),
            _ => None,
        }
    }

    /// All shards; indices match [`SlotTable::shard_of`].
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Every master that serves at least one routing unit (or that keys are moving out of),
    /// with the first unit it serves, in address order after the masters keys move out of
    /// (a stable order: SCAN cursors number the masters by it).
    pub fn serving_masters(&self) -> Vec<(Arc<str>, Unit)> {
        let mut first = vec![None; self.shards.len()];
        for (unit, &index) in self.units.iter().enumerate() {
            if let Some(entry @ None) = first.get_mut(index as usize) {
                *entry = Unit::new(unit as u16);
            }
        }
        // A pool whose every slot is moving away still holds keys until it is empty.
        if let Some(moving) = &self.moving {
            for source in moving.sources() {
                if let Some(entry @ None) = first.get_mut(source) {
                    *entry = moving.first_from(source);
                }
            }
        }
        let sources = self
            .moving
            .as_ref()
            .map(|m| m.sources())
            .unwrap_or_default();
        let mut masters: Vec<(bool, Arc<str>, Unit)> = first
            .into_iter()
            .zip(&self.shards)
            .enumerate()
            .filter_map(|(i, (slot, shard))| {
                Some((!sources.contains(&i), Arc::clone(&shard.master), slot?))
            })
            .collect();
        // Pools keys are moving out of come first: a scan that visits them before the pools
        // keys move into finds every key that stays put for the whole scan.
        masters.sort();
        masters.into_iter().map(|(_, m, u)| (m, u)).collect()
    }

    /// A 16-bit digest of which master serves each slot (never 0). Two tables with the same
    /// slot → master assignment have the same fingerprint; SCAN cursors carry it so a scan
    /// notices that slots moved or masters changed under it.
    pub fn assignment_fingerprint(&self) -> u16 {
        // FNV-1a over the runs of consecutive slots with one master: (first slot, address).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        let mut previous = None;
        for (slot, &index) in self.units.iter().enumerate() {
            let master = self.master_at(index);
            if previous != Some(master) {
                eat(&(slot as u16).to_le_bytes());
                eat(master.unwrap_or("-").as_bytes());
                eat(b"\0");
                previous = Some(master);
            }
        }
        if let Some(moving) = &self.moving {
            for source in moving.sources() {
                eat(b"moving from ");
                eat(self.master_at(source as u16).unwrap_or("-").as_bytes());
            }
        }
        let folded = (hash ^ hash >> 16 ^ hash >> 32 ^ hash >> 48) as u16;
        folded.max(1)
    }

    /// How many routing units (slots, or ketama servers) have a shard.
    pub fn covered_units(&self) -> usize {
        self.units.iter().filter(|&&i| i != UNASSIGNED).count()
    }

    /// How many routing units the placement has (16384 slots, or one per ketama server).
    pub fn unit_count(&self) -> usize {
        self.placement.unit_count()
    }

    /// True when every routing unit has a shard.
    pub fn is_complete(&self) -> bool {
        self.first_uncovered().is_none()
    }

    /// The first slot (routing unit) no shard serves, if any.
    pub fn first_uncovered(&self) -> Option<u16> {
        self.units[..self.unit_count().min(self.units.len())]
            .iter()
            .position(|&i| i == UNASSIGNED)
            .map(|p| p as u16)
    }

    /// True when both tables route every slot to the same master and list the same replicas.
    pub fn same_routing(&self, other: &SlotTable) -> bool {
        self.units
            .iter()
            .zip(other.units.iter())
            .all(|(&a, &b)| self.master_at(a) == other.master_at(b))
            && self.shards.len() == other.shards.len()
            && self.placement == other.placement
            && self.shards.iter().all(|s| other.shards.contains(s))
            && self.moving == other.moving
    }

    fn master_at(&self, index: u16) -> Option<&str> {
        self.shards.get(index as usize).map(|s| &*s.master)
    }

    /// A copy with `slot` served by the master at `addr` (added as a shard if new).
    pub fn with_slot(&self, slot: Slot, addr: &Arc<str>, version: u64) -> SlotTable {
        let mut next = self.clone();
        next.version = version;
        let index = match next.shards.iter().position(|s| s.master == *addr) {
            Some(i) => i,
            None => {
                // Cluster mode has one read policy for every shard: the new one shares it.
                let read_policy = next
                    .shards
                    .first()
                    .map_or_else(Default::default, |s| s.read_policy);
                next.shards.push(Shard {
                    master: Arc::clone(addr),
                    replicas: Vec::new(),
                    auth: next.cluster_auth.clone(),
                    read_policy,
                });
                next.shards.len() - 1
            }
        };
        if let (Some(entry), Ok(index)) = (next.units.get_mut(slot.index()), u16::try_from(index)) {
            if index != UNASSIGNED {
                *entry = index;
            }
        }
        next
    }

    /// The slot ranges whose master differs from `old`, as `"0-99: a:1 → b:1"`, for log lines.
    pub fn changes_from(&self, old: &SlotTable) -> Vec<String> {
        let owner =
            |t: &SlotTable, i: usize| t.master_at(t.units[i]).unwrap_or("(none)").to_string();
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < SLOT_COUNT {
            let (from, to) = (owner(old, start), owner(self, start));
            let mut end = start;
            while end + 1 < SLOT_COUNT && owner(old, end + 1) == from && owner(self, end + 1) == to
            {
                end += 1;
            }
            if from != to {
                out.push(format!("{start}-{end}: {from} → {to}"));
            }
            start = end + 1;
        }
        if self.moving != old.moving {
            match &self.moving {
                Some(moving) => out.extend(
                    moving.describe(&|i| self.master_at(i as u16).unwrap_or("-").to_string()),
                ),
                None => out.push("no slot moving".into()),
            }
        }
        if out.is_empty() {
            out.push("same slot owners, replicas changed".into());
        }
        out
    }

    /// Slot ranges per master, `"0-5460 → 127.0.0.1:7000"`, for log lines.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < SLOT_COUNT {
            let owner = self.units[start];
            let mut end = start;
            while end + 1 < SLOT_COUNT && self.units[end + 1] == owner {
                end += 1;
            }
            let who = self.master_at(owner).unwrap_or("(unassigned)");
            out.push(format!("{start}-{end} → {who}"));
            start = end + 1;
        }
        if let Some(moving) = &self.moving {
            out.extend(moving.describe(&|i| self.master_at(i as u16).unwrap_or("-").to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(ranges: &[(u16, u16)], master: &str) -> ShardInfo {
        ShardInfo {
            ranges: ranges.to_vec(),
            master: master.into(),
            replicas: vec![],
            loading: vec![],
        }
    }

    #[test]
    fn routes_each_slot_to_its_shard() {
        let t = SlotTable::from_shards(
            &[
                shard(&[(0, 5460)], "a:1"),
                shard(&[(5461, 10922)], "b:1"),
                shard(&[(10923, 16383)], "c:1"),
            ],
            7,
        )
        .unwrap();
        assert_eq!(t.version(), 7);
        assert_eq!(t.covered_units(), SLOT_COUNT);
        let at = |s| &*t.shards()[t.shard_of(Unit::new(s).unwrap()).unwrap()].master;
        assert_eq!(at(0), "a:1");
        assert_eq!(at(5461), "b:1");
        assert_eq!(at(16383), "c:1");
        assert_eq!(t.describe().len(), 3);
    }

    #[test]
    fn reports_gaps_and_overlaps() {
        let t = SlotTable::from_shards(&[shard(&[(0, 99)], "a:1")], 1).unwrap();
        assert_eq!(t.first_uncovered(), Some(100));
        assert!(t.shard_of(Slot::new(100).unwrap().into()).is_none());
        let err = SlotTable::from_shards(&[shard(&[(0, 10)], "a:1"), shard(&[(10, 20)], "b:1")], 1)
            .unwrap_err();
        assert!(matches!(err, TableError::Overlap { slot: 10, .. }));
        assert!(SlotTable::from_shards(&[shard(&[(5, 16384)], "a:1")], 1).is_err());
    }

    #[test]
    fn patching_one_slot_and_describing_changes() {
        let a = SlotTable::from_shards(
            &[shard(&[(0, 8191)], "a:1"), shard(&[(8192, 16383)], "b:1")],
            1,
        )
        .unwrap();
        let c: Arc<str> = "c:1".into();
        let patched = a.with_slot(Slot::new(5).unwrap(), &c, 2);
        assert_eq!(patched.version(), 2);
        assert_eq!(
            &*patched.shards()[patched.shard_of(Slot::new(5).unwrap().into()).unwrap()].master,
            "c:1"
        );
        assert_eq!(patched.changes_from(&a), ["5-5: a:1 → c:1"]);
        assert_eq!(a.covered_units(), patched.covered_units());
    }

    #[test]
    fn serving_masters_in_address_order_with_a_slot_each() {
        let t = SlotTable::from_shards(
            &[shard(&[(100, 16383)], "b:1"), shard(&[(0, 99)], "a:1")],
            1,
        )
        .unwrap();
        // A master that lost all its slots (after a MOVED patch) is left out.
        let t = t.with_slot(Slot::new(5).unwrap(), &Arc::from("c:1"), 2);
        let masters: Vec<(String, u16)> = t
            .serving_masters()
            .into_iter()
            .map(|(m, s)| (m.to_string(), s.get()))
            .collect();
        assert_eq!(
            masters,
            [("a:1".into(), 0), ("b:1".into(), 100), ("c:1".into(), 5)]
        );
        let only_c = SlotTable::from_shards(&[shard(&[(0, 0)], "a:1")], 1)
            .unwrap()
            .with_slot(Slot::new(0).unwrap(), &Arc::from("c:1"), 2);
        assert_eq!(only_c.serving_masters().len(), 1);
    }

    #[test]
    fn fingerprint_follows_the_assignment_only() {
        let a = SlotTable::from_shards(
            &[shard(&[(0, 8191)], "a:1"), shard(&[(8192, 16383)], "b:1")],
            1,
        )
        .unwrap();
        let same = SlotTable::from_shards(
            &[shard(&[(8192, 16383)], "b:1"), shard(&[(0, 8191)], "a:1")],
            9,
        )
        .unwrap();
        assert_eq!(a.assignment_fingerprint(), same.assignment_fingerprint());
        assert_ne!(a.assignment_fingerprint(), 0);
        let moved = a.with_slot(Slot::new(8191).unwrap(), &Arc::from("b:1"), 2);
        assert_ne!(a.assignment_fingerprint(), moved.assignment_fingerprint());
        let failed_over = SlotTable::from_shards(
            &[shard(&[(0, 8191)], "c:1"), shard(&[(8192, 16383)], "b:1")],
            3,
        )
        .unwrap();
        assert_ne!(
            a.assignment_fingerprint(),
            failed_over.assignment_fingerprint()
        );
    }

    #[test]
    fn same_routing_ignores_version_and_order() {
        let a = SlotTable::from_shards(&[shard(&[(0, 16383)], "a:1")], 1).unwrap();
        let b = a.clone().with_version(2);
        assert!(a.same_routing(&b));
        let c = SlotTable::from_shards(
            &[shard(&[(0, 16382)], "a:1"), shard(&[(16383, 16383)], "b:1")],
            3,
        )
        .unwrap();
        assert!(!a.same_routing(&c));
    }

    #[test]
    fn cluster_credentials_reach_every_node_and_moved_targets() {
        let mut info = shard(&[(0, 16383)], "a:1");
        info.replicas = vec!["r:1".into()];
        let auth = Some(Arc::new(Credentials::new(None, "pw")));
        let t = SlotTable::from_shards(&[info], 1)
            .unwrap()
            .with_cluster_settings(ReadPolicy::Master, auth.clone());
        assert_eq!(t.shards()[0].auth, auth);
        assert_eq!(t.credentials_for("a:1"), auth);
        assert_eq!(t.credentials_for("r:1"), auth);
        assert_eq!(t.credentials_for("new:1"), auth, "a redirect target");
        let patched = t.with_slot(Slot::new(5).unwrap(), &"new:1".into(), 2);
        assert!(patched.shards().iter().all(|s| s.auth == auth));
        assert_eq!(SlotTable::empty().credentials_for("a:1"), None);
    }
}
