//! The formats deployment pipelines produce (`fixtures/export_deploy.py`): a fixed batch of 1,
//! int8 QDQ from onnxruntime's `quantize_static`, float16 from onnxconverter_common, and the
//! clip-level output (`--consensus`). Each rewrite runs in tract against an independent reference:
//! PyTorch's TSM for the batch-1 and float16 models, and for QDQ models the same QDQ graph with a
//! float shift inserted on each branch's dequantized input by the fixture script (run in
//! onnxruntime with graph optimizations off).

mod common;

use common::*;
use tsm_rewrite::config::{Config, Consensus, Direction, ShiftForm};
use tsm_rewrite::rewrite::{self, Validated};
use tsm_rewrite::tensor::FloatArray;
use tsm_rewrite::validate::{self, Runner};

/// Rewrites `name` with `config` (validated, unless the config says not) into a temp folder; returns
/// the prepared rewrite, what validation reported, and the folder holding `tsm.onnx`.
fn rewrite(name: &str, config: &Config) -> (rewrite::Prepared, Option<Validated>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let prepared = rewrite::prepare(&model(name), config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let report =
        rewrite::finish(&prepared, &dir.path().join("tsm.onnx"), config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    (prepared, report, dir)
}

fn assert_close(got: &FloatArray, want: &FloatArray, tol: f32, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}");
    let diff = got.max_abs_diff(want);
    assert!(diff <= tol, "{what}: max abs diff {diff} > {tol}");
}

#[test]
fn a_batch_one_export_takes_clips() {
    for name in ["resnet_batch1", "resnet_batch1_dynamo"] {
        let (prepared, report, dir) = rewrite(name, &Config::default());
        assert!(matches!(report, Some(Validated::Offline(_))), "{name}: validated against the freed 2D model");
        assert!(prepared.batch_changes[0].starts_with("input 'input': batch 1 -> batch"), "{name}");
        let want = output("resnet_batch1", "residual-bidirectional-fd8");
        let got = validate::run(&dir.path().join("tsm.onnx"), &[input("resnet_batch1")]).unwrap().remove(0);
        assert_close(&got, &want, tolerance(&want), name);
        assert!(want.max_abs_diff(&output("resnet_batch1", "plain")) > 10.0 * tolerance(&want));
    }
    // The dynamo exporter flattens with a Reshape to [1, 64], which now keeps the batch.
    let (prepared, _, _) = rewrite("resnet_batch1_dynamo", &Config { validate: false, ..Config::default() });
    assert!(
        prepared.batch_changes.iter().any(|c| c.contains("Reshape target [1, 64] -> [-1, 64]")),
        "{:?}",
        prepared.batch_changes
    );
}

#[test]
fn a_batch_one_export_streams_one_frame_at_a_time() {
    let config = Config { online: true, direction: Direction::Past, ..Config::default() };
    let (prepared, report, dir) = rewrite("resnet_batch1", &config);
    assert!(prepared.batch_changes.is_empty(), "online keeps the batch of 1");
    assert!(matches!(report, Some(Validated::Online(_))));
    let x = input("resnet_batch1");
    let want = output("resnet_batch1", "online-residual-fd8");
    let mut shapes = vec![vec![1, 3, 32, 32]];
    shapes.extend(prepared.buffers.iter().map(|b| b.shape_text().iter().map(|d| d.parse().unwrap()).collect()));
    let runner = Runner::load(&dir.path().join("tsm.onnx"), &shapes).unwrap();
    // The reference streams input_0.pb forwards (stream 0) and backwards (stream 1), each alone here.
    for stream in 0..2 {
        let mut state: Vec<FloatArray> =
            shapes[1..].iter().map(|s| FloatArray { shape: s.clone(), data: vec![0.0; s.iter().product()] }).collect();
        for t in 0..16 {
            let f = if stream == 0 { t } else { 15 - t };
            let row = x.data.len() / 16;
            let mut inputs = vec![FloatArray { shape: vec![1, 3, 32, 32], data: x.data[f * row..][..row].to_vec() }];
            inputs.append(&mut state);
            let mut outs = runner.run(&inputs).unwrap();
            state = outs.split_off(1);
            let frame_want = FloatArray { shape: vec![1, 10], data: want.data[(t * 2 + stream) * 10..][..10].to_vec() };
            assert_close(&outs[0], &frame_want, tolerance(&want), &format!("stream {stream} frame {t}"));
        }
    }
}

#[test]
fn consensus_gives_one_row_per_clip_under_the_output_name() {
    for (how, folder) in
        [(Consensus::Avg, "residual-bidirectional-fd8-avg"), (Consensus::Max, "residual-bidirectional-fd8-max")]
    {
        let (prepared, _, dir) = rewrite("resnet_batch1", &Config { consensus: Some(how), ..Config::default() });
        let g = prepared.graph();
        assert_eq!(g.output.len(), 1);
        assert_eq!(g.output[0].name(), "logits");
        assert!(g.node.iter().any(|n| n.output.iter().any(|o| o == "logits/frames")), "the per-frame output stays");
        if how == Consensus::Avg {
            insta::assert_snapshot!("dump_resnet_batch1_consensus_avg", tsm_rewrite::dump::dump(&prepared.model));
        }
        let want = output("resnet_batch1", folder);
        assert_eq!(want.shape, [2, 10]);
        let got = validate::run(&dir.path().join("tsm.onnx"), &[input("resnet_batch1")]).unwrap().remove(0);
        assert_close(&got, &want, tolerance(&want), folder);
    }
    let o = tool(&["fixtures/models/resnet_basic.onnx", "-o", "/nonexistent/x.onnx", "--online", "--consensus", "avg"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--consensus avg joins the T frames of each clip, but --online"), "{}", stderr(&o));
}

#[test]
fn qdq_consensus_reduces_a_float_copy_of_the_frames() {
    // OpenVINO's low-precision passes would move the output's DequantizeLinear into the ReduceMean,
    // which its CPU plugin computes wrongly for every clip but the first (python/tests checks it
    // there); the consensus reads `Max(frames, frames)` instead. Here: that node is where the
    // reduction reads, and the clip rows equal the mean and max over T of the per-frame rewrite's
    // rows, both run in tract.
    for (name, _) in QDQ {
        let config = Config { validate: false, ..Config::default() };
        let (_, _, frames_dir) = rewrite(name, &config);
        let frames = validate::run(&frames_dir.path().join("tsm.onnx"), &[input(name)]).unwrap().remove(0);
        let (k, t) = (frames.shape[1], 8);
        for how in [Consensus::Avg, Consensus::Max] {
            let (prepared, _, dir) = rewrite(name, &Config { consensus: Some(how), ..config.clone() });
            let g = prepared.graph();
            let copy = g.node.iter().find(|n| n.name() == "logits/consensus/Max_float").expect("the float copy");
            assert_eq!(copy.input, ["logits/frames", "logits/frames"], "{name}");
            let reshape = g.node.iter().find(|n| n.name() == "logits/consensus/Reshape_clips").unwrap();
            assert_eq!(reshape.input[0], copy.output[0], "{name}");
            let got = validate::run(&dir.path().join("tsm.onnx"), &[input(name)]).unwrap().remove(0);
            let clips = frames.shape[0] / t;
            let mut want = FloatArray { shape: vec![clips, k], data: vec![0.0; clips * k] };
            for (i, w) in want.data.iter_mut().enumerate() {
                let rows = (0..t).map(|f| frames.data[((i / k) * t + f) * k + i % k]);
                *w = match how {
                    Consensus::Avg => rows.sum::<f32>() / t as f32,
                    Consensus::Max => rows.fold(f32::MIN, f32::max),
                };
            }
            assert_close(&got, &want, 1e-5 * want.data.iter().fold(1.0f32, |m, v| m.max(v.abs())), name);
        }
    }
}

/// QDQ fixtures and the float fixtures they were quantized from.
const QDQ: [(&str, &str); 3] = [
    ("resnet_basic_qdq", "resnet_basic"),
    ("resnet_bottleneck_qdq_pc", "resnet_bottleneck"),
    ("mobilenet_v2_qdq_pc", "mobilenet_v2"),
];

#[test]
fn qdq_models_are_shifted_on_the_quantized_values() {
    for (name, float) in QDQ {
        let plain = rewrite::prepare(&model(float), &Config { validate: false, ..Config::default() }).unwrap();
        let (prepared, report, dir) = rewrite(name, &Config::default());
        assert!(matches!(report, Some(Validated::Offline(_))), "{name}");
        // The same blocks as in the float model, every one shifted.
        let blocks = |p: &rewrite::Prepared| -> Vec<(String, i64, bool)> {
            p.findings
                .blocks
                .iter()
                .map(|b| (b.name.clone(), b.channels, b.shortcut == tsm_rewrite::blocks::Shortcut::Identity))
                .collect()
        };
        assert_eq!(blocks(&prepared), blocks(&plain), "{name}: {:#?}", prepared.findings.skipped);
        assert_eq!(prepared.plan.sites.len(), plain.plan.sites.len(), "{name}");
        // Each shifted consumer still reads a DequantizeLinear (what QDQ fusions match), whose
        // input is the shift of the quantized tensor, padded with the zero point.
        let g = prepared.graph();
        for site in &prepared.plan.sites {
            let q = site.quant.as_ref().unwrap_or_else(|| panic!("{name}: site {} not quantized", site.block_name));
            let dq = g
                .node
                .iter()
                .find(|n| n.output.iter().any(|o| *o == format!("{}/shifted_dequantized", site.prefix)))
                .unwrap();
            assert_eq!(dq.op_type(), "DequantizeLinear");
            assert_eq!(dq.input[1..], [q.scale.clone(), q.zero_point.clone()]);
            let wheres: Vec<_> =
                g.node.iter().filter(|n| n.op_type() == "Where" && n.name().starts_with(&site.prefix)).collect();
            assert!(!wheres.is_empty() && wheres.iter().all(|w| w.input[2] == q.zero_point), "{name}");
        }
        if name == "resnet_basic_qdq" {
            insta::assert_snapshot!("dump_resnet_basic_qdq", tsm_rewrite::dump::dump(&prepared.model));
        }
        let want = output(name, "residual-bidirectional-fd8");
        let plain_want = output(name, "plain");
        // The harness: tract runs the untouched QDQ model as onnxruntime does, but for a rounding tie
        // on resnet_basic_qdq (1.35e-2 there, 0 on the others).
        let plain_got = validate::run(&model(name), &[input(name)]).unwrap().remove(0);
        assert_close(&plain_got, &plain_want, 0.02 * plain_want.max_abs().max(1.0), &format!("{name} plain"));
        // The rewrite equals the float shift of the dequantized tensors (0 difference here).
        let got = validate::run(&dir.path().join("tsm.onnx"), &[input(name)]).unwrap().remove(0);
        assert_close(&got, &want, tolerance(&want), name);
        eprintln!(
            "{name}: tract vs onnxruntime: plain {:.2e}, rewrite {:.2e}; shift effect {:.2e}",
            plain_got.max_abs_diff(&plain_want),
            got.max_abs_diff(&want),
            want.max_abs_diff(&plain_want)
        );
        assert!(
            want.max_abs_diff(&plain_want) > 2.0 * got.max_abs_diff(&want),
            "{name}: the shift is visible above the noise"
        );
    }
}

#[test]
fn float16_models_are_shifted_in_float16() {
    for (name, float) in [
        ("resnet_basic_fp16", "resnet_basic"),
        ("resnet_basic_fp16io", "resnet_basic"),
        ("mobilenet_v2_fp16", "mobilenet_v2"),
        // Its residual joins add the ghost modules' Slices, whose dims only the converter's
        // value_info declares: until stop 39 their layout was taken as lost, and every block skipped.
        ("ghost_net_fp16io", "ghost_net"),
    ] {
        // The default (the clip view at these sites) and the batch form.
        for shift_form in [ShiftForm::Stream, ShiftForm::Batch] {
            let what = format!("{name} {shift_form:?}");
            let (prepared, report, dir) = rewrite(name, &Config { shift_form, ..Config::default() });
            // tract 0.23 computes float16 in software (and cannot type a float16 Gemm): validation
            // checks the float32 copies, and says so.
            let Some(Validated::Offline(r)) = report else { panic!("{what}: not validated") };
            assert_eq!(r.float32.as_deref(), Some(validate::FLOAT16_IN_SOFTWARE), "{what}");
            for site in &prepared.plan.sites {
                assert_eq!(site.elem_type, Some(10), "{what} {}: float16", site.block_name);
            }
            // The batch form's zeros are an initializer of the tensor's type; the clip view's Pads
            // take theirs from the Pad itself (no value input), in the tensor's type too.
            if shift_form == ShiftForm::Batch {
                let zero = prepared.graph().initializer.iter().find(|t| t.name().ends_with("/tsm/zero")).unwrap();
                assert_eq!((zero.data_type(), zero.raw_data().len()), (10, 2), "{what}: a float16 zero");
            }
            // The rewrite, computed in float32 from its float16 weights, against PyTorch's float32 TSM.
            let wide = tsm_rewrite::widen::to_float32(&read_model(&dir.path().join("tsm.onnx")));
            let path = write_model(dir.path(), "wide.onnx", &wide);
            let got = validate::run(&path, &[input(float)]).unwrap().remove(0);
            let want = output(float, "residual-bidirectional-fd8");
            assert_close(&got, &want, 5e-3 * want.max_abs().max(1.0), &what);
        }
    }
}

/// `--temporal-pool` on QDQ ResNets: the pool runs on the quantized second-stage input (since stop
/// 33; the max commutes with dequantizing, whose scale is positive) and a DequantizeLinear follows,
/// and the site that shifts the pooled tensor shifts the pooled quantized tensor, so that both of
/// the block's convolutions still read a DequantizeLinear (onnxruntime's QLinearConv: 20 of 20 on
/// resnet_basic_qdq, 18 when the pool was float). Until stop 32 the site shifted the quantized
/// tensor before the pool, bypassing it (its branch saw 16 frames, its downsample 8: refused by
/// validation, "Can not broadcast 16 against 8"). Against the QDQ model with a float max_pool3d
/// and float shifts inserted by fixtures/export_deploy.py. Before opset 12 (no Max of integers)
/// the pool and that site's shift run on floats.
#[test]
fn temporal_pool_on_qdq_models_pools_both_paths() {
    for (name, _) in &QDQ[..2] {
        let (prepared, report, dir) = rewrite(name, &Config { temporal_pool: true, ..Config::default() });
        assert!(matches!(report, Some(Validated::Offline(_))), "{name}");
        let pool = prepared.plan.pool.as_ref().unwrap();
        assert!(pool.quant.is_some(), "{name}: the pool runs on the quantized tensor");
        let site =
            prepared.plan.sites.iter().find(|s| s.tensor == pool.output()).expect("a site shifts the pooled tensor");
        let shifted = site.quant.as_ref().map(|q| q.tensor.clone());
        assert_eq!(shifted, Some(pool.quantized_output()), "{name}: the pooled quantized tensor is shifted");
        assert!(prepared.plan.sites.iter().filter(|s| s.quant.is_some()).count() >= 5, "{name}: the others stay QDQ");
        let want = output(name, "residual-bidirectional-fd8-tpool");
        let got = validate::run(&dir.path().join("tsm.onnx"), &[input(name)]).unwrap().remove(0);
        assert_close(&got, &want, tolerance(&want), name);
        // As written, value_info kept: the quantize_static export declares every tensor `batch`, and
        // the shift of the pooled quantized tensor and what it computes are `batch*4`, as after the
        // pool's DequantizeLinear (until stop 34 they stayed `batch*8`, which tract cannot unify).
        check_runs_as_written(&dir.path().join("tsm.onnx"), &model(name), &[input(name)], &got, name);
        // Before opset 12: floats.
        let loaded = tsm_rewrite::load::load(&model(name)).unwrap();
        let graph = loaded.model.graph.as_ref().unwrap();
        let df = tsm_rewrite::graph::Dataflow::build(graph).unwrap();
        let shapes = tsm_rewrite::shapes::Shapes::infer(graph);
        let found = tsm_rewrite::blocks::find(graph, &df, &shapes);
        let config = Config { temporal_pool: true, ..Config::default() };
        let plan = tsm_rewrite::plan::plan(graph, &df, &found, &shapes, &config, 11).unwrap();
        let pool = plan.pool.as_ref().unwrap();
        assert!(pool.quant.is_none(), "{name}");
        assert!(plan.sites.iter().find(|s| s.tensor == pool.output()).unwrap().quant.is_none(), "{name}");
    }
    // The same through the whole tool, on the model declared opset 11 (every operator in it reads
    // the same there): the float pooled site takes the batch form, with which OpenVINO with a
    // dynamic batch is right (with the clip view it quantized conv1's output wrongly, stop 34), and
    // the output equals the reference the opset-13 rewrite is held to.
    let name = QDQ[0].0;
    let mut m = common::read_model(&model(name));
    m.opset_import.iter_mut().filter(|o| o.domain().is_empty()).for_each(|o| o.version = Some(11));
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_model(dir.path(), "opset11.onnx", &m);
    let config = Config { temporal_pool: true, ..Config::default() };
    let prepared = rewrite::prepare(&path, &config).unwrap();
    let pool = prepared.plan.pool.as_ref().unwrap();
    let site = prepared.plan.sites.iter().find(|s| s.tensor == pool.output()).unwrap();
    assert!(site.quant.is_none() && site.in_qdq_model, "{name}: opset 11 pools and shifts the floats");
    let g = prepared.graph();
    let names: Vec<&str> = g.node.iter().map(|n| n.name()).filter(|n| n.starts_with(&site.prefix)).collect();
    let has = |n: &str| names.contains(&format!("{}/{n}", site.prefix).as_str());
    assert!(has("Concat") && !has("Reshape_clip"), "{name}: the batch form, got {names:?}");
    let out = dir.path().join("tsm.onnx");
    rewrite::finish(&prepared, &out, &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let got = validate::run(&out, &[input(name)]).unwrap().remove(0);
    let want = output(name, "residual-bidirectional-fd8-tpool");
    assert_close(&got, &want, tolerance(&want), name);
}

#[test]
fn temporal_pool_halves_the_frames_at_the_second_stage() {
    for (consensus, folder) in
        [(None, "residual-bidirectional-fd8-tpool"), (Some(Consensus::Avg), "residual-bidirectional-fd8-tpool-avg")]
    {
        let config = Config { temporal_pool: true, consensus, ..Config::default() };
        let (prepared, report, dir) = rewrite("resnet_batch1", &config);
        assert!(matches!(report, Some(Validated::Offline(_))));
        let pool = prepared.plan.pool.as_ref().unwrap();
        assert_eq!((pool.block_name.as_str(), pool.segments), ("/layer2/layer2.0/Add", 8));
        // layer1's two sites shift over 8 frames, the later six over 4.
        let segments: Vec<usize> = prepared.plan.sites.iter().map(|s| s.segments).collect();
        assert_eq!(segments, [8, 8, 4, 4, 4, 4, 4, 4]);
        assert_eq!(prepared.plan.sites[2].tensor, pool.output(), "layer2.0 shifts the pooled tensor");
        if consensus.is_none() {
            insta::assert_snapshot!("dump_resnet_batch1_temporal_pool", tsm_rewrite::dump::dump(&prepared.model));
        }
        let want = output("resnet_batch1", folder);
        let got = validate::run(&dir.path().join("tsm.onnx"), &[input("resnet_batch1")]).unwrap().remove(0);
        assert_close(&got, &want, tolerance(&want), folder);
        // Every form, validated by the tool in tract. `--shift-form tract` once gave layer2.0's
        // shift (after the pool, 8 frames) the ScatterND positions made for layer1's (16 frames):
        // tract panicked in the tool's validation.
        for shift_form in [ShiftForm::Tract, ShiftForm::Openvino, ShiftForm::Batch, ShiftForm::Clip] {
            let config = Config { shift_form, ..config.clone() };
            let (_, report, dir) = rewrite("resnet_batch1", &config);
            assert!(matches!(report, Some(Validated::Offline(_))), "{shift_form:?}");
            let got = validate::run(&dir.path().join("tsm.onnx"), &[input("resnet_batch1")]).unwrap().remove(0);
            assert_close(&got, &want, tolerance(&want), &format!("{folder} {shift_form:?}"));
        }
        // As written, nothing pinned: the batch is declared `batch*8` before the pool and `batch*4`
        // after it (a consensus output: `batch`), in the dynamo export's value_info too, where tract
        // unifies every declaration with what it infers.
        for name in ["resnet_batch1", "resnet_batch1_dynamo"] {
            let (prepared, _, dir) = rewrite(name, &Config { validate: false, ..config.clone() });
            let outputs = &prepared.graph().output;
            let declared = tsm_rewrite::shapes::declared_dims(&outputs[0]).unwrap()[0].to_string();
            assert_eq!(declared, if consensus.is_some() { "batch" } else { "batch*4" }, "{name} {folder}");
            // The pooled tensor too: its Reshape back to frames loses the batch in shape inference,
            // and onnxruntime needs it to fuse the residual Adds after the pool into their convolutions.
            let pooled = prepared.graph().value_info.iter().find(|v| v.name() == pool.output());
            let pooled = tsm_rewrite::shapes::declared_dims(pooled.expect("the pooled tensor is declared")).unwrap();
            assert_eq!(pooled.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["batch*4", "8", "16", "16"]);
            let got = run_as_written(&dir.path().join("tsm.onnx"), &[input("resnet_batch1")])
                .unwrap_or_else(|e| panic!("{name} {folder}: {e}"))
                .remove(0);
            assert_close(&got, &want, tolerance(&want), &format!("{name} {folder}, as written"));
        }
    }
    // Where the second stage does not start with a projection block, which stage is the paper's
    // layer2 is a guess: refused, naming the block.
    let err = rewrite::prepare(&model("mobilenet_v2"), &Config { temporal_pool: true, ..Config::default() })
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("node /features/features.5/Add: --temporal-pool pools at the second stage's input"),
        "{err}"
    );
    for (args, message) in [
        (&["--online"][..], "cannot be used with --online"),
        (&["--segments", "5"][..], "--segments must be even, got 5"),
    ] {
        let mut all = vec!["fixtures/models/resnet_basic.onnx", "-o", "/nonexistent/x.onnx", "--temporal-pool"];
        all.extend_from_slice(args);
        let o = tool(&all);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
}

/// `--temporal-pool` on a model that leaves H and W open (until stop 33 refused: the pool's view
/// was written for one frame size): its views keep H and W as the tensor has them, so one graph
/// pools any frame size. Against PyTorch's temporal pool TSM of the same network at the size
/// validation ran at and at another, in tract and as written (onnxruntime's reading of the graph).
#[test]
fn temporal_pool_on_open_height_and_width() {
    let config = Config { temporal_pool: true, input_shape: Some(vec![3, 32, 32]), ..Config::default() };
    let (prepared, report, dir) = rewrite("resnet_dynamic_hw", &config);
    assert!(matches!(report, Some(Validated::Offline(_))));
    assert_eq!(prepared.plan.pool.as_ref().unwrap().block_name, "/layer2/layer2.0/Add");
    let out = dir.path().join("tsm.onnx");
    let pool = data("resnet_dynamic_hw").join("temporal-pool");
    let x48 = FloatArray::read_pb(&pool.join("48x40").join("input_0.pb")).unwrap().1;
    for (size, x) in [("32x32", input("resnet_dynamic_hw")), ("48x40", x48)] {
        let want = FloatArray::read_pb(&pool.join(size).join("output_0.pb")).unwrap().1;
        let got = validate::run(&out, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{size}: {e:#}")).remove(0);
        assert_close(&got, &want, tolerance(&want), size);
        let got = run_as_written(&out, &[x]).unwrap_or_else(|e| panic!("{size}: {e}")).remove(0);
        assert_close(&got, &want, tolerance(&want), &format!("{size}, as written"));
    }
}

#[test]
fn qdq_models_stream_with_float_buffers() {
    let config = Config { online: true, direction: Direction::Past, ..Config::default() };
    for (name, _) in QDQ {
        let (prepared, report, _dir) = rewrite(name, &config);
        // Validation streamed 16 frames with the buffers fed back from zeros against the offline
        // past-only rewrite: equal, bit for bit (the join moves quantized values).
        let Some(Validated::Online(r)) = report else { panic!("{name}: not validated online") };
        assert_eq!(r.max_diff, 0.0, "{name}");
        let g = prepared.graph();
        for b in &prepared.buffers {
            let vi = g.input.iter().find(|i| i.name() == b.input).unwrap();
            let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) =
                vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                panic!()
            };
            assert_eq!(t.elem_type, Some(1), "{name}: buffers carry floats (zeros mean zeros)");
        }
        let quantize = g
            .node
            .iter()
            .filter(|n| n.op_type() == "QuantizeLinear" && n.name().ends_with("/tsm/QuantizeLinear_buffer"))
            .count();
        assert_eq!(quantize, prepared.buffers.len(), "{name}");
        if name == "resnet_basic_qdq" {
            insta::assert_snapshot!("online_dump_resnet_basic_qdq", tsm_rewrite::dump::dump(&prepared.model));
        }
    }
}

/// Where the tool's own shape inference stops short of a join, tract's analysis tells the shapes;
/// tract refuses a float16 model whose converter left an operator reading float32 (Swin-T's
/// float16 copies: an attention MatMul of float16 by float32, "Impossible to unify F32 with F16"),
/// and the float32 copy's analysis tells them instead. Those copies were refused ("channels
/// unknown", exit 2) where the float32 export is judged to have no residual block (exit 1).
#[test]
fn tract_analysis_of_a_float16_model_falls_back_to_its_float32_copy() {
    use tsm_rewrite::onnx::tensor_proto::DataType;
    let dir = tempfile::tempdir().unwrap();
    let mut m = read_model(&model("resnet_basic_fp16"));
    let graph = m.graph.as_mut().unwrap();
    // The head's weights in float32 (the float32 fixture's), as a converter's block list leaves an
    // operator.
    let gemm = graph.node.iter().find(|n| n.op_type() == "Gemm").unwrap().input[1].clone();
    let float = read_model(&model("resnet_basic")).graph.unwrap();
    let w = float.initializer.into_iter().find(|t| t.name() == gemm).unwrap();
    assert_eq!(w.data_type(), DataType::Float as i32);
    *graph.initializer.iter_mut().find(|t| t.name() == gemm).unwrap() = w;
    let logits = graph.output[0].name().to_string();
    let (inputs, _) = validate::input_shapes(graph, 2, None).unwrap();
    let path = write_model(dir.path(), "mixed.onnx", &m);
    let tensors = [logits.as_str()];
    assert_eq!(validate::tensor_shapes(&path, &inputs, &tensors).unwrap(), vec![None], "tract typed it");
    let got = validate::tensor_shapes_or_copy(&path, &inputs, &tensors).unwrap();
    assert_eq!(got, vec![Some(vec![4, 10])]);
}
