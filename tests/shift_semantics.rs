//! The emitted shift subgraph, alone in a model, run in tract and compared with a plain Rust shift on
//! arrays written from the reference semantics: for every opset form (Slice and Pad with attributes
//! before opsets 10 and 11, inputs after), both directions, both group orders, static and symbolic
//! spatial sizes. The comparison is exact: a shift only moves values. The same for the online form,
//! fed frame by frame with its buffer, against the offline past-only reference.

use tsm_rewrite::config::{Config, Direction, GroupOrder, ShiftForm};
use tsm_rewrite::emit::{head_subgraph, online_subgraph, shift_subgraph, FrameMasks};
use tsm_rewrite::onnx::{
    tensor_shape_proto::{dimension::Value, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use tsm_rewrite::plan::Site;
use tsm_rewrite::shapes::Dim;
use tsm_rewrite::tensor::FloatArray;

mod common;
use common::reference_shift;

fn dims(d: &[Option<i64>]) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(1),
            shape: Some(TensorShapeProto {
                dim: d
                    .iter()
                    .enumerate()
                    .map(|(k, v)| Dimension {
                        value: Some(match v {
                            Some(v) => Value::DimValue(*v),
                            None => Value::DimParam(format!("d{k}")),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

fn shift_model(opset: i64, config: &Config, c: i64, batch: Option<i64>, h: Dim, w: Dim) -> ModelProto {
    model_of(opset, config, c, batch, h, w, shift_subgraph)
}

type Form = fn(&Site, &Config, i64, &mut FrameMasks) -> (Vec<NodeProto>, Vec<TensorProto>, String);

fn model_of(opset: i64, config: &Config, c: i64, batch: Option<i64>, h: Dim, w: Dim, form: Form) -> ModelProto {
    let site = Site {
        block_name: "/b/Add".into(),
        tensor: "x".into(),
        // `dims` names an unknown batch `d0`; the frame masks read it from the input.
        batch: batch.map_or(Dim::Sym("d0".into()), Dim::Known),
        channels: c,
        fold: c / config.fold_div as i64,
        height: h.clone(),
        width: w.clone(),
        elem_type: Some(1),
        segments: config.segments,
        prefix: "/b/tsm".into(),
        ..Site::default()
    };
    let spatial = [h.known(), w.known()];
    let input = ValueInfoProto {
        name: Some("x".into()),
        r#type: Some(dims(&[batch, Some(c), spatial[0], spatial[1]])),
        ..Default::default()
    };
    let mut masks = FrameMasks::new(&GraphProto { input: vec![input.clone()], ..Default::default() });
    let (node, initializer, out) = form(&site, config, opset, &mut masks);
    let node = masks.nodes.into_iter().chain(node).collect();
    let initializer = masks.inits.into_iter().chain(initializer).collect();
    ModelProto {
        ir_version: Some(if opset < 10 { 4 } else { 7 }),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            name: Some("shift".into()),
            input: vec![input],
            output: vec![ValueInfoProto {
                name: Some(out),
                r#type: Some(dims(&[batch, Some(c), spatial[0], spatial[1]])),
                ..Default::default()
            }],
            node,
            initializer,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn check(opset: i64, config: &Config, c: i64, symbolic: bool) {
    let (h, w) = (3, 5);
    let (hd, wd) = if symbolic { (Dim::Sym("H".into()), Dim::Sym("W".into())) } else { (Dim::Known(h), Dim::Known(w)) };
    let model = shift_model(opset, config, c, None, hd, wd);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shift.onnx");
    std::fs::write(&path, prost::Message::encode_to_vec(&model)).unwrap();
    let t = config.segments;
    let x = FloatArray::random(&[2 * t, c as usize, h as usize, w as usize], 42);
    let got =
        tsm_rewrite::validate::run(&path, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("opset {opset}: {e:#}"));
    let want = reference_shift(&x, t, (c as usize) / config.fold_div, config.direction, config.group_order);
    assert_eq!(got[0].shape, want.shape);
    assert_eq!(got[0].data, want.data, "opset {opset}, {config:?}, symbolic {symbolic}");
}

#[test]
fn every_opset_form_shifts_exactly() {
    // The default (the clip view at a site the stream form does not take) and the batch form.
    let batch = Config { shift_form: ShiftForm::Batch, ..Config::default() };
    for opset in [9, 10, 11, 13, 17, 18, 21] {
        check(opset, &Config::default(), 16, false);
        check(opset, &batch, 16, false);
    }
}

#[test]
fn the_clip_view_form_shifts_exactly_too() {
    let clip = Config { shift_form: ShiftForm::Clip, ..Config::default() };
    for opset in [10, 13, 18, 21] {
        check(opset, &clip, 16, false);
    }
    check(13, &clip, 16, true);
    check(13, &Config { direction: Direction::Past, ..clip.clone() }, 16, false);
    check(13, &Config { group_order: GroupOrder::Paddle, ..clip }, 16, false);
}

#[test]
fn the_tract_form_scatters_the_shifted_head_back_exactly() {
    // The 2D form at the sites the depth volume does not take (the shift emitted alone, as here):
    // from opset 11 the moved channels are shifted apart and written back by a ScatterND; before,
    // the clip view. Symbolic H and W, both directions, both group orders, an uneven fold.
    let tract = Config { shift_form: ShiftForm::Tract, ..Config::default() };
    for opset in [10, 11, 13, 16, 18, 21] {
        check(opset, &tract, 16, false);
    }
    check(13, &tract, 16, true);
    check(13, &Config { direction: Direction::Past, ..tract.clone() }, 16, false);
    check(13, &Config { group_order: GroupOrder::Paddle, ..tract.clone() }, 16, false);
    check(13, &Config { fold_div: 4, ..tract.clone() }, 18, false);
    // A fixed batch of whole clips (constant indices), with inf and NaN next to the clip borders.
    for batch in [None, Some(2 * tract.segments as i64)] {
        let model = shift_model(13, &tract, 16, batch, Dim::Known(3), Dim::Known(5));
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.node.iter().filter(|n| n.op_type() == "ScatterND").count(), 1, "batch {batch:?}");
        check_bits(&model, &clips_with_specials_at_the_borders(tract.segments, 5), &tract);
    }
}

#[test]
fn directions_and_group_orders() {
    for (direction, group_order) in [(Direction::Past, GroupOrder::Tsm), (Direction::Bidirectional, GroupOrder::Paddle)]
    {
        for opset in [9, 13] {
            check(opset, &Config { direction, group_order, ..Config::default() }, 16, false);
        }
    }
}

#[test]
fn uneven_channels_and_fold_div_4() {
    // 18 channels / 4 = fold 4, two groups shifted and 10 channels kept.
    check(13, &Config { fold_div: 4, ..Config::default() }, 18, false);
    // fold_div 2 shifts every channel: no rest group.
    check(11, &Config { fold_div: 2, ..Config::default() }, 8, false);
    check(11, &Config { segments: 3, ..Config::default() }, 16, false);
}

#[test]
fn symbolic_spatial_sizes_are_read_at_run_time() {
    check(13, &Config::default(), 16, true);
    check(9, &Config { direction: Direction::Past, ..Config::default() }, 16, true);
}

/// The online site alone: inputs x `[N, C, H, W]` and the buffer, outputs the shifted tensor and the
/// buffer output.
fn online_model(opset: i64, c: i64, fold: i64) -> ModelProto {
    let site = Site {
        block_name: "/b/Add".into(),
        tensor: "x".into(),
        channels: c,
        fold,
        height: Dim::Known(3),
        width: Dim::Known(5),
        elem_type: Some(1),
        segments: 1,
        prefix: "/b/tsm".into(),
        ..Site::default()
    };
    let (node, initializer, out) = online_subgraph(&site, opset, (3, 5));
    let info = |name: &str, ch: i64| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(dims(&[None, Some(ch), Some(3), Some(5)])),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(if opset < 10 { 4 } else { 7 }),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            name: Some("online".into()),
            input: vec![info("x", c), info("/b/tsm/buffer_in", fold)],
            output: vec![info(&out, c), info("/b/tsm/buffer_out", fold)],
            node,
            initializer,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_online_form_streamed_equals_the_past_shift_exactly() {
    let t = 5;
    for (opset, c, fold_div) in [(9, 16, 8), (11, 16, 8), (13, 18, 4), (17, 8, 1), (21, 16, 8)] {
        let fold = c / fold_div;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("online.onnx");
        std::fs::write(&path, prost::Message::encode_to_vec(&online_model(opset, c, fold))).unwrap();
        let (n, (c, fold)) = (2, (c as usize, fold as usize));
        // Negative zeros, huge and non-finite values too: the shift only moves them.
        let mut clip = FloatArray::random(&[n * t, c, 3, 5], 7);
        clip.data[0] = -0.0;
        clip.data[17] = 3.0e38;
        clip.data[20] = f32::INFINITY;
        let runner = tsm_rewrite::validate::Runner::load(&path, &[vec![n, c, 3, 5], vec![n, fold, 3, 5]]).unwrap();
        let want = reference_shift(&clip, t, fold, Direction::Past, GroupOrder::Tsm);
        let row = c * 15;
        let pick = |a: &FloatArray, t0: usize, ch: std::ops::Range<usize>| -> Vec<f32> {
            (0..n)
                .flat_map(|s| ch.clone().flat_map(move |k| (0..15).map(move |p| (s * t + t0, k, p))))
                .map(|(r, k, p)| a.data[r * row + k * 15 + p])
                .collect()
        };
        let mut buffer = FloatArray { shape: vec![n, fold, 3, 5], data: vec![0.0; n * fold * 15] };
        for frame in 0..t {
            let x = FloatArray { shape: vec![n, c, 3, 5], data: pick(&clip, frame, 0..c) };
            let out = runner.run(&[x, buffer]).unwrap_or_else(|e| panic!("opset {opset}: {e:#}"));
            assert_eq!(out[0].data, pick(&want, frame, 0..c), "opset {opset}, frame {frame}");
            assert_eq!(out[1].data, pick(&clip, frame, 0..fold), "opset {opset}, frame {frame}: buffer out");
            buffer = out[1].clone();
        }
    }
}

/// Two clips of `[16, 3, 5]` frames whose first and last frames hold inf, -inf, NaN and -0: a
/// border zero made by multiplying with a 0/1 mask would turn the neighbouring clip's inf into NaN.
fn clips_with_specials_at_the_borders(t: usize, seed: u64) -> FloatArray {
    let mut x = FloatArray::random(&[2 * t, 16, 3, 5], seed);
    let frame = x.data.len() / x.shape[0];
    let specials = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0];
    for clip_frame in [0, t - 1, t, 2 * t - 1] {
        for (k, v) in x.data[clip_frame * frame..][..frame].iter_mut().enumerate() {
            *v = specials[k % 4];
        }
    }
    x
}

/// Runs `model` on `x` and compares the bits with the reference shift.
fn check_bits(model: &ModelProto, x: &FloatArray, config: &Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shift.onnx");
    std::fs::write(&path, prost::Message::encode_to_vec(model)).unwrap();
    let got = tsm_rewrite::validate::run(&path, std::slice::from_ref(x)).unwrap();
    let fold = x.shape[1] / config.fold_div;
    let want = reference_shift(x, config.segments, fold, config.direction, config.group_order);
    let bits = |a: &FloatArray| a.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got[0]), bits(&want), "{config:?}");
}

#[test]
fn zeros_at_clip_borders_are_zeros_whatever_the_neighbour_holds() {
    // The default (here the clip view, the site being no stream site) and the batch form.
    for shift_form in [ShiftForm::Stream, ShiftForm::Batch] {
        let config = Config { shift_form, ..Config::default() };
        let model = shift_model(13, &config, 16, None, Dim::Known(3), Dim::Known(5));
        check_bits(&model, &clips_with_specials_at_the_borders(config.segments, 7), &config);
    }
}

#[test]
fn where_every_channel_moves_one_where_masks_them_all() {
    // The stream form's head: every channel is in a moved group. The groups are joined first and
    // one Where masks the clip borders, for a fixed batch (a constant condition) and a symbolic
    // one (expanded at run time), exact with inf and NaN next to the borders.
    let batch = Config { shift_form: ShiftForm::Batch, ..Config::default() };
    let configs = [
        Config { fold_div: 2, ..batch.clone() },
        Config { fold_div: 2, group_order: GroupOrder::Paddle, ..batch.clone() },
        Config { fold_div: 1, direction: Direction::Past, ..batch },
    ];
    for config in &configs {
        for batch in [None, Some(2 * config.segments as i64)] {
            let model = shift_model(13, config, 16, batch, Dim::Known(3), Dim::Known(5));
            let graph = model.graph.as_ref().unwrap();
            // (The graph's frame index, made once for every site, has a Where of its own.)
            let ops = |op: &str| {
                graph.node.iter().filter(|n| n.op_type() == op && !n.name().starts_with("/tsm/frames/")).count()
            };
            assert_eq!((ops("Where"), ops("Mul")), (1, 0), "{config:?}, batch {batch:?}");
            let x = clips_with_specials_at_the_borders(config.segments, 11);
            check_bits(&model, &x, config);
        }
    }
}

#[test]
fn the_stream_heads_rows_are_gathered_exactly() {
    // The stream form's head offline: one Gather over rows of `fold` channels after a zero frame,
    // with rows that stay (fold_div 4 on 16 channels: two groups move, two stay), both group
    // orders and past-only; a symbolic batch (the index made at run time) and a fixed one (a
    // constant index); inf and NaN next to the borders.
    let configs = [
        Config { fold_div: 2, ..Config::default() },
        Config::default(),
        Config { fold_div: 4, group_order: GroupOrder::Paddle, ..Config::default() },
        Config { fold_div: 4, direction: Direction::Past, ..Config::default() },
    ];
    for config in &configs {
        for batch in [None, Some(2 * config.segments as i64)] {
            let model = model_of(13, config, 16, batch, Dim::Known(3), Dim::Known(5), head_subgraph);
            let graph = model.graph.as_ref().unwrap();
            // (The graph's index, made once for every site, has Gathers and a Where of its own.)
            let ops = |op: &str| {
                graph.node.iter().filter(|n| n.op_type() == op && !n.name().starts_with("/tsm/frames/")).count()
            };
            assert_eq!((ops("Gather"), ops("Where"), ops("Slice")), (1, 0, usize::from(batch.is_none())), "{config:?}");
            let x = clips_with_specials_at_the_borders(config.segments, 13);
            check_bits(&model, &x, config);
        }
    }
}

#[test]
fn the_openvino_forms_channels_last_rows_are_gathered_exactly() {
    // `--shift-form openvino`: the same rows moved on a channels-last view, each pixel's k groups
    // of `fold` channels a row, the index spread over the pixels; the batch carrier joined
    // channels-last where the batch is symbolic. Opsets 11 (the rows form's first) to 21.
    let openvino = Config { shift_form: ShiftForm::Openvino, ..Config::default() };
    let configs = [
        Config { fold_div: 2, ..openvino.clone() },
        openvino.clone(),
        Config { fold_div: 4, group_order: GroupOrder::Paddle, ..openvino.clone() },
        Config { fold_div: 4, direction: Direction::Past, ..openvino.clone() },
    ];
    for (config, opset) in configs.iter().zip([11, 13, 18, 21]) {
        for batch in [None, Some(2 * config.segments as i64)] {
            let model = model_of(opset, config, 16, batch, Dim::Known(3), Dim::Known(5), head_subgraph);
            let graph = model.graph.as_ref().unwrap();
            let ops = |op: &str| {
                graph.node.iter().filter(|n| n.op_type() == op && !n.name().starts_with("/tsm/frames/")).count()
            };
            let carrier = usize::from(batch.is_none());
            assert_eq!((ops("Gather"), ops("Transpose"), ops("Where")), (1, 2 + carrier, 0), "{config:?}");
            let x = clips_with_specials_at_the_borders(config.segments, 13);
            check_bits(&model, &x, config);
        }
    }
}
