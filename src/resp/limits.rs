//! Protocol limits shared by the decoders.
//!
//! They bound how much a peer can make us buffer or recurse before we give up on the stream.
//! The defaults are Redis 7's, except where noted on the field.

/// Protocol limits (defaults match Redis 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in bytes (Redis `proto-max-bulk-len`). Applies to requests
    /// and replies.
    pub max_bulk_len: usize,
    /// Largest argument count of one request. Redis 7 accepts up to `i32::MAX`; we keep Redis 6's
    /// 1M so one client cannot queue an unbounded argument table. Reply arrays are not bounded by
    /// this (`LRANGE` can legitimately return more), as decoding them allocates per frame only.
    pub max_multibulk_len: usize,
    /// Longest inline command line and longest length/integer header line, in bytes
    /// (Redis `PROTO_INLINE_MAX_SIZE`). Guards against buffering forever while looking for a
    /// line end.
    pub max_inline_len: usize,
    /// Deepest aggregate nesting accepted in a reply (requests are never nested). The reply
    /// decoder keeps one small entry per open level, no recursion, so the default is above
    /// anything Redis sends: a script's nested tables stop at its Lua stack, before 8,000
    /// levels. Parsed trees are capped lower ([`MAX_FRAME_DEPTH`](super::MAX_FRAME_DEPTH)).
    pub max_depth: usize,
    /// Largest whole request accepted, in bytes as encoded on the wire (slotgate's
    /// `proxy.max_request_bytes`; Redis bounds the same thing with `client-query-buffer-limit`).
    /// Checked as soon as a `$len` header announces an argument that would cross it, before its
    /// data is buffered. Requests only; replies are not bounded by it.
    pub max_request_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_depth: 10_000,
            max_request_len: 1024 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_redis() {
        let l = Limits::default();
        assert_eq!(l.max_bulk_len, 536_870_912);
        assert_eq!(l.max_multibulk_len, 1_048_576);
        assert_eq!(l.max_inline_len, 65_536);
        assert_eq!(l.max_depth, 10_000);
        assert_eq!(l.max_request_len, 1 << 30, "client-query-buffer-limit");
    }
}
