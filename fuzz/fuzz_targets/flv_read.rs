//! Fuzzes the FLV tag reader and tag body parsers: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_mux::flv::fuzz_read(data));
