//! The stream form's head moved by one Gather over rows (offline, the default from opset 11): the
//! head `[N*T, s, H, W]` after a zero frame, viewed as `[(N*T + 1) * k, fold, H, W]` (k = s / fold
//! rows per frame, one per group of `fold` channels), and each output row gathered from the row it
//! takes: the same group of the next or the previous frame, itself for channels that stay, a row
//! of the zero frame where the neighbour is outside the clip. One index, `[N*T * k]`, made once for
//! the graph (see [`super::FrameMasks`]), serves every site with the same k and groups.
//!
//! Why: the head's movement was two Slices over frames and channels, two Pads, a channel Concat and
//! a `Where` on clip-border masks, four passes over the head, which OpenVINO runs in reference
//! kernels and tract's `Where` by a generic broadcasting loop (26 ms of its ResNet-50 clip). Here
//! the Concat with the zero frame and the Gather are two passes of whole contiguous rows, the
//! borders need no mask, and the Reshapes move no data in onnxruntime and tract. ResNet-50 per
//! clip, against the batch form's head round by round in two runs of 15 paired rounds
//! (`bench/RESULTS-rows.md`, `bench/RESULTS-overhead-stop43.md`): onnxruntime 0.960 and 0.980,
//! tract 0.967 and 0.984 (what `--shift-form tract` costs it), OpenVINO bf16 0.971 (0.967 in a
//! third run), OpenVINO f32 0.978, 1.005 and 0.998: no gain there (it reorders the head out of its
//! blocked layout for the Reshape and back), no loss. The zero frame goes in
//! before the Reshape, in the head's own layout: a zero row appended to the rows after it cost
//! OpenVINO 0.02-0.05 (its reference Pad or Concat on the planar rows), and a `Where` on the rows
//! in place of zero rows cost tract 0.02-0.03. Exact for any value: rows are copied, zeros are
//! zeros.

use super::{batch, int_attr, ints_attr, Emitter};
use crate::config::{Config, Neighbour, ShiftForm};
use crate::onnx::{attribute_proto::AttributeType, AttributeProto, TensorProto};
use crate::plan::Site;
use crate::tensor::zero_scalar;

/// The head shifted by a Gather over rows; `None` where the form does not apply: before opset 11,
/// a head that is not whole groups of `fold` channels, an open height or width (the zero frame has
/// a constant shape), a quantized tensor, or a batch for which the index cannot be made (neither
/// fixed whole clips nor a graph input's symbol, as after `--temporal-pool`).
pub(super) fn head(e: &mut Emitter, site: &Site, config: &Config) -> Option<String> {
    let (s, fold) = (site.channels, site.fold);
    let groups = config.moved_groups();
    let (h, w) = (site.height.known()?, site.width.known()?);
    if e.opset < 11 || e.zero.is_some() || fold <= 0 || s % fold != 0 || groups.len() as i64 * fold > s {
        return None;
    }
    let sources: Vec<Option<Neighbour>> = (0..(s / fold) as usize).map(|j| groups.get(j).copied()).collect();
    let index = e.masks.as_deref_mut()?.rows(&site.batch, site.segments as i64, &sources)?;
    let shape = e.constant("zero_frame_shape", &[1, s, h, w]);
    let value = TensorProto { dims: vec![1], ..zero_scalar("value", site.elem_type.unwrap_or(1)) };
    let value = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(value),
        ..Default::default()
    };
    let zero = e.node("ConstantOfShape", "ConstantOfShape_zero_frame", vec![shape], "zero_frame", vec![value]);
    let inputs = vec![zero, site.tensor.clone()];
    let with_zero = e.node("Concat", "Concat_zero_frame", inputs, "with_zero_frame", vec![int_attr("axis", 0)]);
    // tract cannot pull a strided 1x1 consumer's Downsample over the view's Reshape and Transpose
    // ("Invalid axis", Keras's ResNet v1): such a site keeps the rows on the head's own layout.
    if config.shift_form == ShiftForm::Openvino && !site.strided_1x1 {
        return channels_last(e, site, with_zero, &index, h, w);
    }
    let rows_shape = e.constant("rows_shape", &[-1, fold, h, w]);
    let rows = e.node("Reshape", "Reshape_rows", vec![with_zero, rows_shape], "rows", vec![]);
    let moved = e.node("Gather", "Gather_rows", vec![rows, index], "moved_rows", vec![int_attr("axis", 0)]);
    let frames_shape = e.constant("frames_shape", &[-1, s, h, w]);
    let frames = e.node("Reshape", "Reshape_frames", vec![moved, frames_shape], "shifted_frames", vec![]);
    // The Gather's length is made at run time: an empty slice of the head carries the batch symbol
    // (see `batch::carried`).
    let mut parts = batch::carried(e, site);
    if parts.is_empty() {
        return Some(frames);
    }
    parts.push(frames);
    Some(e.node("Concat", "Concat", parts, "shifted", vec![int_attr("axis", 1)]))
}

/// `--shift-form openvino`: the zero-framed head moved on a channels-last view, `[(N*T + 1) * H *
/// W * k, fold]` (each pixel's k groups of `fold` channels), by one Gather on the rows index
/// spread over the pixels ([`super::FrameMasks::pixel_rows`]), then transposed back.
///
/// Why: OpenVINO computes f32 convolutions channels-last and runs a Reshape planar, so the default
/// form costs it a reorder each way around the Gather at every site (8.3 of the 16 ms the shift
/// costs per ResNet-50 clip); the Transposes here merge with those reorders into reorders that
/// only relabel the memory, as long as the first comes after the zero frame's Concat, not straight
/// after a convolution. The batch carrier is joined channels-last, before the Transpose back, which
/// onnxruntime then folds into its own reorder; it still pays for the first Transpose and for
/// gathering rows of `fold` values, not of `fold * H * W`: per clip 0.96-0.99 of the default in
/// OpenVINO f32 round by round and 1.03-1.05 in onnxruntime, tract even (`bench/variants.py
/// nhwc-rows-carrier`, the stop-49 section of `bench/RESULTS-forms.md`,
/// `bench/RESULTS-openvino-zero-frame.md`). What is left of its cost in OpenVINO is the zero
/// frame's Concat and the Gather, two copies of the head in reference kernels; the arrangements
/// tried there to take one away cost more. Exact: rows are copied, zeros are zeros.
fn channels_last(e: &mut Emitter, site: &Site, with_zero: String, index: &str, h: i64, w: i64) -> Option<String> {
    let (s, fold) = (site.channels, site.fold);
    let index = e.masks.as_deref_mut()?.pixel_rows(index, s / fold, h * w);
    let view = e.node(
        "Transpose",
        "Transpose_channels_last",
        vec![with_zero],
        "channels_last",
        vec![ints_attr("perm", &[0, 2, 3, 1])],
    );
    let rows_shape = e.constant("rows_shape", &[-1, fold]);
    let rows = e.node("Reshape", "Reshape_rows", vec![view, rows_shape], "rows", vec![]);
    let moved = e.node("Gather", "Gather_rows", vec![rows, index], "moved_rows", vec![int_attr("axis", 0)]);
    let frames_shape = e.constant("frames_shape", &[-1, h, w, s]);
    let mut frames = e.node("Reshape", "Reshape_frames", vec![moved, frames_shape], "shifted_frames", vec![]);
    let mut parts: Vec<String> = batch::carried(e, site)
        .into_iter()
        .map(|c| {
            e.node(
                "Transpose",
                "Transpose_batch_carrier",
                vec![c],
                "batch_carrier_channels_last",
                vec![ints_attr("perm", &[0, 2, 3, 1])],
            )
        })
        .collect();
    if !parts.is_empty() {
        parts.push(frames);
        frames = e.node("Concat", "Concat", parts, "shifted_channels_last", vec![int_attr("axis", 3)]);
    }
    Some(e.node("Transpose", "Transpose_back", vec![frames], "shifted", vec![ints_attr("perm", &[0, 3, 1, 2])]))
}

/// The Gather's index for `frames` frames of clips of `t`: each frame's `sources.len()` rows, row j
/// taking the row j of the frame `sources[j]` names (itself where `None`), counted after the zero
/// frame's rows; 0, a zero row, where that frame is outside the clip.
pub(super) fn index_rows(frames: i64, t: i64, sources: &[Option<Neighbour>]) -> Vec<i64> {
    (0..frames)
        .flat_map(|f| (0..sources.len()).map(move |j| row(f, t, sources.len() as i64, j as i64, sources[j])))
        .collect()
}

/// The offset table behind [`index_rows`] where the batch is made at run time: for frame f at
/// position p of its clip, row j reads `(k * f + offset[p][j]) * keep[p][j]`.
pub(super) fn offset_table(t: i64, sources: &[Option<Neighbour>]) -> (Vec<i64>, Vec<i64>) {
    let k = sources.len() as i64;
    let cells = (0..t).flat_map(|p| (0..k).map(move |j| (p, j)));
    cells
        .map(|(p, j)| match row(p, t, k, j, sources[j as usize]) {
            0 => (0, 0),
            r => (r - k * p, 1),
        })
        .unzip()
}

fn row(f: i64, t: i64, k: i64, j: i64, source: Option<Neighbour>) -> i64 {
    let (p, d) = (f % t, source.map_or(0, |n| if n == Neighbour::Next { 1 } else { -1 }));
    if p + d < 0 || p + d >= t {
        return 0;
    }
    k * (f + d + 1) + j
}

#[cfg(test)]
mod tests {
    use super::*;
    use Neighbour::{Next, Previous};

    #[test]
    fn each_row_reads_its_group_of_the_neighbour_or_a_zero_row() {
        // Two frames per clip, two clips, rows [next, previous, stay]; the zero frame is rows 0-2.
        let idx = index_rows(4, 2, &[Some(Next), Some(Previous), None]);
        #[rustfmt::skip]
        assert_eq!(idx, vec![
            6, 0, 5,    // frame 0: frame 1's group 0; no previous frame; its own row 2
            0, 4, 8,    // frame 1: no next frame; frame 0's group 1
            12, 0, 11,  // frame 2 (first of clip 2)
            0, 10, 14,
        ]);
    }

    #[test]
    fn the_offset_table_gives_the_same_index() {
        let sources = [Some(Previous), Some(Next)];
        let (t, k) = (4, 2);
        let (offset, keep) = offset_table(t, &sources);
        let made: Vec<i64> = (0..12)
            .flat_map(|f| (0..k).map(move |j| (f, j)))
            .map(|(f, j)| {
                let cell = ((f % t) * k + j) as usize;
                (k * f + offset[cell]) * keep[cell]
            })
            .collect();
        assert_eq!(made, index_rows(12, t, &sources));
    }
}
