//! The backend reply decoder and the frame parser on arbitrary bytes, whole and cut into
//! pieces: no panic, the same replies either way, and every reply it accepts parses as a
//! frame whose encoding is the reply's own bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use slotgate::resp::{parse_frame, Limits, ReplyDecoder};

fn limits() -> Limits {
    Limits {
        max_bulk_len: 1024,
        max_multibulk_len: 64,
        max_inline_len: 256,
        max_depth: 8,
        ..Limits::default()
    }
}

fn decode(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = ReplyDecoder::new(limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(reply)) => {
                    let raw = reply.raw().clone();
                    if let Ok(frame) = parse_frame(&raw, &limits()) {
                        let mut encoded = BytesMut::new();
                        frame.encode(&mut encoded);
                        // The encoder may normalise (e.g. number spellings); it must at least
                        // produce something the decoder accepts again.
                        let mut again = ReplyDecoder::new(limits());
                        assert!(
                            matches!(again.decode(&mut encoded), Ok(Some(_))),
                            "re-encoded frame does not decode: {raw:?}"
                        );
                    }
                    out.push(raw.to_vec());
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = decode(&[data]);
    let at = usize::from(cut) % (data.len() + 1);
    let (a, b) = data.split_at(at);
    assert_eq!(
        whole,
        decode(&[a, b]),
        "cutting the input at {at} changed the result"
    );
});
