//! The bodies of the cargo-fuzz targets in `fuzz/`, kept here so the fuzzer and the unit test
//! that replays the committed inputs (`fuzz/seeds/TARGET/`, `fuzz/regressions/TARGET/`) run the
//! same checks and cannot drift apart. Not an API: hidden from the docs, used by `fuzz/` only.
//!
//! Each function takes arbitrary bytes, must not panic on any of them, and asserts the
//! target's invariants (an assertion failure is a finding, like a panic in the code under test).

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::command::{lookup, split};
use crate::placement::Placement;
use crate::resp::{parse_frame, Limits, ReplyDecoder, Request, RequestDecoder};
use crate::slot::Slot;

/// The names of the fuzz targets, one function here each (also their directory names).
pub const TARGETS: [&str; 3] = ["request_decoder", "reply_decoder", "command"];

/// Runs the target named `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "request_decoder" => request_decoder(data),
        "reply_decoder" => reply_decoder(data),
        "command" => command(data),
        _ => return false,
    }
    true
}

/// Small limits, so the fuzzer reaches them.
fn limits() -> Limits {
    Limits {
        max_bulk_len: 1024,
        max_multibulk_len: 64,
        max_inline_len: 256,
        max_depth: 8,
        max_request_len: 4096,
    }
}

/// The first byte picks where to cut the rest in two: the rest and the cut's offset in it.
/// `None` for empty input.
fn cut(data: &[u8]) -> Option<(&[u8], usize)> {
    let (&cut, rest) = data.split_first()?;
    Some((rest, usize::from(cut) % (rest.len() + 1)))
}

/// Asserts that `decode` gives the same result for the input whole and cut in two (the first
/// byte of `data` picks the cut, see [`cut`]).
fn same_when_cut<T: PartialEq + std::fmt::Debug>(data: &[u8], decode: fn(&[&[u8]]) -> T) {
    let Some((data, at)) = cut(data) else { return };
    let (a, b) = data.split_at(at);
    assert_eq!(
        decode(&[data]),
        decode(&[a, b]),
        "cutting the input at {at} changed the result"
    );
}

/// The client request decoder (RESP multibulk and inline), whole and cut in two: no panic,
/// every request has a command name, and the cut changes nothing that is decoded.
pub fn request_decoder(data: &[u8]) {
    same_when_cut(data, decode_requests);
}

/// Every request decoded from `pieces` fed one after another, then the error if one came.
fn decode_requests(pieces: &[&[u8]]) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
    let mut decoder = RequestDecoder::new(limits());
    let mut out = Vec::new();
    let error = feed(
        pieces,
        |buf| decoder.decode(buf),
        |request| {
            let args = request.args();
            assert!(!args.is_empty(), "a request has a command name");
            // What split sub-requests copy: each argument's own encoding, back to back.
            for (i, arg) in args.iter().enumerate() {
                let mut want = format!("${}\r\n", arg.len()).into_bytes();
                want.extend_from_slice(arg);
                want.extend_from_slice(b"\r\n");
                assert_eq!(
                    request.encoded_args(i..i + 1),
                    Some(&want[..]),
                    "argument {i}"
                );
            }
            let all = request.encoded_args(0..args.len()).unwrap_or_default();
            assert!(
                request.raw().ends_with(all),
                "the arguments end the request"
            );
            out.push(args.iter().map(|a| a.to_vec()).collect());
        },
    );
    (out, error.map(|e| e.to_string()))
}

/// Feeds `pieces` one after another into a buffer, taking every complete item `decode` finds
/// to `take`; the error that ended decoding, if one did.
fn feed<T, E>(
    pieces: &[&[u8]],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
    mut take: impl FnMut(T),
) -> Option<E> {
    let mut buf = BytesMut::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) => take(item),
                Ok(None) => break,
                Err(e) => return Some(e),
            }
        }
    }
    None
}

/// The backend reply decoder and the frame parser, whole and cut in two: no panic, the same
/// replies either way, and every reply that parses as a frame re-encodes to bytes the decoder
/// accepts again.
pub fn reply_decoder(data: &[u8]) {
    same_when_cut(data, decode_replies);
}

/// Every reply decoded from `pieces` fed one after another, and whether an error ended them.
fn decode_replies(pieces: &[&[u8]]) -> (Vec<Bytes>, bool) {
    let mut decoder = ReplyDecoder::new(limits());
    let mut out = Vec::new();
    let error = feed(
        pieces,
        |buf| decoder.decode(buf),
        |reply| {
            let raw = reply.into_raw();
            if let Ok(frame) = parse_frame(&raw, &limits()) {
                let mut encoded = BytesMut::new();
                frame.encode(&mut encoded);
                // The encoder may normalise (e.g. number spellings); it must at least produce
                // something the decoder accepts again.
                let mut again = ReplyDecoder::new(limits());
                assert!(
                    matches!(again.decode(&mut encoded), Ok(Some(_))),
                    "re-encoded frame does not decode: {raw:?}"
                );
            }
            out.push(raw);
        },
    );
    (out, error.is_some())
}

/// Command parsing on one request: table lookup (subcommands included), the arity check, key
/// extraction per key specs, slot hashing and the split of multi-key commands. No panic, and
/// every key or routing index returned points into the request.
pub fn command(data: &[u8]) {
    let owned = command_args(data);
    let args: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    if args.is_empty() {
        return;
    }
    let Some(spec) = lookup(&args) else { return };
    let arity_ok = spec.arity_ok(args.len());
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    if spec.keys(&args, &mut keys).is_ok() {
        for &i in &keys {
            let key = args.get(i);
            assert!(
                key.is_some(),
                "{}: key index {i} past {}",
                spec.name,
                args.len()
            );
            let _ = key.map(|k| Slot::of(k));
        }
        if arity_ok {
            if let Some((rule, per_key)) = split::rule_of(spec.name) {
                let request = Request::from_args(&args);
                let (split, requests) =
                    split::split(&request, &keys, rule, per_key, &Placement::SLOTS);
                assert!(split.keys <= keys.len(), "{}: split keys", spec.name);
                assert_eq!(split.parts.len(), requests.len(), "{}", spec.name);
            }
        }
    }
    let mut routing: SmallVec<[usize; 8]> = SmallVec::new();
    if spec.routing_args(&args, &mut routing).is_ok() {
        assert!(routing.iter().all(|&i| i < args.len()), "{}", spec.name);
    }
}

/// The request: RESP or inline bytes if they decode, else NUL-separated arguments (which
/// reaches the key specs with binary arguments the decoders would not produce).
fn command_args(data: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(request)) = RequestDecoder::new(Limits::default()).decode(&mut buf) {
        return request.args().iter().map(|a| a.to_vec()).collect();
    }
    data.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::Path;

    /// Replays every committed seed and regression input through its target, as the fuzzer
    /// would, so a fixed crash stays fixed without cargo-fuzz.
    #[test]
    fn committed_fuzz_inputs_pass() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut failures = Vec::new();
        for target in TARGETS {
            let mut replayed = 0;
            for dir in ["seeds", "regressions"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("readable directory").path();
                    let data = std::fs::read(&path).expect("readable input");
                    if catch_unwind(AssertUnwindSafe(|| run(target, &data))).is_err() {
                        failures.push(path.display().to_string());
                    }
                    replayed += 1;
                }
            }
            assert!(replayed > 0, "no committed inputs for fuzz target {target}");
        }
        assert!(failures.is_empty(), "fuzz inputs failing: {failures:#?}");
    }

    #[test]
    fn unknown_target_is_refused() {
        assert!(!run("nope", b""));
    }
}
