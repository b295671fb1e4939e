//! Sending a request to the node that owns its slot, and following it when the cluster says
//! it is elsewhere or not ready: the reason clients never see MOVED, ASK or TRYAGAIN.
//!
//! ```text
//!  route(out) ── table: slot → master (reads: replica by read policy) ──► BackendConn::send
//!      ▲                                   │ reply is MOVED  → patch the slot, refresh soon, resend to the named node
//!      │                                   │ reply is ASK    → resend to the named node as ASKING + request
//!      │                                   │ TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN → retry later
//!      │                                   │ node down / connection lost → reroute (never-sent and reads only)
//!      └──── held: retried after a capped back-off, until the request's deadline ◄┘
//! ```
//!
//! Every retry path ends at the request's deadline (`backend.request_timeout_ms` after it was
//! received) or after `cluster.max_redirects` redirects, with a clear error, never a hang.
//! Held requests are re-routed through the *current* table, so a failover's new master is
//! used as soon as a refresh publishes it.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::backend::conn::{ConnSettings, Hooks, Outbound};
use crate::backend::dedicated::{DedicatedConn, IdleConns, Lease};
use crate::backend::redirect::{Redirect, RedirectCounters};
use crate::backend::{BackendError, Credentials};
use crate::command::custom::CustomCommands;
use crate::config::{Config, ReadPolicy, WhenNodeDown};
use crate::resp::Limits;
use crate::scripts::ScriptCache;
use crate::stats::{ProxyStats, WorkerStats};
use crate::tls::TlsContext;
use crate::topology::{LocalTable, MoveRoute, SlotTable, TableCache, Topology};
use crate::wake::LocalSignal;
use pool::{BackendPool, Pick};

mod moving;
pub mod pool;
pub use moving::{DedicatedTurn, NotYet};
pub mod read_target;
pub mod rule;

use rule::{Attempts, Next};

/// How the router treats requests it cannot send right now.
#[derive(Clone, Copy, Debug)]
pub struct RoutePolicy {
    /// MOVED/ASK redirects one request may follow.
    pub max_redirects: u8,
    /// Hold requests for a down node (until their deadline) instead of failing them at once.
    pub hold_when_down: bool,
}

/// Requests waiting for a retry, with the error to give if their deadline passes first.
#[derive(Default)]
pub struct Held {
    entries: RefCell<Vec<HeldRequest>>,
    wake: LocalSignal,
}

struct HeldRequest {
    due: Instant,
    out: Outbound,
    /// The reply the client gets if the request cannot be retried in time.
    error: Bytes,
}

/// One worker's way to the nodes: its cached view of the slot table, its backend
/// connections (pipelined and dedicated), and the requests it holds for a retry. Owned by the
/// worker thread (`Rc`, no locks); sessions reach it through `Worker::router`.
pub struct Router {
    /// Index of the worker, for its counters.
    index: usize,
    topology: Arc<Topology>,
    /// This worker's cached view of the table, for the request path (see [`Router::table`]).
    table_cache: RefCell<TableCache>,
    /// Pipelined connections, by [`lane_index`]: RESP2 and RESP3 (for RESP3 clients), each
    /// on the shared lane and on the scripts lane. A pool opens nothing until a request needs
    /// it, so the RESP3 and scripts lanes cost nothing until a client uses them.
    pools: [RefCell<BackendPool>; 4],
    /// Dedicated connections (blocking commands, transactions, pub/sub) free for reuse.
    idle: RefCell<IdleConns>,
    policy: RoutePolicy,
    held: Held,
    scripts: Arc<ScriptCache>,
    /// `slotgate_redirects_total` by kind, for every path that follows redirects.
    redirects: RedirectCounters,
    proxy: Arc<ProxyStats>,
    /// Reply parsing limits of dedicated connections (and of requests re-read here).
    limits: Limits,
    connect_timeout: Duration,
    tls: Arc<TlsContext>,
    /// This router, for the waiters of its multi-step requests.
    me: Weak<Router>,
    /// `[commands.custom]` declarations, for the keys of a moving slot's requests.
    custom: Option<&'static CustomCommands>,
    /// `MIGRATE` timeout of on-touch moves (`migration.timeout_ms`).
    migrate_timeout_ms: u64,
    /// Keys this big or more are not moved whole on touch but copied in steps
    /// (`migration.big_key_bytes`; 0: always whole).
    big_key_bytes: u64,
    /// A request with less time than this left moves its keys whole, big or not (half of
    /// `backend.request_timeout_ms`): it waited for a copy in steps long enough.
    big_key_patience: Duration,
    /// Requests between their on-touch `MIGRATE` and their forwarding.
    on_touch: moving::OnTouch,
}

impl Router {
    /// The router of worker `index`, by `config`: connections to the nodes of `topology`'s
    /// table, counted in `proxy`, over TLS from `tls` when backends use it; `scripts` answers
    /// NOSCRIPT; `custom` finds the keys of declared module commands. Starts nothing:
    /// [`retry_loop`] runs its held requests.
    pub fn new(
        index: usize,
        config: &Config,
        topology: Arc<Topology>,
        proxy: Arc<ProxyStats>,
        scripts: Arc<ScriptCache>,
        tls: Arc<TlsContext>,
        custom: Option<&'static CustomCommands>,
    ) -> Rc<Router> {
        let settings = ConnSettings {
            connect_timeout: Duration::from_millis(config.backend.connect_timeout_ms),
            request_timeout: Duration::from_millis(config.backend.request_timeout_ms),
            reconnect_backoff: Duration::from_millis(config.backend.reconnect_backoff_ms),
            limits: config.protocol.limits(),
            follow_redirects: crate::backend::conn::FollowRedirects::shared(
                topology.cluster_routing_flag(),
            ),
            tls: config.backend.tls.enabled.then(|| Arc::clone(&tls)),
            stats: Arc::clone(&proxy),
            worker: index,
            kill_slow_scripts: config.backend.kill_slow_scripts,
        };
        let per_node = config.backend.connections_per_node;
        Rc::new_cyclic(|weak: &Weak<Router>| Router {
            index,
            table_cache: RefCell::new(topology.table_cache()),
            topology,
            pools: std::array::from_fn(|index| {
                let hooks = Rc::new(RouterHooks(weak.clone()));
                let resp3 = index & 1 == 1;
                RefCell::new(BackendPool::new(settings.clone(), per_node, hooks, resp3))
            }),
            idle: RefCell::new(IdleConns::default()),
            policy: RoutePolicy {
                max_redirects: config.cluster.max_redirects,
                hold_when_down: config.cluster.when_node_down == WhenNodeDown::Hold,
            },
            held: Held::default(),
            scripts,
            redirects: RedirectCounters::register(),
            proxy,
            limits: Limits {
                max_request_len: config.proxy.max_request_bytes,
                ..config.protocol.limits()
            },
            connect_timeout: Duration::from_millis(config.backend.connect_timeout_ms),
            tls,
            me: weak.clone(),
            custom,
            migrate_timeout_ms: config.migration.timeout_ms,
            big_key_bytes: config.migration.big_key_bytes,
            big_key_patience: Duration::from_millis(config.backend.request_timeout_ms / 2),
            on_touch: moving::OnTouch::default(),
        })
    }

    /// The live slot table, through this worker's cache: the request path's way to read it.
    #[inline]
    pub fn table(&self) -> LocalTable {
        self.table_cache.borrow_mut().current()
    }

    /// The topology: table, health view, refresh requests.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// How redirects and unavailable nodes are handled.
    pub fn policy(&self) -> RoutePolicy {
        self.policy
    }

    /// Script bodies seen, to answer NOSCRIPT after a failover.
    pub fn scripts(&self) -> &ScriptCache {
        &self.scripts
    }

    /// This worker's counters.
    #[inline]
    pub fn stats(&self) -> &WorkerStats {
        self.proxy.worker(self.index)
    }

    /// Nodes this worker's RESP2 pool has connections (open or not yet) for.
    pub fn nodes(&self) -> usize {
        self.pools[0].borrow().nodes()
    }

    /// An idle dedicated connection to `addr` (speaking RESP3 if `resp3`), or a new one, in
    /// any database (for commands about the node, not its keys).
    pub async fn lease(&self, addr: &Arc<str>, resp3: bool) -> Result<DedicatedConn, BackendError> {
        if let Some(conn) = self.idle.borrow_mut().take(addr, resp3, 0) {
            return Ok(conn);
        }
        self.open_dedicated(addr, resp3).await
    }

    /// An idle dedicated connection to `addr` or a new one, as `lease` says (protocol and
    /// database). A node that refuses the database: [`BackendError::Refused`], and the
    /// connection is kept for the next lease.
    pub async fn lease_for(
        &self,
        addr: &Arc<str>,
        lease: Lease,
    ) -> Result<DedicatedConn, BackendError> {
        let taken = self.idle.borrow_mut().take(addr, lease.resp3, lease.db);
        let mut conn = match taken {
            Some(conn) => conn,
            None => self.open_dedicated(addr, lease.resp3).await?,
        };
        match conn.select(lease.db).await {
            Ok(()) => Ok(conn),
            Err(refused @ BackendError::Refused { .. }) => {
                self.give_back(conn);
                Err(refused)
            }
            Err(e) => Err(e),
        }
    }

    /// A new dedicated connection to `addr` (speaking RESP3 if `resp3`), authenticated with
    /// the credentials the table gives the node.
    pub async fn open_dedicated(
        &self,
        addr: &Arc<str>,
        resp3: bool,
    ) -> Result<DedicatedConn, BackendError> {
        DedicatedConn::connect(
            Arc::clone(addr),
            self.connect_timeout,
            self.limits,
            self.credentials_for(addr),
            resp3,
            self.tls.backend(),
        )
        .await
    }

    /// Replace this worker's connections to nodes known by name that `resolved` says
    /// resolve elsewhere now (pipelined ones finish what they hold first; idle dedicated ones
    /// close). Returns how many nodes' connections and idle connections were replaced.
    pub fn follow_names(&self, resolved: &crate::topology::names::Resolved) -> usize {
        let stale = |addr: &str, ip| resolved.moved(addr, ip);
        let pools: usize = self
            .pools
            .iter()
            .map(|pool| pool.borrow_mut().renew_stale(&stale))
            .sum();
        pools + self.idle.borrow_mut().close_stale(stale)
    }

    /// Keep a dedicated connection in a clean state for the next lease (or close it).
    pub fn give_back(&self, conn: DedicatedConn) {
        self.idle.borrow_mut().put(conn);
    }

    /// The credentials the table gives the node at `addr` (its pool's, or the cluster's).
    pub fn credentials_for(&self, addr: &str) -> Option<Arc<Credentials>> {
        self.topology.table().credentials_for(addr)
    }

    /// Send `out` to the node of its slot in the current table (or to its pinned node): the
    /// master, or for a read-only request the master or a replica as the shard's read policy
    /// says.
    pub fn route(&self, out: Outbound, now: Instant) {
        self.route_in(&self.table(), out, now);
    }

    /// [`Worker::route`] by `table`, which the caller has just loaded (one table load per
    /// request on the hot path).
    pub fn route_in(&self, table: &SlotTable, mut out: Outbound, now: Instant) {
        if let Some(node) = out.node.clone() {
            return self.send_to(&node, out, now);
        }
        let Some(shard) = table.shard_of(out.unit) else {
            if let Some(unit) = self.placed_again(table, &out) {
                // Placed by the other side of a move that turned since (a cluster slot, now
                // routed by the pools' table).
                out.unit = unit;
                return self.route_in(table, out, now);
            }
            self.topology.request_refresh();
            let error = BackendError::SlotUnserved(out.unit.get()).to_reply();
            return self.hold_or_fail(out, error, now);
        };
        if let Some(moving) = table.moving(out.unit) {
            return match moving {
                MoveRoute::From(source) => self.route_moving(table, source, shard, out, now),
                MoveRoute::Legacy => self.route_legacy(table, out, now),
                MoveRoute::Hold => {
                    let error = touch_held_reply(out.unit.get());
                    self.retry_later(out, error, now)
                }
            };
        }
        let mut pool = self.pool_for(&out).borrow_mut();
        let pick = if out.readonly {
            let topology = &self.topology;
            pool.read_conn(
                table,
                topology.health_generation(),
                || Arc::clone(&topology.health()),
                shard,
                out.client_id,
                out.retries,
            )
        } else {
            match pool.master_conn(table, shard, out.client_id) {
                Some(conn) => Pick::Conn(conn),
                None => Pick::NoShard,
            }
        };
        let conn = match pick {
            Pick::Conn(conn) => conn.clone(),
            Pick::NoShard => {
                drop(pool);
                let error = BackendError::SlotUnserved(out.unit.get()).to_reply();
                return self.fail(out, error);
            }
            Pick::NoHealthyReplica => {
                drop(pool);
                let error = BackendError::NoReplica(out.unit.get()).to_reply();
                return self.fail(out, error);
            }
        };
        drop(pool);
        conn.send(out, now);
    }

    /// A read handed back by a failed connection, on its first try, for a shard that reads
    /// from replicas: send it again at once (to the master, or the next healthy replica)
    /// rather than hold it until the health checker ejects the replica. Returns it otherwise.
    fn reroute_read(&self, mut out: Outbound, now: Instant) -> Option<Outbound> {
        if !out.readonly || out.node.is_some() || out.retries > 0 {
            return Some(out);
        }
        let table = self.table();
        let Some(shard) = table.shard_of(out.unit) else {
            return Some(out);
        };
        let policy = self.pool_for(&out).borrow_mut().read_policy(&table, shard);
        if policy == ReadPolicy::Master {
            return Some(out);
        }
        drop(table);
        out.retries = 1;
        self.stats().retried();
        self.route(out, now);
        None
    }

    /// Send `out` to the node at `addr`, whatever the table says (a redirect named it).
    fn send_to(&self, addr: &Arc<str>, out: Outbound, now: Instant) {
        let table = self.table();
        let conn = self
            .pool_for(&out)
            .borrow_mut()
            .conn_for_addr(&table, addr, out.client_id);
        conn.send(out, now);
    }

    /// The connections for `out`'s protocol and lane.
    #[inline]
    fn pool_for(&self, out: &Outbound) -> &RefCell<BackendPool> {
        &self.pools[lane_index(out)]
    }

    /// Retry `out` later if policy, the request and its deadline allow, else fail it with
    /// `error`.
    fn hold_or_fail(&self, out: Outbound, error: Bytes, now: Instant) {
        if self.policy.hold_when_down && out.hold {
            self.retry_later(out, error, now);
        } else {
            self.fail(out, error);
        }
    }

    /// Queue `out` for another attempt after a capped back-off, unless that would pass its
    /// deadline: then it fails now with `error`.
    fn retry_later(&self, out: Outbound, error: Bytes, now: Instant) {
        match rule::retry_at(out.retries, now, out.deadline) {
            Some(due) => self.hold_until(due, out, error),
            None => self.fail(out, error),
        }
    }

    /// Hold `out` until `due`, then route it again (or fail it with `error` if its deadline
    /// has passed by then).
    fn hold_until(&self, due: Instant, mut out: Outbound, error: Bytes) {
        out.retries = out.retries.saturating_add(1);
        self.stats().retried();
        self.held
            .entries
            .borrow_mut()
            .push(HeldRequest { due, out, error });
        self.held.wake.raise();
    }

    fn fail(&self, out: Outbound, error: Bytes) {
        self.stats().failed();
        // Timed: a request that waited out a dead node belongs in the slow log.
        out.reply.answer(error, &out.request, Instant::now());
    }

    /// Carry out the redirect rule for a request the cluster bounced with `reply`.
    fn follow(&self, mut out: Outbound, redirect: Redirect, reply: Bytes) {
        let now = Instant::now();
        let attempts = Attempts {
            redirects: out.redirects,
            retries: out.retries,
        };
        let next = rule::decide(
            &redirect,
            attempts,
            self.policy.max_redirects,
            now,
            out.deadline,
        );
        self.take_note(&redirect, &next);
        match next {
            Next::Resend { addr, asking, .. } => {
                out.redirects += 1;
                out.asking = asking;
                self.send_to(&addr, out, now);
            }
            Next::RetryAt(at) => {
                out.asking = false;
                self.hold_until(at, out, reply);
            }
            Next::LoadScript => self.load_script_and_resend(out, reply, now),
            Next::GiveUp(give_up) => {
                if let rule::GiveUp::TooManyRedirects { slot, addr } = &give_up {
                    tracing::warn!(%slot, %addr, "request gave up after {} redirects", out.redirects);
                }
                self.fail(out, give_up.to_reply(reply));
            }
        }
    }

    /// What the redirect rule's answer `next` to `redirect` means beyond the one request, for
    /// the pipelined and the dedicated paths alike: the redirect counted, a MOVED slot patched
    /// in the table, a topology refresh asked for.
    pub(crate) fn take_note(&self, redirect: &Redirect, next: &Next) {
        self.redirects.count(redirect);
        match next {
            // Given up for the cap: the stats count only redirects followed.
            Next::GiveUp(rule::GiveUp::TooManyRedirects { .. }) => return,
            Next::Resend {
                addr,
                moved: Some(slot),
                ..
            } => self.topology.patch_moved(*slot, addr),
            _ => {}
        }
        if rule::refreshes(redirect) {
            self.topology.request_refresh();
        }
        let stats = self.stats();
        match redirect {
            Redirect::Moved { .. } => stats.moved(),
            Redirect::Ask { .. } => stats.asked(),
            Redirect::TryAgain
            | Redirect::Loading
            | Redirect::ClusterDown
            | Redirect::MasterDown => stats.try_again(),
            Redirect::NoScript => {}
        }
    }

    /// NOSCRIPT on the node `out` was pinned to: load the script there, then resend on the
    /// same connection; the client gets `reply` when the proxy does not know the script.
    fn load_script_and_resend(&self, mut out: Outbound, reply: Bytes, now: Instant) {
        let script = self.script_of(&out.request);
        let (Some(body), Some(node)) = (script, out.node.clone()) else {
            return out.reply.answer(reply, &out.request, now);
        };
        out.redirects += 1;
        let request = crate::resp::Request::from_args([
            Bytes::from_static(b"SCRIPT"),
            Bytes::from_static(b"LOAD"),
            body,
        ])
        .raw()
        .clone();
        // Scripts are the node's, not a database's: the resend's database saves a SELECT.
        let discard = crate::backend::ReplyTarget::discard();
        let mut load = out.on_behalf(request, discard, Arc::clone(&node));
        load.redirects = out.redirects;
        // Same connection (same client id): the load runs before the resend.
        self.send_to(&node, load, now);
        self.send_to(&node, out, now);
    }
}

impl Router {
    /// The body of the script an EVALSHA / EVALSHA_RO request names, if the proxy has seen it.
    fn script_of(&self, request: &Bytes) -> Option<Bytes> {
        let mut buf = bytes::BytesMut::from(&request[..]);
        let request = crate::resp::RequestDecoder::new(self.limits)
            .decode(&mut buf)
            .ok()??;
        let args = request.args();
        let name = args.first()?.to_ascii_lowercase();
        if name != b"evalsha" && name != b"evalsha_ro" {
            return None;
        }
        self.scripts.body(args.get(1)?)
    }
}

/// What a request for a slot held by a migration phase change gets if the change outlasts
/// its deadline.
fn touch_held_reply(unit: u16) -> Bytes {
    Bytes::from(format!(
        "-TRYAGAIN slot {unit} is changing migration phase; try again\r\n"
    ))
}

/// The index in [`Router`]'s pools of `out`'s: bit 0 the protocol (RESP3), bit 1 the lane.
/// Always below 4.
#[inline]
fn lane_index(out: &Outbound) -> usize {
    usize::from(out.resp3) | (out.lane as usize) << 1
}

/// Follow the name watch's changes (`topology::names`): each time the table's names resolve
/// to new addresses, replace this worker's connections to the old ones. Ends with the router.
pub async fn follow_names(router: Weak<Router>) {
    let Some(mut changes) = router.upgrade().map(|r| r.topology.names().subscribe()) else {
        return;
    };
    while changes.changed().await.is_ok() {
        let Some(router) = router.upgrade() else {
            return;
        };
        let resolved = router.topology.names().current();
        let replaced = router.follow_names(&resolved);
        if replaced > 0 {
            tracing::debug!(
                worker = router.index,
                replaced,
                "connections to moved node names replaced"
            );
        }
    }
}

/// Retry held requests when they are due, until the router is dropped.
pub async fn retry_loop(router: Weak<Router>) {
    loop {
        let Some(w) = router.upgrade() else { return };
        let next = w.held.entries.borrow().iter().map(|h| h.due).min();
        match next {
            None => w.held.wake.wait().await,
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = w.held.wake.wait() => {}
                }
            }
        }
        let now = Instant::now();
        let due: Vec<HeldRequest> = {
            let mut entries = w.held.entries.borrow_mut();
            let (due, waiting) = entries.drain(..).partition(|h| h.due <= now);
            *entries = waiting;
            due
        };
        for held in due {
            if now >= held.out.deadline {
                w.fail(held.out, held.error);
            } else {
                w.route(held.out, now);
            }
        }
    }
}

/// The router's side of its backend connections' [`Hooks`]. Holds the router weakly: the
/// router owns the connections, which own this.
struct RouterHooks(Weak<Router>);

impl Hooks for RouterHooks {
    fn redirect(&self, out: Outbound, redirect: Redirect, reply: Bytes) {
        match self.0.upgrade() {
            Some(router) => router.follow(out, redirect, reply),
            None => out.reply.fill(reply),
        }
    }

    fn reroute(&self, out: Outbound, error: &BackendError) {
        match self.0.upgrade() {
            Some(router) => {
                let now = Instant::now();
                if let Some(out) = router.reroute_read(out, now) {
                    router.hold_or_fail(out, error.to_reply(), now);
                }
            }
            None => out.reply.fill(error.to_reply()),
        }
    }

    fn lost(&self, out: Outbound, error: &BackendError) {
        match self.0.upgrade() {
            Some(router) => router.fail(out, error.to_reply()),
            None => out.reply.fill(error.to_reply()),
        }
    }

    fn failed(&self, error: &BackendError) {
        metrics::counter!("slotgate_backend_failures_total", "kind" => error.kind()).increment(1);
        if let Some(router) = self.0.upgrade() {
            router.topology.request_refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::backend::testing::{local, node, Replies};
    use crate::placement::Unit;
    use crate::topology::ShardInfo;

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// A router of a cluster-mode proxy (default config) whose table serves nothing yet, its
    /// retry loop running.
    fn router() -> (Rc<Router>, Arc<Topology>, Arc<ProxyStats>) {
        let config = Config::default();
        let tls = Arc::new(TlsContext::build(&config).unwrap());
        let topology = Topology::new(&config, Arc::clone(&tls));
        let stats = Arc::new(ProxyStats::new(1, "127.0.0.1:1".parse().unwrap()));
        let scripts = Arc::new(ScriptCache::new());
        let router = Router::new(
            0,
            &config,
            Arc::clone(&topology),
            Arc::clone(&stats),
            scripts,
            tls,
            None,
        );
        tokio::task::spawn_local(retry_loop(Rc::downgrade(&router)));
        (router, topology, stats)
    }

    /// A PING whose reply goes to `replies`, due within `within` (also used by `pool`'s tests).
    pub(super) fn ping(replies: &Rc<Replies>, within: Duration) -> Outbound {
        Outbound {
            request: Bytes::from_static(PING),
            reply: crate::backend::ReplyTarget::new(replies.clone(), 0),
            unit: Unit::ZERO,
            node: None,
            client_id: 1,
            deadline: Instant::now() + within,
            redirects: 0,
            retries: 0,
            readonly: false,
            asking: false,
            resp3: false,
            hold: true,
            lane: crate::backend::conn::Lane::Shared,
            db: 0,
        }
    }

    /// PING through `router`, to be answered by `within`: its replies.
    fn route_ping(router: &Router, within: Duration) -> Rc<Replies> {
        let replies = Rc::new(Replies::default());
        router.route(ping(&replies, within), Instant::now());
        replies
    }

    /// A table whose one master, `master`, serves every slot.
    fn served_by(master: &str, version: u64) -> SlotTable {
        let shard = ShardInfo {
            ranges: vec![(0, 16383)],
            master: master.into(),
            replicas: Vec::new(),
            loading: Vec::new(),
        };
        SlotTable::from_shards(&[shard], version).unwrap()
    }

    #[test]
    fn a_request_for_an_unserved_slot_is_held_until_a_table_serves_it() {
        local(async {
            let (router, topology, stats) = router();
            let replies = route_ping(&router, Duration::from_secs(2));
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(replies.0.borrow().is_empty(), "held, not failed");
            assert!(stats.retried_total() > 0);
            let addr = node(PING.len(), b"+PONG\r\n", false).await;
            topology.install(served_by(&addr, 1));
            assert_eq!(replies.first().await, Bytes::from_static(b"+PONG\r\n"));
        });
    }

    #[test]
    fn a_held_request_fails_clearly_at_its_deadline() {
        local(async {
            let (router, _topology, _stats) = router();
            let replies = route_ping(&router, Duration::from_millis(100));
            assert_eq!(
                &replies.first().await[..],
                b"-CLUSTERDOWN hash slot 0 is not served by any node\r\n"
            );
        });
    }

    #[test]
    fn a_moved_reply_patches_the_table_and_the_request_follows_it() {
        local(async {
            let (router, topology, stats) = router();
            let target = node(PING.len(), b"+PONG\r\n", false).await;
            let moved: &'static [u8] = Box::leak(
                format!("-MOVED 0 {target}\r\n")
                    .into_bytes()
                    .into_boxed_slice(),
            );
            let old = node(PING.len(), moved, false).await;
            topology.install(served_by(&old, 1));
            let replies = route_ping(&router, Duration::from_secs(2));
            assert_eq!(replies.first().await, Bytes::from_static(b"+PONG\r\n"));
            let table = topology.table();
            let owner = table
                .shard_of(Unit::ZERO)
                .map(|i| &*table.shards()[i].master);
            assert_eq!(
                owner,
                Some(&*target),
                "slot 0 patched to the node MOVED named"
            );
            assert_eq!(stats.redirects_by_kind()[0], ("moved", 1));
        });
    }
}
