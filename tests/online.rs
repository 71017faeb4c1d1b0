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
        let runner = Runner::load(&out, &shapes).unwrap_or_else(|e| panic!("{name} {folder}: {e:#}"));

        let want = output(name, &folder);
        assert_eq!(want.shape, [16, 2, 10], "{name} {folder}");
        let tol = tolerance(&want);
        let mut state: Vec<FloatArray> = buffer_shapes
            .iter()
            .map(|s| FloatArray { shape: s.clone(), data: vec![0.0; s.iter().product()] })
            .collect();
        for t in 0..16 {
            let mut inputs = vec![stream_frame(&input, t)];
            inputs.append(&mut state);
            let mut outs = runner.run(&inputs).unwrap_or_else(|e| panic!("{name} {folder} frame {t}: {e:#}"));
            state = outs.split_off(1);
            let frame_want = FloatArray { shape: vec![2, 10], data: want.data[t * 20..][..20].to_vec() };
            let diff = outs[0].max_abs_diff(&frame_want);
            assert!(diff <= tol, "{name} {folder} frame {t}: max abs diff {diff} > {tol}");
        }
        if folder == "online-residual-fd8" && form == ShiftForm::Stream {
            insta::assert_snapshot!(format!("online_dump_{name}"), tsm_rewrite::dump::dump(&prepared.model));
        }
    }
}

macro_rules! online_tests {
    ($($name:ident),*) => { $( #[test] fn $name() { check_online(stringify!($name)); } )* };
}

for_each_fixture!(online_tests);

/// `--shift-form tract`: the stream form only where the fold is whole blocks, the split
/// convolutions are 1x1 and no other convolution reads the split tensor. On resnet_bottleneck
/// (residual, fold 8) that leaves out the two stage heads whose downsample reads the block input
/// and the sites whose fold of 8 would ride in a head of 16: 1 stream site of 6 against the
/// default's 5, the same outputs. The other fixtures get the batch form's graph.
#[test]
fn tract_form_streams_equal_the_references() {
    let stream_sites = |form| {
        let config = Config { shift_form: form, ..online_config("resnet_bottleneck", "online-residual-fd8") };
        let prepared = rewrite::prepare(&model("resnet_bottleneck"), &config).unwrap();
        prepared.plan.sites.iter().filter(|s| s.stream.is_some()).count()
    };
    assert_eq!((stream_sites(ShiftForm::Stream), stream_sites(ShiftForm::Tract)), (5, 1));
    for name in ["resnet_bottleneck", "resnet_deep", "resnet_basic", "mobilenet_v2"] {
        check_online_form(name, ShiftForm::Tract);
    }
}
