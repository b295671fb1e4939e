//! Placement: which routing unit a key belongs to. Pure; no table, no I/O.
//!
//! The router and the split/merge code work in [`Unit`]s: a request's keys are grouped by
//! routing unit and each unit is mapped by the [`SlotTable`](crate::topology::SlotTable) to
//! a shard. What a unit *means* depends on the placement:
//! - [`Hashing::Slots`]: the Redis Cluster hash slot (CRC16 of the key or its `{tag}`,
//!   mod 16384). Used in cluster mode and, by default, in pool mode, where a slot map assigns
//!   slot ranges to pools.
//! - [`Hashing::Ketama`]: Twemproxy's consistent hashing. The unit is the index of the server
//!   (pool) on the ketama continuum, and the table maps unit `i` to pool `i`.
//!
//! The placement lives inside the slot table, so a reload swaps both at once. In the code,
//! `Slot` is only ever a hash slot (`crate::slot`); what routing carries is a `Unit`. Comments
//! about Redis semantics (CROSSSLOT, MOVED) speak of slots, which is what units are in
//! cluster mode.

pub mod colocate;
pub mod hash;
pub mod ketama;
pub mod namespace;

use crate::slot::Slot;

pub use colocate::{ColocateError, Colocation, KeyReply};
pub use hash::KeyHash;
pub use ketama::{Ketama, KetamaServer};
pub use namespace::KeySpace;

/// Number of routing units at most (as many as hash slots).
pub const MAX_UNITS: usize = crate::slot::SLOT_COUNT;

/// A routing unit: what a placement maps a key to and a table maps to a shard. A hash slot
/// under [`Hashing::Slots`], a server index under [`Hashing::Ketama`]. Invariant: the
/// value is `< MAX_UNITS` (16384).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit(u16);

impl Unit {
    /// Unit 0.
    pub const ZERO: Unit = Unit(0);

    /// `Some(unit)` when `n < MAX_UNITS`.
    pub fn new(n: u16) -> Option<Unit> {
        (usize::from(n) < MAX_UNITS).then_some(Unit(n))
    }

    /// The unit number.
    #[inline]
    pub fn get(self) -> u16 {
        self.0
    }

    /// The unit number as an index into a table of `MAX_UNITS` entries.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The hash slot this unit is under [`Hashing::Slots`] (the same number).
    #[inline]
    pub fn as_slot(self) -> Slot {
        Slot::from(self)
    }
}

impl From<Slot> for Unit {
    /// Under slot placement a key's unit is its hash slot.
    #[inline]
    fn from(slot: Slot) -> Unit {
        Unit(slot.get())
    }
}

impl From<Unit> for Slot {
    #[inline]
    fn from(unit: Unit) -> Slot {
        // Both are < 16384 by their invariants.
        Slot::new(unit.0).unwrap_or(Slot::ZERO)
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a placement could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Ketama needs at least one server with points.
    #[error("ketama placement needs at least one server")]
    NoServers,
    /// More servers than routing units.
    #[error("too many servers for ketama placement ({0}, at most 16384)")]
    TooManyServers(usize),
    /// A server with weight 0.
    #[error("server {0:?} has weight 0")]
    ZeroWeight(String),
}

/// How keys are hashed to routing units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Hashing {
    /// Redis Cluster hash slots (CRC16, `{}` hash tags).
    #[default]
    Slots,
    /// Twemproxy-compatible ketama: the unit is a server index.
    Ketama(Ketama),
}

/// How keys map to routing units: the hashing, after the co-location rules (pool mode; in
/// cluster mode the sessions tag grouped keys instead, see [`colocate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    hashing: Hashing,
    colocation: Colocation,
}

impl Placement {
    /// Hash slots, no co-location rules (cluster mode).
    pub const SLOTS: Placement = Placement {
        hashing: Hashing::Slots,
        colocation: Colocation::NONE,
    };

    /// Twemproxy's ketama, no co-location rules.
    pub fn ketama(ketama: Ketama) -> Placement {
        Placement {
            hashing: Hashing::Ketama(ketama),
            colocation: Colocation::NONE,
        }
    }

    /// This placement with keys grouped by `colocation` (pool mode).
    pub fn with_colocation(self, colocation: Colocation) -> Placement {
        Placement { colocation, ..self }
    }

    /// How keys are hashed.
    pub fn hashing(&self) -> &Hashing {
        &self.hashing
    }

    /// The routing unit of `key`.
    #[inline]
    pub fn unit_of(&self, key: &[u8]) -> Unit {
        let key = self.colocation.routing_key(key);
        match &self.hashing {
            Hashing::Slots => Unit::from(Slot::of(key)),
            Hashing::Ketama(k) => k.unit_of(key),
        }
    }

    /// How many routing units there are: 16384 slots, or one per ketama server.
    pub fn unit_count(&self) -> usize {
        match &self.hashing {
            Hashing::Slots => crate::slot::SLOT_COUNT,
            Hashing::Ketama(k) => k.servers(),
        }
    }

    /// A short description for log lines.
    pub fn describe(&self) -> String {
        let hashing = match &self.hashing {
            Hashing::Slots => "hash slots".into(),
            Hashing::Ketama(k) => {
                format!("ketama/{} over {} servers", k.hash().name(), k.servers())
            }
        };
        match self.colocation.len() {
            0 => hashing,
            n => format!("{hashing}, {n} co-location rule(s)"),
        }
    }
}
