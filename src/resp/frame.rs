//! [`Frame`]: a reply taken apart into a tree, for the few places that must look inside one
//! (topology discovery, merging fan-out results). The pass-through path never builds one.
//!
//! Every string in the tree is a zero-copy slice of the frame's raw bytes.

use bytes::{Bytes, BytesMut};

use super::encode;
use super::line::{find_line, parse_int, Line};
use super::reply::{bad_terminator, too_long};
use super::{Limits, ParseError};

/// A parsed reply tree (zero-copy slices).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// A status reply, without `+` and CRLF.
    Simple(Bytes),
    /// An error reply, without `-` and CRLF.
    Error(Bytes),
    /// An integer reply.
    Integer(i64),
    /// A bulk string's data.
    Bulk(Bytes),
    /// The null bulk string `$-1`.
    Null,
    /// An array (possibly empty).
    Array(Vec<Frame>),
    /// The null array `*-1`.
    NullArray,
    /// RESP3 null `_`.
    Nil,
    /// RESP3 boolean `#t` / `#f`.
    Boolean(bool),
    /// RESP3 double `,…`, as its text.
    Double(Bytes),
    /// RESP3 big number `(…`, as its digits.
    BigNumber(Bytes),
    /// RESP3 blob error `!…`, its text.
    BlobError(Bytes),
    /// RESP3 verbatim string `=…`: its 3-byte format (`txt`, `mkd`) and its text.
    Verbatim(Bytes, Bytes),
    /// RESP3 map `%…`: keys and values alternating (flattened, like a RESP2 reply of pairs).
    Map(Vec<Frame>),
    /// RESP3 set `~…`.
    Set(Vec<Frame>),
    /// RESP3 push `>…`.
    Push(Vec<Frame>),
}

impl Frame {
    /// Appends the RESP encoding of this frame. CR and LF inside a `Simple` or `Error` become
    /// spaces, so the output is always valid RESP.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => encode::one_line(out, b'+', s),
            Frame::Error(s) => encode::one_line(out, b'-', s),
            Frame::Integer(n) => encode::integer(out, *n),
            Frame::Bulk(b) => encode::bulk(out, b),
            Frame::Null => encode::null_bulk(out),
            Frame::Array(items) => {
                encode::array_header(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
            Frame::NullArray => encode::null_array(out),
            Frame::Nil => out.extend_from_slice(b"_\r\n"),
            Frame::Boolean(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Double(d) => encode::one_line(out, b',', d),
            Frame::BigNumber(n) => encode::one_line(out, b'(', n),
            Frame::BlobError(e) => encode::blob(out, b'!', e),
            Frame::Verbatim(format, text) => {
                encode::length_header(out, b'=', format.len() + 1 + text.len());
                out.extend_from_slice(format);
                out.extend_from_slice(b":");
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Map(items) => {
                encode::length_header(out, b'%', items.len() / 2);
                items.iter().for_each(|item| item.encode(out));
            }
            Frame::Set(items) => {
                encode::length_header(out, b'~', items.len());
                items.iter().for_each(|item| item.encode(out));
            }
            Frame::Push(items) => {
                encode::length_header(out, b'>', items.len());
                items.iter().for_each(|item| item.encode(out));
            }
        }
    }

    /// The elements of a reply made of pairs — a flat array (RESP2) or a map (RESP3) — and
    /// whether it was a map; `None` for anything else.
    pub fn into_pairs(self) -> Option<(Vec<Frame>, bool)> {
        match self {
            Frame::Array(items) => Some((items, false)),
            Frame::Map(items) => Some((items, true)),
            _ => None,
        }
    }

    /// The bytes of a `Bulk`, `Simple` or `Verbatim` string (a verbatim string's text).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Bulk(b) | Frame::Simple(b) | Frame::Verbatim(_, b) => Some(b),
            _ => None,
        }
    }

    /// The value of an `Integer`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an `Array`, `Set` or `Push`, or a `Map`'s keys and values alternating.
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) | Frame::Map(items) => {
                Some(items)
            }
            _ => None,
        }
    }
}

/// Deepest tree [`parse_frame`] builds, whatever `limits.max_depth` allows: a tree is dropped
/// and encoded recursively, so its depth must stay small. Replies the proxy parses (cluster
/// layouts, INFO, merges) nest a few levels; deep ones (script results) pass through unparsed.
pub const MAX_FRAME_DEPTH: usize = 64;

/// Parses `raw`, which must hold exactly one complete frame (as [`Reply::raw`] does), into a
/// tree. Nesting is bounded by `limits.max_depth` and by [`MAX_FRAME_DEPTH`].
///
/// [`Reply::raw`]: super::Reply::raw
pub fn parse_frame(raw: &Bytes, limits: &Limits) -> Result<Frame, ParseError> {
    let mut cursor = Cursor {
        raw,
        pos: 0,
        limits,
    };
    // Aggregates being filled, innermost last, with their type and the element count each
    // expects. Explicit rather than recursive so a hostile depth limit cannot overflow the
    // stack here.
    let mut open: Vec<(Vec<Frame>, usize, u8)> = Vec::new();
    loop {
        let mut frame = match cursor.next()? {
            Item::Frame(frame) => frame,
            Item::Aggregate(ty, n) => {
                if open.len() >= limits.max_depth.min(MAX_FRAME_DEPTH) {
                    return Err(ParseError::TooDeep);
                }
                if n == 0 {
                    aggregate(ty, Vec::new())
                } else {
                    // Every element takes at least 3 bytes (`+\r\n`), so the claimed count
                    // cannot make us reserve more than the input justifies.
                    let room = raw.len().saturating_sub(cursor.pos) / 3;
                    open.push((Vec::with_capacity(n.min(room)), n, ty));
                    continue;
                }
            }
        };
        // Hand the finished element to its array; a full array is itself a finished element.
        loop {
            let Some((items, expected, _)) = open.last_mut() else {
                return if cursor.pos == raw.len() {
                    Ok(frame)
                } else {
                    Err(ParseError::TrailingBytes)
                };
            };
            items.push(frame);
            if items.len() < *expected {
                break;
            }
            let Some((items, _, ty)) = open.pop() else {
                break;
            };
            frame = aggregate(ty, items);
        }
    }
}

/// The aggregate frame of type byte `ty` (`* % ~ >`) holding `items`.
fn aggregate(ty: u8, items: Vec<Frame>) -> Frame {
    match ty {
        b'%' => Frame::Map(items),
        b'~' => Frame::Set(items),
        b'>' => Frame::Push(items),
        _ => Frame::Array(items),
    }
}

/// One header's worth of a frame.
enum Item {
    /// A complete scalar.
    Frame(Frame),
    /// An aggregate header (`* % ~ >`) announcing this many elements (a map: twice its pairs).
    Aggregate(u8, usize),
}

/// Reads items from a complete frame.
struct Cursor<'a> {
    raw: &'a Bytes,
    pos: usize,
    limits: &'a Limits,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<Item, ParseError> {
        let &ty = self.raw.get(self.pos).ok_or(ParseError::Incomplete)?;
        let start = self.pos + 1;
        let mut scanned = 0;
        let max_len = match ty {
            b'+' | b'-' => self.limits.max_bulk_len,
            b':' | b'$' | b'*' | b'_' | b'#' | b',' | b'(' | b'!' | b'=' | b'%' | b'~' | b'>' => {
                self.limits.max_inline_len
            }
            got => return Err(ParseError::InvalidReplyType { got }),
        };
        let cr = match find_line(self.raw, start, &mut scanned, max_len) {
            Line::End(cr) => cr,
            Line::Partial => return Err(ParseError::Incomplete),
            Line::TooLong => return Err(too_long(ty)),
            Line::BadTerminator => return Err(bad_terminator(ty)),
        };
        let line = self.raw.get(start..cr).unwrap_or_default();
        self.pos = cr + 2;
        let frame = match ty {
            b'+' => Frame::Simple(self.raw.slice(start..cr)),
            b'-' => Frame::Error(self.raw.slice(start..cr)),
            b':' => Frame::Integer(parse_int(line).ok_or(ParseError::InvalidInteger)?),
            b'$' => match parse_int(line).ok_or(ParseError::InvalidBulkLength)? {
                -1 => Frame::Null,
                len => Frame::Bulk(self.bulk(len)?),
            },
            b'_' if line.is_empty() => Frame::Nil,
            b'#' if line == b"t" || line == b"f" => Frame::Boolean(line == b"t"),
            b',' => Frame::Double(self.raw.slice(start..cr)),
            b'(' => Frame::BigNumber(self.raw.slice(start..cr)),
            b'!' => {
                let len = parse_int(line).ok_or(ParseError::InvalidBulkLength)?;
                Frame::BlobError(self.bulk(len)?)
            }
            b'=' => {
                let len = parse_int(line).ok_or(ParseError::InvalidBulkLength)?;
                let data = self.bulk(len)?;
                if data.get(3) != Some(&b':') {
                    return Err(ParseError::InvalidBulkLength);
                }
                Frame::Verbatim(data.slice(..3), data.slice(4..))
            }
            b'*' | b'%' | b'~' | b'>' => {
                match parse_int(line).ok_or(ParseError::InvalidMultibulkLength)? {
                    -1 if ty == b'*' => Frame::NullArray,
                    n => {
                        let n =
                            usize::try_from(n).map_err(|_| ParseError::InvalidMultibulkLength)?;
                        let n = if ty == b'%' {
                            n.checked_mul(2).ok_or(ParseError::InvalidMultibulkLength)?
                        } else {
                            n
                        };
                        return Ok(Item::Aggregate(ty, n));
                    }
                }
            }
            got => return Err(ParseError::InvalidReplyType { got }),
        };
        Ok(Item::Frame(frame))
    }

    /// The `len` bytes of bulk data at `pos`, which must be followed by CRLF.
    fn bulk(&mut self, len: i64) -> Result<Bytes, ParseError> {
        let end = usize::try_from(len)
            .ok()
            .filter(|&n| n <= self.limits.max_bulk_len)
            .and_then(|n| self.pos.checked_add(n))
            .filter(|e| e.checked_add(2).is_some())
            .ok_or(ParseError::InvalidBulkLength)?;
        match self.raw.get(end..end + 2) {
            None => return Err(ParseError::Incomplete),
            Some(b"\r\n") => {}
            Some(_) => return Err(ParseError::MissingCrlf),
        }
        // In bounds: `end + 2 <= raw.len()` was just checked.
        let data = self.raw.slice(self.pos..end);
        self.pos = end + 2;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Frame, ParseError> {
        parse_frame(&Bytes::copy_from_slice(raw), &Limits::default())
    }

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn every_type_round_trips() {
        let cases: Vec<(&[u8], Frame)> = vec![
            (b"+OK\r\n", Frame::Simple(b(b"OK"))),
            (b"+\r\n", Frame::Simple(b(b""))),
            (
                b"-MOVED 3999 127.0.0.1:6381\r\n",
                Frame::Error(b(b"MOVED 3999 127.0.0.1:6381")),
            ),
            (b":-12\r\n", Frame::Integer(-12)),
            (b"$5\r\na\r\nbc\r\n", Frame::Bulk(b(b"a\r\nbc"))),
            (b"$0\r\n\r\n", Frame::Bulk(b(b""))),
            (b"$-1\r\n", Frame::Null),
            (b"*-1\r\n", Frame::NullArray),
            (b"*0\r\n", Frame::Array(vec![])),
            (
                b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n*0\r\n$-1\r\n",
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Array(vec![Frame::Bulk(b(b"a")), Frame::Array(vec![])]),
                    Frame::Null,
                ]),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw), Ok(want.clone()), "{raw:?}");
            let mut out = BytesMut::new();
            want.encode(&mut out);
            assert_eq!(&out[..], raw);
        }
    }

    #[test]
    fn strings_are_slices_of_raw() {
        let raw = Bytes::from_static(b"*2\r\n$3\r\nabc\r\n+OK\r\n");
        let frame = parse_frame(&raw, &Limits::default()).unwrap();
        let items = frame.as_array().unwrap();
        let bulk = items[0].as_bytes().unwrap();
        assert_eq!(bulk.as_ptr(), raw[8..].as_ptr());
        assert_eq!(items[1].as_bytes().unwrap(), &b"OK"[..]);
    }

    #[test]
    fn helpers() {
        assert_eq!(Frame::Integer(3).as_int(), Some(3));
        assert_eq!(Frame::Null.as_int(), None);
        assert_eq!(Frame::Null.as_bytes(), None);
        assert_eq!(Frame::Error(b(b"x")).as_bytes(), None);
        assert_eq!(Frame::NullArray.as_array(), None);
    }

    #[test]
    fn malformed_frames() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Incomplete),
            (b"+OK", ParseError::Incomplete),
            (b"$3\r\nab", ParseError::Incomplete),
            (b"*2\r\n:1\r\n", ParseError::Incomplete),
            (b"+OK\r\n+OK\r\n", ParseError::TrailingBytes),
            (b"+OK\rx", ParseError::MissingCrlf),
            (b"$3\r\nabcde", ParseError::MissingCrlf),
            (b"|1\r\n", ParseError::InvalidReplyType { got: b'|' }),
            (b"_x\r\n", ParseError::InvalidReplyType { got: b'_' }),
            (b"=3\r\ntxt\r\n", ParseError::InvalidBulkLength),
            (b":1.5\r\n", ParseError::InvalidInteger),
            (b":1\rx", ParseError::InvalidInteger),
            (b"$1\rx", ParseError::InvalidBulkLength),
            (b":99999999999999999999\r\n", ParseError::InvalidInteger),
            (b"$-2\r\n", ParseError::InvalidBulkLength),
            (b"$x\r\n", ParseError::InvalidBulkLength),
            (b"*-2\r\n", ParseError::InvalidMultibulkLength),
            (b"* 1\r\n", ParseError::InvalidMultibulkLength),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).as_ref(), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn resp3_frames_round_trip() {
        let raw: &[u8] = b"%2\r\n$1\r\na\r\n~2\r\n,1.5\r\n#t\r\n+b\r\n>2\r\n_\r\n(123\r\n";
        let frame = parse(raw).unwrap();
        let Frame::Map(items) = &frame else {
            panic!("{frame:?}")
        };
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[1],
            Frame::Set(vec![
                Frame::Double(Bytes::from_static(b"1.5")),
                Frame::Boolean(true)
            ])
        );
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        assert_eq!(&out[..], raw);
        let verbatim = parse(b"=7\r\ntxt:a:b\r\n").unwrap();
        assert_eq!(verbatim.as_bytes().unwrap(), &Bytes::from_static(b"a:b"));
    }

    #[test]
    fn depth_is_bounded() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let ok = Bytes::from_static(b"*1\r\n*1\r\n*0\r\n");
        assert!(parse_frame(&ok, &limits).is_ok());
        let deep = Bytes::from_static(b"*1\r\n*1\r\n*1\r\n*0\r\n");
        assert_eq!(parse_frame(&deep, &limits), Err(ParseError::TooDeep));
    }

    #[test]
    fn huge_claimed_count_does_not_preallocate() {
        assert_eq!(
            parse(b"*1000000000000\r\n:1\r\n"),
            Err(ParseError::Incomplete)
        );
    }
}
