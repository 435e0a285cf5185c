//! Fuzz target `classify`: the oracle lives in `nodegate_fuzz::classify`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::classify(data));
