#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| arcly_fuzz::hls_ingest(data));
