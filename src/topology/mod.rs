//! Topology: which node serves which slot, discovered from the cluster (cluster mode) or built
//! from the config (pool mode, [`pools`]), and published as an immutable [`SlotTable`] through
//! `ArcSwap`. In pool mode there is no discovery and no MOVED patching: the table changes only
//! when a reload installs a new one ([`Topology::install`]).
//!
//! Readers (every request) call [`Topology::table`], a lock-free load. One background task
//! ([`Topology::run`]) refreshes the table on a timer and on demand; a new table is stored only
//! when the routing actually changed, with an info log line saying which slots moved where.
//! A MOVED reply patches its one slot at once ([`Topology::patch_moved`], copy-on-write), so
//! following requests go straight to the new owner before the full refresh lands.
//!
//! Whom to believe: a refresh collects the views of up to [`VIEWS_PER_REFRESH`] nodes and keeps
//! the one with the highest `cluster_current_epoch`, so a node cut off from the majority (which
//! still claims the slots it lost in a failover) cannot drag the table backwards.

pub mod discovery;
pub mod health;
pub mod moving;
pub mod names;
pub mod pools;
pub mod sentinel;
pub mod table;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;

use crate::backend::{oneshot, Credentials};
use crate::config::{Config, MoveState, ReadPolicy};
use crate::resp::{Frame, Limits};
use crate::tls::{BackendTls, TlsContext};

pub use health::Health;
pub use moving::{MoveCounters, MoveRoute, Moving, SteppedCopy, Toward};
pub use table::{Shard, ShardInfo, ShardSettings, SlotTable, TableError};

/// Why no usable table could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    /// No node answered with a usable layout; one reason per node tried.
    #[error("no cluster node gave a usable topology: {}", .0.join("; "))]
    NoUsableAnswer(Vec<String>),
    /// Pool mode: no sentinel named the master of some pool; one reason per pool.
    #[error("cannot resolve pool masters through Sentinel: {}", .0.join("; "))]
    Sentinel(Vec<String>),
}

/// How many usable views a refresh collects before choosing the freshest.
pub const VIEWS_PER_REFRESH: usize = 3;
/// How many nodes a refresh asks concurrently.
const ASKED_AT_ONCE: usize = 6;

/// Settings the topology task needs, taken from [`Config`].
#[derive(Clone, Debug)]
struct Settings {
    seeds: Vec<String>,
    require_full_coverage: bool,
    refresh_interval: Duration,
    refresh_min_gap: Duration,
    query_timeout: Duration,
    limits: Limits,
    /// Cluster mode: the read policy of every shard.
    read_policy: ReadPolicy,
    /// Cluster mode: the credentials of every node (`cluster.username` / `password`).
    auth: Option<Arc<Credentials>>,
    /// TLS to the nodes, when `backend.tls` is enabled.
    tls: Arc<TlsContext>,
}

/// Pool mode: what the table is built from. Only the control thread and reloads touch it.
#[derive(Debug)]
struct PoolState {
    /// The pool configuration in force.
    config: Arc<Config>,
    /// Masters named by Sentinel so far, by pool name.
    sentinel_masters: BTreeMap<String, String>,
    /// Slot ranges whose requests wait while a migration phase change settles.
    held: Vec<(u16, u16)>,
    /// While keys move from the pools onto a cluster (`migration.to_cluster`), or while a
    /// phase change starts that move: the pools, as a pool-mode table. Every slot of the
    /// cluster's table moves from them.
    legacy: Option<Arc<SlotTable>>,
    /// The cluster's table discovered for a move onto it that is starting (no overlay), until
    /// the move is in force and the live table is the cluster's.
    staged: Option<Arc<SlotTable>>,
    /// The cluster's table (discovered, refreshed, MOVED-patched) as the side keys move back
    /// from, from the moment a phase change aborting the move onto it has discovered it
    /// ([`Topology::stage_cluster`]); in force ([`PoolState::back`]) once that phase change
    /// holds, and while the abort runs (`to_cluster = "aborting"`).
    back: Option<Arc<SlotTable>>,
}

impl PoolState {
    fn aborting(&self) -> bool {
        self.config.migration.to_cluster == Some(MoveState::Aborting)
    }

    /// The cluster keys move back from, while the live table is the pools' with every unit
    /// moving back from it: the abort is in force, or its phase change holds (not before: a
    /// refresh between the abort's discovery and its hold routes as before).
    fn back(&self) -> Option<&Arc<SlotTable>> {
        let in_force = self.aborting() || !self.held.is_empty();
        self.back
            .as_ref()
            .filter(|_| in_force && self.staged.is_none())
    }

    /// True while keys move back from the cluster onto the pools, or start to (its table is
    /// then [`PoolState::back`], once discovered).
    fn moving_back(&self) -> bool {
        self.back().is_some() || self.aborting()
    }
}

/// A worker's cached view of the live slot table (see [`Topology::table_cache`]).
pub struct TableCache {
    live: arc_swap::Cache<Arc<ArcSwap<SlotTable>>, Arc<SlotTable>>,
    /// The table last seen, behind a thread-local count: handing it out costs no atomic
    /// reference count (two locked instructions per request otherwise).
    local: LocalTable,
}

/// A worker's handle on one slot table (see [`TableCache::current`]). The extra `Rc` is the
/// point: one allocation per table change buys non-atomic counting on every request.
#[allow(clippy::redundant_allocation)]
pub type LocalTable = Rc<Arc<SlotTable>>;

impl TableCache {
    /// The current table: revalidated against the live one on every call.
    #[inline]
    pub fn current(&mut self) -> LocalTable {
        let live = self.live.load();
        if !Arc::ptr_eq(live, &self.local) {
            self.local = Rc::new(Arc::clone(live));
        }
        Rc::clone(&self.local)
    }
}

/// The live slot table and the machinery that keeps it current.
#[derive(Debug)]
pub struct Topology {
    table: Arc<ArcSwap<SlotTable>>,
    /// False in pool mode (the table comes from config and Sentinel, never from discovery);
    /// true in cluster mode, and from the moment keys start moving from the pools onto a
    /// cluster. Shared with the backend connections, which follow cluster redirects then.
    cluster_routing: Arc<AtomicBool>,
    /// Replaced when keys start moving onto a cluster (its seeds and credentials).
    settings: ArcSwap<Settings>,
    wake: Notify,
    versions: AtomicU64,
    refreshes: AtomicU64,
    pools: Mutex<PoolState>,
    /// Raised when a reload changes the sentinels pools follow.
    sentinels_changed: Notify,
    /// Nodes the health checker counts as down.
    health: ArcSwap<Health>,
    /// Bumped after each new [`Health`] is stored: workers compare it to skip the load.
    health_generation: AtomicU64,
    /// Keys moved between pools (pool mode migrations).
    moves: MoveCounters,
    /// The key the background mover copies in steps, if any.
    stepped: SteppedCopy,
    /// The version of each table stored, for [`Topology::table_changes`].
    changes: tokio::sync::watch::Sender<u64>,
    /// What the table's host names resolve to (`names::run` keeps it current).
    names: names::Names,
}

impl Topology {
    /// A topology for `config`, starting with an empty table (call [`Topology::refresh`]).
    /// Discovery connects to nodes with the backend TLS of `tls`, if any.
    pub fn new(config: &Config, tls: Arc<TlsContext>) -> Arc<Topology> {
        Arc::new(Topology {
            table: Arc::new(ArcSwap::from_pointee(SlotTable::empty())),
            cluster_routing: Arc::new(AtomicBool::new(discovers(config))),
            settings: ArcSwap::from_pointee(Settings {
                seeds: config.cluster.seeds.clone(),
                require_full_coverage: config.cluster.require_full_coverage,
                refresh_interval: Duration::from_millis(config.cluster.refresh_interval_ms),
                refresh_min_gap: Duration::from_millis(config.cluster.refresh_min_gap_ms),
                query_timeout: Duration::from_millis(
                    config.backend.connect_timeout_ms + config.backend.request_timeout_ms,
                ),
                limits: config.protocol.limits(),
                read_policy: config.backend.read_policy,
                auth: Credentials::configured(
                    config.cluster.username.as_deref(),
                    config.cluster.password.as_ref(),
                ),
                tls,
            }),
            wake: Notify::new(),
            versions: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            pools: Mutex::new(PoolState {
                config: Arc::new(config.clone()),
                sentinel_masters: BTreeMap::new(),
                held: Vec::new(),
                legacy: None,
                staged: None,
                back: None,
            }),
            sentinels_changed: Notify::new(),
            health: ArcSwap::from_pointee(Health::default()),
            health_generation: AtomicU64::new(0),
            moves: MoveCounters::default(),
            stepped: SteppedCopy::default(),
            changes: tokio::sync::watch::Sender::new(0),
            names: names::Names::default(),
        })
    }

    /// What the table's host names resolve to, and the signal of its changes.
    pub fn names(&self) -> &names::Names {
        &self.names
    }

    /// The nodes the health checker counts as down: a lock-free load.
    #[inline]
    pub fn health(&self) -> Guard<Arc<Health>> {
        self.health.load()
    }

    /// A number that changes whenever the set of nodes [`Topology::health`] marks down does
    /// (one atomic load): a reader that saw generation `g` and [`Topology::health`] after it
    /// routes by the current down set until it changes.
    #[inline]
    pub fn health_generation(&self) -> u64 {
        self.health_generation.load(Ordering::Acquire)
    }

    /// Publish a new health view (the health checker's job, after every round of checks).
    /// The generation moves only when the down set changes, so workers rebuild their healthy
    /// replica lists only then.
    pub fn publish_health(&self, health: Health) {
        let down_changed = self.health.load().down() != health.down();
        self.health.store(Arc::new(health));
        if down_changed {
            // After the store: a reader that sees the new generation loads the new view.
            self.health_generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Pool mode: build the table `config` describes (with the Sentinel masters known so far)
    /// and publish it unless it routes like the current one. Returns the new version, or
    /// `None` when unchanged; `Err` (nothing changed) when the pools do not make a table.
    /// Pools that follow Sentinel and are new or changed are resolved in the background.
    ///
    /// A configuration moving keys from the pools onto a cluster (`migration.to_cluster`)
    /// routes by the cluster's table with every slot moving from the pools; a cluster-mode one
    /// that follows it (the move's end) by the cluster's table alone. One aborting that move
    /// routes by the pools' table with every unit moving back from the cluster (once its
    /// table is known: [`Topology::stage_cluster`] or a refresh).
    pub fn install_config(&self, config: &Config) -> Result<Option<u64>, String> {
        match config.migration.to_cluster {
            Some(MoveState::Aborting) => return self.install_back(config),
            Some(_) => return self.install_onto_cluster(config),
            None if !config.is_pool_mode() => return self.install_onto_cluster(config),
            None => {}
        }
        let mut state = self.lock_pools();
        // Plain pool mode (at start, or an abort's end): nothing of a cluster is left.
        state.back = None;
        state.legacy = None;
        state.staged = None;
        self.cluster_routing.store(false, Ordering::Release);
        let mut masters = state.sentinel_masters.clone();
        // Keep a resolved master only while its pool still follows the same sentinels.
        masters.retain(
            |name, _| match (state.config.pools.get(name), config.pools.get(name)) {
                (Some(old), Some(new)) => {
                    new.uses_sentinel()
                        && old.sentinels == new.sentinels
                        && old.master_name == new.master_name
                }
                _ => false,
            },
        );
        let table = pools::table_for(config, &masters, &state.held)?;
        let sentinels_changed = sentinel_sets(&state.config) != sentinel_sets(config);
        let unresolved = config
            .pools
            .iter()
            .any(|(name, pool)| pool.uses_sentinel() && !masters.contains_key(name));
        state.config = Arc::new(config.clone());
        state.sentinel_masters = masters;
        let version = self.install(table);
        drop(state);
        if sentinels_changed {
            self.sentinels_changed.notify_one();
        }
        if unresolved {
            self.request_refresh();
        }
        Ok(version)
    }

    /// Hold requests for the slots `held` (a migration phase change is settling), or none
    /// when empty, in a table otherwise the one in force. Returns the new version (`None`:
    /// unchanged). While a move onto a cluster is starting ([`Topology::stage_cluster`]), the
    /// table held is the cluster's, so requests held are placed as the cluster places them;
    /// releasing it before the move is in force goes back to the pools.
    pub fn hold(&self, held: &[(u16, u16)]) -> Result<Option<u64>, String> {
        let mut state = self.lock_pools();
        state.held = held.to_vec();
        if held.is_empty() && !self.cluster_routing() {
            state.staged = None;
            state.legacy = None;
        }
        if held.is_empty() && self.cluster_routing() && state.back.is_some() && !state.aborting() {
            // An abort released before it was in force: the cluster's table again (the live
            // one is the pools', held).
            state.staged = state.back.take();
        }
        let version = self.publish(&state)?;
        if held.is_empty() && self.cluster_routing() {
            state.staged = None;
        }
        drop(state);
        Ok(version)
    }

    /// Discover the cluster `next` moves keys onto (its `[cluster]` seeds and credentials) and
    /// keep its table for the phase change that starts the move ([`Topology::hold`]), or that
    /// aborts it (the side keys move back from; the table held is the pools'): `Err` unless
    /// some seed answers and every slot has a master.
    pub async fn stage_cluster(&self, next: &Config) -> Result<(), String> {
        let found = Arc::new(self.discover_cluster(next).await?);
        let legacy = match next.migration.to_cluster {
            Some(MoveState::Aborting) => {
                self.lock_pools().back = Some(found);
                return Ok(());
            }
            Some(_) => Some(Arc::new(pools::legacy_table(next)?)),
            None => None, // The move is over: the cluster alone.
        };
        let mut state = self.lock_pools();
        state.staged = Some(found);
        state.legacy = legacy;
        Ok(())
    }

    /// The table of the cluster `next` names (`[cluster]` seeds and credentials), if some seed
    /// answers and every slot has a master. Changes nothing.
    async fn discover_cluster(&self, next: &Config) -> Result<SlotTable, String> {
        let settings = Arc::new(self.settings_for(next));
        let found = discover_from(
            &settings,
            next.cluster.seeds.clone(),
            Arc::new(SlotTable::empty()),
        )
        .await
        .map_err(|e| e.to_string())?;
        if found.covered_units() < crate::slot::SLOT_COUNT {
            return Err(format!(
                "the cluster covers {} of the 16384 slots: every slot needs a master",
                found.covered_units()
            ));
        }
        Ok(found.with_cluster_settings(settings.read_policy, settings.auth.clone()))
    }

    /// The keys the masters of the cluster `next` names hold (`DBSIZE` of each), or why they
    /// could not be counted. Changes nothing.
    pub async fn cluster_keys(&self, next: &Config) -> Result<u64, String> {
        let cluster = self.discover_cluster(next).await?;
        let settings = self.settings.load_full();
        let mut keys = 0;
        for shard in cluster.shards() {
            let replies = oneshot::commands(
                &shard.master,
                shard.auth.as_ref(),
                &[&["DBSIZE"]],
                settings.query_timeout,
                settings.limits,
                settings.tls.backend().as_deref(),
            )
            .await
            .map_err(|e| format!("{}: {e}", shard.master))?;
            match replies.first().and_then(Frame::as_int) {
                Some(n) => keys += n.max(0) as u64,
                None => return Err(format!("{}: no DBSIZE count", shard.master)),
            }
        }
        Ok(keys)
    }

    /// [`Topology::install_config`] for a configuration aborting a move onto a cluster: the
    /// pools' table, every unit moving back from the cluster's ([`PoolState::back`]; until it
    /// is known — a restart reading an aborting file — nothing is installed, and the first
    /// refresh discovers it before any request is served).
    fn install_back(&self, config: &Config) -> Result<Option<u64>, String> {
        let mut state = self.lock_pools();
        if self.cluster_routing() {
            // Backend connections stop following the cluster's redirects: an on-touch move
            // back reads a cluster node's MOVED / ASK itself.
            self.cluster_routing.store(false, Ordering::Release);
            tracing::info!(
                "keys move back from the cluster onto the pools: routing by the pools' table"
            );
        }
        state.config = Arc::new(config.clone());
        state.legacy = None;
        state.staged = None;
        let version = self.publish(&state)?;
        let unknown = state.back.is_none();
        drop(state);
        if unknown {
            self.request_refresh();
        }
        Ok(version)
    }

    /// [`Topology::install_config`] for a configuration that routes by a cluster's table.
    fn install_onto_cluster(&self, config: &Config) -> Result<Option<u64>, String> {
        let mut state = self.lock_pools();
        state.back = None;
        let legacy = match config.migration.to_cluster {
            Some(_) => Some(Arc::new(pools::legacy_table(config)?)),
            None => None,
        };
        if !self.cluster_routing() {
            self.settings.store(Arc::new(self.settings_for(config)));
            self.cluster_routing.store(true, Ordering::Release);
            if legacy.is_some() {
                tracing::info!(
                    "keys move from the pools onto the cluster: routing by the cluster's table"
                );
            }
        }
        state.config = Arc::new(config.clone());
        state.legacy = legacy;
        let version = self.publish(&state)?;
        state.staged = None;
        drop(state);
        if version.is_none() && self.table.load().shards().is_empty() {
            self.request_refresh();
        }
        Ok(version)
    }

    /// Publish the table `state` describes: the pools' (pool mode), or the cluster's (the
    /// live one, or the one staged for a move starting) with its slots moving from the pools
    /// while keys move onto it, and `state.held` held.
    fn publish(&self, state: &PoolState) -> Result<Option<u64>, String> {
        let cluster = match (&state.staged, state.back()) {
            (Some(staged), _) => Some(Arc::clone(staged)),
            // Keys move back from the cluster: the pools' table, every unit moving back.
            (None, Some(_)) => {
                let table = pools::legacy_table(&state.config)?;
                return Ok(self.install(table.with_moving(overlay(state))));
            }
            // Aborting, the cluster not discovered yet: the first refresh publishes it.
            (None, None) if state.moving_back() => return Ok(None),
            (None, None) if self.cluster_routing() => Some(self.table.load_full()),
            (None, None) => None,
        };
        let Some(cluster) = cluster else {
            let table = pools::table_for(&state.config, &state.sentinel_masters, &state.held)?;
            return Ok(self.install(table));
        };
        if cluster.shards().is_empty() {
            return Ok(None); // Not discovered yet: the first refresh publishes it.
        }
        Ok(self.install((*cluster).clone().with_moving(overlay(state))))
    }

    /// True when the table comes from a cluster (cluster mode, or keys moving onto one).
    fn cluster_routing(&self) -> bool {
        self.cluster_routing.load(Ordering::Acquire)
    }

    /// Shared with the backend connections: true while the table comes from a cluster, so
    /// they follow its redirects.
    pub fn cluster_routing_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cluster_routing)
    }

    /// The settings of the topology task with `config`'s cluster seeds and credentials.
    fn settings_for(&self, config: &Config) -> Settings {
        let current = self.settings.load();
        Settings {
            seeds: config.cluster.seeds.clone(),
            auth: Credentials::configured(
                config.cluster.username.as_deref(),
                config.cluster.password.as_ref(),
            ),
            ..(**current).clone()
        }
    }

    /// Counters of keys moved between pools.
    pub fn move_counters(&self) -> &MoveCounters {
        &self.moves
    }

    /// The key the background mover copies in steps (requests for it wait).
    pub fn stepped_copy(&self) -> &SteppedCopy {
        &self.stepped
    }

    /// The pool configuration in force (pool mode).
    pub fn pool_config(&self) -> Arc<Config> {
        Arc::clone(&self.lock_pools().config)
    }

    /// The distinct sets of sentinels (with their credentials) the pools in force follow.
    pub fn sentinel_sets(&self) -> Vec<sentinel::SentinelSet> {
        sentinel_sets(&self.lock_pools().config)
    }

    /// Wait until a reload changes the sentinels pools follow.
    pub async fn sentinels_changed(&self) {
        self.sentinels_changed.notified().await;
    }

    /// The masters Sentinel named, by pool name.
    pub fn sentinel_masters(&self) -> BTreeMap<String, String> {
        self.lock_pools().sentinel_masters.clone()
    }

    fn lock_pools(&self) -> MutexGuard<'_, PoolState> {
        // Every update of the state is a few assignments after all fallible work: a panic
        // elsewhere cannot leave it half-written.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pool mode: ask each Sentinel pool's sentinels for its master; publish a new table if
    /// one changed. `Err` names the pools no sentinel could resolve (the others are applied).
    async fn resolve_sentinels(&self) -> Result<bool, TopologyError> {
        let config = Arc::clone(&self.lock_pools().config);
        let mut found = BTreeMap::new();
        let mut reasons = Vec::new();
        for (name, pool) in config.pools.iter().filter(|(_, p)| p.uses_sentinel()) {
            let master_name = pool.master_name.as_deref().unwrap_or_default();
            let auth = Credentials::configured(
                pool.sentinel_username.as_deref(),
                pool.sentinel_password.as_ref(),
            );
            let resolved = sentinel::resolve(
                &pool.sentinels,
                auth.as_ref(),
                master_name,
                self.settings.load().query_timeout,
                self.settings.load().limits,
            )
            .await;
            match resolved {
                Ok(addr) => {
                    found.insert(name.clone(), addr);
                }
                Err(reason) => reasons.push(format!("pool {name:?} ({master_name}): {reason}")),
            }
        }
        if found.is_empty() && reasons.is_empty() {
            return Ok(false);
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock_pools();
        if !Arc::ptr_eq(&state.config, &config) {
            // A reload raced with us; it asked for another refresh, which will redo this.
            return Ok(false);
        }
        let mut masters = state.sentinel_masters.clone();
        for (name, addr) in found {
            if masters.get(&name) != Some(&addr) {
                tracing::info!(pool = %name, master = %addr, "Sentinel names the pool's master");
                masters.insert(name, addr);
            }
        }
        let mut changed = false;
        if masters != state.sentinel_masters {
            match pools::table_for(&config, &masters, &state.held) {
                Ok(table) => {
                    state.sentinel_masters = masters;
                    changed = self.install(table).is_some();
                }
                Err(reason) => reasons.push(reason),
            }
        }
        drop(state);
        if reasons.is_empty() {
            Ok(changed)
        } else {
            Err(TopologyError::Sentinel(reasons))
        }
    }

    /// The current table: a lock-free load, cheap enough for every request.
    #[inline]
    pub fn table(&self) -> Guard<Arc<SlotTable>> {
        self.table.load()
    }

    /// A per-thread cache of the table for the request path: [`TableCache::current`] costs
    /// one pointer comparison while the table is unchanged, where [`Topology::table`] takes
    /// and releases an `ArcSwap` guard.
    pub fn table_cache(&self) -> TableCache {
        let mut live = arc_swap::Cache::new(Arc::clone(&self.table));
        let local = Rc::new(Arc::clone(live.load()));
        TableCache { live, local }
    }

    /// The TLS connector for the nodes as of now (`None`: plaintext nodes).
    pub fn backend_tls(&self) -> Option<Arc<BackendTls>> {
        self.settings.load().tls.backend()
    }

    /// Ask the background task for a refresh soon (debounced by `refresh_min_gap_ms`).
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// True in pool mode (the table comes from config), false once keys move from the pools
    /// onto a cluster (the table is the cluster's).
    pub fn is_pool_mode(&self) -> bool {
        !self.cluster_routing()
    }

    /// Publish `table` (built from config: pool mode, start-up or reload) unless it routes
    /// exactly like the current one. Returns the new version, or `None` when unchanged.
    ///
    /// Concurrency note: one `ArcSwap::store`. Requests already handed to a backend
    /// connection finish there; connections to nodes that left the table are retired by each
    /// worker's pool when it first sees the new version.
    pub fn install(&self, table: SlotTable) -> Option<u64> {
        let current = self.table.load_full();
        if current.version() > 0 && current.same_routing(&table) {
            return None;
        }
        let version = self.next_version();
        let next = table.with_version(version);
        let changes = if current.version() == 0 {
            next.describe()
        } else {
            next.changes_from(&current)
        };
        tracing::info!(
            version,
            shards = next.shards().len(),
            placement = %next.placement().describe(),
            "slot table {}: {}",
            if current.version() == 0 { "loaded from config" } else { "reloaded from config" },
            changes.join(", ")
        );
        self.table.store(Arc::new(next));
        self.published(version);
        Some(version)
    }

    /// The first [`Topology::refresh`], at start-up: tried again with back-off (100 ms doubling
    /// to 2 s) while it fails and `wait` has not run out, so a proxy that starts before its
    /// seeds resolve or answer waits for them. One warning when it first fails; the last
    /// failure is the error.
    pub async fn first_refresh(&self, wait: Duration) -> Result<bool, TopologyError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            let failed = match self.refresh().await {
                Ok(changed) => return Ok(changed),
                Err(e) if Instant::now() + pause >= deadline => return Err(e),
                Err(e) => e,
            };
            if pause == Duration::from_millis(100) {
                tracing::warn!(
                    "start-up: {failed}; trying again for up to {} ms                      (cluster.startup_wait_ms)",
                    wait.as_millis()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Discover the layout now and publish it if the routing changed. Returns whether it did.
    /// In pool mode there is nothing to discover, but pools that follow Sentinel are resolved
    /// again (`Ok(false)` at once when there are none).
    pub async fn refresh(&self) -> Result<bool, TopologyError> {
        let back = {
            let state = self.lock_pools();
            state.moving_back().then(|| state.back().cloned())
        };
        if !self.cluster_routing() && back.is_none() {
            return self.resolve_sentinels().await;
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("slotgate_topology_refreshes_total").increment(1);
        let settings = self.settings.load_full();
        let found = match &back {
            // Keys move back from the cluster: its table is the overlay's, not the live one.
            Some(known) => {
                let known = known
                    .clone()
                    .unwrap_or_else(|| Arc::new(SlotTable::empty()));
                let masters = known
                    .shards()
                    .iter()
                    .map(|s| s.master.to_string())
                    .collect();
                discover_from(&settings, masters, known).await?
            }
            None => self.discover().await?,
        }
        .with_cluster_settings(settings.read_policy, settings.auth.clone());
        let mut state = self.lock_pools();
        if state.moving_back() {
            if state.back().is_some_and(|b| b.same_routing(&found)) {
                return Ok(false);
            }
            tracing::info!(
                shards = found.shards().len(),
                "the table of the cluster keys move back from: {}",
                found.describe().join(", ")
            );
            state.back = Some(Arc::new(found));
            let published = self
                .publish(&state)
                .map_err(|e| TopologyError::NoUsableAnswer(vec![e]))?;
            return Ok(published.is_some());
        }
        // Keys moving onto the cluster, or a phase change holding slots: the same overlay.
        let found = if state.legacy.is_none() && state.held.is_empty() {
            found // Plain cluster mode.
        } else {
            found.with_moving(overlay(&state))
        };
        let current = self.table.load_full();
        if current.version() > 0 && current.same_routing(&found) {
            return Ok(false);
        }
        let version = self.next_version();
        let next = found.with_version(version);
        if current.version() == 0 {
            tracing::info!(
                version,
                shards = next.shards().len(),
                covered = next.covered_units(),
                "slot table loaded: {}",
                next.describe().join(", ")
            );
        } else {
            tracing::info!(
                version,
                shards = next.shards().len(),
                covered = next.covered_units(),
                "slot table updated: {}",
                next.changes_from(&current).join(", ")
            );
        }
        self.table.store(Arc::new(next));
        drop(state);
        self.published(version);
        Ok(true)
    }

    /// A node answered `MOVED slot addr`: route `slot` to `addr` from now on (copy-on-write).
    /// The full refresh that should follow is the caller's to request.
    pub fn patch_moved(&self, slot: crate::slot::Slot, addr: &Arc<str>) {
        {
            // Keys moving back from the cluster: the MOVED is about the cluster's table (a
            // node keys move back from), not the live one (the pools').
            let mut state = self.lock_pools();
            if let Some(back) = state.back().cloned() {
                let owner = back.shard_of(slot.into()).map(|i| &back.shards()[i].master);
                if owner != Some(addr) {
                    state.back = Some(Arc::new(back.with_slot(slot, addr, back.version())));
                    match self.publish(&state) {
                        Ok(_) => tracing::info!(
                            "the table of the cluster keys move back from patched after MOVED: slot {slot} → {addr}"
                        ),
                        Err(e) => tracing::warn!("MOVED of slot {slot} not patched: {e}"),
                    }
                }
                return;
            }
        }
        if !self.cluster_routing() {
            return; // Standalone pools do not redirect; the slot map is the config's.
        }
        let mut patched = None;
        self.table.rcu(|current| {
            let owner = current
                .shard_of(slot.into())
                .map(|i| &current.shards()[i].master);
            if owner == Some(addr) {
                patched = None;
                return Arc::clone(current);
            }
            let next = current.with_slot(slot, addr, self.next_version());
            patched = Some(next.version());
            Arc::new(next)
        });
        if let Some(version) = patched {
            tracing::info!(
                version,
                "slot table patched after MOVED: slot {slot} → {addr}"
            );
            self.published(version);
        }
    }

    /// A table of `version` was stored: counted, and told to whoever follows table changes.
    fn published(&self, version: u64) {
        metrics::gauge!("slotgate_slot_table_version").set(version as f64);
        self.changes.send_replace(version);
    }

    /// Wakes on every new table (its version): for what must follow the routing without a
    /// request to carry it, such as subscriptions.
    pub fn table_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Refreshes attempted since start.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Refresh forever: every `refresh_interval_ms`, and soon after [`Topology::request_refresh`].
    /// Ends when its runtime is dropped. In pool mode a refresh only re-resolves the pools
    /// that follow Sentinel.
    pub async fn run(self: Arc<Self>) {
        let mut last = Instant::now();
        loop {
            let (interval, min_gap) = {
                let settings = self.settings.load();
                (settings.refresh_interval, settings.refresh_min_gap)
            };
            let _ = tokio::time::timeout(interval, self.wake.notified()).await;
            // Debounce: a burst of failures costs one refresh per gap, not one each.
            let since = last.elapsed();
            if since < min_gap {
                tokio::time::sleep(min_gap - since).await;
            }
            last = Instant::now();
            if let Err(e) = self.refresh().await {
                tracing::warn!("topology refresh failed, keeping the current table: {e}");
            }
        }
    }

    /// Ask known masters first, then the seeds, until [`VIEWS_PER_REFRESH`] nodes gave a
    /// usable view (or none is left); keep the view with the highest current epoch.
    ///
    /// Nodes are asked [`ASKED_AT_ONCE`] at a time, concurrently, and the first usable answers
    /// decide: a node that accepts connections but never answers (frozen, partitioned) costs no
    /// time as long as others answer.
    async fn discover(&self) -> Result<SlotTable, TopologyError> {
        let candidates: Vec<String> = self
            .table
            .load()
            .shards()
            .iter()
            .map(|s| s.master.to_string())
            .collect();
        discover_from(
            &self.settings.load_full(),
            candidates,
            self.table.load_full(),
        )
        .await
    }
}

/// [`Topology::discover`]: `candidates` first, then the seeds; `current` is the table in force.
async fn discover_from(
    settings: &Arc<Settings>,
    mut candidates: Vec<String>,
    current: Arc<SlotTable>,
) -> Result<SlotTable, TopologyError> {
    for seed in &settings.seeds {
        if !candidates.contains(seed) {
            candidates.push(seed.clone());
        }
    }
    let mut choice = ViewChoice::default();
    for batch in candidates.chunks(ASKED_AT_ONCE) {
        let mut asks = tokio::task::JoinSet::new();
        for addr in batch {
            let (settings, addr) = (Arc::clone(settings), addr.clone());
            let current = Arc::clone(&current);
            asks.spawn(async move {
                let view = ask(&settings, &addr, &current).await;
                (addr, view)
            });
        }
        while let Some(joined) = asks.join_next().await {
            let enough = match joined {
                Ok((addr, answer)) => choice.offer(&addr, answer),
                Err(e) => choice.offer("discovery task", Err(e.to_string())),
            };
            if enough {
                break;
            }
        }
        if choice.has_view() {
            break;
        }
    }
    choice.into_table()
}

/// The moving overlay of a table for `state`: every slot of the cluster's moving from the
/// pools while keys move onto the cluster, every unit of the pools' moving back from the
/// cluster while that move is aborted, and the units held by a phase change.
fn overlay(state: &PoolState) -> Moving {
    let mut moving = match (state.back(), &state.legacy) {
        (Some(cluster), _) => Moving::back(Arc::clone(cluster)),
        (None, Some(pools)) => Moving::legacy(Arc::clone(pools)),
        (None, None) => Moving::default(),
    };
    for &(first, last) in &state.held {
        moving.hold(first, last);
    }
    moving
}

/// True when `config`'s table comes from a cluster: cluster mode, or keys moving onto one
/// (not back from it: the table is the pools' then, the cluster's discovered beside it).
fn discovers(config: &Config) -> bool {
    !config.is_pool_mode()
        || config
            .migration
            .to_cluster
            .is_some_and(|s| s != MoveState::Aborting)
}

/// The views one refresh collected, and the choice among them: the first usable views, at
/// most [`VIEWS_PER_REFRESH`], of which the one with the highest `cluster_current_epoch` wins
/// (on a tie, the first); the reasons of the nodes that gave none, for the error when no view
/// is usable. Pure.
#[derive(Default)]
struct ViewChoice {
    best: Option<View>,
    views: usize,
    reasons: Vec<String>,
}

impl ViewChoice {
    /// `addr`'s answer; true when enough views are in.
    fn offer(&mut self, addr: &str, answer: Result<View, String>) -> bool {
        match answer {
            Ok(view) => {
                self.views += 1;
                if self.best.as_ref().is_none_or(|b| view.epoch > b.epoch) {
                    self.best = Some(view);
                }
            }
            Err(reason) => {
                tracing::debug!("topology from {addr}: {reason}");
                self.reasons.push(format!("{addr}: {reason}"));
            }
        }
        self.views >= VIEWS_PER_REFRESH
    }

    fn has_view(&self) -> bool {
        self.best.is_some()
    }

    fn into_table(self) -> Result<SlotTable, TopologyError> {
        self.best
            .map(|view| view.table)
            .ok_or(TopologyError::NoUsableAnswer(self.reasons))
    }
}

/// The distinct sentinel lists (with their credentials) of `config`'s pools, in pool order.
fn sentinel_sets(config: &Config) -> Vec<sentinel::SentinelSet> {
    let mut sets: Vec<sentinel::SentinelSet> = Vec::new();
    for pool in config.pools.values().filter(|p| p.uses_sentinel()) {
        let set = sentinel::SentinelSet {
            sentinels: pool.sentinels.clone(),
            auth: Credentials::configured(
                pool.sentinel_username.as_deref(),
                pool.sentinel_password.as_ref(),
            ),
        };
        if !sets.contains(&set) {
            sets.push(set);
        }
    }
    sets
}

/// One node's view as a table, or why it is not usable. Replicas that node calls `loading`
/// stay in when `current` reads from them (see [`discovery::keep_known_replicas`]).
async fn ask(settings: &Settings, addr: &str, current: &SlotTable) -> Result<View, String> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    let (timeout, limits) = (settings.query_timeout, settings.limits);
    let tls = settings.tls.backend();
    let auth = settings.auth.as_ref();
    let replies = oneshot::commands(
        addr,
        auth,
        &[&["CLUSTER", "INFO"], &["CLUSTER", "SHARDS"]],
        timeout,
        limits,
        tls.as_deref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let [info, shards_reply] =
        <[Frame; 2]>::try_from(replies).map_err(|_| "wrong number of replies".to_string())?;
    let epoch = match &info {
        Frame::Error(msg) if msg.starts_with(b"NOAUTH") => {
            return Err(format!(
                "{} (set cluster.password, and cluster.username for an ACL user)",
                String::from_utf8_lossy(msg)
            ))
        }
        Frame::Error(msg) => return Err(String::from_utf8_lossy(msg).into_owned()),
        other => other
            .as_bytes()
            .and_then(|text| discovery::info_field(text, "cluster_current_epoch"))
            .unwrap_or(0),
    };
    let mut shards = match shards_reply {
        // Older servers (< 7.0) have no CLUSTER SHARDS.
        Frame::Error(_) => {
            let replies = oneshot::commands(
                addr,
                auth,
                &[&["CLUSTER", "SLOTS"]],
                timeout,
                limits,
                tls.as_deref(),
            )
            .await
            .map_err(|e| e.to_string())?;
            match replies.into_iter().next() {
                Some(Frame::Error(msg)) => return Err(String::from_utf8_lossy(&msg).into_owned()),
                Some(reply) => discovery::parse_cluster_slots(&reply, host),
                None => return Err("no reply to CLUSTER SLOTS".into()),
            }
        }
        reply => discovery::parse_cluster_shards(&reply, host, tls.is_some()),
    }
    .map_err(|e| e.to_string())?;
    discovery::keep_known_replicas(&mut shards, current);
    let table = SlotTable::from_shards(&shards, 0).map_err(|e| e.to_string())?;
    if settings.require_full_coverage {
        if let Some(slot) = table.first_uncovered() {
            return Err(format!(
                "only {} of 16384 slots are covered (first missing: {slot}); \
                 set cluster.require_full_coverage = false to serve a partial cluster",
                table.covered_units()
            ));
        }
    }
    Ok(View { epoch, table })
}

/// One node's answer: its layout and how recent its knowledge is.
struct View {
    epoch: u64,
    table: SlotTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view at `epoch` whose one master `master` serves every slot.
    fn view(epoch: u64, master: &str) -> View {
        let shard = table::ShardInfo {
            ranges: vec![(0, 16383)],
            master: master.into(),
            replicas: Vec::new(),
            loading: Vec::new(),
        };
        View {
            epoch,
            table: SlotTable::from_shards(&[shard], 0).unwrap(),
        }
    }

    fn master(table: &SlotTable) -> &str {
        &table.shards()[0].master
    }

    #[test]
    fn the_view_with_the_highest_epoch_wins_and_the_first_on_a_tie() {
        let mut choice = ViewChoice::default();
        assert!(!choice.offer("a:1", Ok(view(4, "old:1"))));
        assert!(!choice.offer("b:1", Err("refused".into())));
        assert!(!choice.offer("c:1", Ok(view(7, "new:1"))));
        assert!(
            choice.offer("d:1", Ok(view(7, "tie:1"))),
            "three views are enough"
        );
        assert_eq!(master(&choice.into_table().unwrap()), "new:1");
    }

    #[test]
    fn a_cut_off_node_s_stale_view_loses_to_the_majority_s() {
        let mut choice = ViewChoice::default();
        choice.offer("cut-off:1", Ok(view(9, "stale:1")));
        choice.offer("a:1", Ok(view(10, "failed-over:1")));
        assert_eq!(master(&choice.into_table().unwrap()), "failed-over:1");
    }

    #[test]
    fn no_usable_view_is_an_error_naming_every_node() {
        let mut choice = ViewChoice::default();
        assert!(!choice.has_view());
        choice.offer("a:1", Err("connection refused".into()));
        choice.offer("b:1", Err("CLUSTERDOWN".into()));
        let error = choice.into_table().unwrap_err().to_string();
        assert!(
            error.contains("a:1: connection refused") && error.contains("b:1: CLUSTERDOWN"),
            "{error}"
        );
    }
}
