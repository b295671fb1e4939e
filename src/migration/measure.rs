//! Bytes the background mover moves, for the moving rate in MB/s (`/metrics`, INFO, the admin
//! API): the source's own `MEMORY USAGE` of each key of a batch, asked in one pipelined round
//! trip just before the batch's `MIGRATE`.
//!
//! The same replies say which keys of the batch the source still held (a key moved on touch
//! meanwhile answers null), so the mover counts the keys it moved, not the keys it asked for.
//!
//! What it measures: the memory the keys take on the source (Redis' estimate: exact for
//! strings, sampled over 5 elements for aggregates), not the bytes `MIGRATE` sends (its `DUMP`
//! payload is more compact). Measuring the payload would mean a `DUMP` of every key by the
//! mover, as costly as the move itself; `MEMORY USAGE` costs one more round trip per batch
//! and constant work per key on the source. A key gone by then (moved on touch, expired)
//! counts 0; a source that refuses `MEMORY` (a renamed command) counts 0 and the move goes
//! on. On-touch moves are counted in moves only (measuring them would add a round trip to a
//! client's request).

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::backend::dedicated::DedicatedConn;
use crate::resp::{parse_frame, Frame, Limits, Reply, Request};

/// `MEMORY USAGE key` for each of `keys`, pipelined.
pub fn requests(keys: &[Bytes]) -> BytesMut {
    let mut out = BytesMut::new();
    for key in keys {
        let request = Request::from_args([b"MEMORY" as &[u8], b"USAGE", key]);
        out.extend_from_slice(request.raw());
    }
    out
}

/// What the source held of a batch just before it moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Keys present (every key asked, when the source refuses `MEMORY`: it cannot tell).
    pub keys: u64,
    /// Their bytes (0 for a key the source could not measure).
    pub bytes: u64,
}

/// What the source said of one key of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Present, this many bytes.
    Bytes(u64),
    /// Gone (moved on touch meanwhile, expired).
    Gone,
    /// `MEMORY` refused: may be there, of unknown size.
    Unknown,
}

impl Size {
    /// True for a key measured at `threshold` bytes or more (never when `threshold` is 0).
    pub fn at_least(self, threshold: u64) -> bool {
        matches!(self, Size::Bytes(n) if threshold > 0 && n >= threshold)
    }
}

/// What each `MEMORY USAGE` reply of a batch says: an integer is a key present and its
/// bytes, a null a key gone; an error (`MEMORY` refused) a key that may be there, of unknown
/// size.
pub fn sizes(replies: &[Reply]) -> Vec<Size> {
    replies
        .iter()
        .map(|reply| match parse_frame(reply.raw(), &Limits::default()) {
            Ok(Frame::Integer(n)) => Size::Bytes(u64::try_from(n).unwrap_or(0)),
            Ok(Frame::Null | Frame::Nil) => Size::Gone,
            _ => Size::Unknown,
        })
        .collect()
}

/// The keys present among `sizes` and their bytes.
pub fn total(sizes: &[Size]) -> Measured {
    let mut out = Measured::default();
    for size in sizes {
        match *size {
            Size::Bytes(n) => {
                out.keys += 1;
                out.bytes += n;
            }
            Size::Gone => {}
            Size::Unknown => out.keys += 1,
        }
    }
    out
}

/// Which of `keys` the source behind `conn` (`addr`) holds, and the bytes of each, asked within
/// `timeout`. An error leaves `conn` unusable (a reply may be unread): the caller drops it.
pub async fn batch(
    conn: &mut DedicatedConn,
    keys: &[Bytes],
    timeout: Duration,
    addr: &str,
) -> Result<Vec<Size>, String> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    match tokio::time::timeout(timeout, conn.call(&requests(keys), keys.len())).await {
        Ok(Ok(replies)) => Ok(sizes(&replies)),
        Ok(Err(e)) => Err(format!("{addr}: MEMORY USAGE: {e}")),
        Err(_) => Err(format!(
            "no MEMORY USAGE reply from {addr} within {} ms",
            timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(raw: &'static [u8]) -> Reply {
        let mut decoder = crate::resp::ReplyDecoder::new(Limits::default());
        let mut buf = BytesMut::from(raw);
        decoder.decode(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn one_request_per_key() {
        let keys = [Bytes::from_static(b"a"), Bytes::from_static(b"key two")];
        assert_eq!(
            &requests(&keys)[..],
            b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$1\r\na\r\n\
              *3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$7\r\nkey two\r\n"
        );
    }

    #[test]
    fn present_keys_and_their_bytes_are_summed() {
        let replies = [reply(b":56\r\n"), reply(b"$-1\r\n"), reply(b":1000\r\n")];
        assert_eq!(
            sizes(&replies),
            [Size::Bytes(56), Size::Gone, Size::Bytes(1000)]
        );
        assert_eq!(
            total(&sizes(&replies)),
            Measured {
                keys: 2,
                bytes: 1056
            }
        );
        assert!(Size::Bytes(1000).at_least(1000) && !Size::Bytes(999).at_least(1000));
        assert!(!Size::Bytes(1000).at_least(0) && !Size::Unknown.at_least(1));
        assert_eq!(total(&[]), Measured::default());
        // MEMORY refused: every key may be there, of unknown size.
        let refused = [
            reply(b"-ERR unknown command 'MEMORY'\r\n"),
            reply(b"$-1\r\n"),
        ];
        assert_eq!(total(&sizes(&refused)), Measured { keys: 1, bytes: 0 });
    }
}
