//! Any bytes through the whole in-memory pipeline under the config their first two bytes pick:
//! every shift form, online, placements, directions, consensus, temporal pool, fold and every
//! (see tests/common/fuzz_case.rs).

#![no_main]

include!("../../tests/common/fuzz_case.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_forms_case(data);
});
