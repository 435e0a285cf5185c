//! Fuzz target `posture`: the oracle lives in `nodegate_fuzz::posture`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::posture(data));
