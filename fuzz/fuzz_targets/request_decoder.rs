//! The client request decoder (RESP multibulk and inline) on arbitrary bytes, whole and cut
//! into pieces: it must never panic, and the cut must not change what is decoded.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use slotgate::resp::{Limits, RequestDecoder};

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

/// Every request decoded from `pieces` fed one after another, then the error if one came.
fn decode(pieces: &[&[u8]]) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
    let mut decoder = RequestDecoder::new(limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(request)) => {
                    assert!(!request.args().is_empty(), "a request has a command name");
                    out.push(request.args().iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = decode(&[data]);
    let at = usize::from(cut) % (data.len() + 1);
    let (a, b) = data.split_at(at);
    let pieces = decode(&[a, b]);
    assert_eq!(
        whole, pieces,
        "cutting the input at {at} changed the result"
    );
});
