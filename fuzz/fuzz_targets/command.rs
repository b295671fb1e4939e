//! Command parsing on arbitrary requests: table lookup (subcommands included), the arity
//! check, key extraction per key specs, slot hashing, and the split of multi-key commands.
//! Nothing may panic, and every key index returned must point into the request.
//! The body is `slotgate::fuzzing::command`, shared with the test that replays
//! `fuzz/seeds/` and `fuzz/regressions/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| slotgate::fuzzing::command(data));
