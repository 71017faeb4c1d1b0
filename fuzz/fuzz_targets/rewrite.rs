//! Any bytes, as a model file, through the whole in-memory pipeline (see tests/common/fuzz_case.rs).

#![no_main]

include!("../../tests/common/fuzz_case.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_case(data);
});
