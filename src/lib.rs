//! slotgate: a Redis sharding proxy.
//!
//! Plain single-node Redis clients connect to one address; slotgate routes every command by
//! its key's hash slot to the Redis Cluster node that owns it (or, in pool mode, to the
//! standalone pool its slot map or Twemproxy-compatible ketama placement names), and answers
//! connection-level commands itself. Start it with [`Proxy::start`]; see `docs/ARCHITECTURE.md` for the map.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod auth;
pub mod backend;
pub mod command;
pub mod command_policy;
pub mod config;
pub mod fifo;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod lifecycle;
pub mod local_redis;
pub mod migration;
pub mod ops;
pub mod pidfile;
pub mod placement;
pub mod reload;
pub mod resp;
pub mod router;
pub mod scripts;
pub mod server;
pub mod session;
pub mod slot;
pub mod stats;
pub mod tls;
pub mod topology;
pub mod upgrade;
pub mod wake;
pub mod worker;

pub use lifecycle::DrainReport;
pub use reload::{ReloadError, Reloaded, Reloader};
pub use server::{Proxy, ProxyHandle, StartError};
