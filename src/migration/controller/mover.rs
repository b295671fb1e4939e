//! The background mover: empties each move's source pool (a `SCAN` of every database it
//! holds, the range's keys moved in batches of `MIGRATE`, throttled), and ends the move when
//! a whole pass finds none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::big_keys::{Destination, StepSettings};
use super::{key, Migrations, MoveProgress};
use crate::backend::dedicated::DedicatedConn;
use crate::backend::Credentials;
use crate::config::{Config, MoveState, SlotMove};
use crate::migration::fleet;
use crate::migration::measure;
use crate::migration::persist;
use crate::migration::touch::{self, Outcome};
use crate::resp::{Frame, Request};

impl Migrations {
    /// The background mover: forever, empty the source of each move that is moving or
    /// aborting, and end the move when its source holds none of its keys; beside it, copy in
    /// steps the big keys requests met. Paused moves and an idle proxy cost nothing but a
    /// wait.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(Arc::clone(&self).move_keys(), self.copy_wanted());
    }

    /// The background mover's loop (see [`Migrations::run`]).
    async fn move_keys(self: Arc<Self>) {
        loop {
            let config = self.reloader.config();
            let onto_cluster = config
                .migration
                .to_cluster
                .filter(|s| *s != MoveState::Paused)
                .map(super::onto_cluster::as_move);
            let Some(m) = config
                .migration
                .moves
                .iter()
                .find(|m| m.state != MoveState::Paused)
                .cloned()
                .or(onto_cluster)
            else {
                self.wake.notified().await;
                continue;
            };
            if !self.leads(&config).await {
                // Another instance of the fleet moves the keys; look again in a second.
                self.pause_after_error().await;
                continue;
            }
            let onto_cluster = config.migration.to_cluster.is_some();
            let pass = if onto_cluster {
                self.pass_onto_cluster(&config, &m).await
            } else {
                self.pass(&config, &m).await
            };
            match pass {
                Ok(Pass::Empty) => {
                    let finished = match (onto_cluster, m.state) {
                        (true, MoveState::Aborting) => self.finish_back_to_pools().await,
                        (true, _) => self.finish_onto_cluster().await,
                        (false, _) => self.finish(&m).await,
                    };
                    if let Err(e) = finished {
                        self.note_error(&m, e);
                        self.pause_after_error().await;
                    }
                }
                Ok(Pass::Moved | Pass::Changed) => {}
                Ok(Pass::Waiting) => {
                    // Keys wait for a reshard inside the cluster: look again shortly.
                    let wait = self.wake.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(100), wait).await;
                }
                Err(e) => {
                    self.topology.move_counters().background_failed();
                    tracing::warn!(slots = %m.slots, "migration mover: {e}; retrying");
                    self.note_error(&m, e);
                    self.pause_after_error().await;
                }
            }
        }
    }

    /// True when this instance runs the fleet's mover: no peer whose admin address sorts
    /// before this one's answers (alone, it always does). One mover per fleet spares the
    /// source; if it dies, the next takes over within a second. Addresses written differently
    /// on different instances (a name here, an IP there) can make two lead: harmless, their
    /// `MIGRATE`s of the same key are answered `NOKEY`.
    async fn leads(&self, config: &Config) -> bool {
        let me = config.admin.listen.as_str();
        for peer in config.fleet.peers.iter().filter(|p| p.as_str() < me) {
            if fleet::state(peer, Duration::from_secs(1)).await.is_ok() {
                return false;
            }
        }
        true
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
        let (source, source_auth) = self.pool_node(config, from)?;
        let (dest, dest_auth) = self.pool_node(config, to)?;
        let settings = &config.migration;
        let mut conn = self
            .connect_to(&source, source_auth)
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
        let mut destination = Destination {
            addr: Arc::clone(&dest),
            auth: dest_auth.clone(),
            conn: None,
        };
        let steps = StepSettings::of(config);
        let mut tally = Tally::default();
        let pace = Pace::new(settings.keys_per_second);
        for &(db, _) in &databases {
            conn.select(db)
                .await
                .map_err(|e| format!("{source}: SELECT {db}: {e}"))?;
            let mut scan = KeyScan::new(settings.scan_count);
            loop {
                if !self.still(m) {
                    return Ok(Pass::Changed);
                }
                let Some(keys) = scan.next(&mut conn, call_timeout, &source).await? else {
                    break;
                };
                let scanned = keys.len() as u64;
                let keys: Vec<Bytes> = keys
                    .into_iter()
                    .filter(|k| (first..=last).contains(&placement.unit_of(k).get()))
                    .collect();
                self.bump(m, |p| p.scanned += scanned);
                for batch in keys.chunks(settings.batch_keys) {
                    // Big keys are copied in steps; the others leave in one MIGRATE.
                    let sizes = if settings.big_key_bytes == 0 {
                        vec![measure::Size::Unknown; batch.len()]
                    } else {
                        measure::batch(&mut conn, batch, call_timeout, &source).await?
                    };
                    let to = &mut destination;
                    let rest =
                        self.copy_big_ones(&mut conn, to, db, batch, sizes, m, &steps, &mut tally);
                    let Some(rest) = rest.await? else {
                        return Ok(Pass::Changed);
                    };
                    let batch: Vec<Bytes> = rest.into_iter().map(|(k, _)| k).collect();
                    let Some(migrate) = touch::migrate_request(
                        &dest,
                        dest_auth.as_deref(),
                        db,
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
                    // Measured again in the MIGRATE's own write: the source runs both back to
                    // back, so a key moved on touch just before is not counted here too.
                    let mut both = measure::requests(&batch);
                    both.extend_from_slice(&migrate);
                    let mut replies =
                        call_n(&mut conn, &both, batch.len() + 1, call_timeout, &source).await?;
                    drop(batch_turn);
                    let reply = replies
                        .pop()
                        .ok_or_else(|| format!("no reply from {source}"))?;
                    match Outcome::of(reply.raw()) {
                        outcome @ (Outcome::Moved | Outcome::NoKey) => {
                            tally.found += batch.len() as u64;
                            // What the source held of the batch just before (on NOKEY: none).
                            if outcome == Outcome::Moved {
                                let held = measure::total(&measure::sizes(&replies));
                                self.count_background(m, held.keys, held.bytes);
                            }
                        }
                        Outcome::Failed(e) => {
                            return Err(format!("MIGRATE from {source} to {dest} failed: {e}"))
                        }
                        Outcome::Big(_) => return Err("unexpected BIGKEY reply".into()),
                    }
                    pace.wait(tally.found).await;
                }
            }
        }
        self.bump(m, |p| {
            p.passes += 1;
            p.last_error = None;
        });
        Ok(tally.pass())
    }

    /// The master of pool `pool` (as Sentinel names it, for a pool that follows one) and its
    /// credentials.
    pub(super) fn pool_node(
        &self,
        config: &Config,
        pool: &str,
    ) -> Result<(Arc<str>, Option<Arc<Credentials>>), String> {
        let p = config.pools.get(pool).ok_or(format!("no pool {pool:?}"))?;
        let master = if p.uses_sentinel() {
            self.topology
                .sentinel_masters()
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
    }

    /// Count `keys` keys of `bytes` bytes moved by the mover for `m`.
    pub(super) fn count_background(&self, m: &SlotMove, keys: u64, bytes: u64) {
        let counters = self.topology.move_counters();
        counters.moved_in_background(keys);
        counters.moved_bytes_in_background(bytes);
        self.bump(m, |p| {
            p.moved += keys;
            p.bytes += bytes;
        });
    }

    /// True while `m` is still a move in force in the same state.
    pub(super) fn still(&self, m: &SlotMove) -> bool {
        let config = self.reloader.config();
        config.migration.moves.contains(m)
            || config
                .migration
                .to_cluster
                .map(super::onto_cluster::as_move)
                .as_ref()
                == Some(m)
    }

    /// The progress of `m` so far, if the mover began on it.
    pub(super) fn progress_of(&self, m: &SlotMove) -> Option<MoveProgress> {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.get(&key(m)).cloned()
    }

    pub(super) fn bump(&self, m: &SlotMove, f: impl FnOnce(&mut MoveProgress)) {
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

/// What one pass of the mover found.
pub(super) enum Pass {
    /// No key of the slots was on the source for the whole pass.
    Empty,
    /// Keys were moved: another pass checks the source is empty.
    Moved,
    /// The move changed phase (paused, aborted …) during the pass.
    Changed,
    /// Keys were found that the destination refused for a while (a reshard inside the
    /// cluster), or that the copier was copying in steps: another pass shortly.
    Waiting,
}

/// Keys one pass of the mover found, and those of them it left on the source for now.
#[derive(Default)]
pub(super) struct Tally {
    /// Keys found (moved, gone, or left waiting).
    pub found: u64,
    /// Keys left on the source for a while: the cluster refused them (a reshard inside it), or
    /// the copier was copying them in steps.
    pub waiting: u64,
}

impl Tally {
    /// What the pass found, once it is over.
    pub(super) fn pass(&self) -> Pass {
        match (self.found, self.waiting) {
            (0, _) => Pass::Empty,
            (_, 0) => Pass::Moved,
            _ => Pass::Waiting,
        }
    }
}

/// At most `per_second` keys a second (0: no limit), from the pace's creation.
pub(super) struct Pace {
    per_second: u64,
    start: tokio::time::Instant,
}

impl Pace {
    pub(super) fn new(per_second: u64) -> Pace {
        Pace {
            per_second,
            start: tokio::time::Instant::now(),
        }
    }

    pub(super) async fn wait(&self, done: u64) {
        if self.per_second == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(done as f64 / self.per_second as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// Send `request` on `conn` and take its one reply, within `timeout`.
pub(super) async fn call(
    conn: &mut DedicatedConn,
    request: &[u8],
    timeout: Duration,
    addr: &str,
) -> Result<crate::resp::Reply, String> {
    call_n(conn, request, 1, timeout, addr)
        .await?
        .pop()
        .ok_or_else(|| format!("no reply from {addr}"))
}

/// Send `requests` (`n` of them) on `conn` and take their replies, within `timeout`.
pub(super) async fn call_n(
    conn: &mut DedicatedConn,
    requests: &[u8],
    n: usize,
    timeout: Duration,
    addr: &str,
) -> Result<Vec<crate::resp::Reply>, String> {
    match tokio::time::timeout(timeout, conn.call(requests, n)).await {
        Ok(Ok(replies)) => Ok(replies),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!(
            "no reply from {addr} within {} ms",
            timeout.as_millis()
        )),
    }
}

/// A whole `SCAN` of a source's current database, a page at a time.
pub(super) struct KeyScan {
    /// The next page's cursor; `None` once the scan came back to 0.
    cursor: Option<Bytes>,
    count: String,
}

impl KeyScan {
    /// A scan asking `count` keys per page (the `COUNT` hint).
    pub(super) fn new(count: usize) -> KeyScan {
        KeyScan {
            cursor: Some(Bytes::from_static(b"0")),
            count: count.to_string(),
        }
    }

    /// The next page's keys from `conn` (`addr`), within `timeout`; `None` when the scan is
    /// complete.
    pub(super) async fn next(
        &mut self,
        conn: &mut DedicatedConn,
        timeout: Duration,
        addr: &str,
    ) -> Result<Option<Vec<Bytes>>, String> {
        let Some(cursor) = self.cursor.take() else {
            return Ok(None);
        };
        let scan = Request::from_args([b"SCAN" as &[u8], &cursor, b"COUNT", self.count.as_bytes()]);
        let reply = call(conn, scan.raw(), timeout, addr).await?;
        let (next, keys) =
            scan_reply(&reply).ok_or_else(|| format!("unexpected SCAN reply from {addr}"))?;
        self.cursor = (&next[..] != b"0").then_some(next);
        Ok(Some(keys))
    }
}

/// `(next cursor, keys)` of a SCAN reply.
pub(super) fn scan_reply(reply: &crate::resp::Reply) -> Option<(Bytes, Vec<Bytes>)> {
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
