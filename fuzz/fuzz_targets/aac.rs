//! Fuzzes AudioSpecificConfig and ADTS: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::aac::fuzz(data));
