//! Fuzz target `keys`: the oracle lives in `nodegate_fuzz::keys`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::keys(data));
