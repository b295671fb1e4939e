//! Local Redis processes, for the `demo` subcommand and the test harness (the proxy never uses
//! them): a throwaway Redis Cluster or standalone servers on loopback.
//!
//! Owns: spawning `redis-server` children (logs in their own directory, killed on `Drop`),
//! creating a cluster with `redis-cli --cluster create`, and waiting until it is really usable;
//! changing it for topology tests (adding a master, `reshard`, `rebalance`).
//! Does not own: anything the proxy does with these servers.
//!
//! The API is synchronous (`std::process`, `std::net`) so it can be called from `fn main` and from
//! `#[tokio::test]`s alike; every wait is bounded.
//!
//! Concurrency note: on Linux every child gets `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the
//! *thread* that spawned it exits. Call [`LocalCluster::start`], [`LocalCluster::restart`],
//! [`LocalCluster::add_master`] and [`RedisServer::start`] from a thread that outlives the servers
//! (`main`, the test thread), never from `tokio::task::spawn_blocking`, whose threads are reaped
//! when idle.

mod cli;
mod cluster;
mod error;
mod ports;
mod process;
mod resp_probe;
mod scratch;
mod server;
mod topology;

pub use cluster::{ClusterOptions, LocalCluster, NodeInfo, Role};
pub use error::LocalRedisError;
pub use ports::free_port;
pub use server::{RedisServer, SentinelOptions, SentinelServer, ServerOptions};
