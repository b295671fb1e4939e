//! SCAN across every master with one cursor, answered like one Redis would.
//!
//! The proxy cursor ([`ScanCursor`]) names a master (index into the table's serving masters,
//! address order), the slot-assignment fingerprint of the table the scan runs on, and that
//! master's own cursor. One SCAN call walks on to the next master whenever the current one is
//! finished, until it has gathered `COUNT` keys (10 by default) or every master is done. So a
//! small keyspace comes back whole with cursor 0 in one call, exactly as from a single
//! server, and a large one in pages.
//!
//! Guarantee: a key present in the keyspace for the whole scan is returned, also when slots
//! move or masters fail over mid-scan; keys may come back more than once (as Redis allows).
//! How: a cursor whose fingerprint no longer matches the current table restarts the pass
//! from the first master; and before a pass answers cursor 0 it checks that nothing moved
//! under it — in cluster mode it refreshes the slot table and asks every master (`CLUSTER
//! NODES`) whether a slot migration is in progress. If the assignment changed or keys are
//! being migrated, the pass starts over instead of ending, so a scan during a reshard ends
//! only after the reshard (or after a pass with no migration in flight).

use bytes::{Bytes, BytesMut};

use super::WorkerContext;
use crate::backend::dedicated::Lease;
use crate::command::split::ScanCursor;
use crate::placement::Unit;
use crate::resp::{encode, parse_frame, Frame, Reply};
use crate::topology::discovery::migration_in_progress;

use super::dispatch::error;

/// Keys one SCAN call gathers when the client gives no COUNT (Redis' default).
const DEFAULT_COUNT: usize = 10;

/// Serve `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` in the client's database (`db`).
pub(super) async fn scan(worker: &WorkerContext, args: &[&[u8]], db: u32) -> Bytes {
    let Some(position) = args.get(1).and_then(|c| ScanCursor::decode(c)) else {
        return error("ERR invalid cursor");
    };
    let count = args
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"count"))
        .and_then(|i| args.get(i + 1))
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        .unwrap_or(DEFAULT_COUNT);
    let table = worker.router().table();
    let fingerprint = table.assignment_fingerprint();
    let masters = table.serving_masters();
    let resume = position.is_start() || position.fingerprint == fingerprint;
    let (mut node, mut cursor) = if resume {
        (position.node, position.inner)
    } else {
        (0, 0) // The slots moved since the cursor was made: scan everything again.
    };
    let at = |node, inner| ScanCursor {
        node,
        fingerprint,
        inner,
    };
    let mut keys: Vec<Frame> = Vec::new();
    while let Some((_, unit)) = masters.get(node) {
        let (next, found) = match scan_master(worker, db, *unit, args, cursor).await {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        keys.extend(found);
        if next != 0 {
            return answer(at(node, next).encode(), keys);
        }
        node += 1;
        cursor = 0;
        if node < masters.len() && keys.len() >= count {
            return answer(at(node, 0).encode(), keys);
        }
    }
    match pass_settled(worker, fingerprint, &masters).await {
        Ok(true) => answer(Some(0), keys),
        // Start over; the fresh fingerprint keeps the next call from restarting again.
        Ok(false) => {
            let fingerprint = worker.router().table().assignment_fingerprint();
            let again = ScanCursor {
                node: 0,
                fingerprint,
                inner: 0,
            };
            answer(again.encode(), keys)
        }
        Err(reply) => reply,
    }
}

/// One page of the master of `unit` in database `db` (`args`: a SCAN request, whose cursor
/// is replaced by `cursor`): its next cursor and the keys it returned.
pub(super) async fn scan_master(
    worker: &WorkerContext,
    db: u32,
    unit: Unit,
    args: &[&[u8]],
    cursor: u64,
) -> Result<(u64, Vec<Frame>), Bytes> {
    let reply = ask_master(worker, db, unit, &with_cursor(args, cursor)).await?;
    parse_frame(reply.raw(), &worker.settings().limits)
        .ok()
        .and_then(page)
        .ok_or_else(|| error("ERR slotgate: unexpected SCAN reply from a master"))
}

/// Send one command to the master serving `slot` on a dedicated connection in database `db`;
/// its reply, or the error reply for the client (the master's own error included).
pub(super) async fn ask_master(
    worker: &WorkerContext,
    db: u32,
    unit: Unit,
    request: &[u8],
) -> Result<Reply, Bytes> {
    let lease = Lease {
        resp3: false,
        db,
        client: 0,
    };
    let mut replies = super::cross_slot::call(worker, lease, unit, request, 1).await?;
    match replies.pop() {
        Some(reply) if reply.is_error() => Err(reply.raw().clone()),
        Some(reply) => Ok(reply),
        None => Err(error("ERR slotgate: no reply from a master")),
    }
}

/// Whether a pass that began on a table with `fingerprint` may end: the assignment is
/// unchanged and (cluster mode) no master has a slot migration in flight.
async fn pass_settled(
    worker: &WorkerContext,
    fingerprint: u16,
    masters: &[(std::sync::Arc<str>, Unit)],
) -> Result<bool, Bytes> {
    if worker.router().topology().is_pool_mode() {
        return Ok(worker.router().table().assignment_fingerprint() == fingerprint);
    }
    for (_, unit) in masters {
        let nodes = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n";
        let reply = ask_master(worker, 0, *unit, nodes).await?;
        let text = parse_frame(reply.raw(), &worker.settings().limits)
            .ok()
            .and_then(|f| {
                f.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
        let Some(text) = text else {
            return Err(error(
                "ERR slotgate: unexpected CLUSTER NODES reply from a master",
            ));
        };
        if migration_in_progress(&text) {
            return Ok(false);
        }
    }
    // A finished migration shows only in the layout: read it fresh before comparing.
    if let Err(e) = worker.router().topology().refresh().await {
        // Judge by the table as it stands rather than restart for as long as discovery fails.
        tracing::debug!("SCAN: slot table refresh at the end of a pass failed: {e}");
    }
    Ok(worker.router().table().assignment_fingerprint() == fingerprint)
}

/// The request with the master's own cursor in place of the proxy's.
fn with_cursor(args: &[&[u8]], cursor: u64) -> Bytes {
    let cursor = cursor.to_string();
    let mut out = BytesMut::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>());
    encode::array_header(&mut out, args.len());
    for (i, arg) in args.iter().enumerate() {
        encode::bulk(&mut out, if i == 1 { cursor.as_bytes() } else { arg });
    }
    out.freeze()
}

/// A master's `[cursor, [keys…]]`.
fn page(frame: Frame) -> Option<(u64, Vec<Frame>)> {
    let Frame::Array(mut items) = frame else {
        return None;
    };
    let Some(Frame::Array(keys)) = items.pop() else {
        return None;
    };
    let cursor = items.pop()?;
    let cursor = std::str::from_utf8(cursor.as_bytes()?).ok()?.parse().ok()?;
    Some((cursor, keys))
}

fn answer(cursor: Option<u64>, keys: Vec<Frame>) -> Bytes {
    let Some(cursor) = cursor else {
        return error("ERR slotgate: SCAN cursor out of range");
    };
    let mut out = BytesMut::new();
    encode::array_header(&mut out, 2);
    encode::bulk(&mut out, cursor.to_string().as_bytes());
    Frame::Array(keys).encode(&mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_answers_encode() {
        let frame = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"17")),
            Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"k"))]),
        ]);
        let (cursor, keys) = page(frame).unwrap();
        assert_eq!(cursor, 17);
        assert_eq!(
            &answer(Some(0), keys)[..],
            b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
        );
        assert_eq!(
            &with_cursor(&crate::resp::test_args(&["SCAN", "1025", "COUNT", "5"]), 1)[..],
            b"*4\r\n$4\r\nSCAN\r\n$1\r\n1\r\n$5\r\nCOUNT\r\n$1\r\n5\r\n"
        );
    }
}
