//! Fuzz target `nats_parse`: the oracle lives in `nodegate_fuzz::nats_parse`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nodegate_fuzz::nats_parse(data));
