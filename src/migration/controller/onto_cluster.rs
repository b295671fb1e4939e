//! Keys moving from the pools (Twemproxy's ketama placement, or a slot map) onto a Redis
//! Cluster (`migration.to_cluster`): its phase changes (start, pause, resume, abort; the end,
//! which leaves a cluster-mode configuration, or the abort's, which leaves the pool-mode one)
//! and the background mover's pass over every pool — or, aborting, over every cluster master.
//!
//! The same controller as moves between pools: each phase change holds, settles, persists and
//! installs (`Migrations::change`), on every instance of a fleet. While the move is in force
//! the table is the cluster's with every slot moving from the pools (`topology::Moving`):
//! requests move the keys they touch first (`router::moving`). While it is aborted, the table
//! is the pools' with every unit moving back from the cluster, the same way round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::big_keys::{Destination, StepSettings};
use super::mover::{call, call_n, KeyScan, Pace, Pass, Tally};
use super::Migrations;
use crate::backend::connect::ASKING;
use crate::backend::dedicated::DedicatedConn;
use crate::config::{Config, MoveState, SlotMove};
use crate::migration::measure;
use crate::migration::touch::{self, Outcome};
use crate::resp::Request;
use crate::slot::SLOT_COUNT;
use crate::topology::{SlotTable, Toward};

/// A cluster node's address and credentials, and keys to move there.
type NodeKeys = (
    Arc<str>,
    Option<Arc<crate::backend::Credentials>>,
    Vec<Bytes>,
);

/// A node's address and credentials.
type NodeAuth = (Arc<str>, Option<Arc<crate::backend::Credentials>>);

/// Which table a configuration routes by, for [`stages_cluster`].
#[derive(PartialEq, Eq)]
enum Routing {
    /// The pools' (pool mode, no move onto a cluster).
    Pools,
    /// The cluster's: cluster mode, or keys moving onto it.
    Cluster,
    /// The pools', with the cluster's beside it: the move onto it aborted.
    Back,
}

fn routing(config: &Config) -> Routing {
    match config.migration.to_cluster {
        Some(MoveState::Aborting) => Routing::Back,
        Some(_) => Routing::Cluster,
        None if config.is_pool_mode() => Routing::Pools,
        None => Routing::Cluster,
    }
}

/// True when going from `current` to `next` needs the cluster's table first
/// (`Topology::stage_cluster`): the move onto it starts (or an instance adopts it, or its end,
/// from its fleet), or turns back (an abort: the cluster's table is then the side keys move
/// back from).
pub(super) fn stages_cluster(current: &Config, next: &Config) -> bool {
    match (routing(current), routing(next)) {
        (Routing::Pools | Routing::Back, Routing::Cluster) => true,
        (now, Routing::Back) => now != Routing::Back,
        _ => false,
    }
}

/// The move onto the cluster as one entry of the moves (status, INFO, `/metrics`, progress):
/// every slot, from the pools to the cluster.
pub(super) fn as_move(state: MoveState) -> SlotMove {
    SlotMove {
        slots: format!("0-{}", SLOT_COUNT - 1),
        from: "pools".into(),
        to: "cluster".into(),
        state,
    }
}

impl Migrations {
    /// Start moving every key from the pools onto the Redis Cluster of `seeds` (comma-separated
    /// `HOST:PORT`s; the config's `[cluster] seeds` when `None`).
    pub async fn start_to_cluster(&self, seeds: Option<&str>) -> Result<String, String> {
        let mut next = self.reloader.config();
        if !next.is_pool_mode() {
            return Err(
                "keys move onto a cluster from pools: this proxy has none ([pools])".into(),
            );
        }
        if next.migration.to_cluster.is_some() {
            return Err("keys already move onto the cluster (see slotgate migrate status)".into());
        }
        if let Some(seeds) = seeds {
            next.cluster.seeds = seeds
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        next.migration.to_cluster = Some(MoveState::Moving);
        next.validate().map_err(|e| e.to_string())?;
        // An empty cluster: a key of the same name there would be overwritten by the pools'.
        match self.topology.cluster_keys(&next).await? {
            0 => {}
            keys => {
                return Err(format!(
                    "the cluster holds {keys} keys: keys moving from the pools would overwrite those of the same name; move onto an empty cluster"
                ))
            }
        }
        let why = format!(
            "every key starts moving from the pools onto the cluster of {}",
            next.cluster.seeds.join(",")
        );
        self.change(next, &why).await?;
        Ok(why)
    }

    /// Pause (`Paused`: only touched keys move), resume (`Moving`) or abort (`Aborting`:
    /// every key moves back onto the pools, then the move is dropped) the move onto the
    /// cluster. An abort is final, as for moves between pools: the move starts again after it.
    pub(super) async fn set_to_cluster_state(&self, state: MoveState) -> Result<String, String> {
        let mut next = self.reloader.config();
        let current = next.migration.to_cluster;
        match (current, state) {
            (Some(now), wanted) if now == wanted => {
                return Err(format!("the move onto the cluster is already {}", now.name()))
            }
            (Some(MoveState::Aborting), wanted) => {
                return Err(format!(
                    "the move onto the cluster is being aborted and cannot become {}: an abort is final; when it is done (slotgate migrate status shows no move), start the move again (slotgate migrate start --to-cluster SEEDS)",
                    wanted.name()
                ))
            }
            (None, _) => return Err("no move onto a cluster is in force".into()),
            _ => {}
        }
        next.migration.to_cluster = Some(state);
        let why = match state {
            MoveState::Aborting => {
                "keys moving from the pools onto the cluster now aborting: every key moves back onto the pools".to_string()
            }
            _ => format!(
                "keys moving from the pools onto the cluster now {}",
                state.name()
            ),
        };
        self.change(next, &why).await?;
        Ok(why)
    }

    /// One pass of the mover over every pool: each key found is moved to the cluster node
    /// owning its slot, in batches per node; big keys (`migration.big_key_bytes`) are copied
    /// there in steps. Keys the cluster refuses for a while (their slot being resharded
    /// inside it: `ASK`; an owner that changed: `MOVED`, the table patched) are left for the
    /// next pass. Aborting, the same pass the other way round: over every cluster master,
    /// each key moved back to the pool the placement names, in batches per pool and slot (a
    /// cluster node's `MIGRATE` names keys of one slot), big keys whole; the pass finds the
    /// cluster empty only if its masters then count no key either.
    pub(super) async fn pass_onto_cluster(
        &self,
        config: &Config,
        m: &SlotMove,
    ) -> Result<Pass, String> {
        let Some((toward, sources)) = self
            .topology
            .table()
            .other_side()
            .map(|(toward, source)| (toward, Arc::clone(source)))
        else {
            return Ok(Pass::Changed);
        };
        let settings = &config.migration;
        let timeout = Duration::from_millis(config.backend.connect_timeout_ms);
        let call_timeout =
            Duration::from_millis(settings.timeout_ms + config.backend.request_timeout_ms);
        let mut conns = Vec::new();
        for source in sources.shards() {
            let conn = DedicatedConn::connect(
                Arc::clone(&source.master),
                timeout,
                config.protocol.limits(),
                source.auth.clone(),
                false,
                self.tls.backend(),
            )
            .await
            .map_err(|e| format!("cannot reach {} at {}: {e}", side(toward), source.master))?;
            conns.push((Arc::clone(&source.master), conn));
        }
        let fresh = self.progress_of(m).is_none_or(|p| p.started.is_none());
        if fresh {
            let keys = key_count(&mut conns, call_timeout).await?;
            self.bump(m, |p| {
                p.started = Some(Instant::now());
                p.estimate = keys;
            });
        }
        let pace = Pace::new(settings.keys_per_second);
        let mut tally = Tally::default();
        let steps = StepSettings::of(config);
        // The cluster nodes big keys were copied to, each with its connection.
        let mut nodes: Vec<Destination> = Vec::new();
        for (source, conn) in &mut conns {
            let mut scan = KeyScan::new(settings.scan_count);
            loop {
                if !self.still(m) {
                    return Ok(Pass::Changed);
                }
                let Some(keys) = scan.next(conn, call_timeout, source).await? else {
                    break;
                };
                self.bump(m, |p| p.scanned += keys.len() as u64);
                let groups = match toward {
                    Toward::Cluster => self.by_node(keys),
                    // Moving back: a MIGRATE on a cluster node names keys of one slot.
                    Toward::Pools => per_unit(&sources, self.by_node(keys)),
                };
                for (dest, auth, keys) in groups {
                    for batch in keys.chunks(settings.batch_keys) {
                        let sizes = measure::batch(conn, batch, call_timeout, source).await?;
                        let rest = match toward {
                            Toward::Cluster => {
                                let node = nodes.iter().position(|d| d.addr == dest);
                                let node = node.unwrap_or_else(|| {
                                    nodes.push(Destination {
                                        addr: Arc::clone(&dest),
                                        auth: auth.clone(),
                                        conn: None,
                                    });
                                    nodes.len() - 1
                                });
                                let dest_conn = &mut nodes[node];
                                let rest = self.copy_big_ones(
                                    conn, dest_conn, 0, batch, sizes, m, &steps, &mut tally,
                                );
                                let Some(rest) = rest.await? else {
                                    return Ok(Pass::Changed);
                                };
                                rest
                            }
                            // Moving back, big keys move whole.
                            Toward::Pools => batch.iter().cloned().zip(sizes).collect(),
                        };
                        let (batch, sizes): (Vec<Bytes>, Vec<measure::Size>) =
                            rest.into_iter().unzip();
                        let held = measure::total(&sizes);
                        let (migrate, replies) = match toward {
                            Toward::Cluster => (
                                touch::migrate_request(
                                    &dest,
                                    auth.as_deref(),
                                    0,
                                    settings.timeout_ms,
                                    &batch,
                                    0, // measured above: the big ones were copied in steps
                                ),
                                1,
                            ),
                            // From the node the keys were found on, even one importing their
                            // slot from its owner (a reshard inside the cluster): `ASKING`.
                            Toward::Pools => (
                                touch::migrate_back_request(
                                    &dest,
                                    auth.as_deref(),
                                    settings.timeout_ms,
                                    &batch,
                                )
                                .map(|m| Bytes::from([ASKING, &m].concat())),
                                2,
                            ),
                        };
                        let Some(migrate) = migrate else {
                            continue;
                        };
                        let batch_turn = self.batch.lock().await;
                        if !self.still(m) {
                            return Ok(Pass::Changed);
                        }
                        let reply = call_n(conn, &migrate, replies, call_timeout, source)
                            .await?
                            .pop()
                            .ok_or_else(|| format!("no reply from {source}"))?;
                        drop(batch_turn);
                        tally.found += batch.len() as u64;
                        match Outcome::of(reply.raw()) {
                            Outcome::Moved => self.count_background(m, held.keys, held.bytes),
                            Outcome::NoKey => {}
                            Outcome::Big(_) => return Err("unexpected BIGKEY reply".into()),
                            Outcome::Failed(e) => match touch::cluster_refusal(&e) {
                                Some(refusal) => {
                                    self.note_refusal(&refusal);
                                    tally.waiting += batch.len() as u64;
                                }
                                None => {
                                    return Err(format!(
                                        "MIGRATE from {source} to {dest} failed: {e}"
                                    ))
                                }
                            },
                        }
                        pace.wait(tally.found).await;
                    }
                }
            }
        }
        // Moving back, a pass that found no key proves the cluster empty only if its masters
        // count none either: a key the cluster's own reshard moved from a node not scanned yet
        // to one scanned already was not seen.
        let unseen = match (tally.found, toward) {
            (0, Toward::Pools) => key_count(&mut conns, call_timeout).await?,
            _ => 0,
        };
        self.bump(m, |p| {
            p.passes += 1;
            let waiting = tally.waiting;
            p.last_error = if waiting > 0 {
                Some(format!(
                    "{waiting} keys wait for their slot's reshard inside the cluster to end \
                     (or for their copy in steps under way)"
                ))
            } else if unseen > 0 {
                Some(format!(
                    "the cluster's masters count {unseen} keys the pass did not find (moved inside the cluster meanwhile): looking again"
                ))
            } else {
                None
            };
        });
        Ok(match (tally.pass(), unseen) {
            (Pass::Empty, 1..) => Pass::Waiting,
            (pass, _) => pass,
        })
    }

    /// `keys` grouped by the cluster node owning each one's slot now, with its credentials.
    fn by_node(&self, keys: Vec<Bytes>) -> Vec<NodeKeys> {
        let table = self.topology.table();
        let mut out: Vec<NodeKeys> = Vec::new();
        for key in keys {
            let unit = table.placement().unit_of(&key);
            let Some(shard) = table.shard_of(unit).and_then(|i| table.shards().get(i)) else {
                continue;
            };
            match out.iter_mut().find(|(addr, _, _)| *addr == shard.master) {
                Some((_, _, group)) => group.push(key),
                None => out.push((Arc::clone(&shard.master), shard.auth.clone(), vec![key])),
            }
        }
        out
    }

    /// Aborting, the cluster holds no key: drop the move (the file is the pool-mode one again:
    /// no `to_cluster`, no cluster seeds; pools and placement as they were).
    pub(super) async fn finish_back_to_pools(&self) -> Result<(), String> {
        let mut next = self.reloader.config();
        if next.migration.to_cluster != Some(MoveState::Aborting) {
            return Ok(());
        }
        next.migration.to_cluster = None;
        next.cluster.seeds.clear();
        self.change(
            next,
            "every key moved back from the cluster onto the pools: abort done, serving from the pools",
        )
        .await?;
        // A move started again later begins afresh (its estimate, rate and counts).
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        for state in [MoveState::Moving, MoveState::Aborting] {
            progress.remove(&super::key(&as_move(state)));
        }
        Ok(())
    }

    /// Where a key a request met, too big to move whole, is copied from and to while keys
    /// move onto the cluster: the pool that placed it and the node owning its slot now (each
    /// address with its credentials). `None` once the move ended or turned back (moving back,
    /// big keys move whole).
    pub(super) fn onto_cluster_ends(&self, key: &Bytes) -> Option<(NodeAuth, NodeAuth)> {
        let table = self.topology.table();
        let pools = table.legacy_pools()?;
        let (pool, _) = touch::by_source(pools, std::slice::from_ref(key))
            .into_iter()
            .next()?;
        let source = pools.shards().get(pool)?;
        let unit = table.placement().unit_of(key);
        let dest = table.shard_of(unit).and_then(|i| table.shards().get(i))?;
        Some((
            (Arc::clone(&source.master), source.auth.clone()),
            (Arc::clone(&dest.master), dest.auth.clone()),
        ))
    }

    /// The pools hold no key: serve in plain cluster mode from now on (the file becomes a
    /// cluster-mode one: no pools, no slot map).
    pub(super) async fn finish_onto_cluster(&self) -> Result<(), String> {
        let mut next = self.reloader.config();
        if next.migration.to_cluster.is_none() {
            return Ok(());
        }
        next.migration.to_cluster = None;
        next.pools.clear();
        next.slots.clear();
        next.placement = Default::default();
        self.change(
            next,
            "every key moved from the pools onto the cluster: done, serving in cluster mode",
        )
        .await
    }
}

/// The side keys move from, `toward` the other, for messages.
fn side(toward: Toward) -> &'static str {
    match toward {
        Toward::Cluster => "the pool",
        Toward::Pools => "the cluster node",
    }
}

/// The keys the nodes of `conns` hold (`DBSIZE` of each), within `timeout` each.
async fn key_count(
    conns: &mut [(Arc<str>, DedicatedConn)],
    timeout: Duration,
) -> Result<u64, String> {
    let mut keys = 0;
    for (addr, conn) in conns {
        let reply = call(
            conn,
            Request::from_args([b"DBSIZE" as &[u8]]).raw(),
            timeout,
            addr,
        )
        .await?;
        keys += crate::resp::parse_frame(reply.raw(), &crate::resp::Limits::default())
            .ok()
            .and_then(|f| f.as_int())
            .unwrap_or(0)
            .max(0) as u64;
    }
    Ok(keys)
}

/// `groups` split by the routing unit of `source` their keys are in (a cluster slot).
fn per_unit(source: &SlotTable, groups: Vec<NodeKeys>) -> Vec<NodeKeys> {
    let mut out = Vec::new();
    for (dest, auth, keys) in groups {
        for (_, keys) in touch::by_source(source, &keys) {
            out.push((Arc::clone(&dest), auth.clone(), keys));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_discovered_first_when_the_table_s_kind_changes_toward_it_or_back() {
        let pools = Config::parse("[pools.a]\nmaster = \"127.0.0.1:1\"\n").unwrap();
        let with = |state: Option<MoveState>| {
            let mut c = pools.clone();
            c.migration.to_cluster = state;
            c
        };
        let cluster_mode = Config::parse("[cluster]\nseeds = [\"127.0.0.1:7000\"]\n").unwrap();
        let (moving, paused, aborting) = (
            with(Some(MoveState::Moving)),
            with(Some(MoveState::Paused)),
            with(Some(MoveState::Aborting)),
        );
        // The start, an abort, and what a stale instance adopts from its fleet.
        assert!(stages_cluster(&pools, &moving));
        assert!(stages_cluster(&moving, &aborting));
        assert!(stages_cluster(&paused, &aborting));
        assert!(stages_cluster(&pools, &aborting));
        assert!(stages_cluster(&pools, &cluster_mode));
        assert!(stages_cluster(&aborting, &moving));
        // The same table kind: pause, resume, the move's end, the abort's end.
        assert!(!stages_cluster(&moving, &paused));
        assert!(!stages_cluster(&paused, &moving));
        assert!(!stages_cluster(&moving, &cluster_mode));
        assert!(!stages_cluster(&aborting, &pools));
        assert!(!stages_cluster(&aborting, &aborting));
    }
}
