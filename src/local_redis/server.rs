//! One standalone `redis-server` on loopback, for standalone-pool tests and demos.

use std::path::PathBuf;

use super::error::LocalRedisError;
use super::ports;
use super::process::{NodeSpec, RedisProcess};
use super::scratch::ScratchDir;

/// How to start a [`RedisServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// Working directory (kept); `None` creates a temp directory that is removed on drop.
    pub dir: Option<PathBuf>,
    /// The `redis-server` program (looked up in `PATH` when it has no slash).
    pub redis_server: PathBuf,
    /// Extra `redis-server` arguments, appended last so they override ours.
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            port: None,
            dir: None,
            redis_server: PathBuf::from("redis-server"),
            extra_args: Vec::new(),
        }
    }
}

/// A standalone `redis-server` child (no persistence, 127.0.0.1 only), killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    // Declared before `dir`: the process must be gone before its directory is removed.
    process: RedisProcess,
    dir: ScratchDir,
}

impl RedisServer {
    /// Starts the server and waits until it answers.
    pub fn start(opts: ServerOptions) -> Result<RedisServer, LocalRedisError> {
        let dir = ScratchDir::new(opts.dir, "slotgate-redis")?;
        let (port, auto_port) = match opts.port {
            Some(p) => (p, false),
            None => (ports::free_port(false)?, true),
        };
        let spec = NodeSpec {
            port,
            dir: dir.path().to_path_buf(),
            binary: opts.redis_server,
            cluster_node_timeout_ms: None,
            extra_args: opts.extra_args,
            sentinel_config: None,
            password: None,
        };
        let process = RedisProcess::start(spec, auto_port)?;
        Ok(RedisServer { process, dir })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The pid of the running process, `None` after [`RedisServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The working directory (holds `redis.log`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGKILLs the server and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) -> Result<(), LocalRedisError> {
        self.process.kill()
    }

    /// Starts the server again on the same port and directory (killing it first if it is still
    /// running) and waits until it answers. Data is lost: there is no persistence.
    pub fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.process.restart()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Best effort; the field drops that follow repeat it and then remove the temp dir.
        let _ = self.process.kill();
    }
}

/// A Redis Sentinel (`redis-server CONFIG --sentinel`) on loopback watching one master,
/// killed on drop.
#[derive(Debug)]
pub struct SentinelServer {
    // Declared before `dir`: the process must be gone before its directory is removed.
    process: RedisProcess,
    dir: ScratchDir,
}

/// What a [`SentinelServer`] monitors and how quickly it fails over.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The master name (`sentinel monitor NAME …`).
    pub master_name: String,
    /// The master's `HOST:PORT`.
    pub master: String,
    /// Sentinels that must agree the master is down.
    pub quorum: u32,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// The sentinel's `requirepass` (and `sentinel sentinel-pass`, so sentinels started with
    /// the same password talk to each other); `None`: no password.
    pub password: Option<String>,
}

impl SentinelServer {
    /// Starts a sentinel on a free port and waits until it answers.
    pub fn start(opts: &SentinelOptions) -> Result<SentinelServer, LocalRedisError> {
        let dir = ScratchDir::new(None, "slotgate-sentinel")?;
        let (host, port) = opts.master.rsplit_once(':').ok_or_else(|| {
            LocalRedisError::io("sentinel master", std::io::Error::other("not HOST:PORT"))
        })?;
        let name = &opts.master_name;
        let config = dir.path().join("sentinel.conf");
        let text = format!(
            "sentinel monitor {name} {host} {port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down}\n\
             sentinel failover-timeout {name} {failover}\n\
             sentinel parallel-syncs {name} 1\n",
            quorum = opts.quorum,
            down = opts.down_after_ms,
            failover = opts.failover_timeout_ms,
        );
        let text = match &opts.password {
            Some(pw) => format!("{text}requirepass {pw}\nsentinel sentinel-pass {pw}\n"),
            None => text,
        };
        std::fs::write(&config, text)
            .map_err(|e| LocalRedisError::io(format!("cannot write {}", config.display()), e))?;
        let spec = NodeSpec {
            port: ports::free_port(false)?,
            dir: dir.path().to_path_buf(),
            binary: PathBuf::from("redis-server"),
            cluster_node_timeout_ms: None,
            extra_args: Vec::new(),
            sentinel_config: Some(config),
            password: opts.password.clone(),
        };
        let process = RedisProcess::start(spec, true)?;
        Ok(SentinelServer { process, dir })
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.process.port())
    }

    /// The pid of the running process, `None` after it was killed.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The working directory (holds `redis.log` and the rewritten `sentinel.conf`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
    }
}
