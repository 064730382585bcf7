//! Fuzzes VVC NAL header and SPS: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::vvc::fuzz(data));
