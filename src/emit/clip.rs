//! The offline shift on a clip view: Reshape `[N*T, C, H, W]` to `[N, T, C, H*W]` (4D, as
//! mmaction2 does, since some backends reject 5D tensors), take the channel groups on the time
//! axis, Pad one zero frame, Concat, Reshape back (from opset 10 with an empty slice of the input
//! concatenated, which gives shape inference the batch symbol back).
//!
//! Every site before opset 10, where [`super::batch`] cannot be written (it needs Slice with
//! inputs, an axis-0 range whose end is the dynamic batch, which Slice-1's attributes can say but
//! TVM cannot convert); from opset 10 the default's sites that the stream form does not take and
//! every site with `--shift-form clip` ([`super::takes_batch_form`] says which). The Reshape costs
//! OpenVINO a layout round trip, which the batch form does not; tract runs the batch form's
//! channel Concat into a convolution as one product per part, which this form does not.

use super::{int_attr, Emitter};
use crate::config::{Config, Neighbour};
use crate::plan::Site;

/// The site's shift, viewing the tensor as clips; returns the shifted tensor's name.
pub(super) fn subgraph(e: &mut Emitter, site: &Site, config: &Config) -> String {
    let frames = frames(e, site, config);
    carried(e, site, frames)
}

/// `frames` joined after an empty slice of the site's tensor (from opset 10), which carries the
/// batch symbol.
fn carried(e: &mut Emitter, site: &Site, frames: String) -> String {
    if e.opset < 10 {
        return frames;
    }
    // The Reshape back to frames (-1 or a computed shape) loses the batch symbol in shape inference;
    // onnxruntime then cannot prove the inputs of the block's residual Add equal in shape and leaves
    // it and its Relu outside the convolution (all 16 on ResNet-50). An empty slice of x in a
    // channel Concat carries the symbol back: shape inference takes each other dimension from the
    // input that knows it. First, because ONNX's inference takes a symbol from the first input that
    // has one, and `onnx.shape_inference.infer_shapes` (onnxsim with it) names the Reshape's unknown
    // batch `unk__N`: second, the carrier lost to it, and onnxruntime, reading those shapes from
    // value_info, left the Adds unfused again (bench/RESULTS-simplifiers.md). (Slice-1 before
    // opset 10 cannot take an empty range as a Split: none.)
    let carrier = e.slice("batch_carrier", &site.tensor, &[0], &[0], &[1], &[]);
    e.node("Concat", "Concat_batch_carrier", vec![carrier, frames], "shifted", vec![int_attr("axis", 1)])
}

/// How many groups of `fold` channels move.
pub(super) fn groups(config: &Config) -> i64 {
    config.moved_groups().len() as i64
}

/// The shift on a clip view, reshaped back to `[-1, C, H, W]` (`shifted` before opset 10, where
/// it is the site's result, `shifted_frames` after).
pub(super) fn frames(e: &mut Emitter, site: &Site, config: &Config) -> String {
    let (t, c, fold) = (site.segments as i64, site.channels, site.fold);
    let x = site.tensor.clone();
    let (Some(h), Some(w)) = (site.height.known(), site.width.known()) else {
        return frames_on_channels(e, site, config);
    };
    let (clip_shape, frame_shape) =
        (e.constant("clip_shape", &[-1, t, c, h * w]), e.constant("frame_shape", &[-1, c, h, w]));
    let clip = e.node("Reshape", "Reshape_clip", vec![x.clone(), clip_shape], "clip", vec![]);
    // Group g of `fold` channels starting at channel g*fold, taken from the next or previous frame.
    let from_next = |e: &mut Emitter, what: &str, g: i64| {
        let s = e.slice(what, &clip, &[1, g * fold], &[t, (g + 1) * fold], &[1, 2], &[t, c]);
        e.pad_time(what, &s, false)
    };
    let from_prev = |e: &mut Emitter, what: &str, g: i64| {
        let s = e.slice(what, &clip, &[0, g * fold], &[t - 1, (g + 1) * fold], &[1, 2], &[t, c]);
        e.pad_time(what, &s, true)
    };
    let mut parts: Vec<String> = (0..)
        .zip(config.moved_groups())
        .map(|(g, &from)| match from {
            Neighbour::Next => from_next(e, from.name(), g),
            Neighbour::Previous => from_prev(e, from.name(), g),
        })
        .collect();
    let shifted_channels = fold * parts.len() as i64;
    if shifted_channels < c {
        parts.push(e.slice("rest", &clip, &[shifted_channels], &[c], &[2], &[c]));
    }
    let joined = e.node("Concat", "Concat", parts, "shifted_clip", vec![int_attr("axis", 2)]);
    let out = if e.opset < 10 { "shifted" } else { "shifted_frames" };
    e.node("Reshape", "Reshape_frames", vec![joined, frame_shape], out, vec![])
}

/// The clip view where the model leaves H or W open, so that no shape is computed at run time
/// (TVM's Relax frontend cannot convert a Reshape to one: "Reshape requires the input new shape to
/// be Shape"): the clip as `[N, T*C, H, W]`, its frames side by side on channels (a Reshape to
/// `[-1, T*C, 0, 0]`, a 0 keeping H and W as they are), one Split into each frame's groups and
/// rest, joined again in shifted order with zeros where the neighbour is outside the clip (a Where
/// on a false condition: zeros of the part's shape whatever it holds), and a Reshape back to
/// `[-1, C, 0, 0]`. The sites that take it are the batch form's from opset 10, so this is the
/// form before opset 10 (and with `--shift-form clip`).
fn frames_on_channels(e: &mut Emitter, site: &Site, config: &Config) -> String {
    let (t, c, fold) = (site.segments as i64, site.channels, site.fold);
    let moved = config.moved_groups();
    let rest = c - fold * moved.len() as i64;
    let view_shape = e.constant("view_shape", &[-1, t * c, 0, 0]);
    let view = e.node("Reshape", "Reshape_view", vec![site.tensor.clone(), view_shape], "view", vec![]);
    let per_frame = moved.len() + usize::from(rest > 0);
    let sizes: Vec<i64> = (0..t).flat_map(|_| moved.iter().map(|_| fold).chain((rest > 0).then_some(rest))).collect();
    let parts: Vec<String> =
        (0..sizes.len()).map(|k| e.name(&format!("part{}_{}", k / per_frame, k % per_frame))).collect();
    e.nodes.push(crate::onnx::NodeProto {
        op_type: Some("Split".into()),
        name: Some(e.name("Split_view")),
        input: vec![view],
        output: parts.clone(),
        attribute: if e.opset < 13 {
            vec![int_attr("axis", 1), super::ints_attr("split", &sizes)]
        } else {
            vec![int_attr("axis", 1)]
        },
        ..Default::default()
    });
    if e.opset >= 13 {
        let split = e.constant("split", &sizes);
        e.nodes.last_mut().expect("pushed above").input.push(split);
    }
    let zero = e.zero(site);
    let never = e.name("never");
    e.inits.push(crate::tensor::bool_tensor(&never, &[1, 1, 1, 1], &[false]));
    let mut joined = Vec::new();
    for f in 0..t {
        for (g, &neighbour) in moved.iter().enumerate() {
            let from = if neighbour == Neighbour::Next { f + 1 } else { f - 1 };
            let own = &parts[f as usize * per_frame + g];
            joined.push(if (0..t).contains(&from) {
                parts[from as usize * per_frame + g].clone()
            } else {
                let what = format!("zeros{f}_{g}");
                e.node("Where", &format!("Where_{what}"), vec![never.clone(), own.clone(), zero.clone()], &what, vec![])
            });
        }
        if rest > 0 {
            joined.push(parts[f as usize * per_frame + moved.len()].clone());
        }
    }
    let shifted = e.node("Concat", "Concat_view", joined, "shifted_view", vec![int_attr("axis", 1)]);
    let frame_shape = e.constant("frame_shape", &[-1, c, 0, 0]);
    let out = if e.opset < 10 { "shifted" } else { "shifted_frames" };
    e.node("Reshape", "Reshape_frames", vec![shifted, frame_shape], out, vec![])
}
