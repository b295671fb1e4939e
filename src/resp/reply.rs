//! Backend replies: the [`Reply`] type and the incremental [`ReplyDecoder`].
//!
//! A reply is only delimited, never taken apart: the decoder checks that the bytes form one
//! well-formed RESP2 or RESP3 frame (backends speak RESP3 on RESP3 clients' connections), notes its top-level kind, and hands the frame on as the raw bytes
//! it arrived as. Looking inside a reply is [`parse_frame`](super::parse_frame)'s job.
//!
//! Like the request decoder it is resumable, so a large array or bulk arriving in many reads is
//! validated once, in linear time, and it allocates nothing per element: only a stack of the
//! element counts of the arrays currently open.

use bytes::{Bytes, BytesMut};

use super::encode;
use super::line::{find_line, header_line, parse_int, Line};
use super::{Limits, ParseError};

/// Status replies shorter than this (with their `+` and CRLF) are decoded in one pass.
const SHORT_STATUS: usize = 64;

/// The top-level type of a [`Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// `+OK\r\n`
    Status,
    /// `-ERR ...\r\n`
    Error,
    /// `:42\r\n`
    Integer,
    /// `$3\r\nabc\r\n`
    Bulk,
    /// `$-1\r\n`
    NullBulk,
    /// `*2\r\n...`, including the empty array `*0\r\n`.
    Array,
    /// `*-1\r\n`
    NullArray,
    /// RESP3 `_\r\n`
    Null,
    /// RESP3 `#t\r\n` / `#f\r\n`
    Boolean,
    /// RESP3 `,3.14\r\n`
    Double,
    /// RESP3 `(12345678901234567890\r\n`
    BigNumber,
    /// RESP3 `!21\r\nSYNTAX invalid syntax\r\n`
    BlobError,
    /// RESP3 `=15\r\ntxt:Some string\r\n`
    Verbatim,
    /// RESP3 `%2\r\n…` (key, value, key, value)
    Map,
    /// RESP3 `~2\r\n…`
    Set,
    /// RESP3 `>3\r\n…`: an out-of-band message (pub/sub, invalidation).
    Push,
}

/// One complete reply frame from a backend, kept as raw bytes for pass-through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    raw: Bytes,
    kind: ReplyKind,
}

impl Reply {
    /// The whole frame, exactly as received (or built).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The whole frame, taking it out of the reply (no reference count taken and dropped, as
    /// a clone of [`raw`](Self::raw) would).
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// The top-level type.
    pub fn kind(&self) -> ReplyKind {
        self.kind
    }

    /// Whether this is an error reply (`-...`).
    pub fn is_error(&self) -> bool {
        self.kind == ReplyKind::Error
    }

    /// For an error reply, its text without `-` and CRLF, e.g. `b"MOVED 3999 127.0.0.1:6381"`.
    pub fn error_message(&self) -> Option<&[u8]> {
        if !self.is_error() {
            return None;
        }
        self.raw.strip_prefix(b"-")?.strip_suffix(b"\r\n")
    }

    /// Builds the error reply `-{msg}\r\n`; CR and LF in `msg` become spaces.
    pub fn error(msg: &str) -> Reply {
        let mut out = BytesMut::with_capacity(msg.len() + 3);
        encode::error(&mut out, msg);
        Reply {
            raw: out.freeze(),
            kind: ReplyKind::Error,
        }
    }

    /// Wraps bytes an encoder built. Not checked: `raw` must be one frame of type `kind`.
    pub fn from_raw(raw: Bytes, kind: ReplyKind) -> Reply {
        Reply { raw, kind }
    }
}

/// Incremental, resumable decoder for backend replies.
///
/// Same contract as [`RequestDecoder`](super::RequestDecoder): feed it one connection's read
/// buffer, only ever appending to it between calls. Accepts the RESP2 types `+ - : $ *` and
/// the RESP3 types `_ # , ( ! = % ~ >`, aggregates nested up to `max_depth`; anything else
/// (including RESP3 attributes `|`, which Redis does not send) is a [`ParseError`].
#[derive(Debug)]
pub struct ReplyDecoder {
    limits: Limits,
    /// Kind of the frame being decoded, once its first byte was seen.
    kind: Option<ReplyKind>,
    /// Length of the validated prefix of the frame at the front of the buffer.
    pos: usize,
    /// How much of the line at `pos` (after its type byte) is known to hold no CR.
    scanned: usize,
    /// The end of the bulk data being waited for, once its `$len` line is parsed.
    bulk_end: Option<usize>,
    /// Elements still expected by each open array, outermost first.
    open: Vec<u64>,
}

impl ReplyDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            kind: None,
            pos: 0,
            scanned: 0,
            bulk_end: None,
            open: Vec::new(),
        }
    }

    /// Decodes the next reply at the front of `buf`.
    ///
    /// `Ok(Some(reply))` consumes that reply's bytes from `buf`; `Ok(None)` means more bytes are
    /// needed and nothing was consumed; `Err` is a protocol violation, after which the
    /// connection must be dropped (the decoder is reset, but the stream is out of sync).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ParseError> {
        if self.kind.is_none() {
            if let Some((end, kind)) = self.simple_reply(buf) {
                self.reset();
                return Ok(Some(Reply {
                    raw: buf.split_to(end).freeze(),
                    kind,
                }));
            }
        }
        match self.scan(buf) {
            Ok(Some(end)) => {
                let kind = self.kind.unwrap_or(ReplyKind::Status);
                self.reset();
                Ok(Some(Reply {
                    raw: buf.split_to(end).freeze(),
                    kind,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// While a frame is incomplete: the total buffer length it is known to need (up to the end
    /// of the bulk string being received), so the caller can reserve capacity once. `None` when
    /// unknown.
    pub fn needed(&self) -> Option<usize> {
        self.bulk_end.and_then(|end| end.checked_add(2))
    }

    /// The common replies in one pass: a complete bulk string (or null bulk), status or
    /// integer at the front of `buf`, its length and kind. `None` for anything else, which the
    /// resumable path then decides, errors included; this path accepts only what that one
    /// accepts.
    fn simple_reply(&self, buf: &[u8]) -> Option<(usize, ReplyKind)> {
        let limits = &self.limits;
        match *buf.first()? {
            b'$' => self.bulk_at(buf, 0),
            b':' => {
                let (_, end) = header_line(buf, 0, b':', limits.max_inline_len)?;
                Some((end, ReplyKind::Integer))
            }
            b'*' => self.bulk_array(buf),
            b'+' => {
                // Short statuses (+OK, +QUEUED, +PONG …); longer ones take the general path.
                let window = buf.get(1..buf.len().min(SHORT_STATUS))?;
                let cr = window.iter().position(|&b| b == b'\r')?;
                if cr > limits.max_bulk_len || buf.get(cr + 2) != Some(&b'\n') {
                    return None;
                }
                Some((cr + 3, ReplyKind::Status))
            }
            _ => None,
        }
    }

    /// [`simple_reply`](Self::simple_reply) for a complete array whose elements are all bulk
    /// strings or null bulks (what MGET, HMGET, LRANGE … answer), or a null array.
    fn bulk_array(&self, buf: &[u8]) -> Option<(usize, ReplyKind)> {
        let limits = &self.limits;
        let (count, mut pos) = header_line(buf, 0, b'*', limits.max_inline_len)?;
        if count == -1 {
            return Some((pos, ReplyKind::NullArray));
        }
        // The resumable path refuses any array when no nesting at all is allowed.
        if limits.max_depth == 0 {
            return None;
        }
        for _ in 0..u64::try_from(count).ok()? {
            (pos, _) = self.bulk_at(buf, pos)?;
        }
        Some((pos, ReplyKind::Array))
    }

    /// A complete bulk string (or null bulk) at `at` in `buf`: where it ends, and which.
    // Always inlined: as a call it cost every GET reply 40 instructions (callgrind).
    #[inline(always)]
    fn bulk_at(&self, buf: &[u8], at: usize) -> Option<(usize, ReplyKind)> {
        let limits = &self.limits;
        let (len, start) = header_line(buf, at, b'$', limits.max_inline_len)?;
        if len == -1 {
            return Some((start, ReplyKind::NullBulk));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= limits.max_bulk_len)?;
        let end = start.checked_add(len)?;
        if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        Some((end + 2, ReplyKind::Bulk))
    }

    fn reset(&mut self) {
        self.kind = None;
        self.pos = 0;
        self.scanned = 0;
        self.bulk_end = None;
        self.open.clear();
    }

    /// Validates elements from `pos` on; returns the frame's length once it is complete.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        loop {
            if let Some(end) = self.bulk_end {
                match buf.get(end..end + 2) {
                    None => return Ok(None),
                    Some(b"\r\n") => {}
                    Some(_) => return Err(ParseError::MissingCrlf),
                }
                self.bulk_end = None;
                self.pos = end + 2;
            } else {
                let Some(&ty) = buf.get(self.pos) else {
                    return Ok(None);
                };
                // The type byte is checked before waiting for the rest of the line.
                let (kind, max_len) = match ty {
                    b'+' => (ReplyKind::Status, self.limits.max_bulk_len),
                    b'-' => (ReplyKind::Error, self.limits.max_bulk_len),
                    b':' => (ReplyKind::Integer, self.limits.max_inline_len),
                    b'$' => (ReplyKind::Bulk, self.limits.max_inline_len),
                    b'*' => (ReplyKind::Array, self.limits.max_inline_len),
                    b'_' => (ReplyKind::Null, self.limits.max_inline_len),
                    b'#' => (ReplyKind::Boolean, self.limits.max_inline_len),
                    b',' => (ReplyKind::Double, self.limits.max_inline_len),
                    b'(' => (ReplyKind::BigNumber, self.limits.max_inline_len),
                    b'!' => (ReplyKind::BlobError, self.limits.max_inline_len),
                    b'=' => (ReplyKind::Verbatim, self.limits.max_inline_len),
                    b'%' => (ReplyKind::Map, self.limits.max_inline_len),
                    b'~' => (ReplyKind::Set, self.limits.max_inline_len),
                    b'>' => (ReplyKind::Push, self.limits.max_inline_len),
                    got => return Err(ParseError::InvalidReplyType { got }),
                };
                let start = self.pos + 1;
                let cr = match find_line(buf, start, &mut self.scanned, max_len) {
                    Line::End(cr) => cr,
                    Line::Partial => return Ok(None),
                    Line::TooLong => return Err(too_long(ty)),
                    Line::BadTerminator => return Err(bad_terminator(ty)),
                };
                let line = buf.get(start..cr).unwrap_or_default();
                self.scanned = 0;
                self.pos = cr + 2;
                let (kind, complete) = self.element(kind, line, cr + 2)?;
                if self.kind.is_none() {
                    self.kind = Some(kind);
                }
                if !complete {
                    // An array opened, or bulk data follows.
                    continue;
                }
            }
            if self.close_element() {
                return Ok(Some(self.pos));
            }
        }
    }

    /// Interprets one header line whose next byte is at `after`. Returns the element's exact
    /// kind and whether it is complete (false when it opened an array or bulk data follows).
    fn element(
        &mut self,
        kind: ReplyKind,
        line: &[u8],
        after: usize,
    ) -> Result<(ReplyKind, bool), ParseError> {
        match kind {
            ReplyKind::Integer => {
                parse_int(line).ok_or(ParseError::InvalidInteger)?;
                Ok((kind, true))
            }
            ReplyKind::Null if !line.is_empty() => Err(ParseError::InvalidReplyType { got: b'_' }),
            ReplyKind::Boolean if line != b"t" && line != b"f" => {
                Err(ParseError::InvalidReplyType { got: b'#' })
            }
            ReplyKind::Bulk | ReplyKind::BlobError | ReplyKind::Verbatim => {
                let len = parse_int(line).ok_or(ParseError::InvalidBulkLength)?;
                if len == -1 && kind == ReplyKind::Bulk {
                    return Ok((ReplyKind::NullBulk, true));
                }
                let end = usize::try_from(len)
                    .ok()
                    .filter(|&n| n <= self.limits.max_bulk_len)
                    .and_then(|n| after.checked_add(n))
                    // `end + 2` must not overflow either (only reachable with absurd limits).
                    .filter(|e| e.checked_add(2).is_some())
                    .ok_or(ParseError::InvalidBulkLength)?;
                self.bulk_end = Some(end);
                Ok((kind, false))
            }
            ReplyKind::Array | ReplyKind::Map | ReplyKind::Set | ReplyKind::Push => {
                let n = parse_int(line).ok_or(ParseError::InvalidMultibulkLength)?;
                if n == -1 && kind == ReplyKind::Array {
                    return Ok((ReplyKind::NullArray, true));
                }
                let n = u64::try_from(n).map_err(|_| ParseError::InvalidMultibulkLength)?;
                // A map's count is of pairs.
                let n = if kind == ReplyKind::Map {
                    n.checked_mul(2).ok_or(ParseError::InvalidMultibulkLength)?
                } else {
                    n
                };
                // An empty array still counts as a level of nesting.
                if self.open.len() >= self.limits.max_depth {
                    return Err(ParseError::TooDeep);
                }
                if n == 0 {
                    return Ok((kind, true));
                }
                self.open.push(n);
                Ok((kind, false))
            }
            _ => Ok((kind, true)),
        }
    }

    /// Counts a completed element against the arrays it closes; true when the frame is done.
    fn close_element(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left = left.saturating_sub(1);
            if *left > 0 {
                return false;
            }
            // That element completed the innermost array, which completes an element of its
            // parent in turn.
            self.open.pop();
        }
        true
    }
}

/// The error for a header line of type `ty` (`+ - : $ *`) that runs past its length limit.
pub(super) fn too_long(ty: u8) -> ParseError {
    match ty {
        b':' => ParseError::InvalidInteger,
        b'$' => ParseError::TooBigBulkCount,
        b'*' => ParseError::TooBigMultibulkCount,
        _ => ParseError::TooBigLine,
    }
}

/// The error for a header line of type `ty` whose CR is not followed by LF.
pub(super) fn bad_terminator(ty: u8) -> ParseError {
    match ty {
        b':' => ParseError::InvalidInteger,
        b'$' => ParseError::InvalidBulkLength,
        b'*' => ParseError::InvalidMultibulkLength,
        _ => ParseError::MissingCrlf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Reply-shaped bytes: arrays of bulk strings mostly, with the things that must send the
    /// one-pass path back to the resumable one (other element types, nesting, negative or
    /// oversized lengths, missing CR LF, truncation).
    fn reply_bytes() -> impl Strategy<Value = Vec<u8>> {
        let element = prop_oneof![
            4 => vec(any::<u8>(), 0..12).prop_map(|d| {
                let mut e = format!("${}\r\n", d.len()).into_bytes();
                e.extend_from_slice(&d);
                e.extend_from_slice(b"\r\n");
                e
            }),
            1 => Just(b"$-1\r\n".to_vec()),
            1 => prop::sample::select(vec![
                &b":7\r\n"[..], b"_\r\n", b"*1\r\n$1\r\na\r\n", b"*0\r\n", b"$-2\r\n",
                b"$01\r\na\r\n", b"$1\r\nab\r\n", b"$40\r\n", b"+OK\r\n", b"$3\r\nab",
            ]).prop_map(<[u8]>::to_vec),
        ];
        (vec(element, 0..6), -2i64..8, 0usize..4, any::<usize>()).prop_map(
            |(elements, count, trailing, cut)| {
                let mut out = format!("*{count}\r\n").into_bytes();
                for e in elements {
                    out.extend(e);
                }
                out.extend(std::iter::repeat_n(b'x', trailing));
                // Sometimes truncated anywhere.
                if cut % 3 == 0 {
                    out.truncate(cut / 3 % (out.len() + 1));
                }
                out
            },
        )
    }

    proptest! {
        /// Whatever the one-pass path accepts, the resumable path accepts the same way: same
        /// length, same kind, under default and under tight limits.
        #[test]
        fn the_one_pass_path_agrees_with_the_resumable_one(
            input in reply_bytes(),
            tight in any::<bool>(),
            depth in 0usize..2,
        ) {
            let limits = if tight {
                Limits { max_bulk_len: 4, max_inline_len: 3, max_depth: depth, ..Limits::default() }
            } else {
                Limits::default()
            };
            let fast = ReplyDecoder::new(limits);
            if let Some((end, kind)) = fast.simple_reply(&input) {
                let mut slow = ReplyDecoder::new(limits);
                prop_assert_eq!(slow.scan(&input), Ok(Some(end)));
                prop_assert_eq!(slow.kind.unwrap_or(ReplyKind::Status), kind);
            }
        }
    }

    fn decode_one(input: &[u8]) -> Result<Option<Reply>, ParseError> {
        ReplyDecoder::new(Limits::default()).decode(&mut BytesMut::from(input))
    }

    fn kind_of(input: &[u8]) -> ReplyKind {
        let reply = decode_one(input).unwrap().unwrap();
        assert_eq!(&reply.raw()[..], input);
        reply.kind()
    }

    #[test]
    fn every_kind() {
        assert_eq!(kind_of(b"+OK\r\n"), ReplyKind::Status);
        assert_eq!(kind_of(b"-ERR x\r\n"), ReplyKind::Error);
        assert_eq!(kind_of(b":-5\r\n"), ReplyKind::Integer);
        assert_eq!(kind_of(b"$3\r\na\nb\r\n"), ReplyKind::Bulk);
        assert_eq!(kind_of(b"$0\r\n\r\n"), ReplyKind::Bulk);
        assert_eq!(kind_of(b"$-1\r\n"), ReplyKind::NullBulk);
        assert_eq!(kind_of(b"*-1\r\n"), ReplyKind::NullArray);
        assert_eq!(kind_of(b"*0\r\n"), ReplyKind::Array);
        assert_eq!(kind_of(b"*2\r\n$-1\r\n*-1\r\n"), ReplyKind::Array);
        assert_eq!(
            kind_of(b"*3\r\n*2\r\n:1\r\n*0\r\n+a\r\n*1\r\n-e\r\n"),
            ReplyKind::Array
        );
    }

    #[test]
    fn pipelined_replies_split_exactly() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"$-1\r\n",
            b"-ERR\r\n",
        ];
        let mut buf = BytesMut::from(&frames.concat()[..]);
        let mut d = ReplyDecoder::new(Limits::default());
        for want in frames {
            assert_eq!(&d.decode(&mut buf).unwrap().unwrap().raw()[..], *want);
        }
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_waits_and_resumes() {
        let input = b"*2\r\n$5\r\nhello\r\n*1\r\n:42\r\n";
        let mut d = ReplyDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        for (i, &byte) in input.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let got = d.decode(&mut buf).unwrap();
            if i + 1 < input.len() {
                assert!(got.is_none(), "early at {i}");
                assert_eq!(buf.len(), i + 1);
            } else {
                assert_eq!(&got.unwrap().raw()[..], &input[..]);
            }
        }
    }

    #[test]
    fn malformed_replies() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"|1\r\n", ParseError::InvalidReplyType { got: b'|' }),
            (b"_1\r\n", ParseError::InvalidReplyType { got: b'_' }),
            (b"*1\r\n#x\r\n", ParseError::InvalidReplyType { got: b'#' }),
            (b":\r\n", ParseError::InvalidInteger),
            (b":12a\r\n", ParseError::InvalidInteger),
            (b":+1\r\n", ParseError::InvalidInteger),
            (b":9223372036854775808\r\n", ParseError::InvalidInteger),
            (b":1\rx", ParseError::InvalidInteger),
            (b"$-2\r\n", ParseError::InvalidBulkLength),
            (b"$1x\r\n", ParseError::InvalidBulkLength),
            (b"$536870913\r\n", ParseError::InvalidBulkLength),
            (b"$1\rx", ParseError::InvalidBulkLength),
            (b"$3\r\nabcd\r\n", ParseError::MissingCrlf),
            (b"*-2\r\n", ParseError::InvalidMultibulkLength),
            (b"*01\r\n", ParseError::InvalidMultibulkLength),
            (b"*1\rx", ParseError::InvalidMultibulkLength),
            (b"+OK\rx", ParseError::MissingCrlf),
        ];
        for (input, want) in cases {
            assert_eq!(decode_one(input).as_ref(), Err(want), "{input:?}");
        }
        let mut long = b":".to_vec();
        long.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(decode_one(&long), Err(ParseError::InvalidInteger));
        long[0] = b'$';
        assert_eq!(decode_one(&long), Err(ParseError::TooBigBulkCount));
        long[0] = b'*';
        assert_eq!(decode_one(&long), Err(ParseError::TooBigMultibulkCount));
        // Status lines may be long (Lua can return any status), up to max_bulk_len.
        long[0] = b'+';
        assert_eq!(decode_one(&long), Ok(None));
    }

    #[test]
    fn depth_is_bounded() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let run = |input: &[u8]| ReplyDecoder::new(limits).decode(&mut BytesMut::from(input));
        assert!(run(b"*1\r\n*1\r\n:1\r\n").unwrap().is_some());
        assert!(run(b"*1\r\n*1\r\n*-1\r\n").unwrap().is_some());
        assert_eq!(run(b"*1\r\n*1\r\n*0\r\n"), Err(ParseError::TooDeep));
        assert_eq!(run(b"*1\r\n*1\r\n*1\r\n"), Err(ParseError::TooDeep));
        // Siblings do not add up: depth is nesting, not count.
        assert!(run(b"*2\r\n*1\r\n:1\r\n*1\r\n:2\r\n").unwrap().is_some());
    }

    #[test]
    fn huge_array_count_costs_nothing_up_front() {
        let mut d = ReplyDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"*9223372036854775807\r\n:1\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn needed_reports_a_known_bulk_end() {
        let mut d = ReplyDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2\r\n:1\r\n$100\r\nab"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.needed(), Some(b"*2\r\n:1\r\n$100\r\n".len() + 100 + 2));
        buf.extend_from_slice(&[b'x'; 98]);
        buf.extend_from_slice(b"\r\n");
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert_eq!(d.needed(), None);
    }

    #[test]
    fn error_helpers() {
        let r = decode_one(b"-MOVED 3999 127.0.0.1:6381\r\n")
            .unwrap()
            .unwrap();
        assert!(r.is_error());
        assert_eq!(r.error_message(), Some(&b"MOVED 3999 127.0.0.1:6381"[..]));
        let built = Reply::error("ERR a\r\nb");
        assert_eq!(&built.raw()[..], b"-ERR a  b\r\n");
        assert_eq!(built.error_message(), Some(&b"ERR a  b"[..]));
        let ok = Reply::from_raw(Bytes::from_static(b"+OK\r\n"), ReplyKind::Status);
        assert!(!ok.is_error());
        assert_eq!(ok.error_message(), None);
        // A mislabelled hand-built reply must not panic.
        let odd = Reply::from_raw(Bytes::from_static(b"-"), ReplyKind::Error);
        assert_eq!(odd.error_message(), None);
    }
}
