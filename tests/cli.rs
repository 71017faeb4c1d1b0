//! The binary as a user drives it: exit codes, messages that name what is wrong, nothing written on
//! failure, the input never touched, deterministic output, and the summary it prints.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use tsm_rewrite::onnx::ModelProto;

#[test]
fn rewrites_validates_and_keeps_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    let input = model("resnet_basic");
    let before = std::fs::read(&input).unwrap();
    // The batch form inserts the shift and changes nothing else (the default stream form also
    // partitions the convolutions around the sites where the channels align).
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--shift-form", "batch"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("8 residual block(s) found, 8 shifted"), "{err}");
    assert!(err.contains("validated in tract: 2 clip(s), input [16, 3, 32, 32] -> logits [16, 10]"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before, "input modified");
    assert_eq!(files_in(dir.path()), ["tsm.onnx"]);

    // Everything of the input survives: nodes (in order, same attributes), initializers, metadata.
    let original = read_model(&input);
    let rewritten = read_model(&out);
    assert_eq!(rewritten.ir_version, original.ir_version);
    assert_eq!(rewritten.opset_import, original.opset_import);
    assert_eq!(rewritten.producer_name, original.producer_name);
    let (mut g0, g1) = (original.graph.unwrap(), rewritten.graph.unwrap());
    // The batch symbol, declared in clips: the only change to the inputs, outputs and value_info.
    assert_eq!(
        tsm_rewrite::clip_batch::declare(&mut g0, 8, &Default::default()),
        ["input 'input': [batch*8, 3, 32, 32]"]
    );
    let kept: Vec<_> = g1.node.iter().filter(|n| !n.name().contains("/tsm/")).collect();
    assert_eq!(kept.len(), g0.node.len());
    for (a, b) in g0.node.iter().zip(kept) {
        assert_eq!((&a.name, &a.op_type, &a.attribute, &a.output), (&b.name, &b.op_type, &b.attribute, &b.output));
    }
    assert!(g0.initializer.iter().all(|t| g1.initializer.contains(t)));
    assert_eq!((g0.input, g0.output, g0.value_info), (g1.input, g1.output, g1.value_info));
    assert_eq!(&rewritten.metadata_props[..original.metadata_props.len()], &original.metadata_props[..]);
    let record = rewritten.metadata_props.last().unwrap();
    assert_eq!(record.key(), "tsm-rewrite");
    assert!(record
        .value()
        .ends_with("--segments 8 --fold-div 8 --mode residual --direction bidirectional --group-order tsm --every 1 --shift-form batch"));
}

#[test]
fn same_input_and_flags_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    for out in [&a, &b] {
        let o =
            tool(&[&fixture_arg("mobilenet_v2"), "-o", out.to_str().unwrap(), "--no-validate", "--mode", "inplace"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn shift_form_clip_writes_the_clip_view_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clip.onnx");
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--shift-form", "clip"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("validated in tract"), "{}", stderr(&o));
    let m = read_model(&out);
    let ops: Vec<&str> = m.graph.as_ref().unwrap().node.iter().map(|n| n.op_type()).collect();
    assert!(ops.contains(&"Reshape") && !ops.contains(&"Where"), "{ops:?}");
    let record = m.metadata_props.iter().find(|p| p.key() == "tsm-rewrite").unwrap();
    assert!(record.value().ends_with("--every 1 --shift-form clip"), "{}", record.value());
    // The default: the stream form only where the convolutions it would split are all 1x1 (none
    // in resnet_basic's basic blocks, between 3x3s): offline the clip view everywhere, the graph
    // of --shift-form clip; online the batch form's Concat everywhere, the graph of --shift-form
    // batch.
    let nodes = |m: &ModelProto| m.graph.as_ref().unwrap().node.clone();
    let out = dir.path().join("default.onnx");
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--no-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("stream form at"), "{}", stderr(&o));
    // ...and says why, site by site.
    assert!(stderr(&o).contains("not in the stream form, site(s) 1"), "{}", stderr(&o));
    assert_eq!(nodes(&read_model(&out)), nodes(&m));
    let split =
        |m: &ModelProto| m.graph.as_ref().unwrap().node.iter().filter(|n| n.name().ends_with("/from_shifted")).count();
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--no-validate", "--online"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("stream form at"), "{}", stderr(&o));
    let online = read_model(&out);
    assert_eq!(split(&online), 0);
    let o = tool(&[
        &fixture_arg("resnet_basic"),
        "-o",
        out.to_str().unwrap(),
        "--no-validate",
        "--online",
        "--shift-form",
        "batch",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(nodes(&read_model(&out)), nodes(&online));
    let o =
        tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--no-validate", "--shift-form", "batch"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(split(&read_model(&out)), 0);
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--online", "--shift-form", "clip"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--online takes --shift-form stream (the default), batch, tract or openvino"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn shift_form_tract_runs_the_frames_as_one_volume_offline_and_rejoins_the_residual_adds_online() {
    let dir = tempfile::tempdir().unwrap();
    let (tract_form, clip) = (dir.path().join("tract.onnx"), dir.path().join("clip.onnx"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![fixture_arg("resnet_bottleneck"), "-o".into(), out.to_str().unwrap().into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    // Offline: every frame of every clip along one depth, each site's shift a depthwise
    // convolution over it masked at the clips' borders (each frame's index in its clip counted
    // along the depth once);
    // the same outputs as the clip view, in tract, on two clips.
    let err = run(&tract_form, &["--shift-form", "tract"]);
    assert!(err.contains("validated in tract: 2 clip(s)"), "{err}");
    assert!(err.contains("one volume [1, C, N*T, H, W]") && err.contains("6 of 6 site(s) shift"), "{err}");
    assert!(!err.contains("run on the frames in 2D"), "a ResNet has no depthwise convolution: {err}");
    run(&clip, &["--no-validate", "--shift-form", "clip"]);
    let graph = read_model(&tract_form).graph.unwrap();
    let count = |op: &str| graph.node.iter().filter(|n| n.op_type() == op).count();
    assert_eq!((count("ScatterND"), count("Mul"), count("CumSum"), count("Transpose")), (0, 6, 1, 2));
    let x = input("resnet_bottleneck");
    assert_eq!(x.shape[0], 16);
    let got = tsm_rewrite::validate::run(&tract_form, std::slice::from_ref(&x)).unwrap();
    let want = tsm_rewrite::validate::run(&clip, std::slice::from_ref(&x)).unwrap();
    assert!(got[0].max_abs_diff(&want[0]) <= 1e-5 * want[0].max_abs().max(1.0));
    let record =
        |p: &Path| read_model(p).metadata_props.iter().find(|p| p.key() == "tsm-rewrite").unwrap().value().to_string();
    assert!(record(&tract_form).ends_with("--every 1 --shift-form tract"), "{}", record(&tract_form));
    // Online: validated frame by frame in tract, no stream site, and the identity blocks' Adds
    // reading their input rejoined from the site's slices.
    let err = run(&tract_form, &["--online", "--shift-form", "tract"]);
    assert!(!err.contains("stream form at") && err.contains("rejoined at 3 of 6 site(s)"), "{err}");
    assert!(err.contains("validated in tract"), "{err}");
    assert!(record(&tract_form).ends_with("--shift-form tract"), "{}", record(&tract_form));
    let err = run(&clip, &["--online", "--no-validate"]);
    assert!(err.contains("stream form at 5 of 6 site(s)"), "{err}");
    // MobileNetV2's 6 stride-1 depthwise convolutions (3x3, at 16x16 and below on its 32x32 input)
    // have fewer outputs inside the input than two clips have frames: they run on the frames.
    let out = dir.path().join("mobilenet.onnx");
    let o =
        tool(&[&fixture_arg("mobilenet_v2"), "-o", out.to_str().unwrap(), "--no-validate", "--shift-form", "tract"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("; 6 depthwise convolution(s) run on the frames in 2D"), "{}", stderr(&o));
}

/// timm's TF ports pad at run time, the pads float arithmetic on the input's Shape: folded, H and W
/// stay known, so `--shift-form tract` takes its volume at every site, and the dozen Adds of each
/// Pad's arithmetic are not listed as Adds that are not residual joins.
#[test]
fn computed_same_pads_keep_the_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tf.onnx");
    let o = tool(&[&fixture_arg("tf_same_net"), "-o", out.to_str().unwrap(), "--no-validate", "--shift-form", "tract"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("5 residual block(s) found, 5 shifted"), "{err}");
    assert!(err.contains("and 5 of 5 site(s) shift by a depthwise convolution over the frames"), "{err}");
    assert!(!err.contains("skipped:"), "{err}");
}

#[test]
fn summary_is_stable() {
    let o = tool(&[&fixture_arg("resnet_deep"), "--dry-run", "--every", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("summary_resnet_deep_every2", stderr(&o));
    let o = tool(&[&fixture_arg("convnext_block_net"), "--dry-run", "--mode", "inplace", "--direction", "past"]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("summary_convnext_inplace_past", stderr(&o));
}

#[test]
fn blocks_too_narrow_for_the_fold_are_left_unshifted() {
    // layer1's 8 channels / 16 round to a fold of 0: the paper's code shifts nothing there, and so
    // does the tool (fixtures.rs checks the output against PyTorch's), saying so; offline and online.
    for extra in [&[][..], &["--online"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.onnx");
        let mut args = vec![
            fixture_arg("resnet_basic"),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--fold-div".into(),
            "16".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let o = tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr(&o);
        assert!(o.status.success(), "{extra:?}: {err}");
        assert!(err.contains("8 residual block(s) found, 5 shifted"), "{extra:?}: {err}");
        assert!(err.contains("not shifted: /layer1/layer1.0/Add: tensor '/maxpool/MaxPool_output_0' has 8 channels: --fold-div 16 leaves no channel to shift"), "{err}");
        assert_eq!(err.matches("leaves no channel to shift").count(), 3, "{err}");
        assert!(err.contains("validated in tract"), "{extra:?}: {err}");
    }
}

#[test]
fn dry_run_writes_nothing_and_dump_matches_the_written_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    let o = tool(&[&fixture_arg("preact_resnet"), "-o", out.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success());
    assert!(stderr(&o).ends_with("dry run: nothing written\n"));
    assert!(files_in(dir.path()).is_empty());

    let dump = dir.path().join("tsm.txt");
    let o = tool(&[
        &fixture_arg("preact_resnet"),
        "-o",
        out.to_str().unwrap(),
        "--no-validate",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&dump).unwrap(), tsm_rewrite::dump::dump(&read_model(&out)));
}

#[test]
fn symbolic_spatial_size_needs_input_shape_to_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    let o = tool(&[&fixture_arg("resnet_dynamic_hw"), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("input 'input' leaves dim 2 open (height): give --input-shape C,H,W"),
        "{}",
        stderr(&o)
    );
    assert!(files_in(dir.path()).is_empty());
    let o = tool(&[&fixture_arg("resnet_dynamic_hw"), "-o", out.to_str().unwrap(), "--input-shape", "3,48,40"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("input [16, 3, 48, 40]"), "{}", stderr(&o));
}

#[test]
fn a_model_without_residual_blocks_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let g = m.graph.as_mut().unwrap();
    // Keep the stem only: conv, relu, maxpool, and make the maxpool output the graph output.
    let pool = g.node.iter().position(|n| n.op_type() == "MaxPool").unwrap();
    g.node.truncate(pool + 1);
    g.output[0].name = Some(g.node[pool].output[0].clone());
    g.output[0].r#type = None;
    let p = write_model(dir.path(), "stem.onnx", &m);
    let out = dir.path().join("out.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no residual block found in"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn failed_validation_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    // sqrt(-|logits| - 1) is NaN everywhere: validation must refuse it.
    let g = m.graph.as_mut().unwrap();
    let gemm = g.node.last_mut().unwrap();
    gemm.output[0] = "raw".into();
    let node = |op: &str, i: &[&str], o: &str| tsm_rewrite::onnx::NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("/poison/{op}")),
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        ..Default::default()
    };
    g.node.push(node("Abs", &["raw"], "abs"));
    g.node.push(node("Neg", &["abs"], "neg"));
    g.node.push(node("Sqrt", &["neg"], "logits"));
    let p = write_model(dir.path(), "nan.onnx", &m);
    let out = dir.path().join("out.onnx");
    let dump = dir.path().join("out.txt");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--dump", dump.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("validation failed: output 'logits' holds a non-finite value"), "{}", stderr(&o));
    assert_eq!(files_in(dir.path()), ["nan.onnx"], "no output, no dump, no temporary file");
}

/// A model tract cannot load at all (BiT's weight standardization exports a BatchNormalization with
/// its two running-statistics outputs, which tract refuses) cannot be validated: the error says the
/// input fails in tract too, and how to write the rewrite anyway.
#[test]
fn a_model_tract_cannot_load_names_tract_and_the_way_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_unfused_bn"));
    let g = m.graph.as_mut().unwrap();
    let bn = g.node.iter_mut().find(|n| n.op_type() == "BatchNormalization").unwrap();
    bn.output.extend(["running_mean".to_string(), "running_var".to_string()]);
    let p = write_model(dir.path(), "bn3.onnx", &m);
    let out = dir.path().join("out.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("Wrong number of outputs"), "{err}");
    assert!(err.contains("tract cannot run the input model either") && err.contains("--no-validate"), "{err}");
    assert_eq!(files_in(dir.path()), ["bn3.onnx"]);
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--online"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tract cannot run the input model either"), "{}", stderr(&o));
    assert_eq!(files_in(dir.path()), ["bn3.onnx"]);
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let out_arg = out.to_str().unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a protobuf").unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    // The ONNX model zoo's ResNets are opset 7: the error says how to convert one.
    let mut old = read_model(&model("resnet_opset9"));
    old.opset_import[0].version = Some(7);
    let old = write_model(dir.path(), "opset7.onnx", &old);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["missing.onnx".into(), "-o".into(), out_arg.into()], "missing.onnx: cannot open"),
        (vec![dir.path().to_str().unwrap().into(), "-o".into(), out_arg.into()], "is a folder"),
        (vec![empty.to_str().unwrap().into(), "-o".into(), out_arg.into()], "is empty"),
        (vec![garbage.to_str().unwrap().into(), "-o".into(), out_arg.into()], "not an ONNX model"),
        (
            vec![old.to_str().unwrap().into(), "-o".into(), out_arg.into()],
            "opset 7 is older than this tool supports (9 and later); re-export with a newer opset, or convert it with \
             onnx's version converter: python -c \"import onnx; from onnx import version_converter as v; \
             onnx.save(v.convert_version(onnx.load('IN.onnx'), 13), 'OUT.onnx')\"",
        ),
        (vec![fixture_arg("resnet_basic"), "-o".into(), out_arg.into(), "--segments".into(), "0".into()], "--segments must be at least 1"),
        (
            vec![fixture_arg("resnet_basic"), "-o".into(), out_arg.into(), "--segments".into(), "4000000000".into()],
            "--segments 4000000000: at most 16384 frames a clip",
        ),
        (
            vec![fixture_arg("resnet_basic"), "-o".into(), out_arg.into(), "--fold-div".into(), "65".into()],
            "node /layer4/layer4.1/Add: tensor '/layer4/layer4.0/relu_1/Relu_output_0' has 64 channels, the most of any block; --fold-div 65 leaves no channel to shift (use a --fold-div of at most 64)",
        ),
        (vec![fixture_arg("resnet_basic"), "-o".into(), fixture_arg("resnet_basic")], "is the input file"),
        (vec![fixture_arg("resnet_basic"), "-o".into(), "/nonexistent/dir/out.onnx".into()], "output folder /nonexistent/dir does not exist"),
        (vec![fixture_arg("resnet_basic")], "give an output file with -o FILE"),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = tool(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: expected '{message}' in: {err}");
        assert!(err.starts_with("tsm-rewrite: error: ") || err.contains("\ntsm-rewrite: error: "), "{err}");
        assert!(!out.exists());
    }
}

/// `resnet_basic` with its batch fixed at `b`, written into `dir`.
fn with_batch(dir: &Path, b: i64) -> PathBuf {
    let mut m = read_model(&model("resnet_basic"));
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!()
    };
    t.shape.as_mut().unwrap().dim[0].value = Some(tsm_rewrite::onnx::tensor_shape_proto::dimension::Value::DimValue(b));
    write_model(dir, &format!("batch{b}.onnx"), &m)
}

#[test]
fn fixed_batch_must_hold_whole_clips() {
    let dir = tempfile::tempdir().unwrap();
    let set_batch = |b: i64| with_batch(dir.path(), b);
    let out = dir.path().join("out.onnx");
    let p = set_batch(3);
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("input 'input' has a fixed batch of 3, which cannot hold whole clips of 8 frames"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // A batch of 1 (the usual export without dynamic_axes) is made symbolic.
    let p = set_batch(1);
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("exported with a fixed batch of 1; made symbolic"), "{}", stderr(&o));
    assert!(stderr(&o).contains("validated in tract: 2 clip(s), input [16, 3, 32, 32]"), "{}", stderr(&o));
    // A fixed batch of one clip works, and validation runs that clip.
    let p = set_batch(8);
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("validated in tract: 1 clip(s), input [8, 3, 32, 32]"), "{}", stderr(&o));
}

#[test]
fn an_already_rewritten_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let once = dir.path().join("once.onnx");
    assert!(tool(&[&fixture_arg("resnet_basic"), "-o", once.to_str().unwrap(), "--no-validate"]).status.success());
    let o = tool(&[once.to_str().unwrap(), "-o", dir.path().join("twice.onnx").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("was already rewritten by tsm-rewrite"), "{}", stderr(&o));
}

#[test]
fn value_info_with_a_symbolic_batch_does_not_break_validation() {
    // As torch's dynamo exporter writes: every intermediate annotated with the symbolic batch.
    use tsm_rewrite::onnx::{tensor_shape_proto, type_proto, TensorShapeProto, TypeProto, ValueInfoProto};
    use tsm_rewrite::shapes::{Dim, Shapes};
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let g = m.graph.as_mut().unwrap();
    let shapes = Shapes::infer(g);
    let outputs: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).collect();
    for name in outputs {
        let Some(info) = shapes.get(&name) else { continue };
        let dim = info
            .dims
            .iter()
            .map(|d| tensor_shape_proto::Dimension {
                value: Some(match d {
                    Dim::Known(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                    Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
                    Dim::Unknown => tensor_shape_proto::dimension::Value::DimParam("unk".into()),
                }),
                ..Default::default()
            })
            .collect();
        let tensor = type_proto::Tensor { elem_type: Some(1), shape: Some(TensorShapeProto { dim }) };
        let r#type = Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() });
        g.value_info.push(ValueInfoProto { name: Some(name), r#type, ..Default::default() });
    }
    assert!(g.value_info.len() > 40);
    let p = write_model(dir.path(), "annotated.onnx", &m);
    let out = dir.path().join("out.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Kept, but for the tensors the stream form computes as two halves (and never whole), with the
    // batch declared in clips as the input's is.
    let g_out = read_model(&out).graph.unwrap();
    assert_eq!(tsm_rewrite::shapes::declared_dims(&g_out.input[0]).unwrap()[0], Dim::Sym("batch*8".into()));
    let produced: std::collections::HashSet<&str> =
        g_out.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let mut g = m.graph.unwrap();
    tsm_rewrite::clip_batch::declare(&mut g, 8, &Default::default());
    let kept: Vec<_> = g.value_info.into_iter().filter(|v| produced.contains(v.name())).collect();
    assert!(kept.len() > 40);
    assert_eq!(g_out.value_info.iter().take(kept.len()).cloned().collect::<Vec<_>>(), kept);
}

/// `resnet_basic` saved as an exporter with external data saves it: every tensor of at least 1 KiB
/// in the data file `data_name` beside the model, back to back (unaligned), the rest inline.
fn external_model(dir: &Path, data_name: &str) -> PathBuf {
    external_model_of("resnet_basic", dir, data_name)
}

/// The fixture `name` with every initializer of 1 KiB or more in `dir/data_name`, as `dir/ext.onnx`.
fn external_model_of(name: &str, dir: &Path, data_name: &str) -> PathBuf {
    use tsm_rewrite::onnx::{tensor_proto::DataLocation, StringStringEntryProto};
    let mut m = read_model(&model(name));
    let mut data = Vec::new();
    for t in &mut m.graph.as_mut().unwrap().initializer {
        if t.raw_data().len() < 1024 {
            continue;
        }
        let (offset, len) = (data.len(), t.raw_data().len());
        data.extend_from_slice(t.raw_data());
        t.raw_data = None;
        t.set_data_location(DataLocation::External);
        t.external_data =
            [("location", data_name.to_string()), ("offset", offset.to_string()), ("length", len.to_string())]
                .into_iter()
                .map(|(k, v)| StringStringEntryProto { key: Some(k.into()), value: Some(v) })
                .collect();
    }
    std::fs::write(dir.join(data_name), data).unwrap();
    write_model(dir, "ext.onnx", &m)
}

fn external_entries(m: &ModelProto) -> Vec<(String, u64, u64)> {
    m.graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .filter(|t| !t.external_data.is_empty())
        .map(|t| {
            let get = |k: &str| t.external_data.iter().find(|e| e.key() == k).unwrap().value().to_owned();
            (get("location"), get("offset").parse().unwrap(), get("length").parse().unwrap())
        })
        .collect()
}

#[test]
fn external_data_goes_into_a_data_file_beside_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = external_model(dir.path(), "weights.bin");
    let before = (std::fs::read(&p).unwrap(), std::fs::read(dir.path().join("weights.bin")).unwrap());
    let inline = dir.path().join("inline-tsm.onnx");
    let o = tool(&[&fixture_arg("resnet_basic"), "-o", inline.to_str().unwrap(), "--no-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = tsm_rewrite::validate::run(&inline, &[input("resnet_basic")]).unwrap();

    for folder in [dir.path().to_path_buf(), tempfile::tempdir().unwrap().keep()] {
        let out = folder.join("tsm.onnx");
        let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("validated in tract"), "{}", stderr(&o));
        assert!(folder.join("tsm.onnx.data").is_file());
        let entries = external_entries(&read_model(&out));
        assert!(entries.len() > 10);
        assert!(entries.iter().all(|(loc, off, _)| loc == "tsm.onnx.data" && off % 4096 == 0), "{entries:?}");
        let g = read_model(&out).graph.unwrap();
        let inline: Vec<&str> = g.initializer.iter().filter(|t| t.raw_data().len() >= 1024).map(|t| t.name()).collect();
        assert!(inline.is_empty(), "{inline:?}");
        // Same weights, same graph: the same numbers as the rewrite of the inline model.
        assert_eq!(tsm_rewrite::validate::run(&out, &[input("resnet_basic")]).unwrap(), want);
        let after = (std::fs::read(&p).unwrap(), std::fs::read(dir.path().join("weights.bin")).unwrap());
        assert!(after == before, "the input or its data file changed");
    }

    // Online too: the offline reference used by validation finds the input's data from elsewhere.
    // On bottleneck blocks, whose 1x1 convolutions the stream form partitions: those weights
    // follow the others into the file.
    let bottleneck = tempfile::tempdir().unwrap();
    let p = external_model_of("resnet_bottleneck", bottleneck.path(), "weights.bin");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("online.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--online"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("stream form at"), "{}", stderr(&o));
    assert_eq!(files_in(elsewhere.path()), ["online.onnx", "online.onnx.data"]);
    let g = read_model(&out).graph.unwrap();
    assert!(g.initializer.iter().any(|t| t.name().contains("/cols_")));
    let inline: Vec<&str> = g.initializer.iter().filter(|t| t.raw_data().len() >= 1024).map(|t| t.name()).collect();
    assert!(inline.is_empty(), "{inline:?}");
}

#[test]
fn external_data_is_never_written_over_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let p = external_model(dir.path(), "tsm.onnx.data");
    let data_before = std::fs::read(dir.path().join("tsm.onnx.data")).unwrap();
    let out = dir.path().join("tsm.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("would overwrite the input's data file"), "{}", stderr(&o));
    assert_eq!(files_in(dir.path()), ["ext.onnx", "tsm.onnx.data"]);
    assert_eq!(std::fs::read(dir.path().join("tsm.onnx.data")).unwrap(), data_before);
}

#[test]
fn external_data_can_be_referred_to_from_the_input_folder() {
    let dir = tempfile::tempdir().unwrap();
    let p = external_model(dir.path(), "weights.bin");
    let beside = dir.path().join("tsm.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", beside.to_str().unwrap(), "--external-data", "refer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_in(dir.path()), ["ext.onnx", "tsm.onnx", "weights.bin"]);
    assert!(external_entries(&read_model(&beside)).iter().all(|(loc, _, _)| loc == "weights.bin"));

    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("tsm.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--external-data", "refer"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("is stored in the external data file 'weights.bin' beside the input; with --external-data refer"),
        "{}",
        stderr(&o)
    );
    assert!(files_in(elsewhere.path()).is_empty());
}

#[test]
fn external_data_locations_outside_the_model_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let p = external_model(&dir, "weights.bin");
    std::fs::rename(dir.join("weights.bin"), root.path().join("weights.bin")).unwrap();
    let set_location = |loc: &str| {
        let mut m = read_model(&p);
        for t in &mut m.graph.as_mut().unwrap().initializer {
            for e in t.external_data.iter_mut().filter(|e| e.key() == "location") {
                e.value = Some(loc.into());
            }
        }
        write_model(&dir, "bad.onnx", &m)
    };
    let out = root.path().join("out.onnx");
    let outside = root.path().join("weights.bin");
    std::os::unix::fs::symlink(&outside, dir.join("link.bin")).unwrap();
    for (loc, why) in [
        ("../weights.bin", "leaves the model's folder ('..')"),
        (outside.to_str().unwrap(), "is not a path relative to the model's folder"),
        ("link.bin", "through a link, outside the model's folder"),
        ("nothing.bin", "'nothing.bin' cannot be opened"),
    ] {
        let bad = set_location(loc);
        for extra in [&[][..], &["--dry-run"][..]] {
            let mut args = vec![bad.to_str().unwrap(), "-o", out.to_str().unwrap()];
            args.extend(extra);
            let o = tool(&args);
            assert_eq!(o.status.code(), Some(2), "{loc}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("bad.onnx: tensor '") && stderr(&o).contains("': external data"),
                "{}",
                stderr(&o)
            );
            assert!(stderr(&o).contains(why), "{loc}: {}", stderr(&o));
            assert!(!out.exists());
        }
    }
}

/// An external tensor whose given length is not the size its dims declare is refused, naming it:
/// before, the rewrite believed the dims and copied the length's bytes into the output's data file.
#[test]
fn external_data_of_the_wrong_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = external_model(dir.path(), "weights.bin");
    let mut m = read_model(&p);
    let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| !t.external_data.is_empty()).unwrap();
    let name = t.name().to_string();
    let length = t.external_data.iter_mut().find(|e| e.key() == "length").unwrap();
    let short = length.value().parse::<u64>().unwrap() - 4;
    length.value = Some(short.to_string());
    let bad = write_model(dir.path(), "bad.onnx", &m);
    let out = dir.path().join("out.onnx");
    for extra in [&[][..], &["--no-validate"], &["--online"]] {
        let mut args = vec![bad.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(extra);
        let o = tool(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let message = format!("bad.onnx: tensor '{name}': declares dims");
        assert!(stderr(&o).contains(&message), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("but stores {short} bytes of external data")), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn validation_of_a_non_float32_input_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!()
    };
    // (float16 and double inputs are fed; images as bytes are not)
    t.elem_type = Some(tsm_rewrite::onnx::tensor_proto::DataType::Uint8 as i32);
    let p = write_model(dir.path(), "bytes.onnx", &m);
    let out = dir.path().join("out.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("input 'input' is UINT8; use --no-validate"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn online_rewrite_validates_frame_by_frame_and_lists_its_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("online.onnx");
    let o = tool(&[&fixture_arg("mobilenet_v2"), "-o", out.to_str().unwrap(), "--online"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("validated in tract: 2 stream(s) x 16 frames with the buffers fed back, equal to the offline past-only rewrite"),
        "{err}"
    );
    assert!(err.contains("ms per frame online vs"), "{err}");
    assert_eq!(files_in(dir.path()), ["online.onnx"], "the offline reference is not left behind");
    let m = read_model(&out);
    let buffers = m.metadata_props.iter().find(|p| p.key() == "tsm-rewrite.buffers").unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(buffers.value()).unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["input"], "/features/features.3/tsm/buffer_in");
    assert_eq!(list[0]["output"], "/features/features.3/tsm/buffer_out");
    assert_eq!(list[0]["shape"], serde_json::json!(["batch", 2, 8, 8]));
    let record = m.metadata_props.iter().find(|p| p.key() == "tsm-rewrite").unwrap();
    assert!(record.value().ends_with("--online --fold-div 8 --mode residual --every 1"), "{}", record.value());

    // The plan shows the buffers; the summary (timings aside) is a golden file.
    let o = tool(&[&fixture_arg("resnet_deep"), "--dry-run", "--online", "--mode", "inplace", "--every", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("summary_resnet_deep_online_inplace_every2", stderr(&o));
}

#[test]
fn online_refuses_the_future_and_open_buffer_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("online.onnx");
    let o =
        tool(&[&fixture_arg("resnet_basic"), "-o", out.to_str().unwrap(), "--online", "--direction", "bidirectional"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--online shifts channels from the previous frame only"), "{}", stderr(&o));
    // An explicit past is what --online does anyway.
    let o = tool(&[&fixture_arg("resnet_basic"), "--dry-run", "--online", "--direction", "past"]);
    assert!(o.status.success(), "{}", stderr(&o));

    for extra in [&[][..], &["--no-validate"][..]] {
        let mut args =
            vec![fixture_arg("resnet_dynamic_hw"), "-o".into(), out.to_str().unwrap().into(), "--online".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("node /layer1/layer1.0/Add: the online buffer for tensor '/maxpool/MaxPool_output_0' needs its height and width, which the model leaves open")
                && stderr(&o).contains("give the frame size with --input-shape C,H,W"),
            "{}",
            stderr(&o)
        );
        assert!(files_in(dir.path()).is_empty());
    }
    let o =
        tool(&[&fixture_arg("resnet_dynamic_hw"), "-o", out.to_str().unwrap(), "--online", "--input-shape", "3,48,40"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("/layer4/layer4.1/tsm/buffer_in  [batch, 8, 3, 3]"), "{}", stderr(&o));
    let dump = tsm_rewrite::dump::dump(&read_model(&out));
    assert!(dump.contains("input input float [batch, 3, 48, 40]"), "the frame size is fixed in the graph");

    let o = tool(&[&fixture_arg("resnet_basic"), "--dry-run", "--online", "--input-shape", "3,48,40"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not fit input 'input', whose dim 2 is fixed at 32"), "{}", stderr(&o));
}

#[test]
fn online_validation_catches_a_model_that_mixes_the_batch() {
    // Softmax over the batch axis couples the rows: per frame it sees 2 streams, per clip all 32
    // frames, so the online graph cannot equal the offline one and must not be written.
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let g = m.graph.as_mut().unwrap();
    g.node.last_mut().unwrap().output[0] = "raw".into();
    g.node.push(tsm_rewrite::onnx::NodeProto {
        op_type: Some("Softmax".into()),
        name: Some("/mix/Softmax".into()),
        input: vec!["raw".into()],
        output: vec!["logits".into()],
        attribute: vec![tsm_rewrite::onnx::AttributeProto {
            name: Some("axis".into()),
            r#type: Some(tsm_rewrite::onnx::attribute_proto::AttributeType::Int as i32),
            i: Some(0),
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = write_model(dir.path(), "mix.onnx", &m);
    let out = dir.path().join("online.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--online"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("validation failed: frame 0: output 'logits' of the online graph differs from the offline past-only rewrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(files_in(dir.path()), ["mix.onnx"], "no output, no offline reference, no temporary file");
}

#[test]
fn online_with_a_fixed_batch_streams_that_many() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!()
    };
    t.shape.as_mut().unwrap().dim[0].value = Some(tsm_rewrite::onnx::tensor_shape_proto::dimension::Value::DimValue(1));
    let p = write_model(dir.path(), "batch1.onnx", &m);
    let out = dir.path().join("online.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--online"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("validated in tract: 1 stream(s) x 16 frames"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/layer1/layer1.0/tsm/buffer_in  [1, 1, 16, 16]"), "{}", stderr(&o));
}

#[test]
fn online_buffer_shapes_come_from_tract_where_the_model_shapes_stop() {
    // A Resize by scales in front of the network: the tool's own shape inference does not follow
    // it, tract's analysis at the declared 32x32 frame does (64x64 after the stem's /4: 16x16 -> 32x32).
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic"));
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().position(|n| n.input.first().map(String::as_str) == Some("input")).unwrap();
    g.node[conv].input[0] = "up".into();
    g.node.insert(
        0,
        tsm_rewrite::onnx::NodeProto {
            op_type: Some("Resize".into()),
            name: Some("/up/Resize".into()),
            input: vec!["input".into(), String::new(), "up_scales".into()],
            output: vec!["up".into()],
            ..Default::default()
        },
    );
    g.initializer.push(tsm_rewrite::onnx::TensorProto {
        name: Some("up_scales".into()),
        data_type: Some(tsm_rewrite::onnx::tensor_proto::DataType::Float as i32),
        dims: vec![4],
        float_data: vec![1.0, 1.0, 2.0, 2.0],
        ..Default::default()
    });
    let p = write_model(dir.path(), "up.onnx", &m);
    let out = dir.path().join("online.onnx");
    let o = tool(&[p.to_str().unwrap(), "-o", out.to_str().unwrap(), "--online"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("/layer1/layer1.0/tsm/buffer_in  [batch, 1, 32, 32]"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/layer4/layer4.1/tsm/buffer_in  [batch, 8, 4, 4]"), "{}", stderr(&o));
    assert!(stderr(&o).contains("equal to the offline past-only rewrite"), "{}", stderr(&o));
}

#[test]
fn the_json_report_is_golden() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    let o = tool(&[&fixture_arg("resnet_bottleneck"), "-o", out.to_str().unwrap(), "--report", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON report");
    // Timings and the temp folder change from run to run.
    for k in ["ms_per_clip", "ms_per_clip_2d", "ratio_to_2d"] {
        assert!(v["validation"][k].as_f64().unwrap() > 0.0, "{k}");
        v["validation"][k] = serde_json::json!(0);
    }
    assert_eq!(v["files"], serde_json::json!([out.display().to_string()]));
    v["files"] = serde_json::json!(["tsm.onnx"]);
    insta::assert_snapshot!("report_resnet_bottleneck", serde_json::to_string_pretty(&v).unwrap());

    // To a file, online: the buffers and the streaming check.
    let report = dir.path().join("report.json");
    let online = dir.path().join("online.onnx");
    let args = [
        &fixture_arg("mobilenet_v2"),
        "-o",
        online.to_str().unwrap(),
        "--online",
        "--report",
        report.to_str().unwrap(),
    ];
    let o = tool(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["validation"]["kind"], "online");
    assert!(v["validation"]["max_abs_diff"].as_f64().unwrap() < 1e-5);
    assert_eq!(v["buffers"].as_array().unwrap().len(), 4);
    assert_eq!(v["buffers"][0]["shape"], serde_json::json!(["batch", 2, 8, 8]));
    // A failed run writes no report.
    let bad = dir.path().join("bad.json");
    let o = tool(&["fixtures/models/nope.onnx", "-o", online.to_str().unwrap(), "--report", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!bad.exists());
}

#[test]
fn help_has_examples_and_completions_are_generated() {
    let o = tool(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Examples:\n  tsm-rewrite resnet50.onnx -o tsm.onnx"));
    for shell in ["bash", "zsh", "fish"] {
        let o = tool(&["--completions", shell]);
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains("tsm-rewrite") && script.contains("temporal-pool"), "{shell}");
    }
}

/// timm's `resnet50_gn`: GroupNorm's Reshapes before a projection's strided 1x1 convolution, which
/// tract 0.23 cannot optimize in the input model either. Validation runs all the models unoptimized
/// and says so, offline and online, rather than calling it tract's limitation and writing nothing;
/// where it optimizes the rewrite but not the input model, it times both unoptimized.
#[test]
fn where_tract_cannot_optimize_the_input_either_validation_runs_unoptimized() {
    // resnet_groupnorm with layer2.0's projection made resnet50_gn's (the AvgPool dropped, the 1x1
    // convolution strided), reading its input through a Reshape pair as
    // `tests/tract/downsample_over_reshape.onnx` does (`resnet50_gn`'s own pull reaches a
    // GroupNorm's Reshape through three blocks; this is the short way to the same failure).
    let mut m = read_model(&model("resnet_groupnorm"));
    let graph = m.graph.as_mut().unwrap();
    let pool = graph.node.iter().position(|n| n.op_type() == "AveragePool").unwrap();
    let pool = graph.node.remove(pool);
    let x = pool.input[0].clone();
    let ints = |name: &str, v: Vec<i64>| tsm_rewrite::onnx::TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v,
        ..Default::default()
    };
    graph.initializer.push(ints("grouped", vec![-1, 4, 8 * 16 * 16]));
    graph.initializer.push(ints("ungrouped", vec![-1, 32, 16, 16]));
    let reshape = |input: &str, shape: &str, output: &str| tsm_rewrite::onnx::NodeProto {
        name: Some(format!("/{output}")),
        op_type: Some("Reshape".into()),
        input: vec![input.into(), shape.into()],
        output: vec![output.into()],
        ..Default::default()
    };
    let conv = graph.node.iter().position(|n| n.input.first() == pool.output.first()).unwrap();
    graph.node[conv].input[0] = "ungrouped_x".into();
    graph.node[conv].attribute.iter_mut().filter(|a| a.name() == "strides").for_each(|a| a.ints = vec![2, 2]);
    graph.node.insert(conv, reshape("grouped_x", "ungrouped", "ungrouped_x"));
    graph.node.insert(conv, reshape(&x, "grouped", "grouped_x"));
    let dir = tempfile::tempdir().unwrap();
    let strided = write_model(dir.path(), "gn_strided.onnx", &m);
    let shapes = [vec![8, 3, 32, 32]];
    assert!(tsm_rewrite::validate::Runner::load(&strided, &shapes).is_err(), "tract optimizes it now");
    assert!(tsm_rewrite::validate::Runner::load_with(&strided, &shapes, false).is_ok());
    let out = dir.path().join("tsm.onnx");
    for extra in
        [&[][..], &["--online"][..], &["--shift-form", "batch"][..], &["--online", "--shift-form", "batch"][..]]
    {
        let mut args = vec![strided.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(extra);
        let o = tool(&args);
        let err = stderr(&o);
        assert!(o.status.success(), "{extra:?}: {err}");
        assert!(err.contains("4 residual block(s) found, 4 shifted"), "{extra:?}: {err}");
        // Offline the stream form splits the GroupNorms, and tract optimizes the rewrite; online
        // (where GroupNorms stay whole) and in the batch form it fails there too.
        let which = if extra.contains(&"batch") || extra.contains(&"--online") {
            "on this model and on the input model alike ("
        } else {
            "on the input model but not on this one ("
        };
        assert!(err.contains(&format!("note: tract's optimizer fails {which}")), "{extra:?}: {err}");
        assert!(err.contains("validated in tract"), "{extra:?}: {err}");
        let _ = std::fs::remove_file(&out);
    }
}

/// tract 0.23 cannot optimize a strided 1x1 convolution after a Reshape: its declutter pass turns
/// the convolution into a Downsample and fails pulling it over the Reshape ("Invalid axis"). The
/// smallest model that shows it is `tests/tract/downsample_over_reshape.onnx` (Reshape to
/// `[-1, 2, 8, 64]`, Reshape back to `[-1, 8, 8, 8]`, Conv 1x1 stride 2). When this test fails,
/// tract has fixed it and the unoptimized fallback of validation can go.
#[test]
fn tract_cannot_pull_a_downsample_over_a_reshape() {
    let repro = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tract/downsample_over_reshape.onnx");
    let shapes = [vec![4, 8, 8, 8]];
    let err = format!("{:#}", tsm_rewrite::validate::Runner::load(&repro, &shapes).err().expect("tract still fails"));
    assert!(err.contains("Downsample") && err.contains("Reshape"), "{err}");
    assert!(tsm_rewrite::validate::Runner::load_with(&repro, &shapes, false).is_ok());

    // The clip view would feed a ResNet v1's strided 1x1 convolution through such a Reshape: from
    // opset 10 those sites get the batch form, which tract optimizes, even with --shift-form clip.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsm.onnx");
    let o = tool(&[&fixture_arg("resnet_v1"), "-o", out.to_str().unwrap(), "--shift-form", "clip"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("note:"), "{}", stderr(&o));
    // Before opset 10 the clip view is the only form: the input optimizes, the rewrite does not;
    // validation runs both unoptimized and says why. (The fixture's ops mean the same at opset 9.)
    let mut m = read_model(&model("resnet_v1"));
    m.opset_import.iter_mut().filter(|o| o.domain().is_empty()).for_each(|o| o.version = Some(9));
    let v9 = write_model(dir.path(), "v1_opset9.onnx", &m);
    let o = tool(&[v9.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let note = "note: tract's optimizer fails on this model but not on the input model";
    assert!(stderr(&o).contains(note), "{}", stderr(&o));
    let x = input("resnet_v1");
    let want = output("resnet_v1", "residual-bidirectional-fd8");
    let runner = tsm_rewrite::validate::Runner::load_with(&out, std::slice::from_ref(&x.shape), false).unwrap();
    let got = runner.run(&[x]).unwrap().remove(0);
    assert!(got.max_abs_diff(&want) <= tolerance(&want));
}
