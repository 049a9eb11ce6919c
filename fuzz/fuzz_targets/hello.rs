//! The opening of a connection: a hello, then a verdict.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| distd::protocol::fuzzing::hello(bytes));
