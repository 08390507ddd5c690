#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dms_fuzz::wire(data));
