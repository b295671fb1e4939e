//! The peer's side of a fleet's phase change (another instance orchestrates it: hold,
//! commit, cancel), this instance's state for the fleet, and the start-up catch-up with it.

use std::sync::Arc;

use super::{settle_time, Migrations, Pending};
use crate::migration::fleet::{self, State};
use crate::migration::persist;

impl Migrations {
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
        if super::onto_cluster::stages_cluster(&current, &next) {
            self.topology.stage_cluster(&next).await?;
        }
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
        if super::onto_cluster::stages_cluster(&current, &next) {
            // The fleet moves (or moved) keys onto a cluster, or back from it, in a way this
            // instance has not seen yet: the cluster's table first.
            self.topology.stage_cluster(&next).await?;
        }
        self.reloader
            .reload_phase(next)
            .map_err(|e| format!("the fleet's state was refused: {e}"))?;
        tracing::info!(
            version = newest.version,
            "migration state taken from the fleet at start"
        );
        Ok(Some(newest.version))
    }
}
