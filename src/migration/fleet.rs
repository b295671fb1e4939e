//! The instances of a fleet (`[fleet] peers`) carry out a migration phase change together:
//! what they tell each other (the migration state: version, slot map, moves) and the calls
//! that say it, over their admin listeners.
//!
//! ```text
//!  orchestrator                      each peer
//!   hold + settle itself
//!   POST /migrations/phase/hold ───► hold the slots, settle, keep the new state pending ─► 200
//!   (any refusal or silence: POST /migrations/phase/cancel to those that held; nothing changed)
//!   persist + install itself
//!   POST /migrations/phase/commit ─► persist + install the pending state, release ─► 200
//!   release itself
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::admin::client;
use crate::config::{Config, MoveState, SlotMove};

/// The migration state one instance has: what a phase change changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The phase change it results from (`migration.version`).
    pub version: u64,
    /// `[slots]`.
    pub slots: BTreeMap<String, String>,
    /// `[[migration.moves]]`.
    pub moves: Vec<SlotMove>,
    /// A phase change held for another instance and not yet committed, if any.
    #[serde(default)]
    pub pending: Option<u64>,
    /// Who orchestrates the phase change this state is sent for (or the pending one): its
    /// admin address. A restarted orchestrator finishes what it left pending on its peers.
    #[serde(default)]
    pub by: Option<String>,
    /// `migration.to_cluster`: keys moving from the pools onto a cluster.
    #[serde(default)]
    pub to_cluster: Option<MoveState>,
    /// That cluster's seeds (`[cluster] seeds`; its credentials are each instance's own).
    #[serde(default)]
    pub cluster_seeds: Vec<String>,
    /// No pool is left: every key moved onto the cluster, the instance is in cluster mode.
    #[serde(default)]
    pub pools_retired: bool,
}

impl State {
    /// The state of `config`.
    pub fn of(config: &Config) -> State {
        State {
            version: config.migration.version,
            slots: config.slots.clone(),
            moves: config.migration.moves.clone(),
            pending: None,
            by: None,
            to_cluster: config.migration.to_cluster,
            cluster_seeds: config.cluster.seeds.clone(),
            pools_retired: !config.is_pool_mode(),
        }
    }

    /// `config` with this state.
    pub fn applied_to(&self, config: &Config) -> Config {
        let mut next = config.clone();
        next.slots = self.slots.clone();
        next.migration.moves = self.moves.clone();
        next.migration.version = self.version;
        next.migration.to_cluster = self.to_cluster;
        if self.to_cluster.is_some() || self.pools_retired {
            next.cluster.seeds.clone_from(&self.cluster_seeds);
        } else {
            // Pool mode with no move onto a cluster (an abort's end): it names none.
            next.cluster.seeds.clear();
        }
        if self.pools_retired {
            next.pools.clear();
            next.slots.clear();
            next.placement = Default::default();
        }
        next
    }
}

/// Ask `peer` to hold the slots `state` changes and keep `state` pending.
pub async fn hold(peer: &str, state: &State, within: Duration) -> Result<(), String> {
    let body = serde_json::to_string(state).map_err(|e| e.to_string())?;
    call(peer, Method::POST, "/migrations/phase/hold", body, within).await?;
    Ok(())
}

/// Tell `peer` to install the pending state `version`.
pub async fn commit(peer: &str, version: u64, within: Duration) -> Result<(), String> {
    let path = format!("/migrations/phase/commit?version={version}");
    call(peer, Method::POST, &path, String::new(), within).await?;
    Ok(())
}

/// Tell `peer` to drop the pending state `version` and release its slots.
pub async fn cancel(peer: &str, version: u64, within: Duration) -> Result<(), String> {
    let path = format!("/migrations/phase/cancel?version={version}");
    call(peer, Method::POST, &path, String::new(), within).await?;
    Ok(())
}

/// The migration state of `peer`.
pub async fn state(peer: &str, within: Duration) -> Result<State, String> {
    let body = call(
        peer,
        Method::GET,
        "/migrations/state",
        String::new(),
        within,
    )
    .await?;
    serde_json::from_str(&body).map_err(|e| format!("{peer}: {e}"))
}

async fn call(
    peer: &str,
    method: Method,
    path: &str,
    body: String,
    within: Duration,
) -> Result<String, String> {
    tokio::time::timeout(within, client::request_with_body(peer, method, path, body))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{peer} did not answer within {} ms",
                within.as_millis()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MoveState;

    #[test]
    fn a_state_goes_over_the_wire_and_into_a_config() {
        let config = Config::parse(
            "[pools.a]\nmaster = \"127.0.0.1:1\"\n[pools.b]\nmaster = \"127.0.0.1:2\"\n\
             [slots]\n\"0-16383\" = \"a\"\n",
        )
        .unwrap();
        let mut state = State::of(&config);
        state.version = 4;
        state.moves.push(SlotMove {
            slots: "0-9".into(),
            from: "a".into(),
            to: "b".into(),
            state: MoveState::Moving,
        });
        let wire = serde_json::to_string(&state).unwrap();
        let back: State = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, state);
        let next = back.applied_to(&config);
        next.validate().unwrap();
        assert_eq!(next.migration.version, 4);
        assert_eq!(next.migration.moves.len(), 1);
    }

    #[test]
    fn a_move_onto_a_cluster_and_its_end_go_over_the_wire() {
        let config = Config::parse("[pools.a]\nmaster = \"127.0.0.1:1\"\n").unwrap();
        let mut moving = config.clone();
        moving.cluster.seeds = vec!["127.0.0.1:7000".into()];
        moving.migration.to_cluster = Some(MoveState::Paused);
        let wire = serde_json::to_string(&State::of(&moving)).unwrap();
        let state: State = serde_json::from_str(&wire).unwrap();
        let next = state.applied_to(&config);
        next.validate().unwrap();
        assert_eq!(next.migration.to_cluster, Some(MoveState::Paused));
        assert_eq!(next.cluster.seeds, ["127.0.0.1:7000"]);

        let mut done = moving.clone();
        done.migration.to_cluster = None;
        done.pools.clear();
        let state = State::of(&done);
        assert!(state.pools_retired);
        let next = state.applied_to(&moving);
        next.validate().unwrap();
        assert!(!next.is_pool_mode());
        assert_eq!(next.cluster.seeds, ["127.0.0.1:7000"]);
        // An abort's end, adopted by an instance still moving: pool mode, no cluster named.
        let mut aborted = moving.clone();
        aborted.migration.to_cluster = None;
        aborted.cluster.seeds.clear();
        let next = State::of(&aborted).applied_to(&moving);
        next.validate().unwrap();
        assert!(next.is_pool_mode() && next.cluster.seeds.is_empty());
        assert_eq!(next.migration.to_cluster, None);
        // A peer's state from before this field existed: nothing about a cluster.
        let old: State = serde_json::from_str(r#"{"version":1,"slots":{},"moves":[]}"#).unwrap();
        assert_eq!(old.to_cluster, None);
        assert!(!old.pools_retired);
    }
}
