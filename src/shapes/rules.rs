//! The shape rules: one small function per kind of operator, and the table that picks one by
//! `op_type`. Each rule sees the node and its inputs' shapes and folded values ([`Op`]) and gives
//! the output's [`Info`], or `None` where it cannot tell (that tensor's shape is then unknown).

use super::*;

/// What a rule sees of a node: the node, and the shapes and folded values of the tensors before it.
pub(super) struct Op<'a> {
    node: &'a NodeProto,
    map: &'a HashMap<String, Info>,
    values: &'a HashMap<String, Folded>,
}

impl<'a> Op<'a> {
    /// The shape of input `k`, if it is given and known.
    fn input(&self, k: usize) -> Option<&'a Info> {
        self.node.input.get(k).filter(|n| !n.is_empty()).and_then(|n| self.map.get(n))
    }

    /// Input `k`'s value, where constant folding knows it.
    fn folded(&self, k: usize) -> Option<&'a Folded> {
        self.node.input.get(k).and_then(|n| self.values.get(n))
    }

    /// Input `k`'s integer values, where they are all known.
    fn value(&self, k: usize) -> Option<Vec<i64>> {
        self.folded(k).and_then(Folded::known)
    }
}

type Rule = fn(&Op) -> Option<Info>;

/// Operators whose output has their first input's shape and layout.
const SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "Erf",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Identity",
    "Dropout",
    "BatchNormalization",
    "InstanceNormalization",
    "LRN",
    "LayerNormalization",
    "GroupNormalization",
    "Cast",
    "Softmax",
    "LogSoftmax",
    "QuantizeLinear",
    "DequantizeLinear",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Swish",
    "ThresholdedRelu",
    "Shrink",
    "Sin",
    "Cos",
    "Not",
    "IsNaN",
    "IsInf",
    "LpNormalization",
    "MeanVarianceNormalization",
    "CastLike",
    "Hardmax",
    "CumSum",
    "ScatterND",
    "ScatterElements",
];

/// Operators that broadcast their inputs against each other.
const ELEMENTWISE: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Pow",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Mod",
    "BitShift",
];

/// Reductions.
const REDUCE: &[&str] = &[
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// Which rule gives each operator's output shape; an operator not listed has none.
const RULES: &[(&[&str], Rule)] = &[
    (SAME_SHAPE, same_shape),
    (ELEMENTWISE, elementwise),
    (&["Conv", "ConvInteger", "QLinearConv", "ConvTranspose"], conv),
    (&["MaxPool", "AveragePool", "LpPool"], pool),
    (&["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"], global_pool),
    (&["Pad"], pad),
    (&["Resize", "Upsample", "SpaceToDepth", "DepthToSpace"], resize),
    (REDUCE, reduce),
    (&["Transpose"], transpose),
    (&["MatMul"], matmul),
    (&["Gemm"], gemm),
    (&["Flatten"], flatten),
    (&["Reshape"], reshape),
    (&["Concat"], concat),
    (&["Shape"], shape),
    (&["Size"], size),
    (&["Gather"], gather),
    (&["Unsqueeze"], unsqueeze),
    (&["Squeeze"], squeeze),
    (&["Expand"], expand),
    (&["Slice"], slice),
];

/// Whether `op` has a rule here.
pub(super) fn covers(op: &str) -> bool {
    RULES.iter().any(|(ops, _)| ops.contains(&op))
}

/// The shape of `node`'s first output from the shapes (`map`) and folded values (`values`) of its
/// inputs, by its operator's rule.
pub(super) fn infer(node: &NodeProto, map: &HashMap<String, Info>, values: &HashMap<String, Folded>) -> Option<Info> {
    let rule = RULES.iter().find(|(ops, _)| ops.contains(&node.op_type()))?.1;
    rule(&Op { node, map, values })
}

/// Elementwise on one tensor, or normalizing it: the input's shape and layout.
fn same_shape(o: &Op) -> Option<Info> {
    o.input(0).cloned()
}

/// Broadcasting elementwise operators (and Where): the broadcast of the inputs.
fn elementwise(o: &Op) -> Option<Info> {
    let node = o.node;
    let ins: Vec<&Info> = (0..node.input.len()).filter_map(|k| o.input(k)).collect();
    if ins.len() != node.input.iter().filter(|n| !n.is_empty()).count() {
        return None;
    }
    let dims = broadcast(&ins);
    // The layout is that of the highest-rank activation among the inputs.
    let channel_axis = ins
        .iter()
        .filter(|i| i.channel_axis.is_some() && i.rank() == dims.len())
        .map(|i| i.channel_axis)
        .next()
        .flatten();
    Some(Info { dims, channel_axis })
}

/// Convolutions: the batch, the output channels from the weights, each spatial dim from the window.
fn conv(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let w_index = if node.op_type() == "QLinearConv" { 3 } else { 1 };
    let w = o.input(w_index)?;
    if x.rank() < 3 || w.rank() != x.rank() {
        return None;
    }
    let group = attr_int(node, "group").unwrap_or(1);
    let channels = if node.op_type() == "ConvTranspose" {
        w.dims[1].known().and_then(|c| c.checked_mul(group)).map_or(Dim::Unknown, Dim::Known)
    } else {
        w.dims[0].clone()
    };
    let mut dims = vec![x.dims[0].clone(), channels];
    let n = x.rank() - 2;
    if node.op_type() == "ConvTranspose" {
        dims.extend(std::iter::repeat_n(Dim::Unknown, n));
    } else {
        let kernel = conv_kernel(node, Some(w)).unwrap_or_default();
        spatial(node, x, &kernel, false, &mut dims);
    }
    Some(Info { dims, channel_axis: Some(1) })
}

/// Pools with a window.
fn pool(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let kernel = attr_ints(node, "kernel_shape")?;
    // A window slides over the dims after the batch and the channels; a hostile file may declare
    // fewer.
    if x.rank() < 3 {
        return None;
    }
    let mut dims = vec![x.dims[0].clone(), x.dims[1].clone()];
    let ceil = attr_int(node, "ceil_mode").unwrap_or(0) != 0;
    spatial(node, x, &kernel, ceil, &mut dims);
    Some(Info { dims, channel_axis: Some(1) })
}

/// Global pools: the spatial dims become 1.
fn global_pool(o: &Op) -> Option<Info> {
    let x = o.input(0)?;
    let mut dims = x.dims.clone();
    for d in dims.iter_mut().skip(2) {
        *d = Dim::Known(1);
    }
    Some(Info { dims, channel_axis: x.channel_axis })
}

/// Pad: each padded dim grows by its pads.
fn pad(o: &Op) -> Option<Info> {
    let node = o.node;
    // pads: an attribute before opset 11, then a constant input (tf2onnx writes Keras's
    // ZeroPadding2D so), with an optional `axes` input from opset 18.
    let x = o.input(0)?;
    let pads = attr_ints(node, "pads").or_else(|| o.value(1));
    let axes: Option<Vec<usize>> = match o.value(3) {
        Some(a) => a.iter().map(|&a| norm_axis(a, x.rank())).collect(),
        None => Some((0..x.rank()).collect()),
    };
    let batch = x.dims.first()?.clone();
    let mut dims: Vec<Dim> = x.dims.iter().map(|_| Dim::Unknown).collect();
    dims[0] = batch;
    if let (Some(pads), Some(axes)) = (pads, axes) {
        if pads.len() == 2 * axes.len() {
            dims = x.dims.clone();
            for (k, &a) in axes.iter().enumerate() {
                let (begin, end) = (pads[k], pads[k + axes.len()]);
                dims[a] = match &x.dims[a] {
                    _ if begin == 0 && end == 0 => x.dims[a].clone(),
                    Dim::Known(v) => match v.checked_add(begin).and_then(|v| v.checked_add(end)) {
                        Some(padded) if padded > 0 => Dim::Known(padded),
                        _ => Dim::Unknown,
                    },
                    _ => Dim::Unknown,
                };
            }
        }
    }
    Some(Info { dims, channel_axis: x.channel_axis })
}

/// Resize and the depth/space rearrangements: spatial dims unknown (Resize keeps the channels).
fn resize(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let mut dims = x.dims.clone();
    for d in dims.iter_mut().skip(1) {
        *d = Dim::Unknown;
    }
    if matches!(node.op_type(), "Resize" | "Upsample") && x.rank() > 1 {
        dims[1] = x.dims[1].clone();
    }
    Some(Info { dims, channel_axis: x.channel_axis })
}

/// Reductions over `axes` (an attribute, or an input from opset 18), kept as 1 or dropped.
fn reduce(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let keep = attr_int(node, "keepdims").unwrap_or(1) != 0;
    let axes = attr_ints(node, "axes").or_else(|| o.value(1));
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&a| norm_axis(a, x.rank())).collect::<Option<_>>()?,
        _ => (0..x.rank()).collect(),
    };
    let mut dims = Vec::new();
    let mut channel_axis = None;
    for (k, d) in x.dims.iter().enumerate() {
        if axes.contains(&k) {
            if keep {
                dims.push(Dim::Known(1));
            }
        } else {
            if x.channel_axis == Some(k) {
                channel_axis = Some(dims.len());
            }
            dims.push(d.clone());
        }
    }
    Some(Info { dims, channel_axis: if keep { x.channel_axis } else { channel_axis } })
}

/// Transpose: the dims and the layout permuted.
fn transpose(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let perm: Vec<usize> = match attr_ints(node, "perm") {
        Some(p) => p.iter().map(|&a| norm_axis(a, x.rank())).collect::<Option<_>>()?,
        None => (0..x.rank()).rev().collect(),
    };
    if perm.len() != x.rank() {
        return None;
    }
    let dims = perm.iter().map(|&p| x.dims[p].clone()).collect();
    let channel_axis = x.channel_axis.and_then(|c| perm.iter().position(|&p| p == c));
    Some(Info { dims, channel_axis })
}

/// MatMul: the last dim from the second input.
fn matmul(o: &Op) -> Option<Info> {
    let (a, b) = (o.input(0)?, o.input(1)?);
    if a.rank() < 2 || b.rank() < 1 {
        return None;
    }
    let mut dims = a.dims.clone();
    let last = dims.len() - 1;
    dims[last] = if b.rank() >= 2 { b.dims[b.rank() - 1].clone() } else { return None };
    // A MatMul over the channel axis (ConvNeXt's Linear in NHWC) maps channels to channels;
    // one by a matrix (a Linear) on tokens of unknown layout writes its features last
    // (FastViT's attention projection, `[N, H*W, C]`, transposed and viewed as NCHW after).
    let linear = (b.rank() == 2 && a.rank() >= 3).then_some(last);
    Some(Info { dims, channel_axis: a.channel_axis.or(linear) })
}

/// Gemm: `[M, N]`.
fn gemm(o: &Op) -> Option<Info> {
    let node = o.node;
    let (a, b) = (o.input(0)?, o.input(1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return None;
    }
    let m = if attr_int(node, "transA").unwrap_or(0) != 0 { &a.dims[1] } else { &a.dims[0] };
    let n = if attr_int(node, "transB").unwrap_or(0) != 0 { &b.dims[0] } else { &b.dims[1] };
    Some(Info { dims: vec![m.clone(), n.clone()], channel_axis: None })
}

/// The product of dims all known, None if one is not or it overflows.
fn known_product<'a>(dims: impl IntoIterator<Item = &'a Dim>) -> Option<i64> {
    dims.into_iter().try_fold(1i64, |acc, d| d.known().and_then(|v| acc.checked_mul(v)))
}

/// Flatten: two dims, split at `axis`.
fn flatten(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let axis = norm_axis(attr_int(node, "axis").unwrap_or(1), x.rank() + 1)?;
    let prod = |ds: &[Dim]| known_product(ds).map_or(Dim::Unknown, Dim::Known);
    // One dim before the axis is kept as it is: a symbolic batch stays the batch.
    let lead = if axis == 1 { x.dims[0].clone() } else { prod(&x.dims[..axis]) };
    Some(Info { dims: vec![lead, prod(&x.dims[axis..])], channel_axis: None })
}

/// Reshape to a folded target shape.
fn reshape(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let shape = o.folded(1)?;
    let allowzero = attr_int(node, "allowzero").unwrap_or(0) != 0;
    // A symbolic or unknown element (a `Shape` of an activation) is kept as it is.
    let target = shape.dims()?;
    let mut dims: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(k, t)| match t {
            Dim::Known(0) if !allowzero => x.dims.get(k).cloned().unwrap_or(Dim::Unknown),
            Dim::Known(t) if *t > 0 => Dim::Known(*t),
            Dim::Known(_) => Dim::Unknown,
            other => other.clone(),
        })
        .collect();
    if let Some(pos) = target.iter().position(|t| *t == Dim::Known(-1)) {
        let total = known_product(&x.dims);
        let rest = known_product(dims.iter().enumerate().filter(|(k, _)| *k != pos).map(|(_, d)| d));
        if let (Some(t), Some(r)) = (total, rest) {
            if r > 0 && t % r == 0 {
                dims[pos] = Dim::Known(t / r);
            }
        }
        // [-1, rest...] of [batch, rest...]: the same rest, so the batch stays (a flatten).
        if pos == 0 && dims[0] == Dim::Unknown && x.rank() >= 1 {
            if let (Some(a), Some(b)) = (known_product(&x.dims[1..]), known_product(&dims[1..])) {
                if a == b {
                    dims[0] = x.dims[0].clone();
                }
            }
        }
    }
    // Back to the shape of an activation (GroupNorm's Reshape to `Shape(x)`): x's layout.
    // Else channels that stay where they were, after the batch (`[N, C, H, W]` viewed as
    // `[N, C, H*W]`) or last (`[N, H*W, C]` as `[N, H, W, C]`: EdgeNeXt's tokens for its
    // LayerNorm and Linears, as the dynamo exporter writes them), are still the channels.
    let like = shape.shape_of.as_ref().and_then(|t| o.map.get(t)).filter(|like| like.rank() == dims.len());
    let kept = |at: usize, to: usize| {
        x.channel_axis == Some(at) && x.dims[at].known().is_some() && dims.get(to) == Some(&x.dims[at])
    };
    let channel_axis = match like {
        Some(like) => like.channel_axis,
        None if dims.len() < 3 || x.rank() < 3 => None,
        None if kept(1, 1) && dims[0] == x.dims[0] => Some(1),
        None if kept(x.rank() - 1, dims.len() - 1) => Some(dims.len() - 1),
        None => None,
    };
    Some(Info { dims, channel_axis })
}

/// Concat: the sum of the inputs along `axis`.
fn concat(o: &Op) -> Option<Info> {
    let node = o.node;
    let named: Vec<&String> = node.input.iter().filter(|n| !n.is_empty()).collect();
    let ins: Vec<&Info> = named.iter().filter_map(|n| o.map.get(*n)).collect();
    let first = *ins.first()?;
    let axis = norm_axis(attr_int(node, "axis")?, first.rank())?;
    let mut dims = first.dims.clone();
    // An input of unknown shape leaves the total unknown, not the sum of the others.
    dims[axis] = ins
        .iter()
        .try_fold(0i64, |acc, i| i.dims.get(axis).and_then(Dim::known).and_then(|v| acc.checked_add(v)))
        .filter(|_| ins.len() == named.len())
        .map(Dim::Known)
        .unwrap_or(Dim::Unknown);
    Some(Info { dims, channel_axis: first.channel_axis })
}

/// Shape: a 1-D tensor of the rank.
fn shape(o: &Op) -> Option<Info> {
    let node = o.node;
    // A 1-D tensor of the rank (or the `start`..`end` part of it, opset 15): its size,
    // so that what is computed from it (CAFormer's `head_dim ** -0.5`) has one too.
    let rank = o.input(0)?.rank() as i64;
    let (start, end) = (attr_int(node, "start").unwrap_or(0), attr_int(node, "end").unwrap_or(rank));
    let len = slice_len(rank, start, end, 1)?;
    Some(Info { dims: vec![Dim::Known(len)], channel_axis: None })
}

/// Size: a scalar.
fn size(o: &Op) -> Option<Info> {
    o.input(0).map(|_| Info { dims: Vec::new(), channel_axis: None })
}

/// Gather along `axis`.
fn gather(o: &Op) -> Option<Info> {
    let node = o.node;
    // data[..axis] + indices + data[axis + 1..] (EfficientFormer's attention biases, a
    // table gathered to [heads, N, N]).
    let (data, idx) = (o.input(0)?, o.input(1)?);
    let axis = norm_axis(attr_int(node, "axis").unwrap_or(0), data.rank())?;
    let mut dims = data.dims[..axis].to_vec();
    dims.extend(idx.dims.iter().cloned());
    dims.extend(data.dims[axis + 1..].iter().cloned());
    let channel_axis = match data.channel_axis {
        Some(c) if c < axis => Some(c),
        Some(c) if c > axis => Some(c + idx.rank() - 1),
        _ => None,
    };
    Some(Info { dims, channel_axis })
}

/// Unsqueeze: new axes of 1.
fn unsqueeze(o: &Op) -> Option<Info> {
    let node = o.node;
    // SK-Net's paths stacked on a new axis (axes an attribute before opset 13).
    let x = o.input(0)?;
    let axes = attr_ints(node, "axes").or_else(|| o.value(1))?;
    let rank = x.rank() + axes.len();
    let mut new: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Option<_>>()?;
    new.sort_unstable();
    new.dedup();
    if new.len() != axes.len() {
        return None;
    }
    let mut old = x.dims.iter().enumerate();
    let mut dims = Vec::with_capacity(rank);
    let mut channel_axis = None;
    for k in 0..rank {
        if new.contains(&k) {
            dims.push(Dim::Known(1));
        } else {
            let (j, d) = old.next()?;
            if x.channel_axis == Some(j) {
                channel_axis = Some(k);
            }
            dims.push(d.clone());
        }
    }
    Some(Info { dims, channel_axis })
}

/// Squeeze: axes of 1 dropped.
fn squeeze(o: &Op) -> Option<Info> {
    let node = o.node;
    let x = o.input(0)?;
    let axes: Vec<usize> = match attr_ints(node, "axes").or_else(|| o.value(1)) {
        Some(a) => a.iter().map(|&a| norm_axis(a, x.rank())).collect::<Option<_>>()?,
        // Without axes, every axis known to be 1 (an unknown one might be too: no rule).
        None if x.dims.iter().all(|d| d.known().is_some()) => {
            (0..x.rank()).filter(|&k| x.dims[k] == Dim::Known(1)).collect()
        }
        None => return None,
    };
    let mut dims = Vec::new();
    let mut channel_axis = None;
    for (k, d) in x.dims.iter().enumerate() {
        if !axes.contains(&k) {
            if x.channel_axis == Some(k) {
                channel_axis = Some(dims.len());
            }
            dims.push(d.clone());
        }
    }
    Some(Info { dims, channel_axis })
}

/// Expand to a folded shape.
fn expand(o: &Op) -> Option<Info> {
    // An SE gate or ECA's attention expanded to its input's `Shape` (`expand_as`): the
    // broadcast of both, in the layout of the tensor whose shape it takes.
    let x = o.input(0)?;
    let shape = o.folded(1)?;
    let target = Info { dims: shape.dims()?, channel_axis: None };
    let dims = broadcast(&[x, &target]);
    let like = shape.shape_of.as_ref().and_then(|t| o.map.get(t)).filter(|like| like.rank() == dims.len());
    let channel_axis = match like {
        Some(like) => like.channel_axis,
        None => x.channel_axis.filter(|_| x.rank() == dims.len()),
    };
    Some(Info { dims, channel_axis })
}

/// Slice (attributes before opset 10, inputs after).
fn slice(o: &Op) -> Option<Info> {
    let node = o.node;
    // A slice keeps the layout (GhostNet's and ReXNet's channel crops, EdgeNeXt's chunks).
    let x = o.input(0)?;
    let (starts, ends, axes, steps) = match attr_ints(node, "starts") {
        Some(s) => (Some(s), attr_ints(node, "ends"), attr_ints(node, "axes"), None),
        None => (o.value(1), o.value(2), o.value(3), o.value(4)),
    };
    let mut dims = x.dims.clone();
    let (Some(starts), Some(ends)) = (starts, ends) else {
        let dims = vec![Dim::Unknown; x.rank()];
        return Some(Info { dims, channel_axis: x.channel_axis });
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return None;
    }
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], x.rank())?;
        dims[a] = match x.dims[a] {
            Dim::Known(d) => slice_len(d, starts[k], ends[k], steps[k]).map_or(Dim::Unknown, Dim::Known),
            // All of an axis of unknown size (`x[:, :, 1:]` slices only the last).
            _ if starts[k] == 0 && ends[k] >= i32::MAX as i64 && steps[k] == 1 => x.dims[a].clone(),
            _ => Dim::Unknown,
        };
    }
    Some(Info { dims, channel_axis: x.channel_axis })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::{int_attr, ints_attr};
    use crate::graph::tests::{node, value_info};
    use crate::onnx::GraphProto;
    use crate::shapes::Shapes;
    use crate::tensor::int64;

    /// Every rule, Split's and the constant folding's, on inputs of every rank up to 3 and sizes up
    /// to i64's limits, declared or constant, with no attributes, usual ones and hostile ones: a
    /// file may declare any rank and size for any tensor, and no rule may index past it (a fuzzed
    /// MaxPool on a scalar did) or overflow (run it with CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true).
    #[test]
    fn no_rule_panics_on_any_rank_or_attribute() {
        let attrs = [
            vec![],
            vec![
                ints_attr("kernel_shape", &[3, 3]),
                ints_attr("pads", &[1, 1, 1, 1]),
                ints_attr("perm", &[0, 2, 3, 1]),
                ints_attr("axes", &[1]),
                int_attr("axis", 1),
                ints_attr("starts", &[0]),
                ints_attr("ends", &[1]),
                int_attr("transA", 1),
                int_attr("transB", 1),
            ],
            vec![
                ints_attr("kernel_shape", &[]),
                ints_attr("strides", &[0, -1]),
                ints_attr("pads", &[-5]),
                ints_attr("perm", &[7, -9]),
                ints_attr("axes", &[9, -9, 0]),
                int_attr("axis", -7),
                ints_attr("starts", &[i64::MIN, 0]),
                ints_attr("ends", &[i64::MAX]),
                int_attr("group", 0),
            ],
        ];
        // Split's outputs and the constant folding (`values::fold`) run beside the rules.
        let others = ["Split", "Cast", "ConstantOfShape", "Identity"];
        let ops = RULES.iter().flat_map(|(ops, _)| ops.iter()).chain(others.iter());
        let inputs: [&[&str]; 3] = [&["x"], &["x", "c"], &["x", "y", "c", "c", "c"]];
        let outputs: [&[&str]; 3] = [&[], &["out"], &["out", "out2"]];
        for op in ops {
            for rank in 0..=3usize {
                for extra in 0..=3usize {
                    for a in &attrs {
                        for (ins, outs) in inputs.iter().flat_map(|i| outputs.iter().map(move |o| (i, o))) {
                            // a usual size, an empty axis, and the largest a file can declare, as sizes or values
                            for (size, value) in [(2, 1), (0, 0), (i64::MAX, i64::MIN), (3, i64::MAX)] {
                                let mut n = node(op, "n", ins, outs);
                                n.attribute = a.clone();
                                let graph = GraphProto {
                                    input: vec![value_info("x", &vec![size; rank]), value_info("y", &vec![3; extra])],
                                    initializer: vec![int64("c", &[extra as i64], &vec![value; extra])],
                                    node: vec![n],
                                    ..Default::default()
                                };
                                let _ = Shapes::infer(&graph);
                            }
                        }
                    }
                }
            }
        }
    }
}
