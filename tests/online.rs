//! Online (`--online`) rewrites of every committed fixture, run frame by frame in tract with the
//! buffers fed back, against PyTorch streaming TSM references (2 streams over 2*T frames, made by
//! `fixtures/export.py` with a stateful shift module). Also keeps a golden dump of each online graph.

mod common;

use common::*;
use tsm_rewrite::config::{Config, ShiftForm};
use tsm_rewrite::rewrite;
use tsm_rewrite::tensor::FloatArray;
use tsm_rewrite::validate::Runner;

/// The streams the references use: stream 0 sees input_0.pb's frames in order, stream 1 in reverse.
fn stream_frame(input: &FloatArray, t: usize) -> FloatArray {
    let frames = input.shape[0];
    let row = input.data.len() / frames;
    let mut data = input.data[t * row..][..row].to_vec();
    data.extend_from_slice(&input.data[(frames - 1 - t) * row..][..row]);
    let mut shape = input.shape.clone();
    shape[0] = 2;
    FloatArray { shape, data }
}

fn online_config(name: &str, folder: &str) -> Config {
    let mut c = config_for(folder);
    if name == "resnet_dynamic_hw" {
        // Buffers have a fixed size: the frame size must be given where the model leaves it open.
        c.input_shape = Some(vec![3, 32, 32]);
    }
    c
}

fn check_online(name: &str) {
    check_online_form(name, ShiftForm::Stream);
}

fn check_online_form(name: &str, form: ShiftForm) {
    let input = input(name);
    let folders = online_configs(name);
    assert!(folders.len() >= 3, "{name}: only {folders:?}");
    for folder in folders {
        let config = Config { shift_form: form, ..online_config(name, &folder) };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("online.onnx");
        let prepared = rewrite::prepare(&model(name), &config).unwrap_or_else(|e| panic!("{name} {folder}: {e:#}"));
        assert_eq!(prepared.buffers.len(), prepared.plan.sites.len());
        rewrite::finish(&prepared, &out, &config).unwrap_or_else(|e| panic!("{name} {folder}: {e:#}"));

        // Inputs: the frame, then the buffers in depth order; outputs: the logits, then the buffers.
        let graph = prepared.graph();
        let data_inputs: Vec<&str> = tsm_rewrite::validate::data_inputs(graph).iter().map(|v| v.name()).collect();
        let mut want_inputs = vec!["input"];
        want_inputs.extend(prepared.buffers.iter().map(|b| b.input.as_str()));
        assert_eq!(data_inputs, want_inputs, "{name} {folder}");
        let outputs: Vec<&str> = graph.output.iter().map(|v| v.name()).collect();
        assert_eq!(outputs[1..], prepared.buffers.iter().map(|b| b.output.as_str()).collect::<Vec<_>>()[..]);

        let want = output(name, &folder);
        stream_and_compare(&out, &prepared, &input, &want, tolerance(&want), &format!("{name} {folder}"));
        if folder == "online-residual-fd8" && form == ShiftForm::Stream {
            insta::assert_snapshot!(format!("online_dump_{name}"), tsm_rewrite::dump::dump(&prepared.model));
        }
    }
}

/// Streams 16 frames of 2 streams ([`stream_frame`]) through the online graph at `out` in tract,
/// the buffers fed back from zeros, and compares each frame's first output with `want` (`[16, 2,
/// 10]`, the PyTorch streaming reference) within `tol`.
fn stream_and_compare(
    out: &std::path::Path,
    prepared: &rewrite::Prepared,
    input: &FloatArray,
    want: &FloatArray,
    tol: f32,
    what: &str,
) {
    let buffer_shapes: Vec<Vec<usize>> = prepared
        .buffers
        .iter()
        .map(|b| {
            let mut s: Vec<usize> = b.shape_text()[1..].iter().map(|d| d.parse().unwrap()).collect();
            s.insert(0, 2);
            s
        })
        .collect();
    let mut shapes = vec![vec![2, 3, input.shape[2], input.shape[3]]];
    shapes.extend(buffer_shapes.iter().cloned());
    let runner = Runner::load_expanding(out, &shapes).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(want.shape, [16, 2, 10], "{what}");
    let mut state: Vec<FloatArray> =
        buffer_shapes.iter().map(|s| FloatArray { shape: s.clone(), data: vec![0.0; s.iter().product()] }).collect();
    for t in 0..16 {
        let mut inputs = vec![stream_frame(input, t)];
        inputs.append(&mut state);
        let mut outs = runner.run(&inputs).unwrap_or_else(|e| panic!("{what} frame {t}: {e:#}"));
        state = outs.split_off(1);
        let frame_want = FloatArray { shape: vec![2, 10], data: want.data[t * 20..][..20].to_vec() };
        let diff = outs[0].max_abs_diff(&frame_want);
        assert!(diff <= tol, "{what} frame {t}: max abs diff {diff} > {tol}");
    }
}

macro_rules! online_tests {
    ($($name:ident),*) => { $( #[test] fn $name() { check_online(stringify!($name)); } )* };
}

for_each_fixture!(online_tests);

/// `--shift-form tract`: the batch form's Concat at every site (no stream site), and where a
/// block's residual Add reads the site's tensor after a 1x1 convolution, that tensor joined back
/// from the site's two slices (so tract keeps the Add out of the convolution's product). On
/// resnet_bottleneck (residual, fold 8) three of six sites are such identity blocks, the other
/// three stage heads whose Add sums two convolutions; resnet_basic's Adds follow 3x3s. Every
/// fixture streams equal to the references.
#[test]
fn tract_form_streams_equal_the_references() {
    let sites = |name: &str, form| {
        let config = Config { shift_form: form, ..online_config(name, "online-residual-fd8") };
        let prepared = rewrite::prepare(&model(name), &config).unwrap();
        let rejoined = prepared.graph().node.iter().filter(|n| n.name().ends_with("/tsm/Concat_rejoined")).count();
        let stream = prepared.plan.sites.iter().filter(|s| s.stream.is_some()).count();
        (stream, rejoined)
    };
    assert_eq!(
        (sites("resnet_bottleneck", ShiftForm::Stream), sites("resnet_bottleneck", ShiftForm::Tract)),
        ((5, 0), (0, 3))
    );
    assert_eq!((sites("resnet_basic", ShiftForm::Tract), sites("mobilenet_v2", ShiftForm::Tract)), ((0, 0), (0, 4)));
    for name in ["resnet_bottleneck", "resnet_deep", "resnet_basic", "mobilenet_v2"] {
        check_online_form(name, ShiftForm::Tract);
    }
}

/// float16 models online, with float16 inputs and outputs and with `keep_io_types` (float32 ones
/// around a float16 network): every buffer is declared in the shifted tensor's type, float16 (with
/// the frame's type, the `keep_io_types` graph did not load in onnxruntime: "Type parameter (T) of
/// Optype (Concat) bound to different types"). tract 0.23 computes float16 in software (and cannot
/// type a float16 Gemm): online validation checks the float32 copies, as offline validation does,
/// and says so (before, `--online` failed on every float16 model). The online graph, computed
/// in float32 from its float16 weights, streams equal to PyTorch's float32 streaming TSM within
/// float16 noise.
#[test]
fn float16_models_stream_online() {
    use tsm_rewrite::rewrite::Validated;
    for (name, float) in [
        ("resnet_basic_fp16", "resnet_basic"),
        ("resnet_basic_fp16io", "resnet_basic"),
        ("mobilenet_v2_fp16", "mobilenet_v2"),
        ("ghost_net_fp16io", "ghost_net"),
    ] {
        let config = Config { validate: true, ..online_config(float, "online-residual-fd8") };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("online.onnx");
        let prepared = rewrite::prepare(&model(name), &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let report = rewrite::finish(&prepared, &out, &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let Some(Validated::Online(r)) = report else { panic!("{name}: not validated online") };
        assert_eq!(r.float32.as_deref(), Some(tsm_rewrite::validate::FLOAT16_IN_SOFTWARE), "{name}");

        let written = read_model(&out);
        let graph = written.graph.as_ref().unwrap();
        let elem = |v: &tsm_rewrite::onnx::ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) => t.elem_type(),
            _ => 0,
        };
        let frame_type = if name.ends_with("fp16io") { 1 } else { 10 };
        assert_eq!(elem(&graph.input[0]), frame_type, "{name}: the frame keeps its type");
        for b in &prepared.buffers {
            let find = |vs: &[tsm_rewrite::onnx::ValueInfoProto], n: &str| vs.iter().find(|v| v.name() == n).map(elem);
            assert_eq!(find(&graph.input, &b.input), Some(10), "{name} {}: a float16 buffer", b.input);
            assert_eq!(find(&graph.output, &b.output), Some(10), "{name} {}: a float16 buffer", b.output);
        }

        let wide = write_model(dir.path(), "wide.onnx", &tsm_rewrite::widen::to_float32(&written));
        let want = output(float, "online-residual-fd8");
        stream_and_compare(&wide, &prepared, &input(float), &want, 5e-3 * want.max_abs().max(1.0), name);
    }
}
