#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_intake::fuzz_entry::request(data));
