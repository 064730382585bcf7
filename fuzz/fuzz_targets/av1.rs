//! Fuzzes AV1 OBUs, sequence header and av1C: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::av1::fuzz(data));
