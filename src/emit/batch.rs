//! The offline shift along the batch axis, emitted from opset 10: no activation is reshaped.
//!
//! Frames of a clip are consecutive on axis 0 of `[N*T, C, H, W]`, so "frame t takes frame t+1"
//! is a shift of the whole batch by one: `x[1:, group]` with one zero frame padded at the end.
//! That shift also carries the first frame of the next clip into the last frame of this one;
//! a `Where` on a `[N*T, 1, 1, 1]` condition (frame t has a neighbour in its clip) puts the zeros
//! back there. The groups and the untouched channels are joined by a channel Concat.
//!
//! Why this form: the tensor keeps its layout and its batch symbol. A Reshape to a clip view costs
//! OpenVINO a reorder out of its blocked layout and back at every site, and loses the batch symbol
//! in shape inference, after which onnxruntime cannot prove the two inputs of the block's residual
//! Add equal in shape and leaves the Add and its Relu outside the convolution (16 of each on
//! ResNet-50). Measured side by side on ResNet-50 (`bench/RESULTS-forms.md`): onnxruntime about
//! its channel round-trip floor, OpenVINO 1.17x against 1.42x for the clip view, tract about the
//! same as the clip view. `Where`, not a multiplication by a 0/1 mask, so that the zeros are zeros
//! whatever the neighbour holds (inf or NaN included), as in the reference.

use super::{int_attr, Emitter};
use crate::config::{Config, Direction, GroupOrder};
use crate::plan::Site;
use crate::tensor::{bool_tensor, zero_scalar};

/// The site's shift along the batch axis; returns the shifted tensor's name.
pub(super) fn subgraph(e: &mut Emitter, site: &Site, config: &Config) -> String {
    let (t, c, fold) = (site.segments as i64, site.channels, site.fold);
    let x = site.tensor.clone();
    // Whether frame t of its clip has a next (or previous) frame, for every frame of the batch: a
    // constant for a fixed batch, else a [T, 1, 1, 1] constant expanded to [N, T, 1, 1, 1] and
    // flattened (Expand, not Tile: TVM cannot convert a Tile whose repeats are computed).
    let condition = |e: &mut Emitter, what: &str, keep: &dyn Fn(i64) -> bool| -> String {
        let name = e.name(&format!("has_{what}"));
        // (A fixed batch that is not whole clips is the online validation's reference, which runs
        // the model at another batch: computed at run time then.)
        if let Some(b) = site.batch.known().filter(|b| b % t == 0) {
            e.inits.push(bool_tensor(&name, &[b, 1, 1, 1], &(0..b).map(|i| keep(i % t)).collect::<Vec<_>>()));
            return name;
        }
        let in_clip = e.name(&format!("has_{what}_in_clip"));
        e.inits.push(bool_tensor(&in_clip, &[t, 1, 1, 1], &(0..t).map(keep).collect::<Vec<_>>()));
        let (clips_shape, frames_shape) = mask_shapes(e, &x, t);
        let clips = e.node(
            "Expand",
            &format!("Expand_has_{what}"),
            vec![in_clip, clips_shape],
            &format!("has_{what}_clips"),
            vec![],
        );
        e.node("Reshape", &format!("Reshape_has_{what}"), vec![clips, frames_shape], &format!("has_{what}"), vec![])
    };
    let zero = match e.zero.clone() {
        Some(z) => z,
        None => {
            let z = e.name("zero");
            e.inits.push(zero_scalar(&z, site.elem_type.unwrap_or(1)));
            z
        }
    };
    let moved = |e: &mut Emitter, what: &str, g: i64, from_next: bool| {
        let (start, end, pads, has): (i64, i64, [i64; 8], String) = if from_next {
            (1, i64::MAX, [0, 0, 0, 0, 1, 0, 0, 0], condition(e, "next", &|f| f < t - 1))
        } else {
            (0, -1, [1, 0, 0, 0, 0, 0, 0, 0], condition(e, "prev", &|f| f > 0))
        };
        let s = e.slice(what, &x, &[start, g * fold], &[end, (g + 1) * fold], &[0, 1], &[]);
        let p = e.pad(what, &s, &pads);
        e.node("Where", &format!("Where_{what}"), vec![has, p, zero.clone()], &format!("{what}_kept"), vec![])
    };
    let mut parts = match (config.direction, config.group_order) {
        (Direction::Bidirectional, GroupOrder::Tsm) => vec![moved(e, "next", 0, true), moved(e, "prev", 1, false)],
        (Direction::Bidirectional, GroupOrder::Paddle) => vec![moved(e, "prev", 0, false), moved(e, "next", 1, true)],
        (Direction::Past, _) => vec![moved(e, "prev", 0, false)],
    };
    let shifted_channels = fold * parts.len() as i64;
    if shifted_channels < c {
        parts.push(e.slice("rest", &x, &[shifted_channels], &[c], &[1], &[]));
    } else if e.keep_batch {
        parts.push(e.slice("batch_carrier", &x, &[0], &[0], &[1], &[]));
    }
    e.node("Concat", "Concat", parts, "shifted", vec![int_attr("axis", 1)])
}

/// The shapes a mask goes through: `[N, T, 1, 1, 1]`, N being the clips in the batch of `x` (its
/// frames / T), and `[-1, 1, 1, 1]`; made once per site.
fn mask_shapes(e: &mut Emitter, x: &str, t: i64) -> (String, String) {
    let (clips_shape, frames_shape) = (e.name("mask_clips_shape"), e.name("mask_frames_shape"));
    if e.nodes.iter().any(|n| n.output.contains(&clips_shape)) {
        return (clips_shape, frames_shape);
    }
    let shape = e.node("Shape", "Shape", vec![x.into()], "shape", vec![]);
    let frames = e.slice("frames", &shape, &[0], &[1], &[0], &[]);
    let segments = e.constant("segments", &[t]);
    let clips = e.node("Div", "Div_clips", vec![frames, segments], "clips", vec![]);
    let clip_dims = e.constant("mask_clip_dims", &[t, 1, 1, 1]);
    e.node("Concat", "Concat_mask_shape", vec![clips, clip_dims], "mask_clips_shape", vec![int_attr("axis", 0)]);
    e.constant("mask_frames_shape", &[-1, 1, 1, 1]);
    (clips_shape, frames_shape)
}
