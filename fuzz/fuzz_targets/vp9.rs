//! Fuzzes VP9 uncompressed header, superframes and vpcC: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_codec::vp9::fuzz(data));
