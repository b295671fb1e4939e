//! The client request decoder (RESP multibulk and inline) on arbitrary bytes, whole and cut
//! into pieces: it must never panic, and the cut must not change what is decoded.
//! The body is `slotgate::fuzzing::request_decoder`, shared with the test that replays
//! `fuzz/seeds/` and `fuzz/regressions/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| slotgate::fuzzing::request_decoder(data));
