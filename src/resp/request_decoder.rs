//! [`RequestDecoder`]: turns a client's read buffer into [`Request`]s.
//!
//! A request arrives either as a RESP multibulk (`*N\r\n` then N `$len\r\n<bytes>\r\n`) or
//! as an inline line (`GET key\r\n`, what telnet users type); both are checked the way
//! redis-server 7.0 checks them, with its error texts.
//!
//! The decoder is resumable. It records how far it has validated the frame at the front of the
//! buffer and picks up there on the next call, so a request that arrives in many small reads
//! (a 1M-argument MSET, a 512 MB value) costs time linear in its size, not quadratic.

use bytes::{Buf, BytesMut};

use super::inline::split_args;
use super::line::{find_line, header_line, parse_int, Line};
use super::request::{encode_args, span, Spans, MAX_REQUEST_LEN};
use super::{Limits, ParseError, Request};

/// Reused offset/scratch buffers grown past this many entries are dropped after the request, so
/// one huge MSET does not pin memory for the rest of the connection.
const KEEP_CAPACITY: usize = 4096;

/// Where the decoder is within the frame at the front of the buffer. Offsets are from the
/// buffer's start, which is the frame's start: nothing is consumed until the frame is complete.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Nothing known yet.
    Start,
    /// An inline line; `scanned` bytes hold no `\n`.
    Inline { scanned: usize },
    /// The `*N` line; `scanned` counts its bytes after `*` known to hold no CR.
    Count { scanned: usize },
    /// The arguments of a multibulk: `remaining` still to come, the next one starting at `pos`.
    Args {
        remaining: usize,
        pos: usize,
        /// How much of the `$len` line at `pos` is known to hold no CR.
        scanned: usize,
        /// The data range of the current argument, once its `$len` line is parsed.
        bulk: Option<(usize, usize)>,
    },
}

/// The shortest an argument can be encoded (`$0\r\n\r\n`).
const MIN_ARG_LEN: usize = 6;

/// Most arguments of a request from a client that has not logged in (Redis' own bound).
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Largest argument of a request from a client that has not logged in (Redis' own bound).
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

/// What one step of decoding achieved.
// Returned by value and immediately matched; boxing the request would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// A request is complete and consumed.
    Done(Request),
    /// Progress without a request (a state change, or an empty request skipped): step again.
    Continue,
    /// The buffer ran out; where we got to is saved in the state.
    NeedMore,
}

/// Incremental decoder for client requests (RESP multibulk or inline).
///
/// Resumable: it remembers how far it has scanned, so a huge request arriving in many small
/// reads is not rescanned from the start each time. Feed it one connection's read buffer, only
/// ever appending to it between calls.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    /// The client has not logged in yet (a password is required): Redis' much lower limits
    /// for such clients apply ([`UNAUTHENTICATED_MAX_ARGS`], [`UNAUTHENTICATED_MAX_BULK`]).
    unauthenticated: bool,
    state: State,
    /// Argument data ranges of the multibulk being decoded (or, for an inline line, ranges in
    /// `scratch`). Kept across requests so a steady stream of them allocates nothing.
    spans: Spans,
    /// Unescaped inline arguments.
    scratch: Vec<u8>,
}

impl RequestDecoder {
    /// A decoder enforcing `limits` (a `max_request_len` above [`MAX_REQUEST_LEN`], 4 GiB,
    /// counts as that).
    pub fn new(mut limits: Limits) -> Self {
        limits.max_request_len = limits.max_request_len.min(MAX_REQUEST_LEN);
        RequestDecoder {
            limits,
            unauthenticated: false,
            state: State::Start,
            spans: Spans::new(),
            scratch: Vec::new(),
        }
    }

    /// Apply (or lift) the limits for a client that has not logged in yet, from the next
    /// request on: at most [`UNAUTHENTICATED_MAX_ARGS`] arguments of at most
    /// [`UNAUTHENTICATED_MAX_BULK`] bytes each, as Redis does, so a stranger cannot make the
    /// proxy buffer a large request.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Decodes the next request at the front of `buf`.
    ///
    /// `Ok(Some(req))` consumes that request's bytes from `buf`. `Ok(None)` means more bytes
    /// are needed; no bytes of a request were consumed, though empty requests (`*0\r\n`,
    /// `*-1\r\n`, blank inline lines) before it may have been discarded, as Redis does. `Err` is
    /// a protocol violation: reply [`ParseError::to_reply`] and close the client; the decoder
    /// is reset but the stream cannot be resynchronised.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ParseError> {
        if matches!(self.state, State::Start) && buf.first() == Some(&b'*') {
            if let Some(end) = self.complete_multibulk(buf) {
                // Every span ends before `end` (checked as it was pushed).
                let req = Request::from_spans(buf.split_to(end).freeze(), self.take_spans());
                self.finish();
                return Ok(Some(req));
            }
        }
        loop {
            let step = match self.step(buf) {
                Ok(step) => step,
                Err(e) => {
                    self.state = State::Start;
                    return Err(e);
                }
            };
            match step {
                Step::Done(req) => return Ok(Some(req)),
                Step::Continue => continue,
                Step::NeedMore => return Ok(None),
            }
        }
    }

    /// While a frame is incomplete: the total buffer length the frame is known to need (after a
    /// `$1000000\r\n` header, up to the end of that argument), so the caller can reserve
    /// capacity once. `None` when unknown.
    pub fn needed(&self) -> Option<usize> {
        match self.state {
            State::Args {
                bulk: Some((_, end)),
                ..
            } => end.checked_add(2),
            _ => None,
        }
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ParseError> {
        match self.state {
            State::Start => {
                self.state = match buf.first() {
                    None => return Ok(Step::NeedMore),
                    Some(b'*') => State::Count { scanned: 0 },
                    Some(_) => State::Inline { scanned: 0 },
                };
                Ok(Step::Continue)
            }
            State::Inline { scanned } => self.inline(buf, scanned),
            State::Count { scanned } => self.count(buf, scanned),
            State::Args {
                remaining,
                pos,
                scanned,
                bulk,
            } => match self.args(buf, remaining, pos, scanned, bulk)? {
                None => Ok(Step::NeedMore),
                Some(end) => {
                    // Every span ends before `end` (checked as it was pushed).
                    let req = Request::from_spans(buf.split_to(end).freeze(), self.take_spans());
                    self.finish();
                    Ok(Step::Done(req))
                }
            },
        }
    }

    /// The common case in one pass: a complete, well-formed multibulk at the front of `buf`.
    /// Returns its length with its argument spans in `self.spans`. `None` for anything else
    /// (incomplete, empty, malformed, over a limit), which the resumable path then handles,
    /// errors included; this path accepts only what that one accepts, with the same spans.
    fn complete_multibulk(&mut self, buf: &[u8]) -> Option<usize> {
        let max_line = self.limits.max_inline_len;
        let (count, mut pos) = header_line(buf, 0, b'*', max_line)?;
        let count = usize::try_from(count)
            .ok()
            .filter(|&n| n > 0 && n <= self.max_args())?;
        // Each argument takes at least `$0\r\n\r\n`: a frame that cannot be complete yet is
        // left to the resumable path before anything is reserved for it.
        if count > buf.len().saturating_sub(pos) / MIN_ARG_LEN {
            return None;
        }
        self.spans.clear();
        // Sized once: a 21-argument MSET would otherwise regrow it three times.
        self.spans.reserve_exact(count);
        for _ in 0..count {
            let (len, start) = header_line(buf, pos, b'$', max_line)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= self.max_bulk())?;
            let end = start.checked_add(len)?;
            if end.checked_add(2)? > self.limits.max_request_len {
                return None;
            }
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            self.spans.push(span(start, end));
            pos = end + 2;
        }
        Some(pos)
    }

    /// The most arguments a request may have now.
    fn max_args(&self) -> usize {
        if self.unauthenticated {
            UNAUTHENTICATED_MAX_ARGS.min(self.limits.max_multibulk_len)
        } else {
            self.limits.max_multibulk_len
        }
    }

    /// The largest argument a request may have now.
    fn max_bulk(&self) -> usize {
        if self.unauthenticated {
            UNAUTHENTICATED_MAX_BULK.min(self.limits.max_bulk_len)
        } else {
            self.limits.max_bulk_len
        }
    }

    /// Parses the `*N` line.
    fn count(&mut self, buf: &mut BytesMut, mut scanned: usize) -> Result<Step, ParseError> {
        let cr = match find_line(buf, 1, &mut scanned, self.limits.max_inline_len) {
            Line::End(cr) => cr,
            Line::Partial => {
                self.state = State::Count { scanned };
                return Ok(Step::NeedMore);
            }
            Line::TooLong => return Err(ParseError::TooBigMultibulkCount),
            Line::BadTerminator => return Err(ParseError::InvalidMultibulkLength),
        };
        let n = buf
            .get(1..cr)
            .and_then(parse_int)
            .ok_or(ParseError::InvalidMultibulkLength)?;
        if n <= 0 {
            // Redis silently ignores `*0` and any negative count.
            buf.advance(cr + 2);
            self.state = State::Start;
            return Ok(Step::Continue);
        }
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.limits.max_multibulk_len)
            .ok_or(ParseError::InvalidMultibulkLength)?;
        if n > self.max_args() {
            return Err(ParseError::UnauthenticatedMultibulkLength);
        }
        self.spans.clear();
        // Capped: the count is only a claim, and costs the client 12 bytes to make.
        self.spans.reserve(n.min(1024));
        self.state = State::Args {
            remaining: n,
            pos: cr + 2,
            scanned: 0,
            bulk: None,
        };
        Ok(Step::Continue)
    }

    /// Validates arguments until the multibulk is complete (returning its length) or the buffer
    /// runs out (saving where it got to and returning `None`).
    fn args(
        &mut self,
        buf: &[u8],
        mut remaining: usize,
        mut pos: usize,
        mut scanned: usize,
        mut bulk: Option<(usize, usize)>,
    ) -> Result<Option<usize>, ParseError> {
        loop {
            if let Some((start, end)) = bulk {
                match buf.get(end..end + 2) {
                    None => break,
                    Some(b"\r\n") => {}
                    Some(_) => return Err(ParseError::MissingCrlf),
                }
                self.spans.push(span(start, end));
                pos = end + 2;
                bulk = None;
                remaining = remaining.saturating_sub(1);
                if remaining == 0 {
                    return Ok(Some(pos));
                }
            }
            // Checked as soon as the byte arrives; Redis waits for the whole line first, but
            // the outcome is the same error.
            match buf.get(pos) {
                None => break,
                Some(b'$') => {}
                Some(&got) => {
                    return Err(ParseError::UnexpectedByte {
                        expected: b'$',
                        got,
                    })
                }
            }
            let cr = match find_line(buf, pos + 1, &mut scanned, self.limits.max_inline_len) {
                Line::End(cr) => cr,
                Line::Partial => break,
                Line::TooLong => return Err(ParseError::TooBigBulkCount),
                Line::BadTerminator => return Err(ParseError::InvalidBulkLength),
            };
            let len = buf
                .get(pos + 1..cr)
                .and_then(parse_int)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= self.limits.max_bulk_len)
                .ok_or(ParseError::InvalidBulkLength)?;
            if len > self.max_bulk() {
                return Err(ParseError::UnauthenticatedBulkLength);
            }
            let start = cr + 2;
            // `end + 2` must not overflow either (only reachable with absurd limits).
            let end = start
                .checked_add(len)
                .filter(|e| e.checked_add(2).is_some())
                .ok_or(ParseError::InvalidBulkLength)?;
            // The whole request up to here must fit; refused before its data is buffered.
            if end + 2 > self.limits.max_request_len {
                return Err(ParseError::RequestTooLarge {
                    size: end + 2,
                    limit: self.limits.max_request_len,
                });
            }
            bulk = Some((start, end));
            scanned = 0;
        }
        self.state = State::Args {
            remaining,
            pos,
            scanned,
            bulk,
        };
        Ok(None)
    }

    /// Handles an inline line, whose end is searched for from `scanned`.
    fn inline(&mut self, buf: &mut BytesMut, scanned: usize) -> Result<Step, ParseError> {
        // The `\n` may sit at index `max_inline_len` at the latest.
        let limit = self.limits.max_inline_len.saturating_add(1);
        let to = buf.len().min(limit);
        let window = buf.get(scanned..to).unwrap_or_default();
        let Some(i) = window.iter().position(|&b| b == b'\n') else {
            if to >= limit {
                return Err(ParseError::TooBigInline);
            }
            self.inline_fits(to)?;
            self.state = State::Inline { scanned: to };
            return Ok(Step::NeedMore);
        };
        let newline = scanned + i;
        self.inline_fits(newline + 1)?;
        let line = buf.get(..newline).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_args(line, &mut self.scratch, &mut self.spans)?;
        buf.advance(newline + 1);
        self.state = State::Start;
        if self.spans.is_empty() {
            return Ok(Step::Continue);
        }
        let scratch = &self.scratch;
        let req = encode_args(
            self.spans
                .iter()
                .map(|&(s, e)| scratch.get(s as usize..e as usize).unwrap_or_default()),
        );
        self.finish();
        Ok(Step::Done(req))
    }

    /// An inline line of `len` bytes so far is within `max_request_len` (only a limit below
    /// `max_inline_len` can refuse one).
    fn inline_fits(&self, len: usize) -> Result<(), ParseError> {
        if len > self.limits.max_request_len {
            return Err(ParseError::RequestTooLarge {
                size: len,
                limit: self.limits.max_request_len,
            });
        }
        Ok(())
    }

    /// The spans of the request just completed, moved out (the next request starts afresh).
    fn take_spans(&mut self) -> Spans {
        std::mem::take(&mut self.spans)
    }

    /// Resets for the next request, releasing buffers a huge request blew up.
    fn finish(&mut self) {
        self.state = State::Start;
        self.spans.clear();
        if self.spans.capacity() > KEEP_CAPACITY {
            self.spans = Spans::new();
        }
        if self.scratch.capacity() > KEEP_CAPACITY * 16 {
            self.scratch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decoder() -> RequestDecoder {
        RequestDecoder::new(Limits::default())
    }

    /// One request's arguments, owned.
    type Args = Vec<Vec<u8>>;

    /// Decodes everything in `input` at once; returns the requests' args and what is left.
    fn decode_all(input: &[u8]) -> (Result<Vec<Args>, ParseError>, BytesMut) {
        let mut d = decoder();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(req)) => {
                    assert_eq!(req.raw(), Request::from_args(req.args().to_vec()).raw());
                    out.push(req.args().iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => return (Ok(out), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }

    fn args_of(input: &[u8]) -> Vec<Args> {
        let (res, rest) = decode_all(input);
        assert!(rest.is_empty(), "left over: {rest:?}");
        res.unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn err_of(input: &[u8]) -> ParseError {
        match decode_all(input).0 {
            Err(e) => e,
            Ok(reqs) => panic!("{input:?} decoded to {reqs:?}"),
        }
    }

    fn v(words: &[&[u8]]) -> Args {
        words.iter().map(|w| w.to_vec()).collect()
    }

    #[test]
    fn multibulk_is_sliced_zero_copy() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let req = decoder().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&req.raw()[..], &input[..]);
        assert_eq!(&req.args()[..], [&b"SET"[..], b"k", b""]);
        let raw = req.raw().as_ptr() as usize..req.raw().as_ptr() as usize + req.raw().len();
        for a in req.args() {
            assert!(raw.contains(&(a.as_ptr() as usize)), "arg not inside raw");
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO x\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n\nPING\n";
        assert_eq!(
            args_of(input),
            vec![
                v(&[b"PING"]),
                v(&[b"ECHO", b"x"]),
                v(&[b"GET", b"a"]),
                v(&[b"PING"])
            ]
        );
    }

    #[test]
    fn empty_requests_are_skipped() {
        let input =
            b"*0\r\n*-1\r\n*-2\r\n*-9223372036854775808\r\n\r\n\n   \r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(args_of(input), vec![v(&[b"PING"])]);
        // Consumed even when nothing follows yet.
        let (res, rest) = decode_all(b"*0\r\n\r\n");
        assert_eq!(res, Ok(vec![]));
        assert!(rest.is_empty());
    }

    #[test]
    fn inline_is_reencoded_as_multibulk() {
        let mut buf = BytesMut::from(&b"SET \"a b\" 'c'\r\n"[..]);
        let req = decoder().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            &req.raw()[..],
            b"*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$1\r\nc\r\n"
        );
        assert_eq!(&req.args()[..], [&b"SET"[..], b"a b", b"c"]);
        assert_eq!(args_of(b"ECHO a\r\r\n"), vec![v(&[b"ECHO", b"a"])]);
        assert_eq!(args_of(b"ECHO a\n"), vec![v(&[b"ECHO", b"a"])]);
    }

    #[test]
    fn multibulk_count_errors() {
        for input in [
            &b"*abc\r\n"[..],
            b"*\r\n",
            b"*1 \r\n",
            b"* 1\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"*-0\r\n",
            b"*-9223372036854775809\r\n",
            b"*1048577\r\n",
            b"*1\rx",
            b"*1\nPING\r\n",
        ] {
            assert_eq!(
                err_of(input),
                ParseError::InvalidMultibulkLength,
                "{input:?}"
            );
        }
        let mut long = b"*".to_vec();
        long.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(err_of(&long), ParseError::TooBigMultibulkCount);
    }

    #[test]
    fn bulk_length_errors() {
        for input in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$-0\r\n",
            b"*1\r\n$abc\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$+4\r\n",
            b"*1\r\n$04\r\n",
            b"*1\r\n$536870913\r\n",
            b"*1\r\n$4\nPING\r\n",
            b"*1\r\n$4\rxPING\r\n",
        ] {
            assert_eq!(err_of(input), ParseError::InvalidBulkLength, "{input:?}");
        }
        let mut long = b"*1\r\n$".to_vec();
        long.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(err_of(&long), ParseError::TooBigBulkCount);
    }

    #[test]
    fn argument_must_start_with_dollar() {
        for (input, got) in [
            (&b"*1\r\nx\r\n"[..], b'x'),
            (b"*1\r\n:1\r\n", b':'),
            (b"*1\r\n\r\n", b'\r'),
            (b"*2\r\n$3\r\nGET\r\n*1\r\n", b'*'),
        ] {
            assert_eq!(
                err_of(input),
                ParseError::UnexpectedByte {
                    expected: b'$',
                    got
                },
                "{input:?}"
            );
        }
    }

    #[test]
    fn bulk_data_must_end_with_crlf() {
        for input in [
            &b"*1\r\n$4\r\nPINGxx"[..],
            b"*1\r\n$4\r\nPING\rx",
            b"*1\r\n$4\r\nPING\n\r",
        ] {
            assert_eq!(err_of(input), ParseError::MissingCrlf, "{input:?}");
        }
    }

    #[test]
    fn inline_errors() {
        assert_eq!(err_of(b"ECHO \"a\"b\r\n"), ParseError::UnbalancedQuotes);
        assert_eq!(err_of(b"ECHO 'abc\r\n"), ParseError::UnbalancedQuotes);
        assert_eq!(err_of(&[b'E'; 70_000]), ParseError::TooBigInline);
        // Chunking cannot matter: a long line is refused even when its newline is buffered.
        let mut line = vec![b'a'; 65_537];
        line.push(b'\n');
        assert_eq!(err_of(&line), ParseError::TooBigInline);
        let mut line = vec![b'a'; 65_536];
        line.push(b'\n');
        assert_eq!(args_of(&line).len(), 1);
    }

    #[test]
    fn limits_are_configurable() {
        let limits = Limits {
            max_bulk_len: 3,
            max_multibulk_len: 2,
            max_inline_len: 8,
            max_depth: 1,
            max_request_len: 1024,
        };
        let run = |input: &[u8]| RequestDecoder::new(limits).decode(&mut BytesMut::from(input));
        assert!(run(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap().is_some());
        assert_eq!(run(b"*3\r\n"), Err(ParseError::InvalidMultibulkLength));
        assert_eq!(run(b"*1\r\n$4\r\n"), Err(ParseError::InvalidBulkLength));
        assert_eq!(run(b"GET abcde\n"), Err(ParseError::TooBigInline));
        assert_eq!(run(b"*000000001"), Err(ParseError::TooBigMultibulkCount));
    }

    #[test]
    fn clients_not_logged_in_get_redis_lower_limits() {
        let arg = |n: usize| Bytes::from(vec![b'v'; n]);
        let run = |req: Request, unauthenticated: bool| {
            let mut decoder = RequestDecoder::new(Limits::default());
            decoder.set_unauthenticated(unauthenticated);
            decoder.decode(&mut BytesMut::from(&req.raw()[..]))
        };
        let eleven = Request::from_args((0..11).map(|_| arg(1)));
        let ten = Request::from_args((0..10).map(|_| arg(1)));
        let big = Request::from_args([arg(3), arg(16 * 1024 + 1)]);
        let largest = Request::from_args([arg(3), arg(16 * 1024)]);
        assert_eq!(
            run(eleven.clone(), true),
            Err(ParseError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            run(big.clone(), true),
            Err(ParseError::UnauthenticatedBulkLength)
        );
        assert!(run(ten, true).unwrap().is_some());
        assert!(run(largest, true).unwrap().is_some());
        assert!(run(eleven, false).unwrap().is_some());
        assert!(run(big, false).unwrap().is_some());
        // Refused from the headers alone, before the data arrives.
        let mut decoder = RequestDecoder::new(Limits::default());
        decoder.set_unauthenticated(true);
        let header = &mut BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$100000000\r\n"[..]);
        assert_eq!(
            decoder.decode(header),
            Err(ParseError::UnauthenticatedBulkLength)
        );
        // Lifted from the next request on (after AUTH).
        let mut decoder = RequestDecoder::new(Limits::default());
        decoder.set_unauthenticated(true);
        let auth = Request::from_args([arg(4), arg(2)]);
        let set = Request::from_args([arg(3), arg(1), arg(20_000)]);
        let mut buf = BytesMut::from(&auth.raw()[..]);
        buf.extend_from_slice(set.raw());
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        decoder.set_unauthenticated(false);
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().raw(), set.raw());
    }

    #[test]
    fn request_size_is_refused_from_the_header() {
        let limits = Limits {
            max_request_len: 40,
            ..Limits::default()
        };
        let run = |input: &[u8]| RequestDecoder::new(limits).decode(&mut BytesMut::from(input));
        let set = |n: usize| {
            Request::from_args([
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from(vec![b'v'; n]),
            ])
        };
        // 25 bytes of headers, the value, its CRLF: 40 bytes exactly pass, 41 do not.
        assert_eq!(set(13).raw().len(), 40);
        assert!(run(set(13).raw()).unwrap().is_some());
        assert_eq!(
            run(set(14).raw()),
            Err(ParseError::RequestTooLarge {
                size: 41,
                limit: 40
            })
        );
        // Refused from the header alone: the 100 MB of data never has to arrive.
        let header = b"*2\r\n$3\r\nSET\r\n$100000000\r\n";
        assert_eq!(
            run(header),
            Err(ParseError::RequestTooLarge {
                size: header.len() + 100_000_000 + 2,
                limit: 40
            })
        );
        // Many small arguments add up.
        let many = Request::from_args((0..20).map(|_| Bytes::from_static(b"x")));
        assert!(matches!(
            run(many.raw()),
            Err(ParseError::RequestTooLarge { .. })
        ));
        // Inline lines too, with or without their newline.
        assert!(run(&[b'a'; 39]).unwrap().is_none());
        assert!(matches!(
            run(&[b'a'; 41]),
            Err(ParseError::RequestTooLarge { size: 41, .. })
        ));
        let mut line = vec![b'a'; 40];
        line.push(b'\n');
        assert!(matches!(
            run(&line),
            Err(ParseError::RequestTooLarge { size: 41, .. })
        ));
    }

    #[test]
    fn partial_input_waits_and_resumes() {
        let input = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        let mut d = decoder();
        let mut buf = BytesMut::new();
        for (i, &b) in input.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let got = d.decode(&mut buf).unwrap();
            if i + 1 < input.len() {
                assert!(got.is_none(), "early at {i}");
                assert_eq!(buf.len(), i + 1, "nothing consumed");
            } else {
                assert_eq!(&got.unwrap().raw()[..], &input[..]);
            }
        }
    }

    #[test]
    fn needed_reports_a_known_bulk_end() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$1000000\r\nabc"[..]);
        assert_eq!(d.needed(), None);
        assert!(d.decode(&mut buf).unwrap().is_none());
        let header = b"*2\r\n$3\r\nSET\r\n$1000000\r\n".len();
        assert_eq!(d.needed(), Some(header + 1_000_000 + 2));
        buf.extend_from_slice(&vec![b'x'; 1_000_000 - 3]);
        buf.extend_from_slice(b"\r\n");
        let req = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(req.args()[1].len(), 1_000_000);
        assert_eq!(d.needed(), None);
        // Unknown while a header or inline line is incomplete.
        let mut buf = BytesMut::from(&b"*2\r\n$3"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(d.needed(), None);
    }

    #[test]
    fn many_args_trickling_in_is_linear() {
        // 200k arguments fed 7 bytes at a time: quadratic rescanning would take minutes.
        let n = 200_000;
        let req = Request::from_args(
            std::iter::once(Bytes::from_static(b"MSET"))
                .chain((0..n).map(|i| Bytes::from(format!("k{i}")))),
        );
        let mut d = decoder();
        let mut buf = BytesMut::new();
        let mut got = None;
        for chunk in req.raw().chunks(7) {
            buf.extend_from_slice(chunk);
            if let Some(r) = d.decode(&mut buf).unwrap() {
                got = Some(r);
            }
        }
        let got = got.unwrap();
        assert_eq!(got.args().len(), n + 1);
        assert_eq!(got, req);
    }

    #[test]
    fn decoder_is_reusable_after_an_error() {
        let mut d = decoder();
        assert!(d.decode(&mut BytesMut::from(&b"*1\r\n$x\r\n"[..])).is_err());
        let mut buf = BytesMut::from(&b"PING\r\n"[..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
    }
}
