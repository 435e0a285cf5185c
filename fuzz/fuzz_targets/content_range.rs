//! Fuzz target `content_range`: the oracle lives in `nodegate_fuzz::content_range`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::content_range(data));
