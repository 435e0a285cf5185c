//! Fuzz target `authorize`: the oracle lives in `nodegate_fuzz::authorize`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::authorize(data));
