//! Fuzzes OpusHead: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::opus::fuzz(data));
