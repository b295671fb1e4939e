//! A worker's backend connections, and the route from a slot table's shard to one of them.
//!
//! Connections are keyed by node address, so a new slot table keeps every connection to a
//! node that is still in it (with the same credentials: a reload that changes a pool's
//! password opens new connections and retires the old ones). Per table version the pool caches shard index → connections, so
//! the request path is two vector lookups, no hashing.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::auth::Credentials;
use super::conn::{BackendConn, ConnSettings, Hooks};
use crate::topology::SlotTable;

/// The connections to one node and the credentials they authenticate with.
struct Node {
    auth: Option<Arc<Credentials>>,
    conns: Vec<BackendConn>,
}

/// The backend connections of one worker.
pub struct BackendPool {
    /// Its connections speak RESP3 (for RESP3 clients).
    resp3: bool,
    settings: Rc<ConnSettings>,
    per_node: usize,
    hooks: Rc<dyn Hooks>,
    by_addr: HashMap<Arc<str>, Node>,
    /// Table version the `by_shard` cache was built for (0 = none).
    version: u64,
    by_shard: Vec<Vec<BackendConn>>,
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
            by_addr: HashMap::new(),
            version: 0,
            by_shard: Vec::new(),
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
        let conns = self.by_shard.get(shard)?;
        conns.get((client_id % conns.len() as u64) as usize)
    }

    /// The connection `client_id` uses for the node at `addr`, which need not be in `table`
    /// (a redirect may name a node the table does not know yet; it gets no credentials).
    pub fn conn_for_addr(
        &mut self,
        table: &SlotTable,
        addr: &Arc<str>,
        client_id: u64,
    ) -> BackendConn {
        if self.version != table.version() {
            self.rebuild(table);
        }
        let node = match self.by_addr.get(addr) {
            Some(node) => node,
            None => {
                let node = self.open(addr, None);
                self.by_addr.entry(Arc::clone(addr)).or_insert(node)
            }
        };
        // `open` never returns an empty list: per_node >= 1.
        node.conns[(client_id % node.conns.len() as u64) as usize].clone()
    }

    fn open(&self, addr: &Arc<str>, auth: Option<Arc<Credentials>>) -> Node {
        let conns = (0..self.per_node)
            .map(|_| {
                BackendConn::new(
                    Arc::clone(addr),
                    auth.clone(),
                    self.resp3,
                    Rc::clone(&self.settings),
                    Rc::clone(&self.hooks),
                )
            })
            .collect();
        Node { auth, conns }
    }

    fn rebuild(&mut self, table: &SlotTable) {
        let mut next_by_addr = HashMap::with_capacity(table.shards().len());
        for shard in table.shards() {
            let node = match self.by_addr.remove(&shard.master) {
                Some(node) if node.auth == shard.auth => node,
                Some(stale) => {
                    // Credentials changed: new connections, the old ones finish and close.
                    stale.conns.iter().for_each(BackendConn::retire);
                    self.open(&shard.master, shard.auth.clone())
                }
                None => self.open(&shard.master, shard.auth.clone()),
            };
            next_by_addr.insert(Arc::clone(&shard.master), node);
        }
        // Nodes no longer in the table: finish what they hold, then close.
        for node in self.by_addr.drain().map(|(_, node)| node) {
            node.conns.iter().for_each(BackendConn::retire);
        }
        self.by_shard = table
            .shards()
            .iter()
            .map(|s| {
                next_by_addr
                    .get(&s.master)
                    .map(|n: &Node| n.conns.clone())
                    .unwrap_or_default()
            })
            .collect();
        self.by_addr = next_by_addr;
        self.version = table.version();
    }

    /// Number of nodes this pool has connections (open or not yet opened) for.
    pub fn nodes(&self) -> usize {
        self.by_addr.len()
    }
}
