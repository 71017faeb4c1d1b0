//! Helpers shared by the integration tests: fixture paths, configs named like the fixture data
//! folders, and the tolerance used against the PyTorch references.
#![allow(dead_code)]

use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tsm_rewrite::config::{Config, Direction, GroupOrder, Mode};
use tsm_rewrite::onnx::ModelProto;
use tsm_rewrite::tensor::FloatArray;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(format!("{name}.onnx"))
}

/// Fixtures that are another fixture's network as a pipeline rewrote it (`export_deploy.py`), with
/// that fixture's input and references.
const SAME_NETWORK: &[(&str, &str)] = &[("convnext_block_net_pre", "convnext_block_net")];

pub fn data(name: &str) -> PathBuf {
    let source = SAME_NETWORK.iter().find(|(n, _)| *n == name).map_or(name, |(_, s)| *s);
    fixtures().join("data").join(source)
}

/// The config a data folder is named after: `{mode}-{direction|paddle}-fd{D}[-every{K}]`, or
/// `online-{mode}-fd{D}[-every{K}]`.
pub fn config_for(folder: &str) -> Config {
    if let Some(rest) = folder.strip_prefix("online-") {
        let c = config_for(&rest.replacen('-', "-past-", 1));
        return Config { online: true, ..c };
    }
    let parts: Vec<&str> = folder.split('-').collect();
    let mut c = Config { validate: false, ..Config::default() };
    c.mode = match parts[0] {
        "residual" => Mode::Residual,
        "inplace" => Mode::Inplace,
        other => panic!("unknown mode {other} in {folder}"),
    };
    match parts[1] {
        "bidirectional" => c.direction = Direction::Bidirectional,
        "past" => c.direction = Direction::Past,
        "paddle" => c.group_order = GroupOrder::Paddle,
        other => panic!("unknown direction {other} in {folder}"),
    }
    c.fold_div = parts[2].strip_prefix("fd").and_then(|d| d.parse().ok()).expect("fd<D>");
    if let Some(k) = parts.get(3) {
        c.every = k.strip_prefix("every").and_then(|d| d.parse().ok()).expect("every<K>");
    }
    c
}

/// The tolerance against a PyTorch reference: 1e-4 of the output's scale (at least 1e-4).
pub fn tolerance(reference: &FloatArray) -> f32 {
    1e-4 * reference.max_abs().max(1.0)
}

/// Every data folder of a fixture holding a reference output, sorted.
pub fn reference_configs(name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data(name))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("output_0.pb").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "plain" && !n.starts_with("online-"))
        .collect();
    v.sort();
    v
}

pub fn input(name: &str) -> FloatArray {
    FloatArray::read_pb(&data(name).join("input_0.pb")).unwrap().1
}

pub fn output(name: &str, config: &str) -> FloatArray {
    FloatArray::read_pb(&data(name).join(config).join("output_0.pb")).unwrap().1
}

/// The data folders holding streaming references (`online-*`), sorted.
pub fn online_configs(name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data(name))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("online-"))
        .collect();
    v.sort();
    v
}

/// The reference shift, from the semantics in the README: `x` is [N*T, C, H, W], clips of `t`
/// frames; returns the shifted array.
pub fn reference_shift(x: &FloatArray, t: usize, fold: usize, direction: Direction, order: GroupOrder) -> FloatArray {
    let (nt, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3]);
    let mut out = x.clone();
    // For each shifted channel group: (first channel, frame offset the values come from).
    let groups: Vec<(usize, i64)> = match (direction, order) {
        (Direction::Bidirectional, GroupOrder::Tsm) => vec![(0, 1), (fold, -1)],
        (Direction::Bidirectional, GroupOrder::Paddle) => vec![(0, -1), (fold, 1)],
        (Direction::Past, _) => vec![(0, -1)],
    };
    for i in 0..nt {
        let frame = (i % t) as i64;
        for &(start, offset) in &groups {
            let src = frame + offset;
            for ch in start..start + fold {
                for k in 0..hw {
                    let dst = (i * c + ch) * hw + k;
                    out.data[dst] = if (0..t as i64).contains(&src) {
                        x.data[(((i as i64 + offset) as usize) * c + ch) * hw + k]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    out
}

/// Runs the binary from the repository's root.
pub fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsm-rewrite"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn fixture_arg(name: &str) -> String {
    format!("fixtures/models/{name}.onnx")
}

pub fn read_model(p: &Path) -> ModelProto {
    ModelProto::decode(&std::fs::read(p).unwrap()[..]).unwrap()
}

pub fn write_model(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Every committed fixture, as the identifiers the per-fixture test macros take: `fixtures.rs` and
/// `online.rs` expand their test macro over this one list, and `every_fixture_is_covered` checks it
/// against `fixtures/models/`.
#[macro_export]
macro_rules! for_each_fixture {
    ($m:ident) => {
        $m! {
            resnet_basic,
            resnet_bottleneck,
            resnext,
            resnet_deep,
            mobilenet_v2,
            resnet_unfused_bn,
            resnet_opset9,
            preact_resnet,
            se_block_net,
            convnext_block_net,
            resnet_dynamic_hw,
            resnet_dynamo,
            resnet_v1,
            resnet_wide,
            preact_groupnorm,
            resnet_groupnorm,
            metaformer_net,
            rep_net,
            ghost_net,
            convnext_block_net_pre,
            resnet_silu,
            preact_bn,
            csp_net,
            groupnorm_op21,
            preact_stdconv,
            tf_same_net,
            eca_net
        }
    };
}

/// Runs the model at `path` in tract as a deployment that pins nothing would
/// ([`tsm_rewrite::validate::Runner::load_as_written`]); the error chain on one line.
pub fn run_as_written(path: &Path, inputs: &[FloatArray]) -> Result<Vec<FloatArray>, String> {
    tsm_rewrite::validate::Runner::load_as_written(path).and_then(|r| r.run(inputs)).map_err(|e| format!("{e:#}"))
}

/// The rewrite at `out` runs as written ([`run_as_written`]) and gives `want` (the tool's own,
/// pinned run), wherever tract runs the 2D model at `original` so: tract's optimizer fails on some
/// 2D models with a symbolic batch (resnet_v1's and Keras' ResNet's strided 1x1 convolutions:
/// "Pulling Downsample over Reshape: Invalid axis").
pub fn check_runs_as_written(out: &Path, original: &Path, inputs: &[FloatArray], want: &FloatArray, what: &str) {
    match run_as_written(out, inputs) {
        Ok(got) => {
            let tol = 1e-5 * want.max_abs().max(1.0);
            assert!(got[0].max_abs_diff(want) <= tol, "{what}, as written: max abs diff {}", got[0].max_abs_diff(want));
        }
        Err(e) => {
            assert!(
                run_as_written(original, inputs).is_err(),
                "{what}: the 2D model runs as written, the rewrite does not: {e}"
            )
        }
    }
}
