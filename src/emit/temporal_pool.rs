//! The paper's temporal pool (`make_temporal_pool` in its `ops/temporal_shift.py`): on the input of
//! the second stage, `max_pool3d` over time with kernel 3, stride 2 and padding 1, so frame `t'` of
//! the pooled clip is the max of frames `2t'-1`, `2t'` and `2t'+1` (those inside the clip).
//!
//! Written on views that keep H and W as the tensor has them (a 0 in a Reshape's shape), so one
//! graph serves every frame size, a model that leaves H and W open included: `[N*T/2, 2C, H, W]`
//! puts the pair of frames `(2t', 2t'+1)` side by side on channels, so `even` and `odd` are channel
//! Slices; `[N, T/2*C, H, W]` puts a clip's odd frames side by side, so frame `2t'-1` is `odd` moved
//! one block later. At `t' = 0` there is no frame before the clip; max_pool3d's padding never wins
//! a max, and `odd[0]` repeated in its place does not change the max either, so no infinity is
//! written. The Max is the pooled frames, `[N*T/2, C, H, W]`. Max is exact in any type.

use super::{dimension, int_attr, tensor_info, Emitter};
use crate::onnx::ValueInfoProto;
use crate::plan::Pool;
use crate::shapes::Dim;

/// The pool's nodes; returns the pooled tensor's name (`[N*T/2, C, H, W]`).
pub(super) fn subgraph(e: &mut Emitter, pool: &Pool) -> String {
    let Some(q) = &pool.quant else { return max(e, &pool.tensor, pool, "pooled") };
    let pooled = max(e, &q.tensor, pool, "pooled_quantized");
    let inputs = vec![pooled, q.scale.clone(), q.zero_point.clone()];
    e.node("DequantizeLinear", "DequantizeLinear", inputs, "pooled", vec![])
}

/// The pool of `x` (float, or with [`Pool::quant`] the quantized tensor) into `out`.
fn max(e: &mut Emitter, x: &str, pool: &Pool, out: &str) -> String {
    let (half, c) = (pool.segments as i64 / 2, pool.channels);
    let pairs_shape = e.constant("pairs_shape", &[-1, 2 * c, 0, 0]);
    let pairs = e.node("Reshape", "Reshape_pairs", vec![x.to_string(), pairs_shape], "pairs", vec![]);
    let even = e.slice("even", &pairs, &[0], &[c], &[1], &[2 * c]);
    let odd = e.slice("odd", &pairs, &[c], &[2 * c], &[1], &[2 * c]);
    let mut parts = vec![even, odd.clone()];
    if half > 1 {
        let clip_shape = e.constant("odd_clip_shape", &[-1, half * c, 0, 0]);
        let clip = e.node("Reshape", "Reshape_odd_clip", vec![odd, clip_shape], "odd_clip", vec![]);
        let first = e.slice("odd_first", &clip, &[0], &[c], &[1], &[half * c]);
        let before = e.slice("odd_before", &clip, &[0], &[(half - 1) * c], &[1], &[half * c]);
        let prev = e.node("Concat", "Concat_prev", vec![first, before], "prev_clip", vec![int_attr("axis", 1)]);
        let frame_shape = e.constant("frame_shape", &[-1, c, 0, 0]);
        parts.push(e.node("Reshape", "Reshape_prev", vec![prev, frame_shape], "prev", vec![]));
    }
    e.node("Max", "Max", parts, out, vec![])
}

/// The pooled tensor's shape, `[batch, C, H, W]` under the input's batch symbol, which
/// `clip_batch` then declares in pooled frames (`batch*4` for T = 8); `None` without a symbol or a
/// known element type. The Reshapes with -1 lose the batch in shape inference, and without
/// it onnxruntime cannot prove the residual Adds after the pool equal in shape: on ResNet-50 it left
/// 41 Adds and 37 Relus outside their convolutions (0 with it; `bench/RESULTS-simplifiers.md`).
/// No empty slice can carry it, as the clip view's does: no tensor before the pool has its batch.
pub(super) fn declared(pool: &Pool, pooled: &str) -> Option<ValueInfoProto> {
    let Dim::Sym(_) = &pool.batch else { return None };
    let dims = [pool.batch.clone(), Dim::Known(pool.channels), pool.height.clone(), pool.width.clone()];
    Some(tensor_info(pooled, pool.elem_type?, &dims.map(|d| dimension(&d))))
}
