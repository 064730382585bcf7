//! Fuzzes H.264 SPS, PPS, avcC and keyframe detection: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::h264::fuzz(data));
