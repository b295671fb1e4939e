//! Big keys copied in bounded steps (`migration::stepped` has the requests and why no read
//! sees a missing or stale value): each step reads at most `migration.big_key_step` elements
//! on the source and appends them to a staging key on the destination; the copy is put in
//! place, then the source's key unlinked. The mover copies the big keys it finds (between
//! pools, and from the pools onto a cluster, to the node owning the key's slot); beside it,
//! the copier copies those a request met first (`touch::Outcome::Big`). Meanwhile this
//! instance's requests for the key wait (`topology::SteppedCopy`) rather than move it whole.
//! A cluster node that refuses a step (`MOVED`, `ASK` … : the slot being resharded) ends the
//! copy with the key still on the source, for a later pass (`Stepped::Refused`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::mover::Tally;
use super::Migrations;
use crate::backend::dedicated::DedicatedConn;
use crate::backend::Credentials;
use crate::config::SlotMove;
use crate::migration::measure::Size;
use crate::migration::stepped::{self, Cursor, Kind};
use crate::migration::touch::{self, Refusal};
use crate::resp::{parse_frame, Frame, Limits};

/// The destination of a pass's big keys: its address and credentials, and a connection to it
/// opened for the first big key.
pub(super) struct Destination {
    pub addr: Arc<str>,
    pub auth: Option<Arc<Credentials>>,
    pub conn: Option<DedicatedConn>,
}

/// What became of a big key.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stepped {
    /// Copied and put in place; the source's unlinked.
    Moved,
    /// Not on the source any more (moved by a request, expired): nothing to do.
    Gone,
    /// Not a kind copied in steps (a stream, a module type): it moves whole, with `MIGRATE`.
    Whole,
    /// Given up (the move changed phase, or the key is being copied already): any staging
    /// copy dropped, the key still on the source.
    GaveUp,
    /// The destination, a cluster node, refused a step (the key's slot is being resharded
    /// inside the cluster, or is another node's now): given up as above, to be tried again.
    Refused(Refusal),
}

/// How a pass copies big keys.
pub(super) struct StepSettings {
    /// Keys measured at this many bytes or more are copied in steps (0: none).
    pub big_key_bytes: u64,
    /// Elements per step.
    pub step: u64,
    /// Each call's timeout.
    pub timeout: Duration,
}

impl StepSettings {
    /// A pass's settings by `config`.
    pub(super) fn of(config: &crate::config::Config) -> StepSettings {
        StepSettings {
            big_key_bytes: config.migration.big_key_bytes,
            step: config.migration.big_key_step,
            timeout: Duration::from_millis(
                config.migration.timeout_ms + config.backend.request_timeout_ms,
            ),
        }
    }
}

impl Migrations {
    /// Copy in steps the keys of `batch` that `sizes` (the source's `MEMORY USAGE` of each)
    /// says are `settings.big_key_bytes` or more, from `source` to `dest`, counting them in
    /// `tally` (found; waiting: left on the source for now, refused by the cluster or being
    /// copied by the copier) and those moved in the progress. The others, left for one
    /// `MIGRATE`, with their sizes; `None` when the move changed phase (the pass stops).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_big_ones(
        &self,
        source: &mut DedicatedConn,
        dest: &mut Destination,
        db: u32,
        batch: &[Bytes],
        sizes: Vec<Size>,
        m: &SlotMove,
        settings: &StepSettings,
        tally: &mut Tally,
    ) -> Result<Option<Vec<(Bytes, Size)>>, String> {
        let mut rest = Vec::with_capacity(batch.len());
        for (key, size) in batch.iter().zip(sizes) {
            if !size.at_least(settings.big_key_bytes) {
                rest.push((key.clone(), size));
                continue;
            }
            tally.found += 1;
            match self
                .move_in_steps(source, dest, db, key, m, settings)
                .await?
            {
                Stepped::Moved => {
                    let bytes = match size {
                        Size::Bytes(n) => n,
                        _ => 0,
                    };
                    self.count_background(m, 1, bytes);
                }
                Stepped::Whole => rest.push((key.clone(), size)),
                Stepped::Gone => {}
                Stepped::GaveUp if !self.still(m) => return Ok(None),
                // Copied by the copier right now: the next pass looks again.
                Stepped::GaveUp => tally.waiting += 1,
                Stepped::Refused(refusal) => {
                    self.note_refusal(&refusal);
                    tally.waiting += 1;
                }
            }
        }
        Ok(Some(rest))
    }

    /// A cluster node refused keys: on `MOVED`, the slot's new owner patched in the table and
    /// a refresh asked for.
    pub(super) fn note_refusal(&self, refusal: &Refusal) {
        if let Refusal::Moved { slot, addr } = refusal {
            self.topology.patch_moved(*slot, addr);
            self.topology.request_refresh();
        }
    }

    /// Move `key` of database `db` from the source behind `source` to `dest` in steps.
    pub(super) async fn move_in_steps(
        &self,
        source: &mut DedicatedConn,
        dest: &mut Destination,
        db: u32,
        key: &Bytes,
        m: &SlotMove,
        settings: &StepSettings,
    ) -> Result<Stepped, String> {
        let Some(copying) = self.topology.stepped_copy().begin(db, key.clone()) else {
            return Ok(Stepped::GaveUp); // copied by the other task of this instance right now
        };
        let started = Instant::now();
        let result = async {
            let timeout = settings.timeout;
            let begun = exchange(source, &stepped::begin(key), 3, timeout).await?;
            let (Frame::Simple(type_name), Frame::Integer(pttl)) = (&begun[1], &begun[2]) else {
                return Err(format!("unexpected TYPE/PTTL replies {:?}", &begun[1..]));
            };
            let Some(kind) = Kind::of(type_name) else {
                exchange(source, stepped::give_up().raw(), 1, timeout).await?;
                return Ok(if &type_name[..] == b"none" {
                    Stepped::Gone
                } else {
                    Stepped::Whole
                });
            };
            // The key's time to live, as an instant (PTTL -1: none; -2 cannot be: TYPE saw it).
            let expires = u64::try_from(*pttl)
                .ok()
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            let conn = match &mut dest.conn {
                Some(conn) => conn,
                None => dest.conn.insert(
                    self.connect_to(&dest.addr, dest.auth.clone())
                        .await
                        .map_err(|e| format!("cannot reach the destination {}: {e}", dest.addr))?,
                ),
            };
            conn.select(db)
                .await
                .map_err(|e| format!("{}: SELECT {db}: {e}", dest.addr))?;
            let staging = stepped::staging_name(&self.staging_tag, key);
            let outcome = self
                .steps(source, conn, kind, key, &staging, expires, m, settings)
                .await;
            if !matches!(outcome, Ok(Stepped::Moved)) {
                // Best effort: a staging copy left behind expires by itself within a minute.
                let _ = exchange(conn, &stepped::drop_staging(&staging), 2, timeout).await;
                let _ = exchange(source, stepped::give_up().raw(), 1, timeout).await;
            }
            outcome
        }
        .await;
        drop(copying);
        if result.is_err() {
            // It may hold an unread reply: the next big key opens another.
            dest.conn = None;
        }
        let src = Arc::clone(source.addr());
        match &result {
            Ok(Stepped::Moved) => tracing::info!(source = %src, dest = %dest.addr, db,
                key = %String::from_utf8_lossy(key), took_ms = started.elapsed().as_millis() as u64,
                "migration mover: big key copied in steps"),
            Ok(Stepped::GaveUp) => tracing::info!(source = %src, db,
                key = %String::from_utf8_lossy(key),
                "migration mover: big key's copy in steps given up"),
            Ok(Stepped::Refused(refusal)) => tracing::info!(source = %src, dest = %dest.addr,
                db, key = %String::from_utf8_lossy(key), ?refusal,
                "migration mover: big key's copy in steps refused by the cluster (its slot is being resharded); tried again later"),
            _ => {}
        }
        result
    }

    /// The steps of a copy and its end (see `migration::stepped`).
    #[allow(clippy::too_many_arguments)]
    async fn steps(
        &self,
        source: &mut DedicatedConn,
        dest: &mut DedicatedConn,
        kind: Kind,
        key: &Bytes,
        staging: &Bytes,
        expires: Option<Instant>,
        m: &SlotMove,
        settings: &StepSettings,
    ) -> Result<Stepped, String> {
        let timeout = settings.timeout;
        let dropped = exchange(dest, &stepped::drop_staging(staging), 2, timeout).await?;
        if let Some(refusal) = stepped::first_error(&dropped).and_then(touch::refusal) {
            return Ok(Stepped::Refused(refusal));
        }
        let mut cursor = Cursor::start(kind);
        loop {
            if !self.still(m) {
                return Ok(Stepped::GaveUp);
            }
            let read = stepped::read(kind, key, &cursor, settings.step);
            let reply = exchange(source, read.raw(), 1, timeout).await?;
            let reply = reply.into_iter().next().unwrap_or(Frame::Null);
            let step = stepped::parse_read(kind, &cursor, settings.step, reply)
                .map_err(|e| format!("{}: {e}", source.addr()))?;
            if let Some(write) = stepped::write(kind, staging, &step.items) {
                let replies = exchange(dest, &write, stepped::WRITE_REPLIES, timeout).await?;
                if let Some(refusal) = refused(dest, &replies, "a step")? {
                    return Ok(Stepped::Refused(refusal));
                }
            }
            match step.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        // The end: no phase change while the copy is put in place.
        let _turn = self.batch.lock().await;
        if !self.still(m) {
            return Ok(Stepped::GaveUp);
        }
        let watched = exchange(dest, stepped::watch(key).raw(), 1, timeout).await?;
        if let Some(refusal) = refused(dest, &watched, "WATCH")? {
            return Ok(Stepped::Refused(refusal));
        }
        let checked = exchange(source, &stepped::check_untouched(key), 3, timeout).await?;
        if !stepped::untouched(&checked[2]) {
            return Ok(Stepped::Gone);
        }
        let ttl = match expires {
            None => None,
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left.as_millis() as u64),
                _ => return Ok(Stepped::Gone), // expired on the source by now
            },
        };
        let put = stepped::put_in_place(staging, key, ttl);
        let replies = exchange(dest, &put, 4, timeout).await?;
        // A command refused as it was queued aborts the EXEC, and an EXEC whose slot moved
        // since is refused itself: either way nothing was put in place.
        if let Some(refusal) = stepped::first_error(&replies).and_then(touch::refusal) {
            return Ok(Stepped::Refused(refusal));
        }
        let exec = replies.into_iter().last().unwrap_or(Frame::Null);
        if !stepped::placed(exec).map_err(|e| format!("{}: {e}", dest.addr()))? {
            return Ok(Stepped::Gone);
        }
        exchange(source, stepped::retire(key).raw(), 1, timeout).await?;
        Ok(Stepped::Moved)
    }

    /// Beside the mover: copy in steps each big key a request met (`touch::Outcome::Big`),
    /// on every instance of a fleet (the requests waiting for it are this instance's).
    pub(super) async fn copy_wanted(self: Arc<Self>) {
        loop {
            for (db, key) in self.topology.stepped_copy().wanted().await {
                if let Err(e) = self.copy_wanted_key(db, &key).await {
                    tracing::warn!(db, key = %String::from_utf8_lossy(&key),
                        "big key's copy in steps failed: {e}; a request for it retries");
                }
            }
        }
    }

    /// Copy `key` of database `db`, which a request met on the source of its move.
    async fn copy_wanted_key(&self, db: u32, key: &Bytes) -> Result<(), String> {
        let config = self.reloader.config();
        let (m, (source_addr, source_auth), (dest_addr, dest_auth)) =
            match config.migration.to_cluster {
                Some(state) => match self.onto_cluster_ends(key) {
                    Some((source, dest)) => (super::onto_cluster::as_move(state), source, dest),
                    None => return Ok(()), // the move ended meanwhile
                },
                None => {
                    let unit = self.topology.table().placement().unit_of(key).get();
                    let Some(m) = config.migration.moves.iter().find(|m| {
                        m.range()
                            .is_some_and(|(first, last)| (first..=last).contains(&unit))
                    }) else {
                        return Ok(()); // the move ended meanwhile
                    };
                    let (to, from) = m.direction();
                    let ends = (self.pool_node(&config, from)?, self.pool_node(&config, to)?);
                    (m.clone(), ends.0, ends.1)
                }
            };
        let m = &m;
        let mut source = self
            .connect_to(&source_addr, source_auth)
            .await
            .map_err(|e| format!("cannot reach {source_addr}: {e}"))?;
        source
            .select(db)
            .await
            .map_err(|e| format!("{source_addr}: SELECT {db}: {e}"))?;
        let mut dest = Destination {
            addr: dest_addr,
            auth: dest_auth,
            conn: None,
        };
        let settings = StepSettings::of(&config);
        let moved = self
            .move_in_steps(&mut source, &mut dest, db, key, m, &settings)
            .await?;
        match moved {
            Stepped::Moved => self.topology.move_counters().moved_on_touch(),
            Stepped::Refused(refusal) => self.note_refusal(&refusal),
            _ => {}
        }
        Ok(())
    }

    /// A connection of the mover's own to `addr`.
    pub(super) async fn connect_to(
        &self,
        addr: &Arc<str>,
        auth: Option<Arc<Credentials>>,
    ) -> Result<DedicatedConn, crate::backend::BackendError> {
        let config = self.reloader.config();
        DedicatedConn::connect(
            Arc::clone(addr),
            Duration::from_millis(config.backend.connect_timeout_ms),
            config.protocol.limits(),
            auth,
            false,
            self.tls.backend(),
        )
        .await
    }
}

/// The destination `dest`'s refusal among its `replies` to `what`: `Ok(None)` if it took
/// them, `Ok(Some(_))` for a cluster node's `MOVED`, `ASK`, `TRYAGAIN` …, `Err` for another
/// error.
fn refused(dest: &DedicatedConn, replies: &[Frame], what: &str) -> Result<Option<Refusal>, String> {
    match stepped::first_error(replies) {
        None => Ok(None),
        Some(error) => touch::refusal(error).map(Some).ok_or_else(|| {
            let error = String::from_utf8_lossy(error);
            format!("{} refused {what}: {error}", dest.addr())
        }),
    }
}

/// Send `bytes` (`replies` requests) on `conn` and parse their replies, within `timeout`.
async fn exchange(
    conn: &mut DedicatedConn,
    bytes: &[u8],
    replies: usize,
    timeout: Duration,
) -> Result<Vec<Frame>, String> {
    let addr = Arc::clone(conn.addr());
    let replies = match tokio::time::timeout(timeout, conn.call(bytes, replies)).await {
        Ok(Ok(replies)) => replies,
        Ok(Err(e)) => return Err(format!("{addr}: {e}")),
        Err(_) => return Err(format!("no reply from {addr} within {timeout:?}")),
    };
    replies
        .iter()
        .map(|r| parse_frame(r.raw(), &Limits::default()).map_err(|e| format!("{addr}: {e}")))
        .collect()
}
