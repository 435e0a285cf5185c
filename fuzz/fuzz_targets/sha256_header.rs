//! Fuzz target `sha256_header`: the oracle lives in `nodegate_fuzz::sha256_header`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::sha256_header(data));
