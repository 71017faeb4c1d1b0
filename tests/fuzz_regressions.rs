//! The fuzz target's seeds and every input it ever crashed on (fuzz/seeds, fuzz/crashes), run
//! through the same case as the fuzz target, so a fixed crash stays fixed without cargo-fuzz.

include!("common/fuzz_case.rs");

fn files(folder: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder);
    let mut v: Vec<_> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_seed_is_rewritten() {
    let seeds = files("seeds");
    assert!(seeds.len() >= 12, "{seeds:?}");
    for seed in seeds {
        let n = fuzz_case(&std::fs::read(&seed).unwrap());
        assert!(n >= 2, "{}: rewritten in only {n} of 3 configs", seed.display());
    }
}

#[test]
fn no_crash_input_crashes_again() {
    for input in files("crashes") {
        fuzz_case(&std::fs::read(&input).unwrap());
    }
}
