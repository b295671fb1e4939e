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
use crate::backend::connect::Handshake;
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
                let handshake = Handshake {
                    auth: auth.clone(),
                    resp3: self.resp3,
                    readonly,
                };
                BackendConn::new(
                    Arc::clone(addr),
                    handshake,
                    Rc::clone(&self.settings),
                    Rc::clone(&self.hooks),
                )
            })
            .collect();
        Node { auth, conns }
    }

    fn rebuild(&mut self, table: &SlotTable) {
        // Cluster replicas need READONLY to serve reads; standalone replicas serve them as is.
        let replica_readonly = self.settings.follow_redirects.get();
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
        // Keys moving between pools and a cluster: the masters of the side they move from
        // keep their connections (a client's on-touch MIGRATEs stay on one connection, in
        // order), with their own credentials.
        if let Some((_, source)) = table.other_side() {
            for shard in source.shards() {
                self.keep_or_open(
                    &mut masters,
                    &mut next_masters,
                    &shard.master,
                    &shard.auth,
                    false,
                );
            }
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

    /// Replace the connections of every node one of whose sockets `stale(node, peer IP)`
    /// calls stale (a node known by name that resolves elsewhere now): the old connections
    /// finish what they hold and close, new ones connect (resolving the name afresh) on their
    /// first request. Returns how many nodes were renewed.
    pub fn renew_stale(&mut self, stale: &impl Fn(&str, std::net::IpAddr) -> bool) -> usize {
        let is_stale = |node: &Node, addr: &str| {
            node.conns
                .iter()
                .any(|c| c.peer_ip().is_some_and(|ip| stale(addr, ip)))
        };
        let replica_readonly = self.settings.follow_redirects.get();
        let mut renewed = 0;
        for replicas in [false, true] {
            let map = if replicas {
                &self.replicas
            } else {
                &self.masters
            };
            let moved: Vec<Arc<str>> = map
                .iter()
                .filter(|(addr, node)| is_stale(node, addr))
                .map(|(addr, _)| Arc::clone(addr))
                .collect();
            for addr in moved {
                let map = if replicas {
                    &mut self.replicas
                } else {
                    &mut self.masters
                };
                let Some(old) = map.remove(&addr) else {
                    continue;
                };
                old.conns.iter().for_each(BackendConn::retire);
                let node = self.open(&addr, old.auth, replicas && replica_readonly);
                let map = if replicas {
                    &mut self.replicas
                } else {
                    &mut self.masters
                };
                map.insert(addr, node);
                renewed += 1;
            }
        }
        if renewed > 0 {
            // The per-shard cache holds the old handles: rebuilt on the next request.
            self.version = 0;
        }
        renewed
    }

    /// Every connection to a master (a migration phase change settles them).
    pub fn master_conns(&self) -> impl Iterator<Item = BackendConn> + '_ {
        self.masters
            .values()
            .flat_map(|node| node.conns.iter().cloned())
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

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    use crate::backend::conn::Outbound;
    use crate::backend::redirect::Redirect;
    use crate::backend::BackendError;
    use crate::stats::ProxyStats;
    use crate::topology::{ShardInfo, ShardSettings};

    /// Hooks nothing calls: these tests send nothing.
    struct NoHooks;

    impl Hooks for NoHooks {
        fn redirect(&self, _: Outbound, _: Redirect, _: Bytes) {}
        fn reroute(&self, _: Outbound, _: &BackendError) {}
        fn lost(&self, _: Outbound, _: &BackendError) {}
        fn failed(&self, _: &BackendError) {}
    }

    fn pool(per_node: usize) -> BackendPool {
        let settings = ConnSettings {
            connect_timeout: std::time::Duration::from_secs(1),
            request_timeout: std::time::Duration::from_secs(1),
            reconnect_backoff: std::time::Duration::from_secs(1),
            limits: crate::resp::Limits::default(),
            follow_redirects: crate::backend::conn::FollowRedirects::fixed(true),
            tls: None,
            stats: Arc::new(ProxyStats::new(1, "127.0.0.1:1".parse().unwrap())),
            worker: 0,
            kill_slow_scripts: false,
        };
        BackendPool::new(settings, per_node, Rc::new(NoHooks), false)
    }

    /// Two shards (slots 0-8191 on `a`, the rest on `b`), each with two replicas, reading by
    /// `policy`, `auth` for shard `a`.
    fn table(version: u64, policy: ReadPolicy, auth: Option<&str>) -> SlotTable {
        let shard = |first, last, master: &str| ShardInfo {
            ranges: vec![(first, last)],
            master: master.into(),
            replicas: vec![format!("{master}-r1"), format!("{master}-r2")],
            loading: Vec::new(),
        };
        let shards = [shard(0, 8191, "a:1"), shard(8192, 16383, "b:1")];
        let settings = |auth: Option<&str>| ShardSettings {
            auth: auth.map(|p| Arc::new(Credentials::new(None, p))),
            read_policy: policy,
        };
        SlotTable::from_shards(&shards, version)
            .unwrap()
            .with_pool_settings(
                crate::placement::Placement::SLOTS,
                vec![settings(auth), settings(None)],
            )
    }

    fn addr(pick: Pick<'_>) -> String {
        match pick {
            Pick::Conn(conn) => conn.addr().to_string(),
            Pick::NoShard => "no shard".into(),
            Pick::NoHealthyReplica => "no healthy replica".into(),
        }
    }

    fn no_health() -> Arc<Health> {
        Arc::new(Health::default())
    }

    #[test]
    fn a_client_keeps_one_connection_per_master_and_clients_spread() {
        let mut pool = pool(2);
        let t = table(1, ReadPolicy::Master, None);
        let first = pool.master_conn(&t, 0, 7).unwrap().clone();
        assert_eq!(&**first.addr(), "a:1");
        assert!(first.same(pool.master_conn(&t, 0, 7).unwrap()));
        assert!(
            !first.same(pool.master_conn(&t, 0, 8).unwrap()),
            "2 per node"
        );
        assert!(first.same(pool.master_conn(&t, 0, 9).unwrap()));
        assert_eq!(&**pool.master_conn(&t, 1, 7).unwrap().addr(), "b:1");
        assert!(pool.master_conn(&t, 2, 7).is_none(), "no third shard");
        assert_eq!(pool.nodes(), 6, "2 masters and 4 replicas");
    }

    #[test]
    fn a_new_table_keeps_connections_to_the_same_nodes_unless_credentials_change() {
        let mut pool = pool(1);
        let old = table(1, ReadPolicy::Master, Some("pw"));
        let a = pool.master_conn(&old, 0, 0).unwrap().clone();
        let b = pool.master_conn(&old, 1, 0).unwrap().clone();
        let same = table(2, ReadPolicy::Master, Some("pw"));
        assert!(
            a.same(pool.master_conn(&same, 0, 0).unwrap()),
            "kept across versions"
        );
        let new_password = table(3, ReadPolicy::Master, Some("other"));
        assert!(
            !a.same(pool.master_conn(&new_password, 0, 0).unwrap()),
            "reopened"
        );
        assert!(
            b.same(pool.master_conn(&new_password, 1, 0).unwrap()),
            "b is unchanged"
        );
    }

    #[test]
    fn reads_follow_the_policy_and_skip_replicas_marked_down() {
        let mut pool = pool(1);
        let t = table(1, ReadPolicy::Replica, None);
        // Client 1 of 2 healthy replicas reads from the second.
        assert_eq!(addr(pool.read_conn(&t, 0, no_health, 0, 1, 0)), "a:1-r2");
        assert_eq!(
            addr(pool.read_conn(&t, 0, no_health, 0, 1, 1)),
            "a:1-r1",
            "retried"
        );
        let r2_down = || Arc::new(Health::with_down(vec!["a:1-r2".into()]));
        assert_eq!(addr(pool.read_conn(&t, 1, r2_down, 0, 1, 0)), "a:1-r1");
        let both_down = || Arc::new(Health::with_down(vec!["a:1-r1".into(), "a:1-r2".into()]));
        assert_eq!(
            addr(pool.read_conn(&t, 2, both_down, 0, 1, 0)),
            "no healthy replica"
        );
        // The health view is read again only when its generation moves.
        assert_eq!(
            addr(pool.read_conn(&t, 2, || unreachable!("cached"), 0, 1, 0)),
            "no healthy replica"
        );
        let master = table(2, ReadPolicy::Master, None);
        assert_eq!(addr(pool.read_conn(&master, 2, no_health, 0, 1, 0)), "a:1");
    }

    #[test]
    fn a_redirect_may_name_a_node_the_table_does_not_know() {
        let mut pool = pool(1);
        let t = table(1, ReadPolicy::Master, None);
        let new: Arc<str> = "c:1".into();
        let conn = pool.conn_for_addr(&t, &new, 3);
        assert_eq!(&**conn.addr(), "c:1");
        assert!(conn.same(&pool.conn_for_addr(&t, &new, 3)), "then kept");
    }

    #[test]
    fn nodes_whose_sockets_went_to_a_stale_address_get_new_connections() {
        use crate::backend::testing::{local, node, Replies};
        use tokio::time::Instant;

        local(async {
            let ping = b"*1\r\n$4\r\nPING\r\n";
            let master = node(ping.len(), b"+PONG\r\n", false).await;
            let shards = [ShardInfo {
                ranges: vec![(0, 16383)],
                master: master.to_string(),
                replicas: Vec::new(),
                loading: Vec::new(),
            }];
            let t = SlotTable::from_shards(&shards, 1).unwrap();
            let mut pool = pool(1);
            let old = pool.master_conn(&t, 0, 0).unwrap().clone();
            let replies = Rc::new(Replies::default());
            let within = std::time::Duration::from_secs(1);
            old.send(crate::router::tests::ping(&replies, within), Instant::now());
            assert_eq!(&replies.first().await[..], b"+PONG\r\n");
            let peer = old.peer_ip().expect("connected: its peer is known");
            assert!(peer.is_loopback());

            // Another address is stale: nothing changes.
            let elsewhere = |_: &str, ip: std::net::IpAddr| !ip.is_loopback();
            assert_eq!(pool.renew_stale(&elsewhere), 0);
            assert!(old.same(pool.master_conn(&t, 0, 0).unwrap()));

            // The master's address is stale: a new connection, the old one winds down.
            let here = |addr: &str, ip: std::net::IpAddr| addr == &*master && ip == peer;
            assert_eq!(pool.renew_stale(&here), 1);
            let new = pool.master_conn(&t, 0, 0).unwrap().clone();
            assert!(!new.same(&old), "renewed");
            assert_eq!(new.addr(), old.addr());
            assert_eq!(new.peer_ip(), None, "connects on its first request");
            assert_eq!(
                pool.renew_stale(&here),
                0,
                "the new one is not connected yet"
            );
        });
    }
}
