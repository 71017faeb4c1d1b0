//! The fuzz targets' seeds and every input they ever crashed on (fuzz/seeds, fuzz/crashes*), run
//! through the same cases as the fuzz targets, so a fixed crash stays fixed without cargo-fuzz.

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
    assert!(seeds.len() >= 37, "{seeds:?}");
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

/// The `forms` target's view of the seeds, with the default options (the first byte picks the form
/// and online, the second is 0): each shift form offline; online, each but the clip view (offline
/// only), all of them wherever the default is (online needs a frame size: not the seed with an open
/// one).
#[test]
fn every_seed_is_rewritten_in_every_form() {
    for seed in files("seeds") {
        let model = std::fs::read(&seed).unwrap();
        let rewritten = |a: u8| fuzz_forms_case(&[&[a, 0][..], &model].concat());
        for a in [0u8, 1, 2, 3, 4] {
            assert!(rewritten(a), "{}: not rewritten with {:?}", seed.display(), forms_config([a, 0]));
        }
        let online = rewritten(8);
        for a in [9u8, 11, 12] {
            assert_eq!(rewritten(a), online, "{}: {:?}", seed.display(), forms_config([a, 0]));
        }
    }
}

#[test]
fn no_forms_crash_input_crashes_again() {
    for input in files("crashes-forms") {
        fuzz_forms_case(&std::fs::read(&input).unwrap());
    }
}
