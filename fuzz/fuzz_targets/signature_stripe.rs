#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_common::fuzz_entry::stripe_signature(data));
