//! The migration controller: starts, pauses, resumes and aborts moves (phase changes), and
//! runs the background mover that empties each move's source pool.
//!
//! A phase change (`Migrations::change`):
//! 1. the slots whose routing changes are held on every worker (a table that holds them);
//! 2. every worker settles what it sent by the older table (`Settle`): each request already
//!    on its way has its reply, none waits between its on-touch `MIGRATE` and the request;
//! 3. the config file is rewritten with the new slot map and moves (persisted before use);
//! 4. the new table is installed, then the hold lifted: held requests route by it.
//!
//! A failure at 2–4 lifts the hold on the old table and reports the error: nothing changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::fleet::{self, State};
use super::measure;
use super::persist;
use super::settle::Settle;
use super::touch::{self, Outcome};
use crate::backend::dedicated::DedicatedConn;
use crate::backend::Credentials;
use crate::config::{parse_slot_range, Config, MoveState, SlotMove};
use crate::reload::Reloader;
use crate::resp::{Frame, Request};
use crate::slot::SLOT_COUNT;
use crate::tls::TlsContext;
use crate::topology::{pools, Topology};

/// Progress of one move, as the background mover sees it.
#[derive(Clone, Debug, Default)]
struct MoveProgress {
    /// Keys moved by the background mover.
    moved: u64,
    /// Their bytes, as the source measured them (`MEMORY USAGE`, see `measure`).
    bytes: u64,
    /// Keys of the source pool looked at.
    scanned: u64,
    /// Complete passes over the source.
    passes: u64,
    /// Keys of the moving slots on the source when the move (or the abort) started, an
    /// estimate from its key count.
    estimate: u64,
    /// When the mover started on it.
    started: Option<Instant>,
    /// The last error, if the mover is waiting to retry.
    last_error: Option<String>,
}

/// The moves of one proxy and their mover.
pub struct Migrations {
    reloader: Arc<Reloader>,
    topology: Arc<Topology>,
    settle: Arc<Settle>,
    tls: Arc<TlsContext>,
    /// The config file phase changes are written to.
    file: Mutex<Option<PathBuf>>,
    /// One phase change at a time: this instance's own, or one it holds for another
    /// instance (kept by the pending change until it commits or cancels).
    changing: Arc<tokio::sync::Mutex<()>>,
    /// A phase change held for another instance of the fleet, until it commits or cancels.
    pending: Mutex<Option<Pending>>,
    /// Held by the mover for each `MIGRATE` batch, and by a phase change from its hold to
    /// its end: no background `MIGRATE` of the old direction runs once the routing changes
    /// (an old-direction batch against new-direction on-touch moves would block both pools
    /// on each other until `MIGRATE`'s timeout).
    batch: Arc<tokio::sync::Mutex<()>>,
    progress: Mutex<BTreeMap<String, MoveProgress>>,
    /// Raised by a phase change: the mover looks at the moves again.
    wake: Notify,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations").finish_non_exhaustive()
    }
}

impl Migrations {
    /// The controller of a proxy whose configuration `reloader` keeps, whose tables
    /// `topology` publishes and whose workers acknowledge phase changes through `settle`.
    pub fn new(
        reloader: Arc<Reloader>,
        topology: Arc<Topology>,
        settle: Arc<Settle>,
        tls: Arc<TlsContext>,
    ) -> Arc<Migrations> {
        Arc::new(Migrations {
            reloader,
            topology,
            settle,
            tls,
            file: Mutex::new(None),
            changing: Arc::new(tokio::sync::Mutex::new(())),
            pending: Mutex::new(None),
            batch: Arc::new(tokio::sync::Mutex::new(())),
            progress: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        })
    }

    /// The config file phase changes are written to (`slotgate --config FILE`). If the state
    /// in force is newer than the file's (taken from the fleet at start), the file is brought
    /// up to date.
    pub fn set_file(&self, path: PathBuf) {
        let config = self.reloader.config();
        let on_file = Config::load(&path)
            .map(|c| c.migration.version)
            .unwrap_or(0);
        if config.migration.version > on_file {
            match persist::write(&path, &config) {
                Ok(()) => tracing::info!(
                    version = config.migration.version,
                    "config file brought up to the fleet's migration state"
                ),
                Err(e) => tracing::error!(
                    "config file not brought up to the fleet's migration state: {e}"
                ),
            }
        }
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    /// Start moving `slots` (`"FIRST-LAST"` or `"N"`, all owned by one pool) to pool `to`.
    pub async fn start(&self, slots: &str, to: &str) -> Result<String, String> {
        let mut next = self.reloader.config();
        let (first, last) = parse_slot_range(slots)?;
        let owners = next.slot_owners();
        let from = owners[first as usize]
            .ok_or_else(|| format!("slot {first} has no pool"))?
            .to_string();
        if let Some(other) = (first..=last).find(|&s| owners[s as usize] != Some(&from)) {
            return Err(format!(
                "slots {slots} belong to more than one pool ({from:?}, and {:?} from slot {other}): move each pool's range on its own",
                owners[other as usize].unwrap_or_default()
            ));
        }
        drop(owners);
        next.migration.moves.push(SlotMove {
            slots: slots.to_string(),
            from: from.clone(),
            to: to.to_string(),
            state: MoveState::Moving,
        });
        let why = format!("slots {slots} start moving from pool {from:?} to {to:?}");
        self.change(next, &why).await?;
        Ok(why)
    }

    /// Put the moves of `slots` (every move when `None`) in `state`: pause, resume
    /// (`Moving`) or abort.
    pub async fn set_state(&self, slots: Option<&str>, state: MoveState) -> Result<String, String> {
        let mut next = self.reloader.config();
        let mut changed = Vec::new();
        for m in &mut next.migration.moves {
            if slots.is_some_and(|s| s != m.slots) {
                continue;
            }
            let allowed = match (m.state, state) {
                (from, to) if from == to => false,
                // An abort is final: resume or pause it by starting the move again after.
                (MoveState::Aborting, _) => false,
                _ => true,
            };
            if allowed {
                m.state = state;
                changed.push(format!(
                    "{} (from pool {:?} to {:?})",
                    m.slots, m.from, m.to
                ));
            }
        }
        if changed.is_empty() {
            return Err(match slots {
                Some(s) => format!("no move of slots {s:?} can become {}", state.name()),
                None => format!("no move can become {}", state.name()),
            });
        }
        let why = format!("slots {} now {}", changed.join(", "), state.name());
        self.change(next, &why).await?;
        Ok(why)
    }

    /// Apply `next` (the configuration with another slot map or other moves) as one phase
    /// change, on this instance and every peer of its fleet; `why` is logged.
    async fn change(&self, mut next: Config, why: &str) -> Result<(), String> {
        let wait = settle_time(&self.reloader.config()) * 2;
        let _one = tokio::time::timeout(wait, self.changing.lock())
            .await
            .map_err(|_| "another phase change is under way (see slotgate migrate status)")?;
        if let Some(version) = self.pending_version() {
            return Err(format!(
                "phase change {version}, held for another instance of the fleet, is not finished"
            ));
        }
        let file = self.file()?;
        let current = self.reloader.config();
        next.migration.version = current.migration.version + 1;
        next.validate().map_err(|e| e.to_string())?;
        let within = settle_time(&current);
        let peer_within = within * 2 + Duration::from_secs(1);
        let held = self.changed_ranges(&current, &next)?;
        tracing::info!(held = ?held, version = next.migration.version, "migration phase change: {why}: holding the slots concerned");
        self.topology.hold(&held)?;
        let mover = self.batch.lock().await;
        let mut state = State::of(&next);
        state.by = Some(current.admin.listen.clone());
        let version = state.version;
        let mut holding: Vec<&str> = Vec::new();
        let applied = async {
            self.settle.round(within).await?;
            for peer in &current.fleet.peers {
                fleet::hold(peer, &state, peer_within)
                    .await
                    .map_err(|e| format!("peer {peer} did not hold the slots: {e}"))?;
                holding.push(peer);
            }
            persist::write(&file, &next)?;
            self.reloader
                .reload_phase(next)
                .map_err(|e| format!("the new configuration was refused: {e}"))
        }
        .await;
        match &applied {
            Ok(_) => {
                for peer in &holding {
                    if let Err(e) = fleet::commit(peer, version, peer_within).await {
                        // It holds the slots until told, or until it restarts and reads the
                        // newest state from the fleet (docs/ARCHITECTURE.md).
                        tracing::error!(
                            peer,
                            version,
                            "a peer did not commit phase change {version}: {e}"
                        );
                    }
                }
            }
            Err(_) => {
                for peer in &holding {
                    if let Err(e) = fleet::cancel(peer, version, peer_within).await {
                        tracing::error!(
                            peer,
                            version,
                            "a peer did not cancel phase change {version}: {e}"
                        );
                    }
                }
            }
        }
        self.topology.hold(&[])?;
        drop(mover);
        match applied {
            Ok(_) => {
                tracing::info!(version, "migration phase change done: {why}");
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                tracing::error!("migration phase change failed, nothing changed: {why}: {e}");
                Err(e)
            }
        }
    }

    /// The config file phase changes are written to, or why there is none.
    fn file(&self) -> Result<PathBuf, String> {
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| "moving slots needs a config file (slotgate --config FILE): the slot map and the moves under way are kept there".to_string())
    }

    fn pending_version(&self) -> Option<u64> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.next.migration.version)
    }

    /// Another instance of the fleet asks this one to hold the slots `state` changes and
    /// keep it pending: held and settled when this returns `Ok`.
    pub async fn peer_hold(&self, state: State) -> Result<(), String> {
        // Busy with a phase change of its own (or another's): refuse at once rather than
        // wait, so two instances changing phase at once both cancel instead of waiting on
        // each other.
        let one = Arc::clone(&self.changing)
            .try_lock_owned()
            .map_err(|_| "another phase change is under way here".to_string())?;
        let current = self.reloader.config();
        if state.version != current.migration.version + 1 {
            return Err(format!(
                "phase change {} does not follow this instance's {} (restart it, or let it read the fleet's state first)",
                state.version, current.migration.version
            ));
        }
        let next = state.applied_to(&current);
        next.validate().map_err(|e| e.to_string())?;
        let held = self.changed_ranges(&current, &next)?;
        self.topology.hold(&held)?;
        let mover = Arc::clone(&self.batch).lock_owned().await;
        if let Err(e) = self.settle.round(settle_time(&current)).await {
            self.topology.hold(&[])?;
            return Err(e);
        }
        tracing::info!(version = state.version, held = ?held, "migration phase change held for another instance of the fleet");
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pending {
            next,
            by: state.by,
            _guards: (one, mover),
        });
        Ok(())
    }

    /// Install the pending phase change `version` (persisted first) and release its slots.
    pub fn peer_commit(&self, version: u64) -> Result<(), String> {
        let pending = self.take_pending(version)?;
        let file = self.file();
        let result = file
            .and_then(|file| persist::write(&file, &pending.next))
            .and_then(|()| {
                self.reloader
                    .reload_phase(pending.next)
                    .map(|_| ())
                    .map_err(|e| format!("the new configuration was refused: {e}"))
            });
        self.topology.hold(&[])?;
        match &result {
            Ok(()) => {
                tracing::info!(version, "migration phase change done (for the fleet)");
                self.wake.notify_one();
            }
            Err(e) => tracing::error!(
                version,
                "migration phase change could not be committed here: {e}"
            ),
        }
        result
    }

    /// Drop the pending phase change `version` and release its slots: nothing changed.
    pub fn peer_cancel(&self, version: u64) -> Result<(), String> {
        self.take_pending(version)?;
        self.topology.hold(&[])?;
        tracing::info!(
            version,
            "migration phase change cancelled by the fleet: nothing changed"
        );
        Ok(())
    }

    fn take_pending(&self, version: u64) -> Result<Pending, String> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.take() {
            Some(p) if p.next.migration.version == version => Ok(p),
            other => {
                let found = other.as_ref().map(|p| p.next.migration.version);
                *pending = other;
                Err(format!(
                    "no pending phase change {version} here (pending: {found:?})"
                ))
            }
        }
    }

    /// This instance's migration state, for the fleet.
    pub fn state(&self) -> State {
        let mut state = State::of(&self.reloader.config());
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pending.as_ref() {
            state.pending = Some(p.next.migration.version);
            state.by.clone_from(&p.by);
        }
        state
    }

    /// At start, before serving: adopt the newest migration state a reachable peer has, if it
    /// is newer than this instance's (it restarted or joined during a move). Returns the
    /// version adopted, if any.
    pub async fn sync_from_fleet(&self) -> Result<Option<u64>, String> {
        let current = self.reloader.config();
        let within = settle_time(&current);
        let mut newest: Option<State> = None;
        let me = Some(current.admin.listen.as_str());
        for peer in &current.fleet.peers {
            match fleet::state(peer, within).await {
                Ok(state) => {
                    // A phase change this instance orchestrated and died in the middle of:
                    // finish it as its own file says (committed here first, or never).
                    if let (Some(pending), true) = (state.pending, state.by.as_deref() == me) {
                        let done = if current.migration.version >= pending {
                            fleet::commit(peer, pending, within).await
                        } else {
                            fleet::cancel(peer, pending, within).await
                        };
                        tracing::warn!(peer, pending, ?done, "finished phase change {pending} left pending on a peer by this instance's previous run");
                    } else if let Some(pending) = state.pending {
                        tracing::warn!(peer, pending, by = ?state.by, "a peer holds phase change {pending} of another instance pending at this start");
                    }
                    if newest.as_ref().is_none_or(|n| state.version > n.version) {
                        newest = Some(state);
                    }
                }
                Err(e) => tracing::warn!(peer, "fleet peer not reachable at start: {e}"),
            }
        }
        let Some(newest) = newest.filter(|n| n.version > current.migration.version) else {
            return Ok(None);
        };
        let next = newest.applied_to(&current);
        next.validate().map_err(|e| e.to_string())?;
        self.reloader
            .reload_phase(next)
            .map_err(|e| format!("the fleet's state was refused: {e}"))?;
        tracing::info!(
            version = newest.version,
            "migration state taken from the fleet at start"
        );
        Ok(Some(newest.version))
    }

    /// The slot ranges whose routing differs between the tables of `a` and `b`.
    fn changed_ranges(&self, a: &Config, b: &Config) -> Result<Vec<(u16, u16)>, String> {
        let masters = self.topology.sentinel_masters();
        let (ta, tb) = (
            pools::table_for(a, &masters, &[])?,
            pools::table_for(b, &masters, &[])?,
        );
        let route = |t: &crate::topology::SlotTable, slot: u16| {
            let unit = crate::placement::Unit::new(slot)?;
            let master = |i: usize| t.shards().get(i).map(|s| s.master.clone());
            let source = match t.moving(unit) {
                Some(crate::topology::MoveRoute::From(i)) => master(i),
                _ => None,
            };
            Some((t.shard_of(unit).and_then(master), source))
        };
        let mut out: Vec<(u16, u16)> = Vec::new();
        for slot in 0..SLOT_COUNT as u16 {
            if route(&ta, slot) != route(&tb, slot) {
                match out.last_mut() {
                    Some((_, last)) if *last + 1 == slot => *last = slot,
                    _ => out.push((slot, slot)),
                }
            }
        }
        Ok(out)
    }

    /// The moves under way and their progress, for the admin API and INFO.
    pub fn status(&self) -> Value {
        let config = self.reloader.config();
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let (on_touch, on_touch_failures, background, background_failures) =
            self.topology.move_counters().snapshot();
        let moves: Vec<Value> = config
            .migration
            .moves
            .iter()
            .map(|m| {
                let p = progress.get(&key(m)).cloned().unwrap_or_default();
                let elapsed = p.started.map(|s| s.elapsed().as_secs_f64());
                let per_second = |n: u64| match elapsed {
                    Some(secs) if secs > 0.0 => n as f64 / secs,
                    _ => 0.0,
                };
                let rate = per_second(p.moved);
                let left = p.estimate.saturating_sub(p.moved);
                json!({
                    "slots": m.slots,
                    "from": m.from,
                    "to": m.to,
                    "state": m.state.name(),
                    "keys_moved": p.moved,
                    "bytes_moved": p.bytes,
                    "keys_scanned": p.scanned,
                    "passes": p.passes,
                    "keys_left_estimate": left,
                    "rate_keys_per_second": (rate * 10.0).round() / 10.0,
                    "rate_bytes_per_second": per_second(p.bytes).round(),
                    "eta_seconds": (rate > 0.0).then(|| (left as f64 / rate).ceil()),
                    "last_error": p.last_error,
                })
            })
            .collect();
        json!({
            "moves": moves,
            "on_touch_moves": on_touch,
            "on_touch_failures": on_touch_failures,
            "background_keys_moved": background,
            "background_bytes_moved": self.topology.move_counters().background_bytes(),
            "background_failures": background_failures,
            "keys_per_second_limit": config.migration.keys_per_second,
        })
    }

    /// The background mover: forever, empty the source of each move that is moving or
    /// aborting, and end the move when its source holds none of its keys. Paused moves and
    /// an idle proxy cost nothing but a wait.
    pub async fn run(self: Arc<Self>) {
        loop {
            let config = self.reloader.config();
            let Some(m) = config
                .migration
                .moves
                .iter()
                .find(|m| m.state != MoveState::Paused)
                .cloned()
            else {
                self.wake.notified().await;
                continue;
            };
            match self.pass(&config, &m).await {
                Ok(Pass::Empty) => {
                    if let Err(e) = self.finish(&m).await {
                        self.note_error(&m, e);
                        self.pause_after_error().await;
                    }
                }
                Ok(Pass::Moved | Pass::Changed) => {}
                Err(e) => {
                    self.topology.move_counters().background_failed();
                    tracing::warn!(slots = %m.slots, "migration mover: {e}; retrying");
                    self.note_error(&m, e);
                    self.pause_after_error().await;
                }
            }
        }
    }

    async fn pause_after_error(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
    }

    fn note_error(&self, m: &SlotMove, error: String) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.entry(key(m)).or_default().last_error = Some(error);
    }

    /// One pass over the source of `m`: every key of its slots found is moved to where
    /// requests for it now run.
    async fn pass(&self, config: &Config, m: &SlotMove) -> Result<Pass, String> {
        let (first, last) = m.range().ok_or("bad slot range")?;
        let (to, from) = m.direction();
        let masters = self.topology.sentinel_masters();
        let node = |pool: &str| -> Result<(Arc<str>, Option<Arc<Credentials>>), String> {
            let p = config.pools.get(pool).ok_or(format!("no pool {pool:?}"))?;
            let master = if p.uses_sentinel() {
                masters
                    .get(pool)
                    .cloned()
                    .ok_or(format!("pool {pool:?}'s master is not known yet"))?
            } else {
                p.master.clone()
            };
            Ok((
                master.into(),
                Credentials::configured(p.username.as_deref(), p.password.as_ref()),
            ))
        };
        let (source, source_auth) = node(from)?;
        let (dest, dest_auth) = node(to)?;
        let settings = &config.migration;
        let timeout = Duration::from_millis(config.backend.connect_timeout_ms);
        let mut conn = DedicatedConn::connect(
            Arc::clone(&source),
            timeout,
            config.protocol.limits(),
            source_auth,
            false,
            self.tls.backend(),
        )
        .await
        .map_err(|e| format!("cannot reach the source pool {from:?} at {source}: {e}"))?;
        let call_timeout =
            Duration::from_millis(settings.timeout_ms + config.backend.request_timeout_ms);
        // Every database of the source that holds keys (pool mode serves SELECT n).
        let info = Request::from_args([b"INFO" as &[u8], b"keyspace"]);
        let reply = call(&mut conn, info.raw(), call_timeout, &source).await?;
        let databases = match crate::resp::parse_frame(reply.raw(), &crate::resp::Limits::default())
        {
            Ok(Frame::Bulk(text)) => databases_in(&String::from_utf8_lossy(&text)),
            _ => return Err(format!("unexpected INFO keyspace reply from {source}")),
        };
        let fresh = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(m))
            .is_none_or(|p| p.started.is_none());
        if fresh {
            let keys = databases.iter().map(|(_, keys)| keys).sum();
            let estimate = estimate(keys, config, from, (first, last));
            self.bump(m, |p| {
                p.started = Some(Instant::now());
                p.estimate = estimate;
            });
        }
        let placement = self.topology.table().placement().clone();
        let mut found = 0u64;
        let pace = Pace::new(settings.keys_per_second);
        for &(db, _) in &databases {
            conn.select(db)
                .await
                .map_err(|e| format!("{source}: SELECT {db}: {e}"))?;
            let mut cursor = Bytes::from_static(b"0");
            loop {
                if !self.still(m) {
                    return Ok(Pass::Changed);
                }
                let count = settings.scan_count.to_string();
                let scan =
                    Request::from_args([b"SCAN" as &[u8], &cursor, b"COUNT", count.as_bytes()]);
                let reply = call(&mut conn, scan.raw(), call_timeout, &source).await?;
                let (next, keys) = scan_reply(&reply)
                    .ok_or_else(|| format!("unexpected SCAN reply from {source}"))?;
                let scanned = keys.len() as u64;
                let keys: Vec<Bytes> = keys
                    .into_iter()
                    .filter(|k| (first..=last).contains(&placement.unit_of(k).get()))
                    .collect();
                self.bump(m, |p| p.scanned += scanned);
                for batch in keys.chunks(settings.batch_keys) {
                    let Some(migrate) = touch::migrate_request(
                        &dest,
                        dest_auth.as_deref(),
                        db,
                        settings.timeout_ms,
                        batch,
                    ) else {
                        continue;
                    };
                    let held = measure::batch(&mut conn, batch, call_timeout, &source).await?;
                    let batch_turn = self.batch.lock().await;
                    if !self.still(m) {
                        return Ok(Pass::Changed);
                    }
                    let reply = call(&mut conn, &migrate, call_timeout, &source).await?;
                    drop(batch_turn);
                    match Outcome::of(reply.raw()) {
                        outcome @ (Outcome::Moved | Outcome::NoKey) => {
                            found += batch.len() as u64;
                            // What the source held of the batch just before (on NOKEY: none).
                            let moved = match outcome {
                                Outcome::Moved => held,
                                _ => measure::Measured::default(),
                            };
                            let counters = self.topology.move_counters();
                            counters.moved_in_background(moved.keys);
                            counters.moved_bytes_in_background(moved.bytes);
                            self.bump(m, |p| {
                                p.moved += moved.keys;
                                p.bytes += moved.bytes;
                            });
                        }
                        Outcome::Failed(e) => {
                            return Err(format!("MIGRATE from {source} to {dest} failed: {e}"))
                        }
                    }
                    pace.wait(found).await;
                }
                if &next[..] == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        self.bump(m, |p| {
            p.passes += 1;
            p.last_error = None;
        });
        Ok(if found == 0 { Pass::Empty } else { Pass::Moved })
    }

    /// True while `m` is still a move in force in the same state.
    fn still(&self, m: &SlotMove) -> bool {
        self.reloader.config().migration.moves.contains(m)
    }

    fn bump(&self, m: &SlotMove, f: impl FnOnce(&mut MoveProgress)) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(progress.entry(key(m)).or_default());
    }

    /// The source of `m` holds none of its keys: end the move (slots given to `to`, or
    /// kept by `from` after an abort).
    async fn finish(&self, m: &SlotMove) -> Result<(), String> {
        let mut next = self.reloader.config();
        if !next.migration.moves.contains(m) {
            return Ok(());
        }
        next.migration.moves.retain(|x| x != m);
        let why = if m.state == MoveState::Aborting {
            format!("slots {} stay on pool {:?}: abort done", m.slots, m.from)
        } else {
            let (first, last) = m.range().ok_or("bad slot range")?;
            let mut owner = next.slot_owners();
            owner[first as usize..=last as usize].fill(Some(&m.to));
            let slots = persist::slot_map(&owner);
            drop(owner);
            next.slots = slots;
            format!(
                "slots {} moved from pool {:?} to {:?}: done",
                m.slots, m.from, m.to
            )
        };
        self.change(next, &why).await?;
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(m));
        Ok(())
    }
}

/// A phase change held for another instance: the configuration it leads to, and this
/// instance's turns (no phase change of its own, no mover batch) until it ends.
struct Pending {
    next: Config,
    /// The orchestrator's admin address.
    by: Option<String>,
    _guards: (
        tokio::sync::OwnedMutexGuard<()>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
}

/// How long the workers (or a peer's) have to settle a phase change.
fn settle_time(config: &Config) -> Duration {
    Duration::from_millis(config.backend.request_timeout_ms + config.backend.connect_timeout_ms)
}

/// What one pass of the mover found.
enum Pass {
    /// No key of the slots was on the source for the whole pass.
    Empty,
    /// Keys were moved: another pass checks the source is empty.
    Moved,
    /// The move changed phase (paused, aborted …) during the pass.
    Changed,
}

/// Progress is kept per move and direction.
fn key(m: &SlotMove) -> String {
    let direction = if m.state == MoveState::Aborting {
        "back"
    } else {
        "on"
    };
    format!("{} {direction}", m.slots)
}

/// At most `per_second` keys a second (0: no limit), from the pace's creation.
struct Pace {
    per_second: u64,
    start: tokio::time::Instant,
}

impl Pace {
    fn new(per_second: u64) -> Pace {
        Pace {
            per_second,
            start: tokio::time::Instant::now(),
        }
    }

    async fn wait(&self, done: u64) {
        if self.per_second == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(done as f64 / self.per_second as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// Send `request` on `conn` and take its one reply, within `timeout`.
async fn call(
    conn: &mut DedicatedConn,
    request: &[u8],
    timeout: Duration,
    addr: &str,
) -> Result<crate::resp::Reply, String> {
    match tokio::time::timeout(timeout, conn.call(request, 1)).await {
        Ok(Ok(mut replies)) => replies.pop().ok_or_else(|| format!("no reply from {addr}")),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!(
            "no reply from {addr} within {} ms",
            timeout.as_millis()
        )),
    }
}

/// `(next cursor, keys)` of a SCAN reply.
fn scan_reply(reply: &crate::resp::Reply) -> Option<(Bytes, Vec<Bytes>)> {
    let frame = crate::resp::parse_frame(reply.raw(), &crate::resp::Limits::default()).ok()?;
    let Frame::Array(parts) = frame else {
        return None;
    };
    let [Frame::Bulk(cursor), Frame::Array(keys)] = &parts[..] else {
        return None;
    };
    let keys = keys
        .iter()
        .filter_map(|k| match k {
            Frame::Bulk(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    Some((cursor.clone(), keys))
}

/// Keys of `range` on the source pool `from`, which holds `keys` keys in all, estimated: its
/// key count times the share of its slots the range is (keys spread evenly over slots, as
/// CRC16 spreads them).
fn estimate(keys: u64, config: &Config, from: &str, (first, last): (u16, u16)) -> u64 {
    let owned: u64 = config
        .pool_slot_ranges()
        .into_iter()
        .filter(|(name, _)| *name == from)
        .flat_map(|(_, ranges)| ranges)
        .map(|(a, b)| u64::from(b - a) + 1)
        .sum();
    let moving = u64::from(last - first) + 1;
    keys.saturating_mul(moving) / owned.max(moving)
}

/// The databases an `INFO keyspace` text lists, with their key counts (`db3:keys=10,…`).
fn databases_in(info: &str) -> Vec<(u32, u64)> {
    info.lines()
        .filter_map(|line| {
            let (db, fields) = line.trim().strip_prefix("db")?.split_once(':')?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db.parse().ok()?, keys))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyspace_section_names_the_databases_with_keys() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb5:keys=3,expires=0,avg_ttl=0\r\n";
        assert_eq!(databases_in(info), vec![(0, 12), (5, 3)]);
        assert!(databases_in("# Keyspace\r\n").is_empty());
    }

    #[test]
    fn the_estimate_is_the_range_s_share_of_the_pool_s_keys() {
        let config = Config::parse(
            "[pools.a]\nmaster = \"127.0.0.1:1\"\n[pools.b]\nmaster = \"127.0.0.1:2\"\n\
             [pools.c]\nmaster = \"127.0.0.1:3\"\n\
             [slots]\n\"0-8191\" = \"a\"\n\"8192-16383\" = \"b\"\n",
        )
        .unwrap();
        assert_eq!(estimate(1000, &config, "a", (0, 4095)), 500);
        // Aborting a move to a new pool: it owns no slot in [slots]; all of its keys count.
        assert_eq!(estimate(1000, &config, "c", (0, 4095)), 1000);
    }
}
