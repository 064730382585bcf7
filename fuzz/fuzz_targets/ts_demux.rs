//! Fuzzes the MPEG-TS demuxer fed in two chunks: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_mux::ts::fuzz_demux(data));
