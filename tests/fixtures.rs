//! The main job on every committed fixture: rewrite with each configuration that has a PyTorch TSM
//! reference, run the result in tract on the reference input, and compare. Also checks that the
//! blocks found are exactly the reference's shift sites, and keeps a golden dump of each rewrite.

mod common;

use common::*;
use tsm_rewrite::blocks::Shortcut;
use tsm_rewrite::config::Config;
use tsm_rewrite::rewrite;

/// Rewrites `name` with `config` into a temp folder and runs it on the fixture's input.
fn rewrite_and_run(name: &str, config: &Config) -> tsm_rewrite::tensor::FloatArray {
    let prepared = rewrite::prepare(&model(name), config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    run_prepared(name, &prepared, config)
}

/// `prepared` (a rewrite of fixture `name`) written out and run in tract, as validation runs it
/// and as written.
fn run_prepared(name: &str, prepared: &rewrite::Prepared, config: &Config) -> tsm_rewrite::tensor::FloatArray {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    rewrite::finish(prepared, &out, config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let outputs = tsm_rewrite::validate::run(&out, &[input(name)]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    // As written, the batch left a symbol (the input declares it in clips) and the exporter's
    // value_info kept: what a deployment that pins nothing loads. The same numbers.
    check_runs_as_written(&out, &model(name), &[input(name)], &outputs[0], name);
    outputs.into_iter().next().unwrap()
}

fn check_fixture(name: &str) {
    // The untouched 2D model in tract equals PyTorch: the harness itself is sound.
    let plain_ref = output(name, "plain");
    let plain = tsm_rewrite::validate::run(&model(name), &[input(name)]).unwrap().remove(0);
    assert!(plain.max_abs_diff(&plain_ref) <= tolerance(&plain_ref), "{name}: plain model differs from PyTorch");

    let configs = reference_configs(name);
    assert!(configs.len() >= 8, "{name}: only {configs:?}");
    for folder in configs {
        let want = output(name, &folder);
        let got = rewrite_and_run(name, &config_for(&folder));
        let diff = got.max_abs_diff(&want);
        let tol = tolerance(&want);
        assert!(diff <= tol, "{name} {folder}: max abs diff {diff} > {tol}");
        // The reference really differs from the 2D model, so matching it means the shift is there.
        assert!(want.max_abs_diff(&plain_ref) > 10.0 * tol, "{name} {folder}: reference too close to plain");
    }
}

/// The reference's sites: (module path, channels, identity?, stage, index in stage).
fn reference_sites(name: &str) -> Vec<(String, i64, bool, usize, usize)> {
    std::fs::read_to_string(data(name).join("sites.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2] == "identity", f[3].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect()
}

/// The torch module path of a block's Add: `/layer1/layer1.0/Add` -> `layer1.0` for the TorchScript
/// exporter; from the `pkg.torch.onnx.name_scopes` metadata (`['', 'layer1', 'layer1.0', 'add_20']`)
/// for the dynamo exporter, whose node names (`node_add_20`) carry no scope.
fn module_path(prepared: &rewrite::Prepared, add: &str) -> String {
    if add.contains('/') {
        let segs: Vec<&str> = add.split('/').collect();
        return segs[segs.len() - 2].to_string();
    }
    // The input model's node: the stream form replaces a block's Add by its two halves.
    let input = tsm_rewrite::load::load(&prepared.input).unwrap().model.graph.unwrap();
    let node = input.node.iter().find(|n| n.name() == add).unwrap();
    let scopes = tsm_rewrite::plan::torch_name_scopes(node).expect("an Add without a scope in its name or metadata");
    scopes[scopes.len() - 2].to_string()
}

fn check_sites(name: &str) {
    let prepared = rewrite::prepare(&model(name), &Config { validate: false, ..Config::default() }).unwrap();
    let found: Vec<(String, i64, bool, usize, usize)> = prepared
        .findings
        .blocks
        .iter()
        .map(|b| {
            (module_path(&prepared, &b.name), b.channels, b.shortcut == Shortcut::Identity, b.stage, b.index_in_stage)
        })
        .collect();
    assert_eq!(found, reference_sites(name), "{name}: skipped {:#?}", prepared.findings.skipped);
    insta::assert_snapshot!(format!("dump_{name}"), tsm_rewrite::dump::dump(&prepared.model));
}

macro_rules! fixture_tests {
    ($($name:ident),*) => {
        mod numeric { $( #[test] fn $name() { super::check_fixture(stringify!($name)); } )* }
        mod sites { $( #[test] fn $name() { super::check_sites(stringify!($name)); } )* }
    };
}

for_each_fixture!(fixture_tests);

/// `--shift-form tract` offline lays every frame of every clip along one depth, `[1, C, N*T, H,
/// W]`, each site's shift a depthwise convolution over it masked at the clips' borders, as far as
/// the operators have a 5D form and from opset 11; elsewhere the default's stream sites, and the
/// ScatterND form at the others. Every reference configuration of these fixtures (two clips each),
/// against PyTorch.
#[test]
fn the_tract_form_matches_the_references() {
    use tsm_rewrite::config::ShiftForm;
    // (fixture, whether its sites are lifted: all, or none)
    for (name, lifted) in [
        ("resnet_bottleneck", true),
        ("resnet_basic", true),
        ("mobilenet_v2", true),
        // Its Pads' pads computed in float from Shape: shape inference must fold them for H and W.
        ("tf_same_net", true),
        ("resnet_dynamo", true),
        ("keras_resnet_v1", true),
        // H and W open: the volume's view copies them (since stop 57).
        ("resnet_dynamic_hw", true),
        // Each ghost module's Concat cropped by a channel Slice (lifted since stop 57).
        ("ghost_net", true),
        // ECA attention reads the tensor's Shape and expands its gate to it (lifted since stop 58).
        ("eca_net", true),
        // LayerNorm and its MLP channels last, between Transposes (lifted since stop 59); the
        // same blocks summing channels-last tensors, and a MetaFormer whose first block forks
        // from a channels-last tensor: sites shifted between Transposes to channels first and back.
        ("convnext_block_net", true),
        ("convnext_block_net_pre", true),
        ("metaformer_net", true),
        ("resnet_opset9", false),
    ] {
        for folder in reference_configs(name) {
            let config = Config { shift_form: ShiftForm::Tract, ..config_for(&folder) };
            let prepared = rewrite::prepare(&model(name), &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let graph = prepared.model.graph.as_ref().unwrap();
            let shifts = graph.node.iter().filter(|n| n.name().ends_with("/Conv_time")).count();
            let report = tsm_rewrite::report::json(&prepared, &config, None, &[]);
            let in_volume = report["blocks"].as_array().unwrap().iter().filter(|b| b["volume"] == true).count();
            assert_eq!(in_volume, shifts, "{name} {folder}: the report's volume sites");
            let sites = prepared.plan.sites.len();
            assert_eq!(shifts, if lifted { sites } else { 0 }, "{name} {folder}: {shifts} of {sites} lifted");
            let got = run_prepared(name, &prepared, &config);
            let want = output(name, &folder);
            assert_eq!(want.shape[0], 2 * config.segments, "{name} {folder}: two clips");
            let diff = got.max_abs_diff(&want);
            assert!(diff <= tolerance(&want), "{name} {folder}: max abs diff {diff}");
        }
    }
}

/// `--shift-form openvino` computes the network on each clip as a volume `[N, C, T, H, W]` offline,
/// every shift one depthwise convolution over T, as far as its operators have a 5D form (online it
/// writes the default's graph); past an operator without one (a GroupNorm's Reshapes) the stream
/// form's heads move on a channels-last view. Every reference configuration, against PyTorch.
#[test]
fn the_openvino_form_matches_the_references() {
    use tsm_rewrite::config::ShiftForm;
    // (fixture, whether every site is lifted)
    for (name, whole) in [
        ("resnet_bottleneck", true),
        ("resnet_deep", true),
        ("resnext", true),
        ("resnet_wide", true),
        ("resnet_silu", true),
        ("csp_net", true),
        ("preact_bn", true),
        ("keras_resnet_v1", true),
        ("paddle_resnet", true),
        ("resnet_dynamic_hw", true),
        ("ghost_net", true),
        ("eca_net", true),
        ("preact_groupnorm", false),
        ("preact_stdconv", false),
        ("groupnorm_op21", false),
    ] {
        for folder in reference_configs(name) {
            let config = Config { shift_form: ShiftForm::Openvino, ..config_for(&folder) };
            let prepared = rewrite::prepare(&model(name), &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            if name == "resnet_bottleneck" && folder == "residual-bidirectional-fd8" {
                insta::assert_snapshot!("dump_resnet_bottleneck_openvino", tsm_rewrite::dump::dump(&prepared.model));
            }
            let graph = prepared.model.graph.as_ref().unwrap();
            let count = |suffix: &str| graph.node.iter().filter(|n| n.name().ends_with(suffix)).count();
            let (lifted, heads, sites) =
                (count("/Conv_time"), count("/Transpose_channels_last"), prepared.plan.sites.len());
            let report = tsm_rewrite::report::json(&prepared, &config, None, &[]);
            let in_volume = report["blocks"].as_array().unwrap().iter().filter(|b| b["volume"] == true).count();
            assert_eq!(in_volume, lifted, "{name} {folder}: the report's volume sites");
            if whole {
                assert_eq!((lifted, heads), (sites, 0), "{name} {folder}");
            } else {
                assert!(lifted < sites, "{name} {folder}: {lifted} of {sites} lifted");
            }
            let got = run_prepared(name, &prepared, &config);
            let want = output(name, &folder);
            let diff = got.max_abs_diff(&want);
            assert!(diff <= tolerance(&want), "{name} {folder}: max abs diff {diff}");
        }
    }
}

/// ResNet-50's first stage: layer1.0's downsample widens 64 to 256 channels at stride 1, so its site
/// keeps the clip view (online the batch form's Concat) and layer1.1's takes the stream form; both
/// numerically checked against PyTorch above.
#[test]
fn a_widening_downsample_keeps_its_site_out_of_the_stream_form() {
    for folder in ["residual-bidirectional-fd8", "online-residual-fd8"] {
        let prepared = rewrite::prepare(&model("resnet_wide"), &config_for(folder)).unwrap();
        let streamed: Vec<bool> = prepared.plan.sites.iter().map(|s| s.stream.is_some()).collect();
        assert_eq!(streamed, [false, true], "{folder}");
    }
}

#[test]
fn every_fixture_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    macro_rules! listed { ($($name:ident),*) => { vec![$(stringify!($name)),*] }; }
    let mut listed: Vec<&str> = for_each_fixture!(listed);
    // The deployment formats have tests of their own, in tests/deploy.rs.
    listed.extend([
        "resnet_batch1",
        "resnet_batch1_dynamo",
        "resnet_basic_fp16",
        "resnet_basic_fp16io",
        "mobilenet_v2_fp16",
        "ghost_net_fp16io",
        "resnet_basic_qdq",
        "resnet_bottleneck_qdq_pc",
        "mobilenet_v2_qdq_pc",
        // Other frameworks' exports, in tests/exporters.rs.
        "keras_resnet_v1",
        "keras_mobilenet_v2",
        "paddle_resnet",
    ]);
    listed.sort();
    assert_eq!(names, listed, "a fixture model has no test");
}

/// `--mode inplace` takes the stream form where the residual placement does (since stop 32): on
/// resnet_bottleneck 5 of 6 sites (the first site's downsample widens 16 to 64 channels at stride
/// 1), offline and online. Every inplace reference of the fixture matches in `check_fixture`;
/// here, that those runs really went through the stream form, and the graph as a golden dump.
#[test]
fn inplace_placement_takes_the_stream_form() {
    let name = "resnet_bottleneck";
    for folder in ["inplace-bidirectional-fd8", "inplace-past-fd4", "online-inplace-fd8"] {
        let config = Config { validate: false, ..config_for(folder) };
        let prepared = rewrite::prepare(&model(name), &config).unwrap();
        let streamed: Vec<bool> = prepared.plan.sites.iter().map(|s| s.stream.is_some()).collect();
        assert_eq!(streamed, [false, true, true, true, true, true], "{folder}");
        if folder == "inplace-bidirectional-fd8" {
            insta::assert_snapshot!("dump_resnet_bottleneck_inplace", tsm_rewrite::dump::dump(&prepared.model));
            let got = rewrite_and_run(name, &config);
            let want = output(name, folder);
            assert!(got.max_abs_diff(&want) <= tolerance(&want), "{folder}");
        }
    }
}

/// With H and W open the clip view computes no shape at run time (TVM's Relax frontend cannot
/// convert a Reshape to one): the frames go side by side on channels. Every reference
/// configuration of the open fixture with `--shift-form clip`, pinned and as written, every
/// Reshape to a constant shape.
#[test]
fn the_clip_view_with_open_height_and_width_matches_the_references() {
    use tsm_rewrite::config::ShiftForm;
    for folder in reference_configs("resnet_dynamic_hw") {
        let config = Config { shift_form: ShiftForm::Clip, ..config_for(&folder) };
        let prepared = rewrite::prepare(&model("resnet_dynamic_hw"), &config).unwrap();
        let g = prepared.graph();
        let constant = |t: &str| g.initializer.iter().any(|i| i.name() == t);
        assert!(g.node.iter().filter(|n| n.op_type() == "Reshape").all(|n| constant(&n.input[1])), "{folder}");
        let got = rewrite_and_run("resnet_dynamic_hw", &config);
        let want = output("resnet_dynamic_hw", &folder);
        assert!(got.max_abs_diff(&want) <= tolerance(&want), "{folder}: max abs diff {}", got.max_abs_diff(&want));
    }
}

/// preact_groupnorm's GroupNorms reshape back to `Shape(x)`, and its stem pads by pads the graph
/// computes (PyTorch's ConstantPad2d): the static inference folds both, so every residual Add's
/// inputs are known NCHW activations without tract's analysis, which cannot help where tract
/// cannot load the model (BiT's weight-standardized convolutions, a BatchNormalization with three
/// outputs).
#[test]
fn computed_pads_and_shapes_are_folded_without_a_runtime() {
    let graph = read_model(&model("preact_groupnorm")).graph.unwrap();
    let shapes = tsm_rewrite::shapes::Shapes::infer(&graph);
    let joins: Vec<_> = graph.node.iter().filter(|n| n.op_type() == "Add" && n.name().ends_with("/Add")).collect();
    let joins: Vec<_> = joins.into_iter().filter(|n| !n.name().contains("/gn")).collect();
    assert_eq!(joins.len(), 4);
    for add in joins {
        for input in &add.input {
            let info = shapes.get(input).unwrap_or_else(|| panic!("{}: {input} unknown", add.name()));
            assert!(info.is_nchw(), "{}: {input} {}", add.name(), info.display());
            assert!(info.dims[1].known().is_some(), "{}: {input} {}", add.name(), info.display());
        }
    }
    let pad = graph.node.iter().find(|n| n.op_type() == "Pad").unwrap();
    assert_eq!(shapes.get(&pad.output[0]).unwrap().display(), "[batch, 16, 34, 34]");
}
