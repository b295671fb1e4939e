//! The `[migration]` section: slot ranges moving from one pool to another (pool mode, slot
//! placement) and how fast the background mover copies them. The moves in force are part of
//! the configuration, so the file says where every key may be: `slotgate migrate` (or the
//! admin API) rewrites it at every phase change, and a restarted instance reads it before it
//! serves a request.

use serde::{Deserialize, Serialize};

use super::{parse_slot_range, ConfigError, Distribution};

/// `[migration]`: the mover's pace and the moves under way.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MigrationConfig {
    /// Keys the background mover moves per second, at most (0: as fast as it can). Keys a
    /// request touches are moved at once, whatever this says.
    pub keys_per_second: u64,
    /// Keys per `MIGRATE` call of the background mover.
    pub batch_keys: usize,
    /// The `COUNT` hint of the mover's `SCAN` of the source.
    pub scan_count: usize,
    /// The `MIGRATE` timeout (milliseconds): how long the source may wait on the destination
    /// for one call.
    pub timeout_ms: u64,
    /// Keys the source measures (`MEMORY USAGE`) at this many bytes or more are copied in
    /// steps instead of one `MIGRATE`, which would block the source for the whole value
    /// (0: never).
    pub big_key_bytes: u64,
    /// Elements per step of a big key's copy (64 bytes each for a string).
    pub big_key_step: u64,
    /// The moves under way. Written by `slotgate migrate` and the admin API at every phase
    /// change; a reload that edits them by hand is refused.
    pub moves: Vec<SlotMove>,
    /// The number of the last phase change (written with the moves): the instances of a fleet
    /// compare it to find the newest state.
    pub version: u64,
    /// Pool mode: every key moving from the pools onto the Redis Cluster of `[cluster] seeds`
    /// (`moving`, or `paused`: only touched keys move), or back from it (`aborting`). Written
    /// by `slotgate migrate start --to-cluster`; when the pools hold no key, the file becomes a
    /// cluster-mode one; when an abort leaves none on the cluster, the pool-mode one it was
    /// (docs/FROM-TWEMPROXY.md).
    pub to_cluster: Option<MoveState>,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            keys_per_second: 5_000,
            batch_keys: 100,
            scan_count: 1_000,
            timeout_ms: 5_000,
            big_key_bytes: 1 << 20,
            big_key_step: 1_000,
            moves: Vec::new(),
            version: 0,
            to_cluster: None,
        }
    }
}

/// One slot range on the move from pool `from` (its owner in `[slots]`) to pool `to`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlotMove {
    /// `"FIRST-LAST"` or `"N"`, as in `[slots]`.
    pub slots: String,
    /// The pool `[slots]` assigns these slots to.
    pub from: String,
    /// The pool they are moving to.
    pub to: String,
    /// Where the keys are heading.
    #[serde(default)]
    pub state: MoveState,
}

impl SlotMove {
    /// The move's inclusive slot range (`None` if `slots` does not parse; validation says so).
    pub fn range(&self) -> Option<(u16, u16)> {
        parse_slot_range(&self.slots).ok()
    }

    /// The pool requests for these slots run on, and the pool keys are taken from first:
    /// `(to, from)` while moving or paused, `(from, to)` while aborting.
    pub fn direction(&self) -> (&str, &str) {
        match self.state {
            MoveState::Moving | MoveState::Paused => (&self.to, &self.from),
            MoveState::Aborting => (&self.from, &self.to),
        }
    }
}

/// The phase of a [`SlotMove`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveState {
    /// Requests run on `to`, each key they touch moved there first; the background mover
    /// copies the rest. When `from` holds no key of the range, `[slots]` gives it to `to`.
    #[default]
    Moving,
    /// As `Moving`, but the background mover waits: only touched keys move.
    Paused,
    /// Going back: requests run on `from`, keys are moved back from `to`; when `to` holds
    /// none, the move is dropped and `[slots]` is unchanged.
    Aborting,
}

impl MoveState {
    /// The name used in the file and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            MoveState::Moving => "moving",
            MoveState::Paused => "paused",
            MoveState::Aborting => "aborting",
        }
    }
}

/// Problems of a move onto a cluster (`migration.to_cluster`, or its abort), reported through
/// `fail`.
fn validate_to_cluster(config: &super::Config, fail: &mut impl FnMut(String, String)) {
    let at = "migration.to_cluster".to_string();
    if !config.is_pool_mode() {
        fail(
            at,
            "moving onto a cluster needs the pools keys move from ([pools])".into(),
        );
        return;
    }
    if config.cluster.seeds.is_empty() {
        fail(
            at.clone(),
            "needs the destination cluster's [cluster] seeds".into(),
        );
    }
    if !config.migration.moves.is_empty() {
        fail(
            at.clone(),
            "moves between pools (migration.moves) must end before keys move onto a cluster".into(),
        );
    }
    if let Some((name, _)) = config.pools.iter().find(|(_, p)| p.uses_sentinel()) {
        fail(
            at.clone(),
            format!("pool {name:?} follows Sentinel: moving onto a cluster needs fixed masters"),
        );
    }
    if !config.placement.colocate.is_empty() {
        fail(
            at,
            "[[placement.colocate]] rules store other key names in cluster mode: not supported while moving onto a cluster".into(),
        );
    }
}

/// Problems in the `[migration]` section, with their key paths.
pub(super) fn validate(config: &super::Config) -> Vec<ConfigError> {
    let migration = &config.migration;
    let mut errors = Vec::new();
    let mut fail = |path: String, message: String| errors.push(ConfigError { path, message });
    if migration.batch_keys == 0 {
        fail("migration.batch_keys".into(), "must be at least 1".into());
    }
    if migration.scan_count == 0 {
        fail("migration.scan_count".into(), "must be at least 1".into());
    }
    if migration.big_key_step == 0 {
        fail("migration.big_key_step".into(), "must be at least 1".into());
    }
    if migration.timeout_ms == 0 {
        fail("migration.timeout_ms".into(), "must be at least 1".into());
    }
    // Every state needs the same (aborting moves the keys back from the cluster's nodes).
    if migration.to_cluster.is_some() {
        validate_to_cluster(config, &mut fail);
    }
    if migration.moves.is_empty() {
        return errors;
    }
    if !config.is_pool_mode() || config.placement.distribution != Distribution::Slots {
        fail(
            "migration.moves".into(),
            "moving slots needs pool mode with slot placement ([pools] and [slots])".into(),
        );
        return errors;
    }
    let owner = config.slot_owners();
    let mut taken: Vec<(u16, u16, usize)> = Vec::new();
    for (i, m) in migration.moves.iter().enumerate() {
        let at = |key: &str| format!("migration.moves[{i}].{key}");
        for (key, pool) in [("from", &m.from), ("to", &m.to)] {
            if !config.pools.contains_key(pool) {
                fail(
                    at(key),
                    format!("names pool {pool:?}, which is not declared"),
                );
            }
        }
        if m.from == m.to {
            fail(at("to"), "is the pool the slots are moving from".into());
        }
        let (first, last) = match parse_slot_range(&m.slots) {
            Ok(range) => range,
            Err(message) => {
                fail(at("slots"), message);
                continue;
            }
        };
        if let Some(&(_, _, j)) = taken.iter().find(|(a, b, _)| first <= *b && *a <= last) {
            fail(
                at("slots"),
                format!("overlaps migration.moves[{j}]: a slot moves in one move at a time"),
            );
            continue;
        }
        taken.push((first, last, i));
        if let Some(j) = migration.moves[..i].iter().position(|o| {
            let (a, b) = (o.direction(), m.direction());
            a.0 == b.1 && a.1 == b.0
        }) {
            fail(
                at("state"),
                format!(
                    "moves keys opposite to migration.moves[{j}] between the same two pools: \
                     their MIGRATEs could block both pools on each other; let one end first"
                ),
            );
        }
        if let Some(slot) = (first..=last).find(|&s| owner[s as usize] != Some(&m.from)) {
            fail(
                at("from"),
                format!(
                    "slot {slot} belongs to pool {:?} in [slots], not {:?}",
                    owner[slot as usize].unwrap_or_default(),
                    m.from
                ),
            );
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, MoveState};

    fn paths(config: &Config) -> Vec<String> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn a_move_onto_a_cluster_needs_fixed_pools_and_seeds() {
        let base = "[pools.a]\nmaster = \"127.0.0.1:1\"\n";
        let mut c = Config::parse(base).unwrap();
        c.migration.to_cluster = Some(MoveState::Moving);
        let problems = paths(&c);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("migration.to_cluster: needs the destination")),
            "{problems:?}"
        );
        c.cluster.seeds = vec!["127.0.0.1:7000".into()];
        assert!(paths(&c).is_empty(), "{:?}", paths(&c));
        c.migration.to_cluster = Some(MoveState::Aborting);
        assert!(
            paths(&c).is_empty(),
            "an abort moves keys back: {:?}",
            paths(&c)
        );
        // Seeds without a move onto the cluster: cluster and pool mode are exclusive.
        c.migration.to_cluster = None;
        assert!(paths(&c).iter().any(|p| p.starts_with("cluster.seeds")));

        let sentinel = Config::parse(
            "[pools.a]\nsentinels = [\"127.0.0.1:26379\"]\nmaster_name = \"m\"\n\
             [cluster]\nseeds = [\"127.0.0.1:7000\"]\n[migration]\nto_cluster = \"moving\"\n",
        )
        .unwrap();
        assert!(
            paths(&sentinel)
                .iter()
                .any(|p| p.contains("follows Sentinel")),
            "{:?}",
            paths(&sentinel)
        );
        let cluster_mode = Config::parse(
            "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n[migration]\nto_cluster = \"paused\"\n",
        )
        .unwrap();
        assert!(paths(&cluster_mode)
            .iter()
            .any(|p| p.contains("needs the pools")));
    }
}
