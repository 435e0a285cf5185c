//! Fuzz target `plan_upload`: the oracle lives in `nodegate_fuzz::plan_upload`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::plan_upload(data));
