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
//! With a fleet, steps 1–2 and 4 run on every instance (`peer`: the other side). The
//! background mover is `mover`.

mod big_keys;
mod mover;
mod onto_cluster;
mod peer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Notify;

use super::fleet::{self, State};
use super::persist;
use super::settle::Settle;
use crate::config::{parse_slot_range, Config, MoveState, SlotMove};
use crate::reload::Reloader;
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
    /// This instance's part of its staging keys' names (random, per process).
    staging_tag: String,
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
            staging_tag: {
                use std::hash::{BuildHasher, Hasher};
                // Randomly keyed by the standard library: a random number, no extra crate.
                let random = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                format!("{:08x}", random as u32)
            },
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
        if next.migration.to_cluster.is_some() {
            return self.set_to_cluster_state(state).await;
        }
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
        if changed.is_empty() && next.migration.moves.is_empty() {
            return Err(format!(
                "no move is in force (slotgate migrate status): nothing can become {}",
                state.name()
            ));
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
        if onto_cluster::stages_cluster(&current, &next) {
            // The cluster's table, held, from the hold on (requests placed as it places them);
            // or, for an abort, the pools' held and the cluster's beside it.
            self.topology.stage_cluster(&next).await?;
        }
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

    /// The slot ranges whose routing differs between the tables of `a` and `b`.
    fn changed_ranges(&self, a: &Config, b: &Config) -> Result<Vec<(u16, u16)>, String> {
        let back = |s: MoveState| s == MoveState::Aborting;
        match (a.migration.to_cluster, b.migration.to_cluster) {
            // Keys moving onto a cluster: paused or not, every slot routes the same way.
            (Some(x), Some(y)) if back(x) == back(y) => return Ok(Vec::new()),
            // The move starts, turns back (an abort) or ends: every slot changes.
            (Some(_), _) | (None, Some(_)) => return Ok(vec![(0, SLOT_COUNT as u16 - 1)]),
            (None, None) => {}
        }
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

    /// True while a move is in force (the same moves [`Migrations::status`] lists).
    pub fn in_force(&self) -> bool {
        let config = self.reloader.config();
        !config.migration.moves.is_empty() || config.migration.to_cluster.is_some()
    }

    /// The moves under way and their progress, for the admin API and INFO.
    pub fn status(&self) -> Value {
        let config = self.reloader.config();
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let (on_touch, on_touch_failures, background, background_failures) =
            self.topology.move_counters().snapshot();
        let onto_cluster = config.migration.to_cluster.map(onto_cluster::as_move);
        let moves: Vec<Value> = config
            .migration
            .moves
            .iter()
            .chain(onto_cluster.as_ref())
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
            "copying_in_steps": self.topology.stepped_copy().current().into_iter()
                .map(|(db, key)| json!({"db": db, "key": String::from_utf8_lossy(&key)}))
                .collect::<Vec<_>>(),
        })
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

/// Progress is kept per move and direction.
fn key(m: &SlotMove) -> String {
    let direction = if m.state == MoveState::Aborting {
        "back"
    } else {
        "on"
    };
    format!("{} {direction}", m.slots)
}
