// One fuzz case, shared by the fuzz target (fuzz/fuzz_targets/rewrite.rs) and the regression test
// over its seeds and crash inputs (tests/fuzz_regressions.rs): any bytes, as a model file, through
// the whole in-memory pipeline (load, dataflow, shapes, blocks, plan, emit, apply, encode), offline
// and online, in both placements. Errors are fine; a panic is a bug.

/// Runs one case; returns how many of the configs produced a model.
pub fn fuzz_case(data: &[u8]) -> usize {
    use prost::Message;
    use tsm_rewrite::config::{Config, Direction, Mode};
    let bytes = bytes::Bytes::copy_from_slice(data);
    // A folder with no data files: external tensors fail their checks, cleanly.
    let path = std::path::Path::new("/nonexistent-fuzz-folder/model.onnx");
    let configs = [
        Config { validate: false, ..Config::default() },
        Config { validate: false, mode: Mode::Inplace, fold_div: 4, every: 2, ..Config::default() },
        Config { validate: false, online: true, direction: Direction::Past, ..Config::default() },
    ];
    let mut rewritten = 0;
    for config in &configs {
        if let Ok(prepared) = tsm_rewrite::rewrite::prepare_bytes(bytes.clone(), path, config) {
            // The result must encode, decode, and be a graph the tool itself accepts.
            let out = prepared.model.encode_to_vec();
            let again = tsm_rewrite::onnx::ModelProto::decode(&out[..]).expect("our output decodes");
            let graph = again.graph.as_ref().expect("a graph");
            if let Err(e) = tsm_rewrite::graph::Dataflow::build(graph) {
                panic!("the rewritten graph is not valid: {e:#}");
            }
            let _ = tsm_rewrite::dump::dump(&again);
            rewritten += 1;
        }
    }
    rewritten
}
