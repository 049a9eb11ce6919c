//! One frame's body, decoded as each message enum.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| distd::protocol::fuzzing::message(bytes));
