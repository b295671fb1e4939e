//! Shared test harness: a real Redis Cluster on free loopback ports (from `slotgate::local_redis`),
//! slotgate in front of it, and clients: the `redis` crate, raw TCP, and `redis-cli`.
//! Everything is torn down on drop.
#![allow(dead_code)]

pub mod binary;
pub mod hosts;
pub mod load;

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use slotgate::config::Config;
use slotgate::local_redis::{ClusterOptions, LocalCluster, RedisServer, ServerOptions};
use slotgate::{Proxy, ProxyHandle};

/// A cluster and the proxy in front of it. Field order matters: the proxy stops first.
pub struct Setup {
    pub proxy: ProxyHandle,
    pub cluster: LocalCluster,
}

impl Setup {
    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// An async client connected to the proxy.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        client(self.addr()).await
    }

    /// The addresses of the cluster's masters.
    pub fn masters(&self) -> Vec<SocketAddr> {
        let ports = self.cluster.master_ports();
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    /// The address of the master that serves `key`.
    pub fn node_of(&self, key: &str) -> SocketAddr {
        let slot = slotgate::slot::Slot::of(key.as_bytes()).get();
        let port = self
            .cluster
            .port_of_slot(slot)
            .expect("every slot is served");
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// How often [`eventually`] and [`eventually_blocking`] try again.
const POLL: Duration = Duration::from_millis(25);

/// Run `probe` until it returns `Ok`, at most for `limit`, and return that value. Past the
/// limit, panics with `what` was awaited and the last `Err` (the value or error seen).
pub async fn eventually<T, E: Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let wait = Wait::new(what, limit);
    loop {
        if let Some(value) = wait.outcome(probe().await) {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for code outside the runtime: the thread sleeps between tries.
pub fn eventually_blocking<T, E: Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let wait = Wait::new(what, limit);
    loop {
        if let Some(value) = wait.outcome(probe()) {
            return value;
        }
        std::thread::sleep(POLL);
    }
}

/// What [`eventually`] waits for, and until when.
struct Wait<'a> {
    what: &'a str,
    limit: Duration,
    deadline: Instant,
}

impl<'a> Wait<'a> {
    fn new(what: &'a str, limit: Duration) -> Self {
        let deadline = Instant::now() + limit;
        Wait {
            what,
            limit,
            deadline,
        }
    }

    /// The value of a try that succeeded; `None` to try again; a panic past the deadline.
    fn outcome<T, E: Debug>(&self, tried: Result<T, E>) -> Option<T> {
        match tried {
            Ok(value) => Some(value),
            Err(last) if Instant::now() >= self.deadline => {
                let (what, limit) = (self.what, self.limit);
                panic!("not within {limit:?}: {what}; last seen: {last:?}")
            }
            Err(_) => None,
        }
    }
}

/// `Ok(value)` when `holds(&value)`, else `Err(value)`: a probe for [`eventually`] from a
/// value and the condition it must meet.
pub fn check<T>(value: T, holds: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if holds(&value) {
        Ok(value)
    } else {
        Err(value)
    }
}

/// 3 masters with one replica each (the shape the issue names), proxy with 2 workers.
pub fn start() -> Setup {
    start_with(ClusterOptions::default(), |_| {})
}

/// A cluster from `options`, and a proxy whose test config `tune` may adjust.
pub fn start_with(options: ClusterOptions, tune: impl FnOnce(&mut Config)) -> Setup {
    let cluster = LocalCluster::start(options).expect("start the Redis Cluster");
    let mut config = proxy_config(cluster.seeds());
    tune(&mut config);
    let proxy = Proxy::start(config).expect("start slotgate");
    Setup { proxy, cluster }
}

/// Config for tests: ephemeral port, 2 workers, short timeouts so failures show fast.
pub fn proxy_config(seeds: Vec<String>) -> Config {
    let mut config = base_config();
    config.cluster.seeds = seeds;
    config
}

/// What every test config starts from: ephemeral port, 2 workers, short timeouts (500 ms to
/// connect, 2 s a request), warnings only; no backends yet.
pub fn base_config() -> Config {
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".into();
    config.proxy.workers = 2;
    config.backend.connect_timeout_ms = 500;
    config.backend.request_timeout_ms = 2_000;
    config.log.level = "warn".into();
    config
}

/// An async `redis` client connected to `addr`.
pub async fn client(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .expect("client url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to slotgate")
}

/// The redis-py venv's python (`target/redis-py/venv`, made by `scripts/ensure-python`,
/// which `scripts/test` runs); panics saying so when it is missing.
pub fn redis_py_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/redis-py/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-python (scripts/test does)",
        python.display()
    );
    python
}

/// A raw TCP client for exact byte-level checks.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Raw { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Read until `want` bytes arrived or the peer closed; returns what was read.
    pub fn read_exactly(&mut self, want: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < want {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    /// Read one reply line (`+…`, `-…`, `:…`) including its CRLF.
    pub fn read_line(&mut self) -> String {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => out.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// True when the proxy closed the connection (EOF within the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// Run `redis-cli -h … -p … args…` and return its stdout (trimmed).
pub fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The index in `cluster.nodes()` of the node on `port`.
pub fn node_index(cluster: &LocalCluster, port: u16) -> usize {
    let nodes = cluster.nodes();
    nodes
        .iter()
        .position(|n| n.port == port)
        .expect("a node on that port")
}

/// A key of `prefix` that hashes to a slot served by master `port` in `cluster`.
pub fn key_on(cluster: &LocalCluster, port: u16, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| cluster.port_of_slot(slotgate::slot::Slot::of(k.as_bytes()).get()) == Some(port))
        .expect("some key lands on every master")
}

/// A lone cluster-enabled redis-server that serves slots `first..=last` by itself (and has
/// reached `cluster_state:ok`): a partial cluster, or a node with a view of its own.
pub async fn lone_cluster_node(first: u16, last: u16) -> RedisServer {
    let node = RedisServer::start(ServerOptions {
        extra_args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "lone-nodes.conf",
            // Serve its own slots even if the others are missing.
            "--cluster-require-full-coverage",
            "no",
        ]
        .map(String::from)
        .to_vec(),
        ..ServerOptions::default()
    })
    .expect("start a lone cluster node");
    let mut direct = client(node.addr().parse().expect("node address")).await;
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(first)
        .arg(last)
        .query_async(&mut direct)
        .await
        .expect("CLUSTER ADDSLOTSRANGE");
    // The node re-evaluates its cluster state on its next cron tick.
    eventually(
        "the lone node reaches cluster_state:ok",
        Duration::from_secs(5),
        async || {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut direct)
                .await
                .expect("CLUSTER INFO");
            check(info, |info| info.contains("cluster_state:ok"))
        },
    )
    .await;
    node
}

/// Standalone redis-servers and slotgate in pool mode in front of them. Field order matters:
/// the proxy stops first.
pub struct PoolSetup {
    pub proxy: ProxyHandle,
    pub servers: Vec<RedisServer>,
}

impl PoolSetup {
    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// An async client connected to the proxy.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        client(self.addr()).await
    }

    /// An async client connected straight to server `i` (no proxy).
    pub async fn direct(&self, i: usize) -> redis::aio::MultiplexedConnection {
        client(self.servers[i].addr().parse().expect("server address")).await
    }
}

/// `n` standalone redis-servers (killed on drop, by the harness, by PID).
pub fn standalone_servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start(ServerOptions::default()).expect("start redis-server"))
        .collect()
}

/// Pool-mode test config: pools `p0`, `p1` … on `servers` (in order), ephemeral port,
/// 2 workers, short timeouts. `slots` lines are `("0-8191", "p0")`; empty = even split.
pub fn pool_config(servers: &[RedisServer], slots: &[(&str, &str)]) -> Config {
    let mut config = base_config();
    for (i, server) in servers.iter().enumerate() {
        config.pools.insert(
            format!("p{i}"),
            slotgate::config::PoolConfig {
                master: server.addr(),
                ..Default::default()
            },
        );
    }
    for (range, pool) in slots {
        config.slots.insert(range.to_string(), pool.to_string());
    }
    config
}

/// `n` standalone servers and a pool-mode proxy over them; `tune` may adjust the config.
pub fn start_pools(n: usize, slots: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> PoolSetup {
    let servers = standalone_servers(n);
    let mut config = pool_config(&servers, slots);
    tune(&mut config);
    let proxy = Proxy::start(config).expect("start slotgate in pool mode");
    PoolSetup { proxy, servers }
}

/// `GET path` from the HTTP server at `addr` (the admin listener): `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// `GET path` from the HTTP server at `addr`, which must answer 200 with JSON.
pub fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// A proxy config tweak: admin listener on a free loopback port.
pub fn with_admin(config: &mut Config) {
    config.admin.listen = "127.0.0.1:0".into();
}

/// `n` standalone redis-servers replicating `master` (`--replicaof`), each with its
/// replication link up before this returns. Killed on drop, by the harness, by PID.
pub fn replicas_of(master: &RedisServer, n: usize) -> Vec<RedisServer> {
    let replicas: Vec<RedisServer> = (0..n)
        .map(|_| {
            RedisServer::start(ServerOptions {
                extra_args: ["--replicaof", "127.0.0.1", &master.port().to_string()]
                    .map(String::from)
                    .to_vec(),
                ..ServerOptions::default()
            })
            .expect("start a replica")
        })
        .collect();
    for replica in &replicas {
        wait_link_up(replica.addr().parse().expect("replica address"));
    }
    replicas
}

/// Wait (up to 10 s) until the replica at `addr` reports `master_link_status:up`.
pub fn wait_link_up(addr: SocketAddr) {
    eventually_blocking(
        &format!("replica {addr} links to its master"),
        Duration::from_secs(10),
        || {
            check(info_value(addr, "replication", "master_link_status"), |s| {
                s.as_deref() == Some("up")
            })
        },
    );
}

/// The keys the servers at `nodes` hold in all (`DBSIZE` via redis-cli; 0 for one that fails).
pub fn dbsize_sum(nodes: &[SocketAddr]) -> u64 {
    let size = |&node| redis_cli(node, &["DBSIZE"]).parse::<u64>().unwrap_or(0);
    nodes.iter().map(size).sum()
}

/// Wait (up to 5 s) until the servers at `nodes` block `n` clients in all (`INFO clients`
/// `blocked_clients`): a blocking command sent through the proxy has reached its node.
pub async fn wait_blocked(nodes: &[SocketAddr], n: u64) {
    let blocked = || -> u64 {
        nodes
            .iter()
            .map(|&node| {
                info_value(node, "clients", "blocked_clients")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    eventually(
        &format!("{n} clients blocked on {nodes:?}"),
        Duration::from_secs(5),
        async || check(blocked(), |&b| b == n),
    )
    .await;
}

/// The value of `field` in `INFO section` of the server at `addr` (via redis-cli).
pub fn info_value(addr: SocketAddr, section: &str, field: &str) -> Option<String> {
    let text = redis_cli(addr, &["INFO", section]);
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// How many times the server at `addr` ran `command` since its stats were last reset
/// (`INFO commandstats`, `cmdstat_get:calls=N,…`).
pub fn command_calls(addr: SocketAddr, command: &str) -> u64 {
    info_value(addr, "commandstats", &format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls=")?.parse().ok())
        })
        .unwrap_or(0)
}

/// `CONFIG RESETSTAT` on the server at `addr`.
pub fn reset_stats(addr: SocketAddr) {
    assert_eq!(redis_cli(addr, &["CONFIG", "RESETSTAT"]), "OK");
}

/// Block until `replicas` replicas of the master at `master` have everything it has written
/// so far: a write and `WAIT` on one direct connection (WAIT counts that connection's own
/// writes, and replication is ordered, so earlier writes of any client are covered). Returns
/// WAIT's count. `key` must be one the master serves (cluster: a key of its slots).
pub async fn wait_replicated(master: SocketAddr, replicas: usize, key: &str) -> i64 {
    let mut c = client(master).await;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .query_async(&mut c)
        .await
        .expect("SET on the master");
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(10_000)
        .query_async(&mut c)
        .await
        .expect("WAIT on the master")
}

/// Run `args` (command and arguments) on `c` and convert the reply.
pub async fn q<T: redis::FromRedisValue>(
    c: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query_async(c).await
}

/// Send each of `commands` (inline) on `raw` and read one reply line for each.
pub fn lines(raw: &mut Raw, commands: &[&str]) -> Vec<String> {
    for c in commands {
        raw.send(format!("{c}\r\n").as_bytes());
    }
    commands.iter().map(|_| raw.read_line()).collect()
}
