//! Command parsing on arbitrary requests: table lookup (subcommands included), the arity
//! check, key extraction per key specs, slot hashing, and the split of multi-key commands.
//! Nothing may panic, and every key index returned must point into the request.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use slotgate::command::{lookup, split};
use slotgate::placement::Placement;
use slotgate::resp::{Limits, RequestDecoder};
use slotgate::slot::Slot;
use smallvec::SmallVec;

/// The request: RESP or inline bytes if they decode, else NUL-separated arguments (which
/// reaches the key specs with binary arguments the decoders would not produce).
fn args_of(data: &[u8]) -> Vec<Bytes> {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(request)) = RequestDecoder::new(Limits::default()).decode(&mut buf) {
        return request.args().to_vec();
    }
    data.split(|&b| b == 0)
        .map(Bytes::copy_from_slice)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let args = args_of(data);
    if args.is_empty() {
        return;
    }
    let Some(spec) = lookup(&args) else {
        return;
    };
    let arity_ok = spec.arity_ok(args.len());
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    if spec.keys(&args, &mut keys).is_ok() {
        for &i in &keys {
            assert!(
                i < args.len(),
                "{}: key index {i} past {}",
                spec.name,
                args.len()
            );
            let _ = Slot::of(&args[i]);
        }
        if arity_ok {
            if let Some((rule, per_key)) = split::rule_of(spec.name) {
                let parts = split::split(&args, &keys, rule, per_key, &Placement::Slots);
                assert!(parts.keys <= keys.len());
            }
        }
    }
    let mut routing: SmallVec<[usize; 8]> = SmallVec::new();
    if spec.routing_args(&args, &mut routing).is_ok() {
        assert!(routing.iter().all(|&i| i < args.len()), "{}", spec.name);
    }
});
