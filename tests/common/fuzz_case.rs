// Fuzz cases, shared by the fuzz targets (fuzz/fuzz_targets/) and the regression test over their
// seeds and crash inputs (tests/fuzz_regressions.rs): any bytes, as a model file, through the whole
// in-memory pipeline (load, dataflow, shapes, blocks, plan, emit, apply, encode). Errors are fine;
// a panic is a bug.

/// The `rewrite` target: offline and online, in both placements, the default form. Returns how many
/// of the configs produced a model.
#[allow(dead_code)]
pub fn fuzz_case(data: &[u8]) -> usize {
    use tsm_rewrite::config::{Config, Direction, Mode};
    let configs = [
        Config { validate: false, ..Config::default() },
        Config { validate: false, mode: Mode::Inplace, fold_div: 4, every: 2, ..Config::default() },
        Config { validate: false, online: true, direction: Direction::Past, ..Config::default() },
    ];
    configs.iter().filter(|config| rewrite_checked(data, config)).count()
}

/// The `forms` target: the first two bytes pick the config ([`forms_config`]), the rest is the
/// model. Returns whether it produced a model.
#[allow(dead_code)]
pub fn fuzz_forms_case(data: &[u8]) -> bool {
    match data {
        [a, b, model @ ..] => rewrite_checked(model, &forms_config([*a, *b])),
        _ => false,
    }
}

/// Every shift form, offline and online, with each option the flags give; some of the
/// combinations are refused by the config's own check, which is part of what is fuzzed.
#[allow(dead_code)]
pub fn forms_config([a, b]: [u8; 2]) -> tsm_rewrite::config::Config {
    use tsm_rewrite::config::{Config, Consensus, Direction, GroupOrder, Mode, ShiftForm};
    let forms = [ShiftForm::Stream, ShiftForm::Batch, ShiftForm::Clip, ShiftForm::Tract, ShiftForm::Openvino];
    Config {
        validate: false,
        shift_form: forms[usize::from(a & 7) % forms.len()],
        online: a & 8 != 0,
        mode: if a & 16 != 0 { Mode::Inplace } else { Mode::Residual },
        direction: if a & 32 != 0 || a & 8 != 0 { Direction::Past } else { Direction::Bidirectional },
        group_order: if a & 64 != 0 { GroupOrder::Paddle } else { GroupOrder::Tsm },
        temporal_pool: a & 128 != 0,
        consensus: [None, None, Some(Consensus::Avg), Some(Consensus::Max)][usize::from(b & 3)],
        skip_unknown: b & 4 != 0,
        every: 1 + usize::from((b >> 3) & 3),
        fold_div: [8, 4, 2, 16][usize::from((b >> 5) & 3)],
        segments: if b & 128 != 0 { 3 } else { 8 },
        ..Config::default()
    }
}

/// Rewrites `data` in memory under `config`; where that succeeds, the result must encode, decode,
/// and be a graph the tool itself accepts.
fn rewrite_checked(data: &[u8], config: &tsm_rewrite::config::Config) -> bool {
    use prost::Message;
    let bytes = bytes::Bytes::copy_from_slice(data);
    // A folder with no data files: external tensors fail their checks, cleanly.
    let path = std::path::Path::new("/nonexistent-fuzz-folder/model.onnx");
    let Ok(prepared) = tsm_rewrite::rewrite::prepare_bytes(bytes, path, config) else {
        return false;
    };
    let out = prepared.model.encode_to_vec();
    let again = tsm_rewrite::onnx::ModelProto::decode(&out[..]).expect("our output decodes");
    let graph = again.graph.as_ref().expect("a graph");
    if let Err(e) = tsm_rewrite::graph::Dataflow::build(graph) {
        panic!("the rewritten graph is not valid: {e:#}");
    }
    let _ = tsm_rewrite::dump::dump(&again);
    true
}
