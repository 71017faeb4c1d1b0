//! The offline shift written back into the site's tensor (`--shift-form tract`, from opset 11):
//! the moved channels (the head, `[0, groups * fold)`) are sliced off, shifted on a clip view of
//! the head alone as [`super::clip`] shifts a whole tensor, and written over the head of a copy of
//! the tensor by one `ScatterND` whose indices are each frame's `(frame, channel)` pairs.
//!
//! Why: tract's cost for a site is the data it copies. The clip view copies the channels that stay
//! twice (a Slice, then the Concat); here the ScatterND copies the tensor once (tract clones its
//! data input and writes the updates into it) and only the head goes through slices and pads. On
//! ResNet-50 the shift's operators took 49 ms of tract's clip against 90 ms for the clip view
//! (`bench/RESULTS-scatter.md`). onnxruntime and OpenVINO convert it too, no faster than the clip
//! view: a runtime-specific form, not the default. Not zeros-then-assign: the data is the site's
//! own tensor, and every value written is one the reference moves there.

use super::Emitter;
use crate::config::Config;
use crate::plan::Site;

/// The site's shift written into its tensor; `None` where the indices cannot be made (a batch
/// that is neither fixed whole clips nor a graph input's, as after `--temporal-pool`) or where
/// every channel moves (nothing to keep: the clip view then copies nothing twice).
pub(super) fn subgraph(e: &mut Emitter, site: &Site, config: &Config) -> Option<String> {
    let moved = site.fold * super::clip::groups(config);
    if moved >= site.channels || e.opset < 11 {
        return None;
    }
    let positions = e.masks.as_deref_mut()?.positions(&site.batch, site.segments as i64, moved)?;
    let x = site.tensor.clone();
    let head = e.slice("head", &x, &[0], &[moved], &[1], &[]);
    let head_site = Site { tensor: head, channels: moved, ..site.clone() };
    let shifted = super::clip::frames(e, &head_site, config);
    Some(e.node("ScatterND", "ScatterND", vec![x, positions, shifted], "shifted", vec![]))
}

/// `[N*T, moved, 2]`: the `(frame, channel)` pair of each head element, in the head's order.
pub(super) fn position_rows(frames: i64, moved: i64) -> Vec<i64> {
    (0..frames).flat_map(|f| (0..moved).flat_map(move |c| [f, c])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_pair_each_frame_with_each_moved_channel() {
        assert_eq!(position_rows(2, 3), vec![0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 2]);
    }
}
