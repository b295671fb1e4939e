//! slotgate: a Redis sharding proxy.
//!
//! Plain single-node Redis clients connect to one address; slotgate routes every command by its
//! key's hash slot to the Redis Cluster node (or standalone pool) that owns it.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod demo;
pub mod resp;
pub mod slot;
