//! The integration tests, as one crate: one binary to build and link instead of one per file
//! (on a 2-core machine a full build of the tests dropped from ~100 s to ~20 s, and a one-line
//! change relinks one binary instead of forty). Each module is one capability, run against
//! real `redis-server` processes started by [`common`].
//!
//! Modules run in one process, so a test must not depend on process-wide state another
//! module's test could change. Three files stay binaries of their own for that reason:
//! `tests/limits.rs` measures this process's resident memory, and `tests/metrics.rs` and
//! `tests/admin.rs` read counters of the process-global `metrics` recorder exactly.
//!
//! Run one module with `cargo test --test it MODULE::` (e.g. `scripts/test --test it pools::`).

#[path = "../common/mod.rs"]
mod common;

mod abort_cluster;
mod admin_commands;
mod auth;
mod backend_auth;
mod big_keys;
mod blocking;
mod busy_scripts;
mod colocate;
mod commands_doc;
mod config_cli;
mod cross_slot_writes;
mod custom_commands;
mod dashboard;
mod data_types;
mod databases;
mod deploy_manifests;
mod failover;
mod failure;
mod fanout;
mod fleet_dns;
mod fleet_migration;
mod fleet_view;
mod frameworks;
mod harness;
mod health;
mod hostnames;
mod keyless;
mod lifecycle;
mod local_commands;
mod migration;
mod multikey;
mod ops_commands;
mod pipeline;
mod policy;
mod pool_migration;
mod pools;
mod protocol;
mod pubsub;
mod read_policy;
mod redis_py;
mod reload;
mod reshard;
mod resp3;
mod scripts;
mod sentinel;
mod tls;
mod to_cluster;
mod topology;
mod transactions;
mod twemproxy;
mod upgrade;
