//! Keys moving from the pools (Twemproxy's ketama placement, or a slot map) onto a Redis
//! Cluster (`migration.to_cluster`): its phase changes (start, pause, resume; the end, which
//! leaves a cluster-mode configuration) and the background mover's pass over every pool.
//!
//! The same controller as moves between pools: each phase change holds, settles, persists and
//! installs (`Migrations::change`), on every instance of a fleet. While the move is in force
//! the table is the cluster's with every slot moving from the pools (`topology::Moving`):
//! requests move the keys they touch first (`router::moving`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::big_keys::{Destination, StepSettings};
use super::mover::{call, KeyScan, Pace, Pass, Tally};
use super::Migrations;
use crate::backend::dedicated::DedicatedConn;
use crate::config::{Config, MoveState, SlotMove};
use crate::migration::measure;
use crate::migration::touch::{self, Outcome, Refusal};
use crate::resp::Request;
use crate::slot::SLOT_COUNT;

/// A cluster node's address and credentials, and keys to move there.
type NodeKeys = (
    Arc<str>,
    Option<Arc<crate::backend::Credentials>>,
    Vec<Bytes>,
);

/// A node's address and credentials.
type NodeAuth = (Arc<str>, Option<Arc<crate::backend::Credentials>>);

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

    /// Pause (`Paused`: only touched keys move) or resume (`Moving`) the move onto the
    /// cluster. It cannot be aborted: pausing keeps every key readable where it is.
    pub(super) async fn set_to_cluster_state(&self, state: MoveState) -> Result<String, String> {
        let mut next = self.reloader.config();
        let current = next.migration.to_cluster;
        match (current, state) {
            (_, MoveState::Aborting) => {
                return Err("a move onto a cluster is not aborted: `slotgate migrate pause` stops the mover, and every key stays readable (docs/FROM-TWEMPROXY.md)".into())
            }
            (Some(now), wanted) if now == wanted => {
                return Err(format!("the move onto the cluster is already {}", now.name()))
            }
            (None, _) => return Err("no move onto a cluster is in force".into()),
            _ => {}
        }
        next.migration.to_cluster = Some(state);
        let why = format!(
            "keys moving from the pools onto the cluster now {}",
            state.name()
        );
        self.change(next, &why).await?;
        Ok(why)
    }

    /// One pass of the mover over every pool: each key found is moved to the cluster node
    /// owning its slot, in batches per node; big keys (`migration.big_key_bytes`) are copied
    /// there in steps. Keys the cluster refuses for a while (their slot being resharded
    /// inside it: `ASK`; an owner that changed: `MOVED`, the table patched) are left for the
    /// next pass.
    pub(super) async fn pass_onto_cluster(
        &self,
        config: &Config,
        m: &SlotMove,
    ) -> Result<Pass, String> {
        let Some(pools) = self.topology.table().legacy_pools().cloned() else {
            return Ok(Pass::Changed);
        };
        let settings = &config.migration;
        let timeout = Duration::from_millis(config.backend.connect_timeout_ms);
        let call_timeout =
            Duration::from_millis(settings.timeout_ms + config.backend.request_timeout_ms);
        let mut conns = Vec::new();
        for pool in pools.shards() {
            let conn = DedicatedConn::connect(
                Arc::clone(&pool.master),
                timeout,
                config.protocol.limits(),
                pool.auth.clone(),
                false,
                self.tls.backend(),
            )
            .await
            .map_err(|e| format!("cannot reach the pool at {}: {e}", pool.master))?;
            conns.push((Arc::clone(&pool.master), conn));
        }
        let fresh = self.progress_of(m).is_none_or(|p| p.started.is_none());
        if fresh {
            let mut keys = 0;
            for (addr, conn) in &mut conns {
                let reply = call(
                    conn,
                    Request::from_args([b"DBSIZE" as &[u8]]).raw(),
                    call_timeout,
                    addr,
                )
                .await?;
                keys += crate::resp::parse_frame(reply.raw(), &crate::resp::Limits::default())
                    .ok()
                    .and_then(|f| f.as_int())
                    .unwrap_or(0)
                    .max(0) as u64;
            }
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
                for (dest, auth, keys) in self.by_node(keys) {
                    let node = match nodes.iter().position(|d| d.addr == dest) {
                        Some(i) => i,
                        None => {
                            nodes.push(Destination {
                                addr: Arc::clone(&dest),
                                auth: auth.clone(),
                                conn: None,
                            });
                            nodes.len() - 1
                        }
                    };
                    for batch in keys.chunks(settings.batch_keys) {
                        let sizes = measure::batch(conn, batch, call_timeout, source).await?;
                        let dest_conn = &mut nodes[node];
                        let rest = self
                            .copy_big_ones(conn, dest_conn, 0, batch, sizes, m, &steps, &mut tally);
                        let Some(rest) = rest.await? else {
                            return Ok(Pass::Changed);
                        };
                        let (batch, sizes): (Vec<Bytes>, Vec<measure::Size>) =
                            rest.into_iter().unzip();
                        let held = measure::total(&sizes);
                        let Some(migrate) = touch::migrate_request(
                            &dest,
                            auth.as_deref(),
                            0,
                            settings.timeout_ms,
                            &batch,
                            0, // measured above: the big ones were copied in steps
                        ) else {
                            continue;
                        };
                        let batch_turn = self.batch.lock().await;
                        if !self.still(m) {
                            return Ok(Pass::Changed);
                        }
                        let reply = call(conn, &migrate, call_timeout, source).await?;
                        drop(batch_turn);
                        tally.found += batch.len() as u64;
                        match Outcome::of(reply.raw()) {
                            Outcome::Moved => self.count_background(m, held.keys, held.bytes),
                            Outcome::NoKey => {}
                            Outcome::Big(_) => return Err("unexpected BIGKEY reply".into()),
                            Outcome::Failed(e) => match touch::cluster_refusal(&e) {
                                Some(Refusal::Moved { slot, addr }) => {
                                    self.topology.patch_moved(slot, &addr);
                                    self.topology.request_refresh();
                                    tally.waiting += batch.len() as u64;
                                }
                                Some(Refusal::Wait) => tally.waiting += batch.len() as u64,
                                _ => {
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
        self.bump(m, |p| {
            p.passes += 1;
            let waiting = tally.waiting;
            p.last_error = (waiting > 0).then(|| {
                format!(
                    "{waiting} keys wait for their slot's reshard inside the cluster to end \
                     (or for their copy in steps under way)"
                )
            });
        });
        Ok(tally.pass())
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

    /// Where a key a request met, too big to move whole, is copied from and to while keys
    /// move onto the cluster: the pool that placed it and the node owning its slot now (each
    /// address with its credentials). `None` once the move ended.
    pub(super) fn onto_cluster_ends(&self, key: &Bytes) -> Option<(NodeAuth, NodeAuth)> {
        let table = self.topology.table();
        let pools = table.legacy_pools()?;
        let (pool, _) = touch::by_pool(pools, std::slice::from_ref(key))
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
