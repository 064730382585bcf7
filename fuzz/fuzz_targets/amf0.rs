//! Fuzzes AMF0 decode and encode round trip: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_mux::amf0::fuzz(data));
