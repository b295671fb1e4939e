//! WAIT numreplicas timeout, on the master the client last wrote to.
//!
//! Redis' own WAIT counts the acknowledgements of the calling *connection's* last write. The
//! client's writes travel on connections shared with other clients, and running WAIT on one of
//! those would stall them all, so slotgate instead reads the master's replication offset
//! (`INFO replication`) on a dedicated connection — every write the client was answered for
//! is at or below it — and polls `ROLE` until enough replicas have acknowledged that offset or
//! the timeout passes. The guarantee is the same (or stronger: writes of other clients up to
//! that point are covered too). The cost: replicas report acknowledgements about once a
//! second, so a WAIT that needs them returns within about a second instead of at once.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::WorkerContext;
use crate::backend::dedicated::Lease;
use crate::placement::Unit;
use crate::resp::{parse_frame, Frame};
use crate::topology::discovery::info_field;

use super::dispatch::error;
use super::pinned::{bounded, on_master};

const INFO_REPLICATION: &[u8] = b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n";
const ROLE: &[u8] = b"*1\r\n$4\r\nROLE\r\n";
/// Pause between two `ROLE` polls.
const POLL: Duration = Duration::from_millis(10);

/// Serve `WAIT numreplicas timeout` for a client whose last write went to the slots `wrote`
/// (any master if it has not written). A write split over several masters (MSET, DEL …) or
/// sent to all (FLUSHALL) is waited for on each of them in turn (one deadline for all), and
/// the answer is the smallest count: the number of replicas, per master, that hold all of it.
pub(super) async fn wait(worker: &WorkerContext, wrote: &[Unit], args: &[&[u8]]) -> Bytes {
    let number = |i: usize| {
        args.get(i)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.parse::<i64>().ok())
    };
    let Some(wanted) = number(1) else {
        return error("ERR value is not an integer or out of range");
    };
    let Some(timeout_ms) = number(2) else {
        return error("ERR timeout is not an integer or out of range");
    };
    if timeout_ms < 0 {
        return error("ERR timeout is negative");
    }
    let give_up =
        (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
    let units = one_slot_per_master(worker, wrote);
    let mut least = None;
    // One master after the other under the one deadline: the whole WAIT still ends by it.
    for unit in units
        .iter()
        .map(|&s| Some(s))
        .chain(units.is_empty().then_some(None))
    {
        match wait_on(worker, unit, wanted, give_up).await {
            Ok(acked) => least = Some(least.map_or(acked, |l: usize| l.min(acked))),
            Err(reply) => return reply,
        }
    }
    Bytes::from(format!(":{}\r\n", least.unwrap_or(0)))
}

/// `wrote` with at most one slot for each master that serves them now.
fn one_slot_per_master(worker: &WorkerContext, wrote: &[Unit]) -> Vec<Unit> {
    let table = worker.router().table();
    let mut seen = Vec::new();
    let mut units = Vec::new();
    for &unit in wrote {
        let shard = table.shard_of(unit);
        if !seen.contains(&shard) {
            seen.push(shard);
            units.push(unit);
        }
    }
    units
}

/// Wait on the master of `slot` until `wanted` replicas acknowledged its replication offset
/// as of now, or `give_up` passes (never, if `None`); how many did.
async fn wait_on(
    worker: &WorkerContext,
    unit: Option<Unit>,
    wanted: i64,
    give_up: Option<Instant>,
) -> Result<usize, Bytes> {
    let request_timeout = Some(worker.settings().request_timeout);
    let (mut conn, replies) = on_master(
        worker,
        unit,
        INFO_REPLICATION,
        1,
        request_timeout,
        Lease::default(),
    )
    .await?;
    let target = replies
        .first()
        .and_then(|r| parse_frame(r.raw(), &worker.settings().limits).ok())
        .and_then(|f| {
            f.as_bytes()
                .and_then(|text| info_field(text, "master_repl_offset"))
        });
    let Some(target) = target else {
        return Err(error(
            "ERR slotgate: WAIT could not read the master's replication offset",
        ));
    };
    let addr = conn.addr().clone();
    loop {
        let acked = match bounded(request_timeout, conn.call(ROLE, 1), &addr).await {
            Ok(replies) => replies
                .first()
                .and_then(|r| parse_frame(r.raw(), &worker.settings().limits).ok())
                .map_or(0, |role| replicas_at(&role, target)),
            Err(e) => return Err(e.to_reply()),
        };
        let done = acked as i64 >= wanted || give_up.is_some_and(|at| Instant::now() >= at);
        if done {
            worker.router().give_back(conn);
            return Ok(acked);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// In a master's `ROLE` reply, the replicas that acknowledged `offset`.
fn replicas_at(role: &Frame, offset: u64) -> usize {
    let Some([_, _, Frame::Array(replicas)]) = role.as_array() else {
        return 0;
    };
    replicas
        .iter()
        .filter_map(|r| r.as_array()?.get(2)?.as_bytes().cloned())
        .filter_map(|o| std::str::from_utf8(&o).ok()?.parse::<u64>().ok())
        .filter(|&acked| acked >= offset)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_replicas_at_or_past_the_offset() {
        let replica = |offset: &str| {
            Frame::Array(vec![
                Frame::Bulk(Bytes::from_static(b"127.0.0.1")),
                Frame::Bulk(Bytes::from_static(b"7001")),
                Frame::Bulk(Bytes::copy_from_slice(offset.as_bytes())),
            ])
        };
        let role = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"master")),
            Frame::Integer(100),
            Frame::Array(vec![replica("100"), replica("99"), replica("150")]),
        ]);
        assert_eq!(replicas_at(&role, 100), 2);
        assert_eq!(replicas_at(&Frame::Array(vec![]), 1), 0);
    }
}
