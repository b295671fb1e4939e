//! SCAN across every master with one cursor, answered like one Redis would.
//!
//! The proxy cursor names a master (its low [`SCAN_NODE_BITS`](crate::command::split::SCAN_NODE_BITS)
//! bits, masters in address order) and that master's own cursor. One SCAN call walks on to
//! the next master whenever the current one is finished, until it has gathered `COUNT` keys
//! (10 by default) or every master is done. So a small keyspace comes back whole with cursor
//! 0 in one call, exactly as from a single server, and a large one in pages.
//!
//! Guarantee: a key present on its master for the whole scan is returned (Redis' own SCAN
//! guarantee, per master). Race window: a key that moves (reshard) from a master not yet
//! scanned to one already scanned is missed; if masters are added or removed mid-scan, the
//! cursor's master index may point elsewhere — restart the scan after a topology change.

use bytes::{Bytes, BytesMut};

use crate::command::split::{decode_scan_cursor, encode_scan_cursor};
use crate::resp::{encode, parse_frame, Frame};
use crate::worker::Worker;

use super::dispatch::error;
use super::pinned::on_master;

/// Keys one SCAN call gathers when the client gives no COUNT (Redis' default).
const DEFAULT_COUNT: usize = 10;

/// Serve `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
pub(super) async fn scan(worker: &Worker, args: &[Bytes]) -> Bytes {
    let Some((mut node, mut cursor)) = args.get(1).and_then(|c| decode_scan_cursor(c)) else {
        return error("ERR invalid cursor");
    };
    let count = args
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"count"))
        .and_then(|i| args.get(i + 1))
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        .unwrap_or(DEFAULT_COUNT);
    let masters = worker.topology.table().serving_masters();
    let mut keys: Vec<Frame> = Vec::new();
    while let Some((_, slot)) = masters.get(node) {
        let request = with_cursor(args, cursor);
        let timeout = Some(worker.request_timeout);
        let reply = match on_master(worker, Some(*slot), &request, 1, timeout, false).await {
            Ok((conn, mut replies)) => {
                worker.idle.borrow_mut().put(conn);
                match replies.pop() {
                    Some(reply) => reply,
                    None => return error("ERR slotgate: no reply to SCAN"),
                }
            }
            Err(reply) => return reply,
        };
        if reply.is_error() {
            return reply.raw().clone();
        }
        let Some((next, found)) = parse_frame(reply.raw(), &worker.limits).ok().and_then(page)
        else {
            return error("ERR slotgate: unexpected SCAN reply from a master");
        };
        keys.extend(found);
        if next != 0 {
            return answer(encode_scan_cursor(node, next), keys);
        }
        node += 1;
        cursor = 0;
        if node < masters.len() && keys.len() >= count {
            return answer(encode_scan_cursor(node, 0), keys);
        }
    }
    answer(Some(0), keys)
}

/// The request with the master's own cursor in place of the proxy's.
fn with_cursor(args: &[Bytes], cursor: u64) -> Bytes {
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
