//! [`ParseError`]: why a byte stream is not valid RESP.
//!
//! Every variant is fatal for the stream it came from: after one, the decoder no longer knows
//! where the next frame starts, so the caller replies [`ParseError::to_reply`] and closes the
//! connection. The texts are Redis 7.0's own where Redis has one, so a client sees the same
//! error through the proxy as it would talking to Redis directly.

use bytes::Bytes;

/// Why a byte stream is not valid RESP. Each variant maps to Redis' own error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A `*` count that is not an integer, or too large for a request.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$` length that is not an integer, negative (in a request), or above `max_bulk_len`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A client that has not logged in sent more arguments than Redis allows such clients.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A client that has not logged in sent an argument larger than Redis allows such clients.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A `*` count line longer than `max_inline_len` with no CRLF in sight.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$` length line longer than `max_inline_len` with no CRLF in sight.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline command line longer than `max_inline_len`.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command with an unterminated quote, or a closing quote not followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A byte other than the one the grammar requires here (a request argument not starting
    /// with `$`).
    #[error(
        "Protocol error: expected '{}', got '{}'",
        expected.escape_ascii(),
        got.escape_ascii()
    )]
    UnexpectedByte {
        /// The byte the grammar requires.
        expected: u8,
        /// The byte that was found.
        got: u8,
    },
    /// Bulk data, or a simple reply line, whose CR is not followed by LF. Redis itself skips the
    /// two bytes unchecked; we refuse, because we forward the raw bytes and must know they are
    /// well formed.
    #[error("Protocol error: expected CRLF")]
    MissingCrlf,
    /// A reply starting with a byte that is not a RESP2 type (`+ - : $ *`).
    #[error("Protocol error: invalid reply type '{}'", got.escape_ascii())]
    InvalidReplyType {
        /// The byte that was found.
        got: u8,
    },
    /// A reply nested deeper than `max_depth`.
    #[error("Protocol error: reply nested too deep")]
    TooDeep,
    /// An integer reply that is not a canonical decimal `i64`.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A request larger than `max_request_len`, known from its headers before its data is
    /// buffered. `size` is how large it is known to be at least.
    #[error(
        "Protocol error: request too large: at least {size} bytes, \
         the limit is {limit} (proxy.max_request_bytes)"
    )]
    RequestTooLarge {
        /// Bytes the request is known to need, at least.
        size: usize,
        /// The limit it crossed.
        limit: usize,
    },
    /// A status or error reply line longer than `max_bulk_len`.
    #[error("Protocol error: too big reply line")]
    TooBigLine,
    /// [`parse_frame`](super::parse_frame) was given the start of a frame only.
    #[error("Protocol error: incomplete frame")]
    Incomplete,
    /// [`parse_frame`](super::parse_frame) was given more than one frame.
    #[error("Protocol error: trailing bytes after frame")]
    TrailingBytes,
}

impl ParseError {
    /// Stable short label for metrics, e.g. `"invalid_bulk_length"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::InvalidMultibulkLength => "invalid_multibulk_length",
            ParseError::InvalidBulkLength => "invalid_bulk_length",
            ParseError::UnauthenticatedMultibulkLength => "unauthenticated_multibulk_length",
            ParseError::UnauthenticatedBulkLength => "unauthenticated_bulk_length",
            ParseError::TooBigMultibulkCount => "too_big_mbulk_count",
            ParseError::TooBigBulkCount => "too_big_bulk_count",
            ParseError::TooBigInline => "too_big_inline",
            ParseError::UnbalancedQuotes => "unbalanced_quotes",
            ParseError::UnexpectedByte { .. } => "unexpected_byte",
            ParseError::MissingCrlf => "missing_crlf",
            ParseError::InvalidReplyType { .. } => "invalid_reply_type",
            ParseError::TooDeep => "too_deep",
            ParseError::RequestTooLarge { .. } => "request_too_large",
            ParseError::InvalidInteger => "invalid_integer",
            ParseError::TooBigLine => "too_big_line",
            ParseError::Incomplete => "incomplete",
            ParseError::TrailingBytes => "trailing_bytes",
        }
    }

    /// The RESP error reply for the client, e.g. `-ERR Protocol error: invalid bulk length\r\n`.
    pub fn to_reply(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"-ERR ");
        match *self {
            // Redis prints the offending byte raw (`%c`), only turning CR and LF into spaces
            // so the reply stays one line; Display escapes it instead, so build these by hand.
            ParseError::UnexpectedByte { expected, got } => {
                out.extend_from_slice(b"Protocol error: expected '");
                out.push(one_line(expected));
                out.extend_from_slice(b"', got '");
                out.push(one_line(got));
                out.push(b'\'');
            }
            ParseError::InvalidReplyType { got } => {
                out.extend_from_slice(b"Protocol error: invalid reply type '");
                out.push(one_line(got));
                out.push(b'\'');
            }
            _ => out.extend_from_slice(self.to_string().as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        Bytes::from(out)
    }
}

/// `b`, or a space if it would end the error line early.
fn one_line(b: u8) -> u8 {
    if b == b'\r' || b == b'\n' {
        b' '
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_use_redis_wording() {
        let cases: &[(ParseError, &[u8])] = &[
            (
                ParseError::InvalidMultibulkLength,
                b"-ERR Protocol error: invalid multibulk length\r\n",
            ),
            (
                ParseError::InvalidBulkLength,
                b"-ERR Protocol error: invalid bulk length\r\n",
            ),
            (
                ParseError::UnauthenticatedMultibulkLength,
                b"-ERR Protocol error: unauthenticated multibulk length\r\n",
            ),
            (
                ParseError::UnauthenticatedBulkLength,
                b"-ERR Protocol error: unauthenticated bulk length\r\n",
            ),
            (
                ParseError::TooBigMultibulkCount,
                b"-ERR Protocol error: too big mbulk count string\r\n",
            ),
            (
                ParseError::TooBigBulkCount,
                b"-ERR Protocol error: too big bulk count string\r\n",
            ),
            (
                ParseError::TooBigInline,
                b"-ERR Protocol error: too big inline request\r\n",
            ),
            (
                ParseError::UnbalancedQuotes,
                b"-ERR Protocol error: unbalanced quotes in request\r\n",
            ),
            (
                ParseError::UnexpectedByte {
                    expected: b'$',
                    got: b'x',
                },
                b"-ERR Protocol error: expected '$', got 'x'\r\n",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(&err.to_reply()[..], *want, "{err:?}");
        }
    }

    #[test]
    fn offending_byte_is_raw_but_never_a_line_break() {
        // Both observed from redis-server 7.0.15 for `*1\r\n\r\n` and `*1\r\n\xff\r\n`.
        let cr = ParseError::UnexpectedByte {
            expected: b'$',
            got: b'\r',
        };
        assert_eq!(
            &cr.to_reply()[..],
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        let ff = ParseError::UnexpectedByte {
            expected: b'$',
            got: 0xff,
        };
        assert_eq!(
            &ff.to_reply()[..],
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
        assert_eq!(ff.to_string(), "Protocol error: expected '$', got '\\xff'");
        let ty = ParseError::InvalidReplyType { got: b'\n' };
        assert_eq!(
            &ty.to_reply()[..],
            b"-ERR Protocol error: invalid reply type ' '\r\n"
        );
    }

    #[test]
    fn every_reply_is_one_line_and_kinds_are_distinct() {
        let all = [
            ParseError::InvalidMultibulkLength,
            ParseError::InvalidBulkLength,
            ParseError::UnauthenticatedMultibulkLength,
            ParseError::UnauthenticatedBulkLength,
            ParseError::TooBigMultibulkCount,
            ParseError::TooBigBulkCount,
            ParseError::TooBigInline,
            ParseError::UnbalancedQuotes,
            ParseError::UnexpectedByte {
                expected: b'$',
                got: b'\n',
            },
            ParseError::MissingCrlf,
            ParseError::InvalidReplyType { got: b'%' },
            ParseError::TooDeep,
            ParseError::InvalidInteger,
            ParseError::TooBigLine,
            ParseError::Incomplete,
            ParseError::TrailingBytes,
            ParseError::RequestTooLarge {
                size: 2_000_000,
                limit: 1_048_576,
            },
        ];
        let mut kinds: Vec<_> = all.iter().map(ParseError::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
        for e in &all {
            let r = e.to_reply();
            assert!(r.starts_with(b"-ERR Protocol error: "), "{e:?}");
            assert!(r.ends_with(b"\r\n"));
            let body = &r[..r.len() - 2];
            assert!(!body.contains(&b'\r') && !body.contains(&b'\n'), "{e:?}");
        }
    }
}
