//! Fuzz target `range`: the oracle lives in `nodegate_fuzz::range`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::range(data));
