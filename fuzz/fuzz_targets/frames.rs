//! A stream of frames, read as each message enum by the frame reader.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| distd::protocol::fuzzing::frames(bytes));
