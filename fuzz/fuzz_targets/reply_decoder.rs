//! The backend reply decoder and the frame parser on arbitrary bytes, whole and cut into
//! pieces: no panic, the same replies either way, and every reply that parses as a frame
//! re-encodes to bytes the decoder accepts again.
//! The body is `slotgate::fuzzing::reply_decoder`, shared with the test that replays
//! `fuzz/seeds/` and `fuzz/regressions/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| slotgate::fuzzing::reply_decoder(data));
