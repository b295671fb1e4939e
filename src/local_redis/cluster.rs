//! A throwaway Redis Cluster on loopback: [`LocalCluster`].
//!
//! Start-up, in order: pick ports, start every `redis-server` in cluster mode (each in its own
//! directory under [`LocalCluster::dir`]), run `redis-cli --cluster create`, then wait until the
//! cluster is really usable (see [`super::topology`]). Nodes can then be killed and restarted to
//! test failure handling, masters added, and slots moved with `redis-cli --cluster reshard` or
//! `rebalance`; everything is killed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::cli;
use super::error::LocalRedisError;
use super::ports::{self, BUS_OFFSET};
use super::process::{NodeSpec, RedisProcess, POLL_INTERVAL, PROBE_TIMEOUT};
use super::resp_probe;
use super::scratch::ScratchDir;
use super::topology::{self, SlotRange};
use crate::topology::discovery::info_value;

/// How long `redis-cli --cluster create` (and `add-node`) may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`LocalCluster::start`] waits for the created cluster to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// File (in the cluster directory) holding redis-cli's output.
const CREATE_LOG: &str = "cluster-create.log";

/// How to start a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of masters; `redis-cli --cluster create` needs at least 3.
    pub masters: usize,
    /// Replicas per master.
    pub replicas_per_master: usize,
    /// Ports `base_port..base_port + nodes` (bus ports +10000); `None` picks free ports.
    pub base_port: Option<u16>,
    /// Directory for the node directories (kept); `None` creates a temp directory that is
    /// removed on drop. A `nodes.conf` left there by an earlier run is deleted.
    pub dir: Option<PathBuf>,
    /// `cluster-node-timeout`: how long a node may be unreachable before failover starts.
    pub node_timeout_ms: u64,
    /// The `redis-server` program (looked up in `PATH` when it has no slash).
    pub redis_server: PathBuf,
    /// The `redis-cli` program, used once to create the cluster.
    pub redis_cli: PathBuf,
    /// Extra `redis-server` arguments for every node, appended last so they override ours.
    pub extra_args: Vec<String>,
    /// `requirepass` (and `masterauth`, so replicas sync) of every node; `None` (the
    /// default): no password. The launcher's own probes and `redis-cli` use it.
    pub password: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            base_port: None,
            dir: None,
            node_timeout_ms: 5000,
            redis_server: PathBuf::from("redis-server"),
            redis_cli: PathBuf::from("redis-cli"),
            extra_args: Vec::new(),
            password: None,
        }
    }
}

impl ClusterOptions {
    fn validate(&self) -> Result<usize, LocalRedisError> {
        if self.masters < 3 {
            return Err(LocalRedisError::InvalidOptions(format!(
                "masters = {}: `redis-cli --cluster create` needs at least 3",
                self.masters
            )));
        }
        if self.node_timeout_ms == 0 {
            return Err(LocalRedisError::InvalidOptions(
                "node_timeout_ms must be > 0".into(),
            ));
        }
        let count = self
            .replicas_per_master
            .checked_add(1)
            .and_then(|per| per.checked_mul(self.masters))
            .filter(|&n| n <= 1000)
            .ok_or_else(|| LocalRedisError::InvalidOptions("more than 1000 nodes".into()))?;
        if let Some(base) = self.base_port {
            let last = usize::from(base) + count - 1 + usize::from(BUS_OFFSET);
            if base == 0 || last > usize::from(u16::MAX) {
                return Err(LocalRedisError::InvalidOptions(format!(
                    "base_port {base}: ports {base}..={} and their bus ports (+{BUS_OFFSET}) \
                     must be valid",
                    usize::from(base) + count - 1
                )));
            }
        }
        Ok(count)
    }
}

/// A node's role when the cluster was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns slots.
    Master,
    /// Replicates a master.
    Replica,
}

/// One node as it was when [`LocalCluster::start`] returned (failovers do not update it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its cluster node id.
    pub id: String,
    /// Master or replica.
    pub role: Role,
    /// For a replica, the index (in [`LocalCluster::nodes`]) of its master.
    pub master: Option<usize>,
}

/// A running local Redis Cluster; every process is killed on drop.
#[derive(Debug)]
pub struct LocalCluster {
    // Declared before `dir`: processes must be gone before their directories are removed.
    procs: Vec<RedisProcess>,
    info: Vec<NodeInfo>,
    /// What it was started with; [`LocalCluster::add_master`] starts new nodes the same way.
    opts: ClusterOptions,
    /// The slot map observed when start-up finished.
    slots: Vec<SlotRange>,
    dir: ScratchDir,
}

impl LocalCluster {
    /// Starts masters and replicas, creates the cluster and waits until every node reports
    /// `cluster_state:ok`, all nodes agree on the slot map (replicas included) and every replica
    /// has finished its initial sync. Each wait is bounded; a timeout reports the last state.
    pub fn start(opts: ClusterOptions) -> Result<LocalCluster, LocalRedisError> {
        let count = opts.validate()?;
        let dir = ScratchDir::new(opts.dir.clone(), "slotgate-cluster")?;
        let mut procs = Vec::with_capacity(count);
        for i in 0..count {
            let node_dir = dir.subdir(&format!("node-{i}"))?;
            remove_stale_config(&node_dir)?;
            let (port, auto_port) = match opts.base_port {
                // Cannot overflow: validate() checked base + count + bus offset <= u16::MAX.
                Some(base) => (base.saturating_add(i as u16), false),
                None => (ports::free_port(true)?, true),
            };
            // On error, `procs` is dropped here and kills the nodes already started.
            procs.push(RedisProcess::start(
                node_spec(&opts, port, node_dir),
                auto_port,
            )?);
        }

        let ports: Vec<u16> = procs.iter().map(RedisProcess::port).collect();
        let mut args = vec!["create".to_owned()];
        args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        args.extend([
            "--cluster-replicas".to_owned(),
            opts.replicas_per_master.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        cli::run(
            &opts.redis_cli,
            opts.password.as_deref(),
            &args,
            &dir.path().join(CREATE_LOG),
            CREATE_TIMEOUT,
        )?;
        let password = opts.password.as_deref();
        let slots = wait_ready(&ports, count, true, READY_TIMEOUT, password)?;
        let info = node_info(&ports, password)?;
        Ok(LocalCluster {
            procs,
            info,
            opts,
            slots,
            dir,
        })
    }

    /// Starts a new empty cluster-enabled node, joins it with `redis-cli --cluster add-node`
    /// (as a master without slots) and waits until every running node knows it and the cluster
    /// is ok. Returns its index in [`LocalCluster::nodes`]. Same thread rule as
    /// [`LocalCluster::start`] (see the module docs of `demo`).
    pub fn add_master(&mut self) -> Result<usize, LocalRedisError> {
        let idx = self.procs.len();
        let entry = self.entry_point()?;
        let node_dir = self.dir.subdir(&format!("node-{idx}"))?;
        remove_stale_config(&node_dir)?;
        let port = match self.opts.base_port {
            // Past the range validate() checked: the bind check below reports a clash.
            Some(base) => base.checked_add(idx as u16).ok_or_else(|| {
                LocalRedisError::InvalidOptions(format!("no port after {base} for node {idx}"))
            })?,
            None => ports::free_port(true)?,
        };
        let auto_port = self.opts.base_port.is_none();
        let proc = RedisProcess::start(node_spec(&self.opts, port, node_dir), auto_port)?;
        let port = proc.port();
        // Pushed before add-node so that a failure below still kills it on drop.
        self.procs.push(proc);
        self.cli(
            &[
                "add-node",
                &format!("127.0.0.1:{port}"),
                &format!("127.0.0.1:{entry}"),
            ],
            &format!("add-node-{idx}.log"),
            CREATE_TIMEOUT,
        )?;
        self.wait_ok(READY_TIMEOUT)?;
        let nodes =
            resp_probe::query_text(port, &["CLUSTER", "NODES"], PROBE_TIMEOUT, self.password())
                .map_err(|e| LocalRedisError::io(format!("127.0.0.1:{port} CLUSTER NODES"), e))?;
        let me = topology::parse_myself(&nodes).ok_or_else(|| LocalRedisError::NotReady {
            waited: Duration::ZERO,
            last_state: format!("127.0.0.1:{port}: no `myself` line in CLUSTER NODES"),
        })?;
        self.info.push(NodeInfo {
            port,
            id: me.id,
            role: Role::Master,
            master: None,
        });
        Ok(idx)
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from master `from_id` to master
    /// `to_id` (node ids), 10 keys per `MIGRATE`, and returns redis-cli's output once it is
    /// done. Blocks the calling thread (the load it runs against keeps going elsewhere).
    pub fn reshard(
        &self,
        from_id: &str,
        to_id: &str,
        slots: usize,
        timeout: Duration,
    ) -> Result<String, LocalRedisError> {
        let entry = self.entry_point()?;
        let args = [
            "reshard",
            &format!("127.0.0.1:{entry}"),
            "--cluster-from",
            from_id,
            "--cluster-to",
            to_id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-pipeline",
            "10",
            "--cluster-yes",
        ];
        self.cli(&args, "reshard.log", timeout)
    }

    /// `redis-cli --cluster rebalance --cluster-use-empty-masters`: spreads the slots evenly
    /// over every master, including ones without slots (e.g. from
    /// [`LocalCluster::add_master`]). Returns redis-cli's output once it is done.
    pub fn rebalance(&self, timeout: Duration) -> Result<String, LocalRedisError> {
        let entry = self.entry_point()?;
        let args = [
            "rebalance",
            &format!("127.0.0.1:{entry}"),
            "--cluster-use-empty-masters",
            "--cluster-pipeline",
            "10",
            "--cluster-yes",
        ];
        self.cli(&args, "rebalance.log", timeout)
    }

    /// How many slots each master serves *now* (port → count), as the first running node
    /// reports it (`CLUSTER SLOTS`). Masters without slots are absent.
    pub fn slot_counts(&self) -> Result<BTreeMap<u16, usize>, LocalRedisError> {
        let entry = self.entry_point()?;
        let reply = resp_probe::Probe::connect(entry, PROBE_TIMEOUT, self.password())
            .and_then(|mut p| p.call(&["CLUSTER", "SLOTS"]))
            .map_err(|e| LocalRedisError::io(format!("127.0.0.1:{entry} CLUSTER SLOTS"), e))?;
        let ranges =
            topology::parse_slots(&reply, false).map_err(|e| LocalRedisError::NotReady {
                waited: Duration::ZERO,
                last_state: format!("127.0.0.1:{entry}: {e}"),
            })?;
        let mut counts = BTreeMap::new();
        for r in ranges {
            *counts.entry(r.master).or_insert(0) += usize::from(r.end - r.start) + 1;
        }
        Ok(counts)
    }

    /// The role node `idx` reports *now* (`INFO replication`), unlike [`NodeInfo::role`] which
    /// is the role at start-up. Fails when the node does not answer within 500 ms.
    pub fn role_now(&self, idx: usize) -> Result<Role, LocalRedisError> {
        let port = self.node(idx)?.port();
        let info = resp_probe::query_text(
            port,
            &["INFO", "replication"],
            PROBE_TIMEOUT,
            self.password(),
        )
        .map_err(|e| LocalRedisError::io(format!("127.0.0.1:{port} INFO replication"), e))?;
        Ok(match info_value(&info, "role") {
            Some("master") => Role::Master,
            _ => Role::Replica,
        })
    }

    /// `"127.0.0.1:PORT"` of every node, in [`LocalCluster::nodes`] order.
    pub fn seeds(&self) -> Vec<String> {
        self.procs
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port()))
            .collect()
    }

    /// Every node as it was at start-up.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.info
    }

    /// Ports of the nodes that were masters at start-up.
    pub fn master_ports(&self) -> Vec<u16> {
        self.info
            .iter()
            .filter(|n| n.role == Role::Master)
            .map(|n| n.port)
            .collect()
    }

    /// Port of the master that owned `slot` at start-up; `None` for `slot >= 16384`.
    pub fn port_of_slot(&self, slot: u16) -> Option<u16> {
        self.slots
            .iter()
            .find(|r| (r.start..=r.end).contains(&slot))
            .map(|r| r.master)
    }

    /// The pid of node `idx`, `None` while it is killed or when there is no such node.
    pub fn pid(&self, idx: usize) -> Option<u32> {
        self.procs.get(idx).and_then(RedisProcess::pid)
    }

    /// SIGKILLs node `idx` and reaps it; its directory and `nodes.conf` are kept. Does nothing if
    /// it is already killed.
    pub fn kill(&mut self, idx: usize) -> Result<(), LocalRedisError> {
        self.node_mut(idx)?.kill()
    }

    /// Starts node `idx` again on the same port and directory (killing it first if it is still
    /// running); it rejoins the cluster from its `nodes.conf`. Returns once it answers; call
    /// [`LocalCluster::wait_ok`] to wait for the cluster to settle.
    pub fn restart(&mut self, idx: usize) -> Result<(), LocalRedisError> {
        self.node_mut(idx)?.restart()
    }

    /// Like [`LocalCluster::restart`], with `args` as node `idx`'s extra `redis-server`
    /// arguments from now on (in place of [`ClusterOptions::extra_args`]): e.g. another
    /// `--bind` and `--cluster-announce-hostname`, for a node that comes back on a new
    /// address under the same name.
    pub fn restart_with(&mut self, idx: usize, args: Vec<String>) -> Result<(), LocalRedisError> {
        let node = self.node_mut(idx)?;
        node.set_extra_args(args);
        node.restart()
    }

    /// Waits until every running node reports `cluster_state:ok`, they agree on which master owns
    /// each slot, every slot's master is running, and every running replica is in sync.
    pub fn wait_ok(&self, timeout: Duration) -> Result<(), LocalRedisError> {
        let live: Vec<u16> = self
            .procs
            .iter()
            .filter(|p| p.is_running())
            .map(RedisProcess::port)
            .collect();
        // Replica lists are not compared: a node that was down may be listed by some nodes
        // and not yet by others for a while, and that is not what callers wait for here.
        wait_ready(&live, self.procs.len(), false, timeout, self.password()).map(drop)
    }

    /// The directory holding one `node-<i>` directory per node (with `redis.log`, `nodes.conf`)
    /// and `cluster-create.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nodes' password, if they have one.
    pub fn password(&self) -> Option<&str> {
        self.opts.password.as_deref()
    }

    /// Runs `redis-cli --cluster args…`, logging to `log_name` in [`LocalCluster::dir`].
    fn cli(
        &self,
        args: &[&str],
        log_name: &str,
        timeout: Duration,
    ) -> Result<String, LocalRedisError> {
        cli::run(
            &self.opts.redis_cli,
            self.password(),
            args,
            &self.dir.path().join(log_name),
            timeout,
        )
    }

    /// The port of the first running node: where `redis-cli --cluster` commands connect.
    fn entry_point(&self) -> Result<u16, LocalRedisError> {
        self.procs
            .iter()
            .find(|p| p.is_running())
            .map(RedisProcess::port)
            .ok_or_else(|| LocalRedisError::NotReady {
                waited: Duration::ZERO,
                last_state: "no node is running".into(),
            })
    }

    fn node(&self, idx: usize) -> Result<&RedisProcess, LocalRedisError> {
        self.procs.get(idx).ok_or(LocalRedisError::NoSuchNode {
            idx,
            count: self.procs.len(),
        })
    }

    fn node_mut(&mut self, idx: usize) -> Result<&mut RedisProcess, LocalRedisError> {
        let count = self.procs.len();
        self.procs
            .get_mut(idx)
            .ok_or(LocalRedisError::NoSuchNode { idx, count })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            // Best effort; nothing useful can be done about a failure in drop.
            let _ = p.kill();
        }
    }
}

/// Deletes a `nodes.conf` left by an earlier run: a node with one would not join a new cluster.
fn remove_stale_config(node_dir: &Path) -> Result<(), LocalRedisError> {
    let conf = node_dir.join("nodes.conf");
    match std::fs::remove_file(&conf) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalRedisError::io(
            format!("cannot remove stale {}", conf.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// How every cluster node is started: cluster mode with the options' timeout and extra args.
fn node_spec(opts: &ClusterOptions, port: u16, dir: PathBuf) -> NodeSpec {
    NodeSpec {
        port,
        dir,
        binary: opts.redis_server.clone(),
        cluster_node_timeout_ms: Some(opts.node_timeout_ms),
        extra_args: opts.extra_args.clone(),
        sentinel_config: None,
        password: opts.password.clone(),
    }
}

/// Repeats [`topology::check`] until it passes or `timeout` runs out.
fn wait_ready(
    live: &[u16],
    known_nodes: usize,
    with_replicas: bool,
    timeout: Duration,
    password: Option<&str>,
) -> Result<Vec<SlotRange>, LocalRedisError> {
    let started = Instant::now();
    loop {
        match topology::check(live, known_nodes, with_replicas, password) {
            Ok(view) => return Ok(view),
            Err(problems) if started.elapsed() >= timeout => {
                return Err(LocalRedisError::NotReady {
                    waited: started.elapsed(),
                    last_state: problems.join("\n"),
                })
            }
            // Gossip moves in ~100 ms steps; polling faster only adds load.
            Err(_) => thread::sleep(POLL_INTERVAL * 4),
        }
    }
}

/// Reads each node's id and master from its own `CLUSTER NODES` (`myself` line).
fn node_info(ports: &[u16], password: Option<&str>) -> Result<Vec<NodeInfo>, LocalRedisError> {
    let mut selves = Vec::with_capacity(ports.len());
    for &port in ports {
        let not_ready = |detail: String| LocalRedisError::NotReady {
            waited: Duration::ZERO,
            last_state: format!("127.0.0.1:{port}: {detail}"),
        };
        let nodes = resp_probe::query_text(port, &["CLUSTER", "NODES"], PROBE_TIMEOUT, password)
            .map_err(|e| not_ready(format!("CLUSTER NODES: {e}")))?;
        let me = topology::parse_myself(&nodes)
            .ok_or_else(|| not_ready("no `myself` line in CLUSTER NODES".into()))?;
        selves.push(me);
    }
    let mut info = Vec::with_capacity(ports.len());
    for (&port, me) in ports.iter().zip(&selves) {
        let master = match &me.master_id {
            None => None,
            Some(id) => Some(selves.iter().position(|m| &m.id == id).ok_or_else(|| {
                LocalRedisError::NotReady {
                    waited: Duration::ZERO,
                    last_state: format!("127.0.0.1:{port} replicates unknown node {id}"),
                }
            })?),
        };
        info.push(NodeInfo {
            port,
            id: me.id.clone(),
            role: if master.is_some() {
                Role::Replica
            } else {
                Role::Master
            },
            master,
        });
    }
    Ok(info)
}
