//! [`Request`]: one client command, as the raw multibulk to forward plus its arguments.
//!
//! Whatever form a command arrived in, the proxy forwards a multibulk: for RESP input it is the
//! client's own bytes, sliced out of the read buffer without a copy (see
//! [`RequestDecoder`](super::RequestDecoder)); inline commands and split sub-requests are
//! encoded once, here. Arguments are kept as byte ranges of those raw bytes and handed out as
//! borrowed slices, so holding a request holds one buffer, a GET or SET stores its arguments
//! without a heap allocation, and decoding one touches no reference count per argument.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::encode;

/// Arguments stored inline in a [`Request`] and in [`Args`]: enough for `SET k v EX n NX`
/// without a heap allocation.
const INLINE_ARGS: usize = 6;

/// A request's arguments, borrowed from its raw bytes (see [`Request::args`]).
pub type Args<'a> = SmallVec<[&'a [u8]; INLINE_ARGS]>;

/// The largest request a [`Request`] can hold: its argument ranges are 32-bit, which keeps a
/// request small enough (88 bytes) to be moved without a `memcpy` call. The request decoder
/// never accepts a larger one (`proxy.max_request_bytes` is capped to it).
pub const MAX_REQUEST_LEN: usize = u32::MAX as usize;

/// Argument ranges, (start, end) byte offsets into a request's raw bytes: inline up to
/// `SET k v EX n NX`, on the heap beyond.
pub(crate) type Spans = SmallVec<[(u32, u32); INLINE_ARGS]>;

/// The span `start..end` of a request at most [`MAX_REQUEST_LEN`] long.
#[inline]
pub(crate) fn span(start: usize, end: usize) -> (u32, u32) {
    debug_assert!(start <= end && end <= MAX_REQUEST_LEN);
    (start as u32, end as u32)
}

/// One client command, decoded from the client's read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    raw: Bytes,
    /// Each argument's (start, end) in `raw`; `raw` is at most [`MAX_REQUEST_LEN`] long.
    spans: Spans,
}

impl Request {
    /// The exact bytes to forward: always a valid RESP multibulk of bulk strings.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The bytes to forward, taken out of the request (no reference count taken and dropped,
    /// as a clone of [`raw`](Self::raw) would).
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// The arguments, each a slice of [`raw`](Self::raw); `args()[0]` is the command name, in
    /// the case the client sent it. Never empty for a decoded request. Builds a small vector
    /// of slices: take it once per request and pass `&args[..]` on.
    pub fn args(&self) -> Args<'_> {
        // Every span lies within `raw` (see `from_spans`), so `get` never falls back.
        let raw: &[u8] = &self.raw;
        let arg = |&(s, e): &(u32, u32)| raw.get(s as usize..e as usize).unwrap_or_default();
        if self.spans.len() > INLINE_ARGS {
            return self.spans.iter().map(arg).collect();
        }
        // Filled in place: no per-argument capacity check, as collecting would do.
        let mut inline: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        for (slot, span) in inline.iter_mut().zip(&self.spans) {
            *slot = arg(span);
        }
        Args::from_buf_and_len(inline, self.spans.len())
    }

    /// The `i`-th argument (0 is the command name), if there is one.
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        let &(s, e) = self.spans.get(i)?;
        self.raw.get(s as usize..e as usize)
    }

    /// How many arguments the request has, the command name included.
    pub fn arg_count(&self) -> usize {
        self.spans.len()
    }

    /// The arguments `range` as they are encoded in [`raw`](Self::raw) (each `$len\r\n` header,
    /// the bytes, `\r\n`), one slice: what a sub-request with some of these arguments copies
    /// instead of encoding them again. `None` for an empty range or one past the arguments.
    pub fn encoded_args(&self, range: Range<usize>) -> Option<&[u8]> {
        if range.is_empty() {
            return None;
        }
        let &(_, last_end) = self.spans.get(range.end - 1)?;
        // Arguments follow each other with nothing between them: argument `i` starts right
        // after argument `i - 1`'s `\r\n`, the first one right after the `*N\r\n` line.
        let start = match range.start.checked_sub(1) {
            Some(before) => self.spans.get(before)?.1 as usize + 2,
            None => self.raw.iter().position(|&b| b == b'\n')? + 1,
        };
        self.raw.get(start..last_end as usize + 2)
    }

    /// Builds a request by encoding `args` (used for split and fan-out sub-requests). With no
    /// arguments the result is `*0\r\n`, which no backend will answer: callers must pass at
    /// least the command name.
    pub fn from_args<A: AsRef<[u8]>, I: IntoIterator<Item = A>>(args: I) -> Request {
        let args: SmallVec<[A; INLINE_ARGS]> = args.into_iter().collect();
        encode_args(args.iter().map(|a| a.as_ref()))
    }

    /// A request whose arguments are the `spans` (start, end) of `raw`. `raw` must be a
    /// multibulk of exactly these bulk strings, in order and back to back (what
    /// [`encoded_args`](Self::encoded_args) relies on), at most [`MAX_REQUEST_LEN`] long;
    /// both callers derive the spans from the bytes they just checked (under the decoder's
    /// limit) or wrote.
    /// The spans are moved in, not copied: the decoder hands over the ones it collected.
    pub(crate) fn from_spans(raw: Bytes, spans: Spans) -> Request {
        debug_assert!(raw.len() <= MAX_REQUEST_LEN);
        debug_assert!(spans
            .iter()
            .all(|&(s, e)| s <= e && e as usize <= raw.len()));
        debug_assert!(spans
            .last()
            .is_none_or(|&(_, e)| e as usize + 2 == raw.len()));
        Request { raw, spans }
    }
}

/// Encodes `parts` as one multibulk and slices the arguments back out of it.
pub(crate) fn encode_args<'a, I>(parts: I) -> Request
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let count = parts.clone().count();
    let size = encode::header_len(count)
        + parts
            .clone()
            .map(|p| encode::bulk_len(p.len()))
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    encode::array_header(&mut out, count);
    let mut spans = Spans::with_capacity(count);
    for part in parts {
        encode::header(&mut out, b'$', part.len());
        let start = out.len();
        out.extend_from_slice(part);
        spans.push(span(start, out.len()));
        out.extend_from_slice(b"\r\n");
    }
    Request::from_spans(out.freeze(), spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_args_encodes_and_slices() {
        let req = Request::from_args([Bytes::from_static(b"GET"), Bytes::from_static(b"a\r\nb")]);
        assert_eq!(&req.raw()[..], b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n");
        assert_eq!(&req.args()[..], [&b"GET"[..], b"a\r\nb"]);
        assert_eq!(req.arg(1), Some(&b"a\r\nb"[..]));
        assert_eq!(req.arg(2), None);
        let raw = req.raw().as_ptr() as usize..req.raw().as_ptr() as usize + req.raw().len();
        for a in req.args() {
            assert!(raw.contains(&(a.as_ptr() as usize)), "arg not inside raw");
        }
        assert_eq!(&Request::from_args::<&[u8], _>([]).raw()[..], b"*0\r\n");
    }

    #[test]
    fn encoded_args_are_the_raw_bytes_of_a_run_of_arguments() {
        let req = Request::from_args(["MSET", "k1", "v\r\n1", "k2", ""].map(str::as_bytes));
        assert_eq!(req.arg_count(), 5);
        assert_eq!(req.encoded_args(0..1), Some(&b"$4\r\nMSET\r\n"[..]));
        assert_eq!(
            req.encoded_args(1..3),
            Some(&b"$2\r\nk1\r\n$4\r\nv\r\n1\r\n"[..])
        );
        assert_eq!(req.encoded_args(4..5), Some(&b"$0\r\n\r\n"[..]));
        assert_eq!(req.encoded_args(0..5), req.raw().get(4..));
        assert_eq!(req.encoded_args(2..2), None);
        assert_eq!(req.encoded_args(4..6), None);
    }

    #[test]
    fn small_commands_keep_args_inline() {
        let set = Request::from_args(
            [&b"SET"[..], b"k", b"v", b"EX", b"10", b"NX"].map(Bytes::from_static),
        );
        assert!(!set.spans.spilled());
        assert!(!set.args().spilled());
        let big = Request::from_args((0..7).map(|_| Bytes::from_static(b"x")));
        assert_eq!(big.args().len(), 7);
    }
}
