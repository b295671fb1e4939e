//! RESP2 wire protocol: incremental, zero-copy decoding and encoding. Pure: no I/O.
//!
//! Owns the byte-level grammar only: what a request or reply frame is, where it ends, and the
//! exact Redis error text when it is malformed. It knows nothing of commands, keys, routing or
//! sockets; callers feed it read buffers and get back frames that share those buffers' memory.
//!
//! - [`RequestDecoder`] turns a client's bytes into [`Request`]s (multibulk or inline).
//! - [`ReplyDecoder`] delimits a backend's bytes into [`Reply`]s for pass-through.
//! - [`parse_frame`] takes a reply apart into a [`Frame`] tree when the proxy must read it.
//! - [`encode`] builds the replies the proxy answers itself.
//!
//! Nothing reachable from input may panic: slicing goes through checked accessors, and the
//! lints below hold non-test code to that.
#![cfg_attr(
    not(test),
    warn(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod encode;
mod error;
mod frame;
mod inline;
mod limits;
mod line;
#[cfg(test)]
mod proptests;
mod reply;
mod request;
mod request_decoder;

pub use error::ParseError;
pub use frame::{parse_frame, Frame, MAX_FRAME_DEPTH};
pub use limits::Limits;
/// A `<marker><integer>\r\n` line, parsed as Redis parses one (for readers of raw replies).
pub(crate) use line::{header_line, parse_int};
pub use reply::{Reply, ReplyDecoder, ReplyKind};
pub use request::{Request, MAX_REQUEST_LEN};
pub use request_decoder::RequestDecoder;

/// Test helper: a request's arguments from words, as the decoder would slice them.
#[cfg(test)]
pub(crate) fn test_args<'a>(words: &[&'a str]) -> Vec<&'a [u8]> {
    words.iter().map(|w| w.as_bytes()).collect()
}
