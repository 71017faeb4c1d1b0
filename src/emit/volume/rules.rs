//! The operators the volume has a 5D form for, one small function each, found by operator type in
//! [`RULES`] (and, for the nodes that read a lifted tensor without being frames, [`READERS`]).
//! Each takes the 2D node and its inputs' 5D twins and returns the nodes that replace it, or
//! `None` where its attributes or inputs have no 5D form here, so that the lift leaves the node
//! in 2D and brings its inputs back to `[N*T, C, H, W]` (see the parent module).

use super::*;

/// What a rule makes of a node: its 5D replacement, with the nodes that prepare its inputs.
pub(super) type Rule = fn(&mut Lift, &NodeProto, &[Option<String>]) -> Option<Vec<NodeProto>>;

/// Which twins a rule takes: channels first (`[N, C, T, H, W]`, every tensor the lift makes from
/// a frame input), channels last (`[N, T, H, W, C]`, what a Transpose of one to `[N*T, H, W, C]`
/// makes: ConvNeXt's LayerNorm and MLP run there), or both.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Serves {
    ChannelsFirst,
    ChannelsLast,
    Both,
}
pub(super) use Serves::{Both, ChannelsFirst, ChannelsLast};

/// The operators that have a 5D form, by ONNX operator type, and the twins they take.
pub(super) const RULES: &[(&str, Rule, Serves)] = &[
    ("Conv", conv, ChannelsFirst),
    ("MaxPool", pool, ChannelsFirst),
    ("AveragePool", pool, ChannelsFirst),
    ("LpPool", pool, ChannelsFirst),
    ("GlobalAveragePool", global_pool, ChannelsFirst),
    ("GlobalMaxPool", global_pool, ChannelsFirst),
    ("Pad", pad, ChannelsFirst),
    ("ReduceMean", reduce, Both),
    ("ReduceMax", reduce, Both),
    ("ReduceMin", reduce, Both),
    ("ReduceSum", reduce, Both),
    ("ReduceSumSquare", reduce, Both),
    ("ReduceL1", reduce, Both),
    ("ReduceL2", reduce, Both),
    ("Concat", concat, ChannelsFirst),
    ("Split", split, ChannelsFirst),
    ("Slice", slice, ChannelsFirst),
    ("BatchNormalization", per_channel, ChannelsFirst),
    ("Add", broadcast, Both),
    ("Sub", broadcast, Both),
    ("Mul", broadcast, Both),
    ("Div", broadcast, Both),
    ("Pow", broadcast, Both),
    ("Max", broadcast, Both),
    ("Min", broadcast, Both),
    ("Sum", broadcast, Both),
    ("Mean", broadcast, Both),
    ("PRelu", broadcast, Both),
    ("Relu", per_channel, Both),
    ("LeakyRelu", per_channel, Both),
    ("Sigmoid", per_channel, Both),
    ("HardSigmoid", per_channel, Both),
    ("HardSwish", per_channel, Both),
    ("Tanh", per_channel, Both),
    ("Elu", per_channel, Both),
    ("Selu", per_channel, Both),
    ("Celu", per_channel, Both),
    ("Softplus", per_channel, Both),
    ("Softsign", per_channel, Both),
    ("Gelu", per_channel, Both),
    ("Mish", per_channel, Both),
    ("Erf", per_channel, Both),
    ("Clip", per_channel, Both),
    ("Identity", per_channel, Both),
    ("Neg", per_channel, Both),
    ("Abs", per_channel, Both),
    ("Exp", per_channel, Both),
    ("Sqrt", per_channel, Both),
    ("Reciprocal", per_channel, Both),
    ("Expand", expand, ChannelsFirst),
    ("Transpose", transpose, Both),
    ("LayerNormalization", layer_norm, ChannelsLast),
    ("MatMul", matmul, ChannelsLast),
];

/// The operators whose output is not frames, computed from a lifted input's 5D twin under the
/// node's own output names (no way back for the input): its shape, a reduction that drops H and
/// W. ECA attention (timm's `ecaresnet*`) views the pooled tensor through its input's `Shape`,
/// runs a 1D convolution over channels and expands the gate back to that `Shape`.
pub(super) const READERS: &[(&str, Rule)] = &[
    ("Shape", shape),
    ("ReduceMean", dropping_reduce),
    ("ReduceMax", dropping_reduce),
    ("ReduceMin", dropping_reduce),
    ("ReduceSum", dropping_reduce),
];

/// The node with its inputs and outputs renamed to their 5D twins and `attrs` in place of the
/// attributes of the same names.
fn renamed(n: &NodeProto, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> NodeProto {
    let mut m = n.clone();
    m.input = inputs;
    m.output = n.output.iter().map(|o| if o.is_empty() { o.clone() } else { volume_name(o) }).collect();
    m.name = Some(format!("{}/volume", n.name()));
    for a in attrs {
        m.attribute.retain(|b| b.name() != a.name());
        m.attribute.push(a);
    }
    m
}

/// Spatial attributes with a depth of 1 in front: kernel, strides, dilations (`[1, ..]`) and pads
/// (`[0, begins.., 0, ends..]`). `None` if one is not 2D.
fn spatial_attrs(n: &NodeProto) -> Option<Vec<AttributeProto>> {
    let mut attrs = Vec::new();
    for name in ["kernel_shape", "strides", "dilations"] {
        if let Some(v) = attr_ints(n, name) {
            if v.len() != 2 {
                return None;
            }
            attrs.push(ints_attr(name, &[1, v[0], v[1]]));
        }
    }
    if let Some(p) = attr_ints(n, "pads") {
        if p.len() != 4 {
            return None;
        }
        attrs.push(ints_attr("pads", &[0, p[0], p[1], 0, p[2], p[3]]));
    }
    Some(attrs)
}

/// The data input lifted, the others left as they are (weights of rank 1, scalars, bounds).
fn per_channel(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    for (i, name) in n.input.iter().enumerate().skip(1) {
        if inputs[i].is_some() || !name.is_empty() && l.constant_dims.get(name).is_none_or(|d| d.len() > 1) {
            return None;
        }
    }
    if n.op_type() == "BatchNormalization" && n.output.len() > 1 {
        return None;
    }
    let rest = n.input.iter().skip(1).cloned();
    Some(vec![renamed(n, std::iter::once(x).chain(rest).collect(), vec![])])
}

/// Elementwise with broadcasting: constants of rank 3 (`[C, H, W]`) or 4 (`[1, C, H, W]`) get the
/// time axis before H; ranks up to 2 broadcast over H and W alike in both layouts. Against a
/// channels-last twin, whose last three axes are the 2D tensor's, a constant broadcasts as it is.
fn broadcast(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let channels_last = n.input.iter().any(|i| l.last.contains(i));
    let mut nodes = Vec::new();
    let mut ins = Vec::new();
    for (name, lifted) in n.input.iter().zip(inputs) {
        let t = match lifted {
            Some(v) => v.clone(),
            // A rank-4 constant broadcasts over the frames only if its first dim is 1.
            None => match l.constant_dims.get(name)?.as_slice() {
                d if d.len() <= 2 || channels_last && d.len() == 3 => name.clone(),
                [1, _, _, _] if channels_last => name.clone(),
                [_, _, _] => l.unsqueeze(name, 1, &mut nodes),
                [1, _, _, _] => l.unsqueeze(name, 2, &mut nodes),
                _ => return None,
            },
        };
        ins.push(t);
    }
    nodes.push(renamed(n, ins, vec![]));
    Some(nodes)
}

fn conv(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    if inputs.iter().skip(1).any(Option::is_some) || n.input.len() < 2 {
        return None;
    }
    let rank = l.constant_dims.get(&n.input[1]).map(Vec::len);
    let kernel_2d = attr_ints(n, "kernel_shape").map(|k| k.len() == 2);
    if !(rank == Some(4) || rank.is_none() && kernel_2d == Some(true)) {
        return None;
    }
    let attrs = spatial_attrs(n)?;
    if let Some(nodes) = depthwise_on_frames(l, n, &x) {
        return Some(nodes);
    }
    let mut nodes = Vec::new();
    let w = l.unsqueeze(&n.input[1], 2, &mut nodes);
    let ins = [x, w].into_iter().chain(n.input.iter().skip(2).cloned()).collect();
    nodes.push(renamed(n, ins, attrs));
    Some(nodes)
}

/// Along one depth, a depthwise convolution of stride 1 whose frames outnumber the outputs that
/// its kernel sees whole along H and along W, run on the frames in 2D: the volume `[1, C, D, H,
/// W]` viewed as `[C, D, H, W]`, padded as the convolution pads (a Pad), transposed to `[D, C, H',
/// W']`, convolved without pads, transposed back and viewed as the volume. `None` where the 3D
/// form serves.
///
/// Why: tract's depthwise kernel runs its innermost loop along the longest axis of the outputs
/// whose receptive field lies inside the input, which in a volume of more frames than that is the
/// frames' axis, each step a plane apart in memory: EfficientNet-B0's 5x5 convolutions at 14x14
/// took 48-69 ms each for two clips, against 9-13 ms in 2D. tract pushes a transpose through
/// anything elementwise into the convolution that made its input, where the bias no longer fuses;
/// the explicit Pad is what stops it there (tract moves no axis through a Pad). The transpose
/// after is pushed on to the next convolution's input, where it costs what it costs here. With
/// the batch unknown the depth is taken as two clips: one clip then pays for three passes it does
/// not need, within the noise (MobileNetV2 0.550x of the 2D model against 0.549x in 3D), and two
/// clips gain (0.560x against 0.671x; `bench/RESULTS-depthwise-frames.md`).
fn depthwise_on_frames(l: &mut Lift, n: &NodeProto, x: &str) -> Option<Vec<NodeProto>> {
    if l.layout != Layout::Depth || attr_string(n, "auto_pad").is_some_and(|p| p != "NOTSET") {
        return None;
    }
    let [_, c, h, w] = l.shapes.get(&n.input[0])?.dims.as_slice() else { return None };
    let [c, h, w] = [c.known()?, h.known()?, w.known()?];
    let group = attr_int(n, "group").unwrap_or(1);
    let &[out_c, 1, kh, kw] = l.constant_dims.get(&n.input[1])?.as_slice() else { return None };
    let pads = attr_ints(n, "pads").unwrap_or(vec![0; 4]);
    let dilations = attr_ints(n, "dilations").unwrap_or(vec![1, 1]);
    let strided = attr_ints(n, "strides").is_some_and(|s| s.iter().any(|&s| s != 1));
    if group != c || out_c != c || c < 2 || strided || pads.iter().all(|&p| p == 0) || pads.iter().any(|&p| p < 0) {
        return None;
    }
    // Outputs whose window lies inside the input, along H and along W (stride 1).
    let inside = |size: i64, k: i64, d: i64| size - (k - 1) * d;
    let depth = l.frames.unwrap_or(2 * l.segments);
    if depth <= inside(h, kh, dilations[0]).max(inside(w, kw, dilations[1])) {
        return None;
    }
    let out = n.output.first()?;
    let v = volume_name(out);
    let name = |what: &str| format!("{}/volume/{what}", n.name());
    let frames_node = format!("{}{FRAMES_NODE}", n.name());
    let t = |what: &str| format!("{v}_frames_{what}");
    let (ho, wo) = (h + pads[0] + pads[2] - (kh - 1) * dilations[0], w + pads[1] + pads[3] - (kw - 1) * dilations[1]);
    let planes = l.constant(&t("planes_shape"), &[c, -1, h, w]);
    let pad_by = l.constant(&t("pads"), &[0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]);
    let back = l.constant(&t("volume_shape"), &[1, c, -1, ho, wo]);
    let swap = || ints_attr("perm", &[1, 0, 2, 3]);
    let mut conv = n.clone();
    conv.name = Some(frames_node);
    conv.input = [t("in"), n.input[1].clone()].into_iter().chain(n.input.iter().skip(2).cloned()).collect();
    conv.output = vec![t("out")];
    conv.attribute.retain(|a| a.name() != "pads");
    Some(vec![
        node("Reshape", &name("planes"), vec![x.to_string(), planes], &t("planes"), vec![]),
        node("Pad", &name("pad"), vec![t("planes"), pad_by], &t("padded"), vec![]),
        node("Transpose", &name("to_frames"), vec![t("padded")], &t("in"), vec![swap()]),
        conv,
        node("Transpose", &name("from_frames"), vec![t("out")], &t("planes_out"), vec![swap()]),
        node("Reshape", &name("volume"), vec![t("planes_out"), back], &v, vec![]),
    ])
}

fn pool(_: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    // MaxPool's indices would index the 5D tensor.
    if n.output.iter().skip(1).any(|o| !o.is_empty()) || attr_ints(n, "kernel_shape")?.len() != 2 {
        return None;
    }
    let attrs = spatial_attrs(n)?;
    Some(vec![renamed(n, vec![x], attrs)])
}

/// Pads of H and W, known (constant, or computed from constants as timm's and TF's "same" pads
/// are): the time axis gets none.
fn pad(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    // From opset 11 the pads are an input; opset 18's axes input is left 2D.
    if inputs.iter().skip(1).any(Option::is_some) || n.input.get(3).is_some_and(|a| !a.is_empty()) {
        return None;
    }
    let &[0, b1, b2, b3, 0, e1, e2, e3] = l.shapes.constant(n.input.get(1)?)?.as_slice() else { return None };
    let pads = l.constant(&format!("{}_pads", volume_name(n.output.first()?)), &[0, b1, 0, b2, b3, 0, e1, 0, e2, e3]);
    let ins = [x, pads].into_iter().chain(n.input.iter().skip(2).cloned()).collect();
    Some(vec![renamed(n, ins, vec![])])
}

/// Pooled over H and W only: a ReduceMean (ReduceMax) over axes 3 and 4, keeping them.
fn global_pool(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    let op = if n.op_type() == "GlobalAveragePool" { "ReduceMean" } else { "ReduceMax" };
    let out = volume_name(n.output.first()?);
    let name = format!("{}/volume", n.name());
    let keep = int_attr("keepdims", 1);
    // ReduceMean takes its axes as an input from opset 18, ReduceMax too.
    Some(vec![if l.opset >= 18 {
        let axes = l.constant(&format!("{out}_axes"), &[3, 4]);
        node(op, &name, vec![x, axes], &out, vec![keep])
    } else {
        node(op, &name, vec![x], &out, vec![keep, ints_attr("axes", &[3, 4])])
    }])
}

/// A reduction over channels or space, keeping its axes (squeeze-excitation's mean over H and W as
/// timm writes it): the axes mapped, as an attribute or as an input as the node had them.
fn reduce(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    if drops_axes(n) {
        return None;
    }
    Some(vec![reduce_5d(l, n, inputs)?])
}

/// Whether a reduction drops the axes it reduces (`keepdims=0`).
fn drops_axes(n: &NodeProto) -> bool {
    n.attribute.iter().any(|a| a.name() == "keepdims" && a.i() == 0)
}

/// A reduction's 2D axes, from its `axes` input (opset 18) or attribute.
fn reduce_axes(l: &Lift, n: &NodeProto) -> Option<Vec<i64>> {
    match n.input.get(1).filter(|a| !a.is_empty()) {
        Some(a) => l.shapes.constant(a),
        None => attr_ints(n, "axes"),
    }
}

/// The reduction on the 5D twin, its axes mapped and kept, its output the 5D name of its own.
fn reduce_5d(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<NodeProto> {
    let x = inputs.first()?.clone()?;
    if inputs.iter().skip(1).any(Option::is_some) {
        return None;
    }
    let from_input = n.input.get(1).is_some_and(|a| !a.is_empty());
    let to_5d = if l.last.contains(&n.input[0]) { axis_last } else { axis_5d };
    let axes: Vec<i64> = reduce_axes(l, n)?.into_iter().map(to_5d).collect::<Option<_>>()?;
    if axes.is_empty() {
        return None;
    }
    // A reduction that drops its axes keeps them here ([`dropping_reduce`] views the result).
    let keep: Vec<AttributeProto> = drops_axes(n).then(|| int_attr("keepdims", 1)).into_iter().collect();
    if from_input {
        let a = l.constant(&format!("{}_axes", volume_name(n.output.first()?)), &axes);
        return Some(renamed(n, vec![x, a], keep));
    }
    Some(renamed(n, vec![x], [vec![ints_attr("axes", &axes)], keep].concat()))
}

/// A reduction over H and W that drops them (`x.mean((2, 3))`, ECA's pooling): reduced in 5D
/// keeping them, then viewed as the `[N*T, C]` it writes (C known). Any other axes stay 2D.
fn dropping_reduce(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    if !drops_axes(n) {
        return None;
    }
    let mut spatial: Vec<i64> = reduce_axes(l, n)?.iter().map(|&a| if a < 0 { a + 4 } else { a }).collect();
    spatial.sort_unstable();
    if spatial != [2, 3] {
        return None;
    }
    let out = n.output.first()?;
    let c = l.shapes.get(&n.input[0])?.dims.get(1)?.known()?;
    let reduced = reduce_5d(l, n, inputs)?;
    let r = reduced.output.first()?.clone();
    let v = volume_name(out);
    let frames = format!("{v}_frames_view");
    let shape = l.constant(&format!("{v}_frames"), &[-1, c]);
    Some(vec![
        reduced,
        node("Transpose", &format!("{v}/Transpose_back"), vec![r], &frames, vec![ints_attr("perm", &[0, 2, 1, 3, 4])]),
        node("Reshape", &format!("{v}/Reshape_back"), vec![frames, shape], out, vec![]),
    ])
}

/// The shape of a lifted tensor as its 2D self has it, `[N*T, C, H, W]`. With C, H and W known,
/// the frames' count from the graph input's Shape and the rest a constant, as the exporter writes
/// a view (TVM's frontend converts a Reshape to such a shape, and not to a Gather of several dims
/// of a Shape); else from the 5D twin's shape.
fn shape(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    // Opset 15's start and end: not met in an export yet.
    if !n.attribute.is_empty() {
        return None;
    }
    let out = n.output.first()?;
    let v = volume_name(out);
    l.shape_of.insert(out.clone(), x.clone());
    let known = l.shapes.get(&n.input[0]).and_then(|i| match i.dims.as_slice() {
        [_, c, h, w] => Some([c.known()?, h.known()?, w.known()?]),
        _ => None,
    });
    if let Some(chw) = known {
        let (all, first) = (format!("{v}_input"), format!("{v}_frames"));
        let zero = l.constant_scalar(&format!("{v}_first"), 0);
        let rest = l.constant(&format!("{v}_chw"), &chw);
        let mut nodes = vec![
            node("Shape", &format!("{}/volume", n.name()), vec![l.frames_input.clone()], &all, vec![]),
            node("Gather", &format!("{v}/Gather"), vec![all, zero], &first, vec![int_attr("axis", 0)]),
        ];
        let frames = l.unsqueeze(&first, 0, &mut nodes);
        nodes.push(node("Concat", &format!("{v}/Concat"), vec![frames, rest], out, vec![int_attr("axis", 0)]));
        return Some(nodes);
    }
    let all = format!("{v}_5d");
    let mut nodes = vec![node("Shape", &format!("{}/volume", n.name()), vec![x.clone()], &all, vec![])];
    let gather = |l: &mut Lift, what: &str, idx: &[i64], to: &str| {
        let i = l.constant(&format!("{v}_{what}_axes"), idx);
        node("Gather", &format!("{v}/Gather_{what}"), vec![all.clone(), i], to, vec![int_attr("axis", 0)])
    };
    match l.layout {
        Layout::Depth => nodes.push(gather(l, "frames", &[2, 1, 3, 4], out)),
        Layout::Clips => {
            let (clips, t, chw, frames) =
                (format!("{v}_clips"), format!("{v}_t"), format!("{v}_chw"), format!("{v}_nt"));
            nodes.push(gather(l, "clips", &[0], &clips));
            nodes.push(gather(l, "t", &[2], &t));
            nodes.push(gather(l, "chw", &[1, 3, 4], &chw));
            nodes.push(node("Mul", &format!("{v}/Mul"), vec![clips, t], &frames, vec![]));
            nodes.push(node("Concat", &format!("{v}/Concat"), vec![frames, chw], out, vec![int_attr("axis", 0)]));
        }
    }
    Some(nodes)
}

/// An Expand of a lifted tensor to the shape of another (ECA's `gate.expand_as(x)`): to the 5D
/// twin's shape.
fn expand(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    let target = l.shape_of.get(n.input.get(1)?)?.clone();
    let v = volume_name(n.output.first()?);
    let shape = format!("{v}_shape");
    Some(vec![
        node("Shape", &format!("{}/volume/Shape", n.name()), vec![target], &shape, vec![]),
        renamed(n, vec![x, shape], vec![]),
    ])
}

/// A 2D axis of an activation in the 5D layout: channels stay on 1, H and W move to 3 and 4; the
/// batch has no counterpart.
fn axis_5d(a: i64) -> Option<i64> {
    match if a < 0 { a + 4 } else { a } {
        1 => Some(1),
        2 => Some(3),
        3 => Some(4),
        _ => None,
    }
}

/// A 2D axis of a channels-last tensor, `[N*T, H, W, C]`, in its twin `[N, T, H, W, C]`: one on,
/// counted from the end the same; the batch has no counterpart.
fn axis_last(a: i64) -> Option<i64> {
    match a {
        -3..=-1 => Some(a),
        1..=3 => Some(a + 1),
        _ => None,
    }
}

/// A Transpose between channels first and channels last, `[N*T, C, H, W]` to `[N*T, H, W, C]`
/// or back (a LayerNorm over channels, torchvision's and timm's ConvNeXt): the twin moves C to
/// the end or back, the frames' axes staying where they are. The lift records the output's
/// layout; no other Transpose has a 5D form.
///
/// Along one depth only (tract's form): torchvision's ConvNeXt-T two clips a run in tract 0.948 of
/// the 2D export against 1.006 for the default; in OpenVINO one clip 1.088 against 1.008, its 5D
/// Transposes run by a reference kernel (30 ms a clip against 21 for the 2D export's, which it
/// folds into its layout changes; `bench/RESULTS-convnext.md`).
fn transpose(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    if l.layout != Layout::Depth {
        return None;
    }
    let perm = match (l.last.contains(&n.input[0]), attr_ints(n, "perm")?.as_slice()) {
        (false, [0, 2, 3, 1]) => [0, 2, 3, 4, 1],
        (true, [0, 3, 1, 2]) => [0, 4, 1, 2, 3],
        _ => return None,
    };
    Some(vec![renamed(n, vec![x], vec![ints_attr("perm", &perm)])])
}

/// A LayerNormalization over the last axes of a channels-last twin (its scale and bias shaped as
/// those axes, the same in 5D); the statistics outputs would need their own layout.
fn layer_norm(_: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    if inputs.iter().skip(1).any(Option::is_some) || n.output.iter().skip(1).any(|o| !o.is_empty()) {
        return None;
    }
    let attrs = match attr_int(n, "axis") {
        Some(a) => vec![int_attr("axis", axis_last(a)?)],
        None => vec![],
    };
    let ins = std::iter::once(x).chain(n.input.iter().skip(1).cloned()).collect();
    Some(vec![renamed(n, ins, attrs)])
}

/// A product of a channels-last twin with a constant matrix (a Linear layer on the channels):
/// the leading axes are its batch, however many.
fn matmul(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    let w = n.input.get(1)?;
    if inputs.get(1)?.is_some() || l.constant_dims.get(w)?.len() != 2 {
        return None;
    }
    Some(vec![renamed(n, vec![x, w.clone()], vec![])])
}

fn concat(_: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let ins: Vec<String> = inputs.iter().cloned().collect::<Option<_>>()?;
    let axis = axis_5d(attr_int(n, "axis")?)?;
    Some(vec![renamed(n, ins, vec![int_attr("axis", axis)])])
}

/// A Slice of channels, H or W (GhostNet's ghost modules crop their Concat to the channels asked
/// for; ReXNet adds its input to the first channels): its axes moved to the volume's. One of the
/// frames' axis, or with no axes (then the first ones, the frames' among them), stays 2D.
fn slice(l: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    if inputs.iter().skip(1).any(Option::is_some) {
        return None;
    }
    let axes = l.shapes.constant(n.input.get(3).filter(|a| !a.is_empty())?)?;
    let moved: Vec<i64> = axes.into_iter().map(axis_5d).collect::<Option<_>>()?;
    let axes = l.constant(&format!("{}_axes", volume_name(n.output.first()?)), &moved);
    let mut ins = n.input.clone();
    ins[0] = x;
    ins[3] = axes;
    Some(vec![renamed(n, ins, vec![])])
}

fn split(_: &mut Lift, n: &NodeProto, inputs: &[Option<String>]) -> Option<Vec<NodeProto>> {
    let x = inputs.first()?.clone()?;
    if inputs.iter().skip(1).any(Option::is_some) {
        return None;
    }
    // Split's sizes are 1D, the same in both layouts; without them the parts are equal either way.
    let axis = axis_5d(attr_int(n, "axis").unwrap_or(0))?;
    let ins = std::iter::once(x).chain(n.input.iter().skip(1).cloned()).collect();
    Some(vec![renamed(n, ins, vec![int_attr("axis", axis)])])
}
