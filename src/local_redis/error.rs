//! The one error type of the launcher, [`LocalRedisError`].
//!
//! Messages are written for a person at a terminal: they say what failed, on which port, and carry
//! the tail of the relevant log so a failed start can be diagnosed without digging.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why starting, stopping or probing local Redis processes failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// A Redis binary could not be executed because it does not exist.
    #[error(
        "{} not found: install it with `apt-get install -y redis-server redis-tools`",
        .binary.display()
    )]
    RedisNotFound {
        /// The program that was looked up (`redis-server` or `redis-cli`).
        binary: PathBuf,
    },

    /// The options cannot describe a working setup.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No free loopback port (with its cluster bus port) was found.
    #[error("no free loopback port found after {attempts} attempts")]
    NoFreePort {
        /// How many candidate ports were tried.
        attempts: u32,
    },

    /// A `redis-server` process exited or never answered `PING`.
    #[error("redis-server on port {port} failed to start: {reason}\n--- log tail ({log}) ---\n{log_tail}")]
    StartFailed {
        /// The port it was told to listen on.
        port: u16,
        /// What was observed.
        reason: String,
        /// The log file of that server.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A `redis-cli --cluster …` command (create, add-node, reshard, rebalance) failed or did not
    /// finish in time.
    #[error(
        "`redis-cli --cluster {command}` failed: {reason}\n--- output tail ({log}) ---\n{output_tail}"
    )]
    ClusterCli {
        /// The arguments after `--cluster`.
        command: String,
        /// Exit status or timeout.
        reason: String,
        /// The file holding redis-cli's output.
        log: PathBuf,
        /// The last lines of that output.
        output_tail: String,
    },

    /// The cluster did not become ready within the allowed time.
    #[error("cluster not ready after {waited:?}; last observed state:\n{last_state}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What the last probe saw, one line per problem.
        last_state: String,
    },

    /// A node index outside `0..nodes().len()`.
    #[error("no node with index {idx} (the cluster has {count} nodes)")]
    NoSuchNode {
        /// The index asked for.
        idx: usize,
        /// How many nodes there are.
        count: usize,
    },
}

impl LocalRedisError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> LocalRedisError {
        LocalRedisError::Io {
            context: context.into(),
            source,
        }
    }

    /// Maps a failed `spawn` to [`LocalRedisError::RedisNotFound`] when the program is missing.
    pub(crate) fn spawn(binary: &std::path::Path, source: io::Error) -> LocalRedisError {
        if source.kind() == io::ErrorKind::NotFound {
            LocalRedisError::RedisNotFound {
                binary: binary.to_path_buf(),
            }
        } else {
            LocalRedisError::io(format!("cannot run {}", binary.display()), source)
        }
    }
}
