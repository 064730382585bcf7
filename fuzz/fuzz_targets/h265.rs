//! Fuzzes H.265 SPS, hvcC and keyframe detection: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::h265::fuzz(data));
