//! `/migrations`: the moves under way (`GET`), and their phase changes (`POST
//! /migrations/start?slots=FIRST-LAST&to=POOL`, or `?to_cluster=HOST:PORT,…` to move every key
//! from the pools onto a Redis Cluster; `/migrations/pause`, `/resume`, `/abort`, each with an
//! optional `?slots=` to pick one move).

use serde_json::{json, Value};

use crate::config::MoveState;
use crate::migration::Migrations;

/// What a phase change request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Start moving `slots` to pool `to`.
    Start {
        /// The slot range.
        slots: &'a str,
        /// The destination pool.
        to: &'a str,
    },
    /// Start moving every key from the pools onto the cluster of `seeds` (comma-separated;
    /// the config's `[cluster] seeds` when empty).
    StartToCluster {
        /// The cluster's seed nodes, or `None`.
        seeds: Option<&'a str>,
    },
    /// Put the move of `slots` (every move when `None`) in a state.
    Set {
        /// The slot range of one move, or every move.
        slots: Option<&'a str>,
        /// The state.
        state: MoveState,
    },
}

/// The action `POST path?query` asks for, or why it is not one.
pub fn action<'a>(path: &str, query: Option<&'a str>) -> Result<Action<'a>, String> {
    let arg = |name: &str| {
        query?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    };
    let state = match path {
        "/migrations/start" => {
            if let Some(seeds) = arg("to_cluster") {
                let seeds = (!seeds.is_empty()).then_some(seeds);
                return Ok(Action::StartToCluster { seeds });
            }
            let (Some(slots), Some(to)) = (arg("slots"), arg("to")) else {
                return Err(
                    "start needs ?slots=FIRST-LAST&to=POOL, or ?to_cluster=HOST:PORT,…".into(),
                );
            };
            return Ok(Action::Start { slots, to });
        }
        "/migrations/pause" => MoveState::Paused,
        "/migrations/resume" => MoveState::Moving,
        "/migrations/abort" => MoveState::Aborting,
        _ => return Err(format!("no such migration action: {path}")),
    };
    Ok(Action::Set {
        slots: arg("slots"),
        state,
    })
}

/// Carry out `action`: `Ok` with a JSON answer, `Err` with the reason nothing changed.
pub async fn run(migrations: &Migrations, action: Action<'_>) -> Result<Value, String> {
    let done = match action {
        Action::Start { slots, to } => migrations.start(slots, to).await?,
        Action::StartToCluster { seeds } => migrations.start_to_cluster(seeds).await?,
        Action::Set { slots, state } => migrations.set_state(slots, state).await?,
    };
    Ok(json!({ "ok": true, "done": done, "status": migrations.status() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_path_and_query() {
        assert_eq!(
            action("/migrations/start", Some("slots=0-99&to=d")),
            Ok(Action::Start {
                slots: "0-99",
                to: "d"
            })
        );
        assert!(action("/migrations/start", Some("slots=0-99")).is_err());
        assert_eq!(
            action(
                "/migrations/start",
                Some("to_cluster=127.0.0.1:7000,127.0.0.1:7001")
            ),
            Ok(Action::StartToCluster {
                seeds: Some("127.0.0.1:7000,127.0.0.1:7001")
            })
        );
        assert_eq!(
            action("/migrations/start", Some("to_cluster=")),
            Ok(Action::StartToCluster { seeds: None })
        );
        assert_eq!(
            action("/migrations/abort", None),
            Ok(Action::Set {
                slots: None,
                state: MoveState::Aborting
            })
        );
        assert_eq!(
            action("/migrations/pause", Some("slots=5")),
            Ok(Action::Set {
                slots: Some("5"),
                state: MoveState::Paused
            })
        );
        assert!(action("/migrations/nope", None).is_err());
    }
}
