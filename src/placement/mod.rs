//! Placement: which routing unit a key belongs to. Pure; no table, no I/O.
//!
//! The router and the split/merge code work in [`Slot`]s: a request's keys are grouped by
//! routing unit and each unit is mapped by the [`SlotTable`](crate::topology::SlotTable) to
//! a shard. What a unit *means* depends on the placement:
//! - [`Placement::Slots`]: the Redis Cluster hash slot (CRC16 of the key or its `{tag}`,
//!   mod 16384). Used in cluster mode and, by default, in pool mode, where a slot map assigns
//!   slot ranges to pools.
//! - [`Placement::Ketama`]: Twemproxy's consistent hashing. The unit is the index of the server
//!   (pool) on the ketama continuum, and the table maps unit `i` to pool `i`.
//!
//! The placement lives inside the slot table, so a reload swaps both at once.

pub mod hash;
pub mod ketama;

use crate::slot::Slot;

pub use hash::KeyHash;
pub use ketama::{Ketama, KetamaServer};

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

/// How keys map to routing units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Redis Cluster hash slots (CRC16, `{}` hash tags).
    #[default]
    Slots,
    /// Twemproxy-compatible ketama: the unit is a server index.
    Ketama(Ketama),
}

impl Placement {
    /// The routing unit of `key`.
    #[inline]
    pub fn unit_of(&self, key: &[u8]) -> Slot {
        match self {
            Placement::Slots => Slot::of(key),
            Placement::Ketama(k) => k.unit_of(key),
        }
    }

    /// How many routing units there are: 16384 slots, or one per ketama server.
    pub fn unit_count(&self) -> usize {
        match self {
            Placement::Slots => crate::slot::SLOT_COUNT,
            Placement::Ketama(k) => k.servers(),
        }
    }

    /// A short description for log lines.
    pub fn describe(&self) -> String {
        match self {
            Placement::Slots => "hash slots".into(),
            Placement::Ketama(k) => {
                format!("ketama/{} over {} servers", k.hash().name(), k.servers())
            }
        }
    }
}
