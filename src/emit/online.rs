//! The online (per-frame) form of a site: channels `[0, fold)` come from a buffer input holding the
//! previous frame's, and a buffer output gives the current frame's.

use super::{int_attr, Emitter, BUFFER_IN, BUFFER_OUT, REJOINED};
use crate::plan::Site;

/// Whether the site's buffer output and the rest are both sliced from the flattened frame (see
/// [`subgraph`]): only then can `Site::rejoined` join them back.
pub(crate) fn slices_flat(site: &Site, opset: i64) -> bool {
    site.fold != site.channels && !site.strided_1x1 && site.quant.is_none() && opset >= 10
}

/// The online form of one site: the site's consumers read `x` with channels `[0, fold)` replaced by
/// `buffer_in`, and `buffer_out = x[:, :fold]`. Returns the nodes, initializers and shifted tensor.
///
/// The replacement is a Concat of the buffer and `x[:, fold:]`, done on each frame flattened to
/// `[N, C*H*W]` (Reshapes are free), pure data movement and so exact for any value. Flattened,
/// because tract turns a channel-axis Concat that feeds a 1x1 convolution into one matrix product
/// per part, which costs more than the copy: on ResNet-50 per frame the channel Concat cost about
/// 8%, `x * mask + pad(buffer)` about 7%, the flat Concat about 4% (`bench/online_latency.sh`).
/// The buffer output is sliced from the same flattened frame, not from x's channels: OpenVINO
/// computes x channels-last and reorders it to planar for the flattening Reshape anyway, where a
/// Slice of x's channels is a strided copy that the buffer's `Assign` (or output) reorders again,
/// and a second reader of x keeps the block's residual Add out of the convolution before it. Per
/// frame on MobileNetV2 (10 such sites) OpenVINO f32 took 0.95-0.98 of the time in two runs
/// (in the second, faster in 31 and 30 of 31 paired rounds, the buffers as states and as
/// tensors); onnxruntime 1.02-1.03 (one Reshape more), tract and ResNet-50 within 0.01
/// (`bench/RESULTS-flat-buffer-out.md`). Before opset 10 both slices would be Splits of the same
/// tensor into the same parts, so there (and in a QDQ model, whose flattened frame holds the
/// quantized values) the buffer is sliced from x.
///
/// With `--shift-form tract`, where the block's residual Add reads x and tract would fuse that Add
/// into the 1x1 convolution before it (`Site::rejoined`), the Add reads x joined back from the two
/// flat slices instead, a copy that reuses them: tract keeps an Add with a Concat's output out of
/// the product, and its fused form gathers the other term's tile a float per channel row, slow at
/// one stream. The batch form at every site with these joins cost ResNet-50 1.008 and 1.031 of the
/// 2D export per frame in tract at one stream, against 1.058 and 1.083 for the stream form at 12
/// sites and the batch form at 4 that the flag wrote before; at two streams, where tract fuses no
/// residual Add, 1.036 against 1.035 (bench/RESULTS-tract-online-rejoined.md).
///
/// In a QDQ model (the tensor is a per-tensor `DequantizeLinear`'s output) the buffers still carry
/// floats, so that zeros before the first frame mean zeros whatever the zero point; the join is
/// done on the quantized values (the buffer quantized again, exactly, as it was dequantized with the
/// same scale) and dequantized after, so the consumer still reads a `DequantizeLinear`.
pub(super) fn subgraph(e: &mut Emitter, site: &Site, (h, w): (i64, i64)) -> String {
    let (c, fold) = (site.channels, site.fold);
    let flat_buffer = slices_flat(site, e.opset);
    if !flat_buffer {
        e.slice(BUFFER_OUT, &site.tensor, &[0], &[fold], &[1], &[c]);
    }
    let buffer_in = e.name(BUFFER_IN);
    let (x, buffer_in) = match &site.quant {
        Some(q) => {
            let inputs = vec![buffer_in, q.scale.clone(), q.zero_point.clone()];
            (q.tensor.clone(), e.node("QuantizeLinear", "QuantizeLinear_buffer", inputs, "buffer_quantized", vec![]))
        }
        None => (site.tensor.clone(), buffer_in),
    };
    let shifted = if fold == c {
        e.node("Identity", "Identity", vec![buffer_in], "shifted", vec![])
    } else if site.strided_1x1 {
        // No flattening Reshape before a strided 1x1 convolution: tract cannot pull that
        // convolution's Downsample over it. A channel Concat, which it can.
        let rest = e.slice("rest", &x, &[fold], &[c], &[1], &[c]);
        e.node("Concat", "Concat", vec![buffer_in, rest], "shifted", vec![int_attr("axis", 1)])
    } else {
        let flat = e.constant("flat_shape", &[0, -1]);
        let x = e.node("Reshape", "Reshape_x", vec![x, flat.clone()], "x_flat", vec![]);
        let current = flat_buffer.then(|| {
            let current = e.slice("buffer_out_flat", &x, &[0], &[fold * h * w], &[1], &[c * h * w]);
            let shape = e.constant("buffer_shape", &[0, fold, h, w]);
            e.node("Reshape", "Reshape_buffer_out", vec![current.clone(), shape], BUFFER_OUT, vec![]);
            current
        });
        let rest = e.slice("rest", &x, &[fold * h * w], &[c * h * w], &[1], &[c * h * w]);
        let buffer = e.node("Reshape", "Reshape_buffer", vec![buffer_in, flat], "buffer_flat", vec![]);
        let joined = e.node("Concat", "Concat", vec![buffer, rest.clone()], "shifted_flat", vec![int_attr("axis", 1)]);
        // 0, not -1: the batch is copied, so shape inference keeps its symbol (with -1 onnxruntime
        // cannot prove the block's residual Add inputs equal and leaves the Add unfused).
        let shape = e.constant("frame_shape", &[0, c, h, w]);
        if let Some(current) = current.filter(|_| !site.rejoined.is_empty()) {
            let inputs = vec![current, rest];
            let rejoined = e.node("Concat", "Concat_rejoined", inputs, "rejoined_flat", vec![int_attr("axis", 1)]);
            e.node("Reshape", "Reshape_rejoined", vec![rejoined, shape.clone()], REJOINED, vec![]);
        }
        e.node("Reshape", "Reshape_frame", vec![joined, shape], "shifted", vec![])
    };
    match &site.quant {
        Some(q) => {
            let inputs = vec![shifted, q.scale.clone(), q.zero_point.clone()];
            e.node("DequantizeLinear", "DequantizeLinear", inputs, "shifted_dequantized", vec![])
        }
        None => shifted,
    }
}
