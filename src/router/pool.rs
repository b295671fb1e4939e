//! A worker's backend connections, and the route from a slot table's shard to one of them:
//! the master for writes, a master or replica for reads as the shard's read policy says.
//!
//! Connections are keyed by node address, so a new slot table keeps every connection to a
//! node that is still in it (with the same credentials: a reload that changes a pool's
//! password opens new connections and retires the old ones). Masters and replicas are kept
//! apart: a cluster replica's connections send `READONLY` first, a master's never do.
//!
//! Per table version the pool caches shard index → connections, and per health generation
//! the indices of the shard's healthy replicas, so picking a connection is a few vector
//! lookups: no hashing and no allocation per request.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::read_target::{self, ReadTarget};
use crate::backend::conn::{BackendConn, ConnSettings, Hooks};
use crate::backend::Credentials;
use crate::config::ReadPolicy;
use crate::topology::{Health, SlotTable};

/// The connections to one node and the credentials they authenticate with.
struct Node {
    auth: Option<Arc<Credentials>>,
    conns: Vec<BackendConn>,
}

/// One shard's connections, as the current table and health view describe it.
#[derive(Default)]
struct ShardConns {
    master: Vec<BackendConn>,
    policy: ReadPolicy,
    /// Every replica the table lists, in table order.
    replicas: Vec<(Arc<str>, Vec<BackendConn>)>,
    /// Indices into `replicas` of those the health view does not count as down.
    healthy: Vec<usize>,
}

/// Where a read goes, or why it cannot go anywhere.
pub enum Pick<'a> {
    /// Send it on this connection.
    Conn(&'a BackendConn),
    /// The table has no such shard.
    NoShard,
    /// The shard reads from replicas only and none is healthy.
    NoHealthyReplica,
}

/// Marks the health cache as stale (no generation ever has this value).
const STALE: u64 = u64::MAX;

/// The backend connections of one worker.
pub struct BackendPool {
    /// Its connections speak RESP3 (for RESP3 clients).
    resp3: bool,
    settings: Rc<ConnSettings>,
    per_node: usize,
    hooks: Rc<dyn Hooks>,
    masters: HashMap<Arc<str>, Node>,
    replicas: HashMap<Arc<str>, Node>,
    /// Table version the `by_shard` cache was built for (0 = none).
    version: u64,
    /// Health generation the `healthy` lists were built for.
    health_generation: u64,
    by_shard: Vec<ShardConns>,
    /// Turns of the round-robin read policy.
    rotation: u64,
}

impl BackendPool {
    /// An empty pool opening `per_node` connections to each node it is asked for, speaking
    /// RESP3 if `resp3` (for RESP3 clients), else RESP2.
    pub fn new(settings: ConnSettings, per_node: usize, hooks: Rc<dyn Hooks>, resp3: bool) -> Self {
        BackendPool {
            resp3,
            settings: Rc::new(settings),
            per_node: per_node.max(1),
            hooks,
            masters: HashMap::new(),
            replicas: HashMap::new(),
            version: 0,
            health_generation: STALE,
            by_shard: Vec::new(),
            rotation: 0,
        }
    }

    /// The connection `client_id` uses for the master of `shard` in `table`. One client always
    /// gets the same connection per node, so its commands to a node keep their order.
    #[inline]
    pub fn master_conn(
        &mut self,
        table: &SlotTable,
        shard: usize,
        client_id: u64,
    ) -> Option<&BackendConn> {
        if self.version != table.version() {
            self.rebuild(table);
        }
        pick(&self.by_shard.get(shard)?.master, client_id)
    }

    /// The shard's read policy in the cached table (`table` is synced first).
    pub fn read_policy(&mut self, table: &SlotTable, shard: usize) -> ReadPolicy {
        if self.version != table.version() {
            self.rebuild(table);
        }
        self.by_shard
            .get(shard)
            .map_or(ReadPolicy::Master, |s| s.policy)
    }

    /// The connection a read-only request of `client_id` for `shard` uses, by the shard's
    /// read policy ([`read_target::choose`]). `attempt` counts earlier tries of this request. `health` is called only when `health_generation` differs from the one
    /// the cache was built for.
    pub fn read_conn(
        &mut self,
        table: &SlotTable,
        health_generation: u64,
        health: impl FnOnce() -> Arc<Health>,
        shard: usize,
        client_id: u64,
        attempt: u8,
    ) -> Pick<'_> {
        if self.version != table.version() {
            self.rebuild(table);
        }
        if self.health_generation != health_generation {
            let health = health();
            for entry in &mut self.by_shard {
                entry.healthy = (0..entry.replicas.len())
                    .filter(|&i| !health.is_down(&entry.replicas[i].0))
                    .collect();
            }
            self.health_generation = health_generation;
        }
        let Some(entry) = self.by_shard.get(shard) else {
            return Pick::NoShard;
        };
        let target = read_target::choose(
            entry.policy,
            entry.healthy.len(),
            attempt,
            client_id,
            &mut self.rotation,
        );
        let chosen = match target {
            ReadTarget::Master => pick(&entry.master, client_id),
            ReadTarget::Replica(at) => entry
                .healthy
                .get(at)
                .and_then(|&index| entry.replicas.get(index))
                .and_then(|(_, conns)| pick(conns, client_id)),
            ReadTarget::NoHealthyReplica => return Pick::NoHealthyReplica,
        };
        match chosen {
            Some(conn) => Pick::Conn(conn),
            None => Pick::NoShard,
        }
    }

    /// The connection `client_id` uses for the node at `addr`, which need not be in `table`
    /// (a redirect may name a node the table does not know yet; it gets the cluster's
    /// credentials, [`SlotTable::credentials_for`]).
    pub fn conn_for_addr(
        &mut self,
        table: &SlotTable,
        addr: &Arc<str>,
        client_id: u64,
    ) -> BackendConn {
        if self.version != table.version() {
            self.rebuild(table);
        }
        let node = match self.masters.get(addr) {
            Some(node) => node,
            None => {
                let node = self.open(addr, table.credentials_for(addr), false);
                self.masters.entry(Arc::clone(addr)).or_insert(node)
            }
        };
        // `open` never returns an empty list: per_node >= 1.
        node.conns[(client_id % node.conns.len() as u64) as usize].clone()
    }

    fn open(&self, addr: &Arc<str>, auth: Option<Arc<Credentials>>, readonly: bool) -> Node {
        let conns = (0..self.per_node)
            .map(|_| {
                BackendConn::new(
                    Arc::clone(addr),
                    auth.clone(),
                    readonly,
                    self.resp3,
                    Rc::clone(&self.settings),
                    Rc::clone(&self.hooks),
                )
            })
            .collect();
        Node { auth, conns }
    }

    fn rebuild(&mut self, table: &SlotTable) {
        // Cluster replicas need READONLY to serve reads; standalone replicas serve them as is.
        let replica_readonly = self.settings.follow_redirects;
        let mut masters = std::mem::take(&mut self.masters);
        let mut replicas = std::mem::take(&mut self.replicas);
        let mut next_masters = HashMap::with_capacity(table.shards().len());
        let mut next_replicas = HashMap::new();
        let mut by_shard = Vec::with_capacity(table.shards().len());
        for shard in table.shards() {
            let master = self.keep_or_open(
                &mut masters,
                &mut next_masters,
                &shard.master,
                &shard.auth,
                false,
            );
            let replica_conns = shard
                .replicas
                .iter()
                .map(|addr| {
                    let conns = self.keep_or_open(
                        &mut replicas,
                        &mut next_replicas,
                        addr,
                        &shard.auth,
                        replica_readonly,
                    );
                    (Arc::clone(addr), conns)
                })
                .collect();
            by_shard.push(ShardConns {
                master,
                policy: shard.read_policy,
                replicas: replica_conns,
                healthy: Vec::new(),
            });
        }
        // Nodes no longer in the table: finish what they hold, then close.
        for node in masters.into_values().chain(replicas.into_values()) {
            node.conns.iter().for_each(BackendConn::retire);
        }
        self.masters = next_masters;
        self.replicas = next_replicas;
        self.by_shard = by_shard;
        self.version = table.version();
        self.health_generation = STALE;
    }

    /// The connections to `addr` with `auth`: moved from `old` if it has them (with the same
    /// credentials), found in `next` if already moved, or opened; recorded in `next`.
    fn keep_or_open(
        &self,
        old: &mut HashMap<Arc<str>, Node>,
        next: &mut HashMap<Arc<str>, Node>,
        addr: &Arc<str>,
        auth: &Option<Arc<Credentials>>,
        readonly: bool,
    ) -> Vec<BackendConn> {
        if let Some(node) = next.get(addr) {
            return node.conns.clone();
        }
        let node = match old.remove(addr) {
            Some(node) if node.auth == *auth => node,
            Some(stale) => {
                // Credentials changed: new connections, the old ones finish and close.
                stale.conns.iter().for_each(BackendConn::retire);
                self.open(addr, auth.clone(), readonly)
            }
            None => self.open(addr, auth.clone(), readonly),
        };
        let conns = node.conns.clone();
        next.insert(Arc::clone(addr), node);
        conns
    }

    /// Number of nodes this pool has connections (open or not yet opened) for.
    pub fn nodes(&self) -> usize {
        self.masters.len() + self.replicas.len()
    }
}

/// The connection of `conns` that `client_id` uses.
#[inline]
fn pick(conns: &[BackendConn], client_id: u64) -> Option<&BackendConn> {
    conns.get((client_id % conns.len().max(1) as u64) as usize)
}
