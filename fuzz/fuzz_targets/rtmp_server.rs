//! Fuzzes the RTMP server session (chunking, messages, commands) after a
//! handshake: never panics on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_rtmp::fuzz_server(data));
