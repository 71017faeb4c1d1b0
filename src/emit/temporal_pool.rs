//! The paper's temporal pool (`make_temporal_pool` in its `ops/temporal_shift.py`): on the input of
//! the second stage, `max_pool3d` over time with kernel 3, stride 2 and padding 1, so frame `t'` of
//! the pooled clip is the max of frames `2t'-1`, `2t'` and `2t'+1` (those inside the clip).
//!
//! Written on a `[N, T/2, 2, C*H*W]` view: the pairs `(2t', 2t'+1)` are one row, so `even` and `odd`
//! are Slices of the pair axis, and frame `2t'-1` is `odd` moved one row later. At `t' = 0` there is
//! no frame before the clip; max_pool3d's padding never wins a max, and `odd[0]` repeated in its
//! place does not change the max either, so no infinity is written. Max is exact in any type.

use super::{dimension, int_attr, tensor_info, Emitter};
use crate::onnx::ValueInfoProto;
use crate::plan::Pool;
use crate::shapes::Dim;

/// The pool's nodes; returns the pooled tensor's name (`[N*T/2, C, H, W]`).
pub(super) fn subgraph(e: &mut Emitter, pool: &Pool) -> String {
    let (half, c, hw) = (pool.segments as i64 / 2, pool.channels, pool.height * pool.width);
    let pairs_shape = e.constant("pairs_shape", &[-1, half, 2, c * hw]);
    let pairs = e.node("Reshape", "Reshape_pairs", vec![pool.tensor.clone(), pairs_shape], "pairs", vec![]);
    let dims = [half, 2];
    let even = e.slice("even", &pairs, &[0], &[1], &[2], &dims[1..]);
    let odd = e.slice("odd", &pairs, &[1], &[2], &[2], &dims[1..]);
    let mut parts = vec![even, odd.clone()];
    if half > 1 {
        let first = e.slice("odd_first", &odd, &[0], &[1], &[1], &dims[..1]);
        let before = e.slice("odd_before", &odd, &[0], &[half - 1], &[1], &dims[..1]);
        let prev = e.node("Concat", "Concat_prev", vec![first, before], "prev", vec![int_attr("axis", 1)]);
        parts.push(prev);
    }
    let max = e.node("Max", "Max", parts, "max", vec![]);
    let frame_shape = e.constant("frame_shape", &[-1, c, pool.height, pool.width]);
    e.node("Reshape", "Reshape_frames", vec![max, frame_shape], "pooled", vec![])
}

/// The pooled tensor's shape, `[batch, C, H, W]` under the input's batch symbol, which
/// `clip_batch` then declares in pooled frames (`batch*4` for T = 8); `None` without a symbol or a
/// known element type. The Reshape back to frames loses the batch in shape inference, and without
/// it onnxruntime cannot prove the residual Adds after the pool equal in shape: on ResNet-50 it left
/// 41 Adds and 37 Relus outside their convolutions (0 with it; `bench/RESULTS-simplifiers.md`).
/// No empty slice can carry it, as the clip view's does: no tensor before the pool has its batch.
pub(super) fn declared(pool: &Pool, pooled: &str) -> Option<ValueInfoProto> {
    let Dim::Sym(_) = &pool.batch else { return None };
    let dims = [pool.batch.clone(), Dim::Known(pool.channels), Dim::Known(pool.height), Dim::Known(pool.width)];
    Some(tensor_info(pooled, pool.elem_type?, &dims.map(|d| dimension(&d))))
}
