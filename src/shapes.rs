//! A small static shape inference over the operators CNN exports use. It answers two questions
//! without loading the model into a runtime (which would cost a second copy of its weights): is a
//! tensor a rank-4 channel-first activation, and how many channels, and (where the model fixes them)
//! how tall and wide is it. Operators it does not know give an unknown shape, unless the model's own
//! `value_info` says more.

use crate::onnx::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value, type_proto, GraphProto, NodeProto,
    ValueInfoProto,
};
use crate::values::{self, Value as Folded};
use std::collections::{HashMap, HashSet};
use std::fmt;

mod rules;

/// One dimension of a shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Dim {
    Known(i64),
    /// A named symbolic size from the model (e.g. `batch`).
    Sym(String),
    #[default]
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }
}

/// What is known of a tensor: its dims and which axis holds the channels of an image activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub dims: Vec<Dim>,
    /// The axis carrying the channels of an activation that came from an image (`Some(1)` for NCHW);
    /// `None` for weights, constants and tensors whose layout was lost (Reshape, Flatten...).
    pub channel_axis: Option<usize>,
}

impl Info {
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// A rank-4 activation with channels on axis 1.
    pub fn is_nchw(&self) -> bool {
        self.rank() == 4 && self.channel_axis == Some(1)
    }

    pub fn display(&self) -> String {
        format!("[{}]", self.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
    }
}

/// Shapes of every tensor the inference could follow.
#[derive(Debug, Default)]
pub struct Shapes {
    map: HashMap<String, Info>,
    /// Tensors whose dims the model's `value_info` gave where no rule here reached (a Slice, an
    /// attention's ops), and tensors computed from them with no layout: their layout is unknown, not
    /// lost, and is decided as for a tensor this inference never reached. Without this, a model
    /// carrying `onnx.shape_inference`'s value_info (every float16 conversion, onnxsim) had joins
    /// that the bare export shifts skipped as "not a rank-4 activation".
    unknown_layout: HashSet<String>,
    /// What the inference folded of integer tensors (pads, axes, shapes).
    values: HashMap<String, Folded>,
}

/// Dims of a declared type, if it is a tensor with a shape.
pub fn declared_dims(vi: &ValueInfoProto) -> Option<Vec<Dim>> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(v)) if *v > 0 => Dim::Known(*v),
                Some(Value::DimParam(s)) if !s.is_empty() => Dim::Sym(s.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a crate::onnx::AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

pub fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).filter(|a| a.r#type() == AttributeType::Int).map(|a| a.i())
}

pub fn attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).filter(|a| a.r#type() == AttributeType::Float).map(|a| a.f())
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).filter(|a| a.r#type() == AttributeType::Ints).map(|a| a.ints.clone())
}

pub fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name)
        .filter(|a| a.r#type() == AttributeType::String)
        .map(|a| String::from_utf8_lossy(a.s()).into_owned())
}

fn merge(a: Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(1), b) => b.clone(),
        (a, Dim::Known(1)) => a,
        (a, b) if &a == b => a,
        (Dim::Known(k), _) => Dim::Known(k),
        (_, Dim::Known(k)) => Dim::Known(*k),
        _ => Dim::Unknown,
    }
}

fn broadcast(infos: &[&Info]) -> Vec<Dim> {
    let rank = infos.iter().map(|i| i.rank()).max().unwrap_or(0);
    (0..rank)
        .map(|k| {
            let mut dims = infos.iter().filter_map(|i| (k + i.rank()).checked_sub(rank).map(|pos| &i.dims[pos]));
            let first = dims.next().cloned().unwrap_or(Dim::Unknown);
            dims.fold(first, merge)
        })
        .collect()
}

/// An axis in `[-rank, rank)` as an index, or None out of range.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Output spatial size of a convolution or pooling window along one axis.
fn window_out(input: &Dim, k: i64, stride: i64, dil: i64, pads: (i64, i64), auto_pad: &str, ceil: bool) -> Dim {
    let Dim::Known(n) = *input else { return Dim::Unknown };
    // In i128: a file may declare sizes, pads and dilations near i64's limits.
    let (n, k, stride, dil, pads) =
        (n as i128, k as i128, stride as i128, dil as i128, (pads.0 as i128, pads.1 as i128));
    let eff = dil * (k - 1) + 1;
    let out = match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => (n + stride - 1) / stride,
        "VALID" => (n - eff) / stride + 1,
        _ => {
            let span = n + pads.0 + pads.1 - eff;
            if ceil {
                let o = (span + stride - 1) / stride + 1;
                // The last window must start inside the input or its left padding.
                if (o - 1) * stride >= n + pads.0 {
                    o - 1
                } else {
                    o
                }
            } else {
                span / stride + 1
            }
        }
    };
    match i64::try_from(out) {
        Ok(out) if out > 0 => Dim::Known(out),
        _ => Dim::Unknown,
    }
}

impl Shapes {
    pub fn get(&self, tensor: &str) -> Option<&Info> {
        self.map.get(tensor)
    }

    /// The values of an integer tensor the graph computes from constants (or holds).
    pub fn constant(&self, tensor: &str) -> Option<Vec<i64>> {
        self.values.get(tensor)?.known()
    }

    /// Whether the graph computes `tensor` from constants and shapes only (shape arithmetic, such
    /// as the pads of TF-style "same" padding): folded, known or not, it is not an activation.
    pub fn is_folded(&self, tensor: &str) -> bool {
        self.values.contains_key(tensor)
    }

    /// The rank of a tensor whose dims are known but whose layout is not (see `unknown_layout`).
    pub fn unknown_layout_rank(&self, tensor: &str) -> Option<usize> {
        self.unknown_layout.contains(tensor).then(|| self.map.get(tensor).map(Info::rank)).flatten()
    }

    /// Decides the layout of a tensor of unknown layout.
    pub fn settle_layout(&mut self, tensor: &str, channel_axis: Option<usize>) {
        if self.unknown_layout.remove(tensor) {
            if let Some(info) = self.map.get_mut(tensor) {
                info.channel_axis = channel_axis;
            }
        }
    }

    /// Fills what inference left open in `tensor` from concrete `dims` (tract's analysis at the
    /// model's own size), but the batch; a tensor inference never reached, or of unknown layout,
    /// gets `channel_axis`.
    pub fn fill(&mut self, tensor: &str, dims: &[usize], channel_axis: Option<usize>) {
        self.settle_layout(tensor, channel_axis);
        let info = self
            .map
            .entry(tensor.to_owned())
            .or_insert_with(|| Info { dims: vec![Dim::Unknown; dims.len()], channel_axis });
        if info.rank() != dims.len() {
            return;
        }
        // A symbol past the batch is onnx shape inference's name for a dim it could not tell
        // (`unk__3`): what the export would have left unknown.
        for (k, (d, &v)) in info.dims.iter_mut().zip(dims).enumerate() {
            if k > 0 && d.known().is_none() {
                *d = Dim::Known(v as i64);
            }
        }
    }

    /// Infers shapes in node order (the graph is topologically sorted; `Dataflow` checked it).
    pub fn infer(graph: &GraphProto) -> Shapes {
        let mut map: HashMap<String, Info> = HashMap::new();
        let mut unknown_layout: HashSet<String> = HashSet::new();
        let mut values: HashMap<String, Folded> = HashMap::new();
        for t in &graph.initializer {
            map.insert(
                t.name().to_owned(),
                Info { dims: t.dims.iter().map(|&d| Dim::Known(d)).collect(), channel_axis: None },
            );
            if let Some(v) = Folded::of_tensor(t) {
                values.insert(t.name().to_owned(), v);
            }
        }
        for vi in &graph.input {
            if map.contains_key(vi.name()) {
                continue;
            }
            if let Some(dims) = declared_dims(vi) {
                let channel_axis = (dims.len() >= 3).then_some(1);
                map.insert(vi.name().to_owned(), Info { dims, channel_axis });
            }
        }
        let declared: HashMap<&str, &ValueInfoProto> =
            graph.value_info.iter().chain(graph.output.iter()).map(|v| (v.name(), v)).collect();
        for node in &graph.node {
            if node.op_type() == "Constant" {
                if let (Some(a), Some(out)) = (attr(node, "value"), node.output.first()) {
                    if let Some(t) = &a.t {
                        map.insert(
                            out.clone(),
                            Info { dims: t.dims.iter().map(|&d| Dim::Known(d)).collect(), channel_axis: None },
                        );
                        if let Some(v) = Folded::of_tensor(t) {
                            values.insert(out.clone(), v);
                        }
                    }
                }
                continue;
            }
            let out = rules::infer(node, &map, &values);
            let from_unknown = node.input.iter().any(|t| unknown_layout.contains(t));
            let parts = if node.op_type() == "Split" { split_outputs(node, &map, &values) } else { Vec::new() };
            if let (Some(v), Some(name)) = (values::fold(node, &values, &map), node.output.first()) {
                values.insert(name.clone(), v);
            }
            for (slot, name) in node.output.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                let mut info = match parts.get(slot) {
                    Some(part) => part.clone(),
                    None if slot == 0 => out.clone(),
                    None => None,
                };
                // Fill what inference could not see from the model's own declarations.
                if let Some(dims) = declared.get(name.as_str()).and_then(|v| declared_dims(v)) {
                    info = match info {
                        Some(mut i) if i.rank() == dims.len() => {
                            for (mine, theirs) in i.dims.iter_mut().zip(dims) {
                                if *mine == Dim::Unknown {
                                    *mine = theirs;
                                }
                            }
                            Some(i)
                        }
                        Some(i) => Some(i),
                        None => {
                            unknown_layout.insert(name.clone());
                            Some(Info { dims, channel_axis: None })
                        }
                    };
                }
                if let Some(i) = info {
                    if from_unknown && i.channel_axis.is_none() {
                        unknown_layout.insert(name.clone());
                    }
                    map.insert(name.clone(), i);
                }
            }
        }
        Shapes { map, unknown_layout, values }
    }
}

/// Whether shape inference has a rule for `op` (so an unknown shape it produced comes from its
/// inputs, not from the operator).
pub(crate) fn infers(op: &str) -> bool {
    op == "Split" || rules::covers(op)
}

/// The outputs of a Split, in the input's layout (EdgeNeXt's and Res2Net's channel chunks): the sizes
/// from its `split` input (opset 13) or attribute, else equal parts (the last one smaller with
/// opset 18's `num_outputs`).
fn split_outputs(node: &NodeProto, map: &HashMap<String, Info>, values: &HashMap<String, Folded>) -> Vec<Option<Info>> {
    let Some(x) = node.input.first().and_then(|n| map.get(n)) else { return Vec::new() };
    let Some(axis) = norm_axis(attr_int(node, "axis").unwrap_or(0), x.rank()) else { return Vec::new() };
    let n = node.output.len();
    if n == 0 {
        return Vec::new();
    }
    let sizes: Option<Vec<i64>> = match node.input.get(1).filter(|t| !t.is_empty()) {
        Some(t) => values.get(t).and_then(Folded::known),
        None => attr_ints(node, "split").or_else(|| {
            let total = x.dims[axis].known()?;
            let part = total.checked_add(n as i64 - 1)? / n as i64;
            Some((0..n as i64).map(|k| part.min(total - k * part).max(0)).collect())
        }),
    };
    (0..n)
        .map(|k| {
            let mut dims = x.dims.clone();
            dims[axis] = sizes.as_ref().and_then(|s| s.get(k)).map_or(Dim::Unknown, |&v| Dim::Known(v));
            Some(Info { dims, channel_axis: x.channel_axis })
        })
        .collect()
}

/// The length of `[start, end)` by `step` along an axis of `d`, as ONNX's Slice clamps them.
fn slice_len(d: i64, start: i64, end: i64, step: i64) -> Option<i64> {
    slice_range(d, start, end, step).map(|(_, len)| len)
}

/// Where Slice starts along an axis of `d` and how many elements it takes by `step`, after ONNX's
/// clamping: a start within `[0, d]` by a positive step and `[0, d - 1]` by a negative one, an end
/// within `[0, d]` and `[-1, d - 1]`. `None` for a step of 0. Shared by the Slice shape rule and
/// constant folding (`values.rs`), so that a hostile slice has one length in both.
pub(crate) fn slice_range(d: i64, start: i64, end: i64, step: i64) -> Option<(i64, i64)> {
    let norm = |x: i64| if x < 0 { x.saturating_add(d) } else { x };
    let (b, len) = match step {
        0 => return None,
        _ if d <= 0 => (0, 0),
        // In i128: a hostile step of i64::MIN or MAX must not overflow.
        s if s > 0 => {
            let (b, e) = (norm(start).clamp(0, d) as i128, norm(end).clamp(0, d) as i128);
            (b, (e - b + s as i128 - 1).div_euclid(s as i128))
        }
        s => {
            let (b, e) = (norm(start).clamp(0, d - 1) as i128, norm(end).clamp(-1, d - 1) as i128);
            (b, (b - e - s as i128 - 1).div_euclid(-(s as i128)))
        }
    };
    Some((b as i64, len.max(0) as i64))
}

/// A convolution's kernel: its `kernel_shape`, else its weights' spatial dims (0 where unknown).
pub(crate) fn conv_kernel(node: &NodeProto, weights: Option<&Info>) -> Option<Vec<i64>> {
    attr_ints(node, "kernel_shape").or_else(|| {
        weights.filter(|w| w.rank() > 2).map(|w| w.dims[2..].iter().map(|d| d.known().unwrap_or(0)).collect())
    })
}

/// Appends the spatial output dims of a Conv or pooling node.
fn spatial(node: &NodeProto, x: &Info, kernel: &[i64], ceil: bool, dims: &mut Vec<Dim>) {
    let n = x.rank() - 2;
    let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1; n]);
    let dil = attr_ints(node, "dilations").unwrap_or_else(|| vec![1; n]);
    let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 2 * n]);
    let auto_pad = attr_string(node, "auto_pad").unwrap_or_default();
    for k in 0..n {
        let (Some(&kk), Some(&s), Some(&d), Some(&pb), Some(&pe)) =
            (kernel.get(k), strides.get(k), dil.get(k), pads.get(k), pads.get(k + n))
        else {
            dims.push(Dim::Unknown);
            continue;
        };
        if kk <= 0 || s <= 0 {
            dims.push(Dim::Unknown);
            continue;
        }
        dims.push(window_out(&x.dims[k + 2], kk, s, d, (pb, pe), &auto_pad, ceil));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::{int_attr, ints_attr};
    use crate::graph::tests::{node, value_info};
    use crate::tensor::int64;

    #[test]
    fn conv_pool_and_transpose() {
        let mut conv = node("Conv", "c", &["x", "w"], &["y"]);
        conv.attribute =
            vec![ints_attr("strides", &[2, 2]), ints_attr("pads", &[3, 3, 3, 3]), ints_attr("kernel_shape", &[7, 7])];
        let mut pool = node("MaxPool", "p", &["y"], &["z"]);
        pool.attribute =
            vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("strides", &[2, 2]), ints_attr("pads", &[1, 1, 1, 1])];
        let mut tr = node("Transpose", "t", &["z"], &["nhwc"]);
        tr.attribute = vec![ints_attr("perm", &[0, 2, 3, 1])];
        let mut back = node("Transpose", "t2", &["nhwc"], &["nchw"]);
        back.attribute = vec![ints_attr("perm", &[0, 3, 1, 2])];
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 3, 224, 224])],
            initializer: vec![int64("w", &[64, 3, 7, 7], &[0; 64 * 3 * 49])],
            node: vec![conv, pool, tr, back, node("Flatten", "f", &["nchw"], &["flat"])],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("y").unwrap().display(), "[N, 64, 112, 112]");
        assert_eq!(s.get("z").unwrap().display(), "[N, 64, 56, 56]");
        assert!(s.get("z").unwrap().is_nchw());
        assert_eq!(s.get("nhwc").unwrap().channel_axis, Some(3));
        assert!(!s.get("nhwc").unwrap().is_nchw());
        assert!(s.get("nchw").unwrap().is_nchw());
        // Flatten at axis 1 keeps the batch symbol (a batch-1 export freed to a symbol stays one).
        assert_eq!(s.get("flat").unwrap().display(), "[N, 200704]");
        assert!(!s.get("flat").unwrap().is_nchw());
    }

    #[test]
    fn pad_reads_its_pads_from_an_attribute_or_a_constant_input() {
        // tf2onnx writes Keras's ZeroPadding2D on an NHWC tensor as Pad with the pads as an input.
        let mut old = node("Pad", "p2", &["x"], &["a"]);
        old.attribute = vec![ints_attr("pads", &[0, 0, 1, 1, 0, 0, 2, 2])];
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4]), value_info("nhwc", &[-1, 224, 224, 3])],
            initializer: vec![
                int64("pads", &[8], &[0, 3, 3, 0, 0, 3, 3, 0]),
                int64("pads_hw", &[4], &[1, 1, 1, 1]),
                int64("axes", &[2], &[2, 3]),
            ],
            node: vec![
                old,
                node("Pad", "p11", &["nhwc", "pads"], &["b"]),
                node("Pad", "p18", &["x", "pads_hw", "", "axes"], &["c"]),
            ],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("a").unwrap().display(), "[N, 8, 7, 7]");
        assert_eq!(s.get("b").unwrap().display(), "[N, 230, 230, 3]");
        assert_eq!(s.get("c").unwrap().display(), "[N, 8, 6, 6]");
    }

    #[test]
    fn split_parts_and_reshapes_that_keep_the_channels_keep_the_layout() {
        // EdgeNeXt: channel chunks, `[N, C, H*W]`, tokens `[N, H*W, C]`, viewed as `[N, H, W, C]`
        let mut split = node("Split", "split", &["x", "sizes"], &["p0", "p1"]);
        split.attribute = vec![int_attr("axis", 1)];
        let mut even = node("Split", "even", &["x"], &["e0", "e1", "e2"]);
        even.attribute = vec![int_attr("axis", 1)];
        let mut tokens = node("Transpose", "t", &["flat"], &["tok"]);
        tokens.attribute = vec![ints_attr("perm", &[0, 2, 1])];
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![
                int64("sizes", &[2], &[6, 2]),
                int64("to_flat", &[3], &[0, 8, 16]),
                int64("to_nhwc", &[4], &[0, 4, 4, 8]),
                int64("to_groups", &[3], &[0, 2, -1]),
            ],
            node: vec![
                split,
                even,
                node("Reshape", "r", &["x", "to_flat"], &["flat"]),
                tokens,
                node("Reshape", "r2", &["tok", "to_nhwc"], &["nhwc"]),
                node("Reshape", "r3", &["x", "to_groups"], &["groups"]),
            ],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        let got = |t: &str| {
            let i = s.get(t).unwrap();
            (i.display(), i.channel_axis)
        };
        assert_eq!(got("p0"), ("[N, 6, 4, 4]".into(), Some(1)));
        assert_eq!(got("p1"), ("[N, 2, 4, 4]".into(), Some(1)));
        assert_eq!(got("e2"), ("[N, 2, 4, 4]".into(), Some(1)));
        assert_eq!(got("flat"), ("[N, 8, 16]".into(), Some(1)));
        assert_eq!(got("tok"), ("[N, 16, 8]".into(), Some(2)));
        assert_eq!(got("nhwc"), ("[N, 4, 4, 8]".into(), Some(3)));
        // GroupNorm's `[N, G, -1]`: channels no more
        assert_eq!(got("groups"), ("[N, 2, ?]".into(), None));
    }

    /// EdgeNeXt's positional encoding sums a `[B, H, W]` mask along H and W: without a rule the
    /// batch symbol stopped there, and its batch-1 export kept a Reshape pinned to 1 in the XCA
    /// attention after it (validation failed in tract).
    #[test]
    fn cumsum_keeps_its_input_shape() {
        let graph = GraphProto {
            input: vec![value_info("mask", &[-1, 4, 4])],
            initializer: vec![int64("axis", &[], &[1])],
            node: vec![node("CumSum", "c", &["mask", "axis"], &["y"])],
            ..Default::default()
        };
        assert_eq!(Shapes::infer(&graph).get("y").unwrap().display(), "[N, 4, 4]");
    }

    #[test]
    fn a_linear_on_tokens_of_unknown_layout_writes_channels_last() {
        // FastViT's attention by the dynamo exporter: the tokens out of the attention have no
        // layout; its projection, transposed and viewed as `[N, C, H, W]`, is an NCHW activation
        let mut back = node("Transpose", "t", &["proj"], &["ct"]);
        back.attribute = vec![ints_attr("perm", &[0, 2, 1])];
        let graph = GraphProto {
            input: vec![value_info("flat", &[-1, 128])],
            initializer: vec![
                int64("to_tokens", &[3], &[0, 16, 8]),
                int64("w", &[8, 8], &[0; 64]),
                int64("to_nchw", &[4], &[0, 8, 4, 4]),
            ],
            node: vec![
                node("Reshape", "tokens", &["flat", "to_tokens"], &["tokens"]),
                node("MatMul", "proj", &["tokens", "w"], &["proj"]),
                back,
                node("Reshape", "view", &["ct", "to_nchw"], &["x"]),
            ],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("tokens").unwrap().channel_axis, None);
        assert_eq!(s.get("proj").unwrap().channel_axis, Some(2));
        assert!(s.get("x").unwrap().is_nchw(), "{:?}", s.get("x"));
    }

    #[test]
    fn slice_keeps_the_layout_and_counts_what_it_keeps() {
        // GhostNet's crop to its output channels (inputs, opset 10 on), the attribute form before,
        // a reversal, and an end past the axis of unknown size (PyTorch's `:`).
        let mut old = node("Slice", "old", &["x"], &["w3"]);
        old.attribute = vec![ints_attr("starts", &[1]), ints_attr("ends", &[i64::MAX]), ints_attr("axes", &[3])];
        let mut graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![
                int64("s0", &[1], &[0]),
                int64("e6", &[1], &[6]),
                int64("a1", &[1], &[1]),
                int64("sm1", &[1], &[-1]),
                int64("emin", &[1], &[i64::MIN]),
                int64("a2", &[1], &[2]),
                int64("emax", &[1], &[i64::MAX]),
                int64("a0", &[1], &[0]),
            ],
            node: vec![
                node("Slice", "crop", &["x", "s0", "e6", "a1"], &["c6"]),
                old,
                node("Slice", "rev", &["x", "sm1", "emin", "a2", "sm1"], &["r"]),
                node("Slice", "all", &["x", "s0", "emax", "a0"], &["same"]),
                node("Tile", "unknown", &["x", "reps"], &["t"]),
                node("Concat", "cat", &["c6", "t"], &["cat"]),
            ],
            ..Default::default()
        };
        graph.node[5].attribute = vec![int_attr("axis", 1)];
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("c6").unwrap().display(), "[N, 6, 4, 4]");
        assert!(s.get("c6").unwrap().is_nchw());
        assert_eq!(s.get("w3").unwrap().display(), "[N, 8, 4, 3]");
        assert_eq!(s.get("r").unwrap().display(), "[N, 8, 4, 4]");
        assert_eq!(s.get("same").unwrap().display(), "[N, 8, 4, 4]");
        // A Concat with an input of unknown shape does not count the others' channels as its own.
        assert_eq!(s.get("cat").unwrap().display(), "[N, ?, 4, 4]");
        assert_eq!(slice_len(10, -3, i64::MAX, 1), Some(3));
        assert_eq!(slice_len(10, 8, 2, -2), Some(3));
        assert_eq!(slice_len(10, 5, 2, 1), Some(0));
        assert_eq!(slice_len(0, -1, i64::MIN, -1), Some(0));
        assert_eq!((slice_len(10, 0, i64::MAX, i64::MAX), slice_len(10, -1, i64::MIN, i64::MIN)), (Some(1), Some(1)));
    }

    #[test]
    fn expand_to_an_activations_shape_takes_its_layout() {
        // ECA's gate as a batch-1 export writes it: viewed as [1, C, 1, 1] (the batch freed to 0
        // here), expanded to Shape(x). Without the rule the product lost the batch symbol, and
        // every later Reshape that pins the batch to 1 stayed pinned.
        let mut graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("view", &[4], &[0, -1, 1, 1])],
            node: vec![
                node("ReduceMean", "pool", &["x"], &["p"]),
                node("Reshape", "gate", &["p", "view"], &["g"]),
                node("Shape", "shape", &["x"], &["sx"]),
                node("Expand", "expand", &["g", "sx"], &["e"]),
                node("Mul", "mul", &["x", "e"], &["y"]),
            ],
            ..Default::default()
        };
        graph.node[0].attribute = vec![ints_attr("axes", &[2, 3])];
        let s = Shapes::infer(&graph);
        // Shape's own output is the rank (what CAFormer computes its attention scale from).
        assert_eq!(s.get("sx").unwrap().display(), "[4]");
        assert_eq!(s.get("e").unwrap().display(), "[N, 8, 4, 4]");
        assert!(s.get("e").unwrap().is_nchw() && s.get("y").unwrap().is_nchw());
    }

    #[test]
    fn unsqueeze_and_squeeze_move_the_channel_axis() {
        // SK-Net's two paths stacked on a new axis 1, then summed over it: the batch symbol and
        // the channels follow (a batch-1 export's Reshapes after them are freed only so).
        let squeeze = node("Squeeze", "sq", &["u", "one"], &["s"]);
        let mut old = node("Unsqueeze", "old", &["x"], &["v"]);
        old.attribute = vec![ints_attr("axes", &[0, -1])];
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("one", &[1], &[1])],
            node: vec![node("Unsqueeze", "un", &["x", "one"], &["u"]), squeeze, old],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("u").unwrap().display(), "[N, 1, 8, 4, 4]");
        assert_eq!(s.get("u").unwrap().channel_axis, Some(2));
        assert!(s.get("s").unwrap().is_nchw());
        assert_eq!(s.get("v").unwrap().display(), "[1, N, 8, 4, 4, 1]");
        assert_eq!(s.get("v").unwrap().channel_axis, Some(2));
    }

    #[test]
    fn gather_puts_the_indices_dims_in_place_of_its_axis() {
        // EfficientFormer's attention biases: a [heads, points] table gathered by [N, N] indices.
        let mut gather = node("Gather", "g", &["x", "idx"], &["y"]);
        gather.attribute = vec![int_attr("axis", 2)];
        let mut bias = node("Gather", "bias", &["table", "idx"], &["b"]);
        bias.attribute = vec![int_attr("axis", 1)];
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("table", &[2, 10], &[0; 20]), int64("idx", &[3, 3], &[0; 9])],
            node: vec![bias, gather],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("b").unwrap().display(), "[2, 3, 3]");
        assert_eq!(s.get("y").unwrap().display(), "[N, 8, 3, 3, 4]");
        assert_eq!(s.get("y").unwrap().channel_axis, Some(1));
    }

    #[test]
    fn dims_declared_past_an_unknown_operator_have_an_unknown_layout() {
        let mut graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("reps", &[4], &[1, 1, 1, 1]), int64("w", &[8, 8, 1, 1], &[0; 64])],
            node: vec![
                node("Tile", "tile", &["x", "reps"], &["t"]),
                node("Relu", "relu", &["t"], &["r"]),
                node("Conv", "conv", &["t", "w"], &["c"]),
            ],
            value_info: vec![value_info("t", &[-1, 8, 4, 4])],
            ..Default::default()
        };
        let mut s = Shapes::infer(&graph);
        assert_eq!((s.unknown_layout_rank("t"), s.unknown_layout_rank("r")), (Some(4), Some(4)));
        assert!(!s.get("t").unwrap().is_nchw());
        // A convolution's output is channel-first whatever its input was.
        assert_eq!(s.unknown_layout_rank("c"), None);
        assert!(s.get("c").unwrap().is_nchw());
        s.settle_layout("t", Some(1));
        assert!(s.get("t").unwrap().is_nchw());
        assert_eq!(s.unknown_layout_rank("t"), None);
        // tract's concrete dims replace onnx shape inference's names for dims it could not tell.
        graph.value_info = vec![value_info("t", &[-1, 8, 4, 4])];
        if let Some(crate::onnx::type_proto::Value::TensorType(t)) =
            graph.value_info[0].r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape.as_mut().unwrap().dim[1].value = Some(Value::DimParam("unk__3".into()));
        }
        let mut s = Shapes::infer(&graph);
        assert_eq!(s.get("t").unwrap().display(), "[N, unk__3, 4, 4]");
        s.fill("t", &[2, 8, 4, 4], Some(1));
        assert_eq!(s.get("t").unwrap().display(), "[N, 8, 4, 4]");
        assert!(s.get("t").unwrap().is_nchw());
    }

    #[test]
    fn broadcast_keeps_activation_layout() {
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("gamma", &[8, 1, 1], &[0; 8])],
            node: vec![node("Mul", "m", &["gamma", "x"], &["y"])],
            ..Default::default()
        };
        let s = Shapes::infer(&graph);
        assert_eq!(s.get("y").unwrap().display(), "[N, 8, 4, 4]");
        assert!(s.get("y").unwrap().is_nchw());
    }
}
