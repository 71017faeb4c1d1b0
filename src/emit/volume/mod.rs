//! `--shift-form openvino` offline: the network computed on each clip as a volume, `[N, C, T, H, W]`,
//! so that every shift is one depthwise convolution over the time axis; `--shift-form tract`
//! offline: every frame of every clip along one depth, `[1, C, N*T, H, W]`, the same convolution
//! masked at the clips' borders.
//!
//! Why: OpenVINO computes convolutions in a blocked channels-last layout and runs anything that
//! moves data across the batch axis (Gather, Concat, Slice, Pad on axis 0) planar, with a reorder
//! out of its layout and back; no arrangement of the 2D graph took that cost away (the forms tried
//! in `docs/performance.md`). With the frames on a spatial axis the shift is a convolution: a 3-tap kernel
//! along T with one tap set per channel (the next frame, the previous one, or itself), the clip's
//! borders its zero padding, which OpenVINO runs in its own layout. Every 2D convolution becomes a
//! 3D one of depth 1 and every pool likewise, which OpenVINO runs at the same speed or faster.
//! ResNet-50 per clip in OpenVINO f32, paired rounds against the 2D model
//! (`bench/RESULTS-volume.md`): 1.013-1.015 against 1.029-1.038 for the channels-last rows form
//! this replaces where it applies (0.986-1.012 for the hand-written prototype); bf16 1.016
//! against 1.031; MobileNetV2 0.998 against 1.039. onnxruntime runs 3D convolutions without its
//! NCHWc kernels (1.37x), and tract fast for one clip a run (0.75x) but several times slower for
//! two or more (3.6x), so this is OpenVINO's form only.
//!
//! tract is fast on one volume, whatever its depth: a batch of 2D frames costs it a transpose of
//! each convolution's input and output and an im2col buffer, which a batch of one skips. Along one
//! depth (`Layout::Depth`) every clip is in that one volume, and a frame at a clip's border has
//! the next clip's frame as its neighbour; a mask, `[1, C, N*T, 1, 1]`, zeroes what the shift
//! brings across (a constant where the batch is known, else gathered by each frame's index in its
//! clip, counted along the depth once). ResNet-50 and MobileNetV2, two clips a run in tract: 0.715x
//! and 0.675x of the 2D model, against 1.030x and 0.986x for the default; the volume without its
//! shifts 0.701x and 0.669x (`bench/RESULTS-depth-volume.md`). Along that depth a depthwise
//! convolution with more frames than outputs its kernel sees whole runs on the frames in 2D
//! (`rules::depthwise_on_frames`): MobileNetV2 0.560x, EfficientNet-B0 0.684x with two clips, against
//! 0.671x and 0.923x in 3D (`bench/RESULTS-depthwise-frames.md`).
//!
//! The lift runs on the patched graph: from the first tensors whose first dim is the frames' (the
//! input, or what a Keras export's leading Transpose makes of it) onwards, every node whose
//! operator has a rule in [`RULES`](rules::RULES) and whose activations are lifted is rewritten in 5D; where a node has
//! no rule the tensors it reads go back to `[N*T, C, H, W]` under their own names (a Transpose and a
//! Reshape), so the rest of the graph is untouched. The way in is a Reshape to the view, or where
//! H or W is open an Unsqueeze (and for clips a Reshape whose zeros copy C, H and W); what only
//! fed a node the lift replaced (a Pad's computed pads) is swept. A node that only reads a lifted
//! tensor's shape, or pools away its H and W ([`READERS`](rules::READERS): ECA attention's), reads the 5D twin
//! and writes its own 2D output, with no way back for the tensor; a tensor of one value per
//! channel may come back in after a way back. Along one depth, a Transpose to channels last
//! (`[N*T, H, W, C]`: ConvNeXt's LayerNorm and MLP) has a twin `[1, N*T, H, W, C]`, the frames'
//! axes still in front ([`Serves`](rules::Serves)), on which LayerNormalization, a MatMul by a constant matrix,
//! reductions and the elementwise rules run; it goes back to 2D by a view. A site's shift, recorded by the
//! emitters as a [`ShiftRecord`], gives way to the depthwise convolution where its input is
//! lifted; elsewhere its 2D form stays. Exact for finite values: each output is its one source times 1 plus the other two
//! taps' values times 0; an infinity or NaN in a frame's neighbour would reach it as NaN.

use super::{int_attr, ints_attr, node};
use crate::config::Neighbour;
use crate::onnx::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::shapes::{attr_int, attr_ints, attr_string, Shapes};
use crate::tensor::int64_vec;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};

mod rules;
use rules::{Both, ChannelsFirst, ChannelsLast, READERS, RULES};

/// The suffix of each shift's convolution's name (under the site's prefix): how the report finds
/// the sites the volume took.
pub const SHIFT_NODE: &str = "/Conv_time";

/// The suffix of the name of each depthwise convolution run on the frames in 2D
/// (`rules::depthwise_on_frames`): how the report counts them.
pub const FRAMES_NODE: &str = "/volume/frames";

/// Where the frames go in the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[N, C, T, H, W]`: each clip its own volume, its borders the shift's zero padding
    /// (OpenVINO's form).
    Clips,
    /// `[1, C, N*T, H, W]`: every frame of every clip along one depth, the clips' borders zeroed by
    /// a mask after each shift (tract's form: tract runs a 3D convolution of one volume several
    /// times faster than one of two, and a batch of 2D frames slower than either).
    Depth,
}

/// How the frames are laid out: `segments` frames a clip, in `layout`.
#[derive(Debug, Clone, Copy)]
pub struct Frames {
    pub segments: usize,
    pub layout: Layout,
}

/// One site's shift as the emitters wrote it in 2D: the nodes between `input` and `output`.
#[derive(Debug, Clone)]
pub struct ShiftRecord {
    pub input: String,
    pub output: String,
    /// Names of the nodes that make `output` from `input` (and from graph-wide constants).
    pub nodes: Vec<String>,
    pub channels: i64,
    pub fold: i64,
    pub segments: usize,
    pub elem_type: i32,
    /// The direction of each moved group of `fold` channels, from the first; the rest stay.
    pub groups: &'static [Neighbour],
}

/// The lift's state: which 2D tensors have a 5D twin, and what the graph's constants are.
struct Lift<'a> {
    opset: i64,
    segments: i64,
    layout: Layout,
    /// The frames' count, N*T, where known.
    frames: Option<i64>,
    /// The graph input whose first dim is the frames'.
    frames_input: String,
    /// Each frame's index in its clip along the depth, made once for the depth layout's masks.
    frame_index: Option<String>,
    shapes: &'a Shapes,
    /// 2D name -> 5D name.
    five: HashMap<String, String>,
    /// The 2D names whose twin is channels last (see [`Serves`]).
    last: HashSet<String>,
    /// Dims of the graph's constants (initializers and Constant outputs).
    constant_dims: HashMap<String, Vec<i64>>,
    /// Tensors unsqueezed for the 5D graph (name, axis) -> new name, made once.
    unsqueezed: HashMap<(String, i64), String>,
    /// The output of each `Shape` read from a lifted tensor -> that tensor's 5D twin: an Expand
    /// to it expands to the twin's shape.
    shape_of: HashMap<String, String>,
    inits: Vec<TensorProto>,
}

/// Lifts `graph` (see the module doc); returns how many shifts became depthwise convolutions.
/// `new_nodes` are the names of the nodes the rewrite added: those left without a reader go.
pub fn lift(
    graph: &mut GraphProto,
    shapes: &Shapes,
    records: &[ShiftRecord],
    frames: Frames,
    opset: i64,
    new_nodes: &HashSet<String>,
    new_inits: &HashSet<String>,
) -> usize {
    if opset < 11 {
        return 0;
    }
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    // Initializers, Constants, and the Identity of either: the TorchScript exporter keeps a
    // weight equal to another once (a BatchNormalization's fresh ones and zeros), the others as
    // Identities of it.
    let constant_dims: HashMap<String, Vec<i64>> =
        crate::tensor::constants(graph).into_iter().map(|(name, t)| (name.to_string(), t.dims.clone())).collect();
    // A weight whose first dim equals a fixed batch (MobileNetV2's 32 first filters, 4 clips) is
    // not frames.
    let constants: HashSet<String> = constant_dims.keys().cloned().collect();
    let mut l = Lift {
        opset,
        segments: frames.segments as i64,
        layout: frames.layout,
        frames: None,
        frames_input: String::new(),
        frame_index: None,
        shapes,
        five: HashMap::new(),
        last: HashSet::new(),
        constant_dims,
        unsqueezed: HashMap::new(),
        shape_of: HashMap::new(),
        inits: Vec::new(),
    };
    // The frames' batch dim, N*T, as the first data input declares it.
    let Some((input, batch)) = graph
        .input
        .iter()
        .find(|i| !inits.contains(i.name()))
        .and_then(|i| Some((i.name().to_string(), shapes.get(i.name())?)))
        .filter(|(_, i)| i.rank() == 4)
        .map(|(name, i)| (name, i.dims[0].clone()))
    else {
        return 0;
    };
    l.frames = batch.known();
    l.frames_input = input;
    let region_of: HashMap<&str, usize> =
        records.iter().enumerate().flat_map(|(r, rec)| rec.nodes.iter().map(move |n| (n.as_str(), r))).collect();
    let outside_readers = outside_readers(graph, records, &region_of);
    let mut replaced: Vec<Option<bool>> = vec![None; records.len()];
    let mut out: Vec<NodeProto> = Vec::with_capacity(graph.node.len() + 64);
    let mut exited: HashSet<String> = HashSet::new();
    // Tensors that still exist in 2D beside their 5D twin (a frame input, a tensor entered).
    let mut entered: HashSet<String> = HashSet::new();
    let mut lifted_shifts = 0;
    // Into 5D only before the first way back: a tensor entered after one would go back and forth
    // around every node without a rule (a GroupNorm's Reshapes), each time a Transpose each way.
    // A tensor of one value per channel (an attention's gate) costs nothing to move, and may
    // enter anywhere: the 2D shifts' frame masks slice the input, which is a way back before
    // any site when the volume then takes the site. Every rule computes each frame on its own, so
    // a tensor may enter wherever its first dim is the frames'.
    let entry = |t: &str, exited: &HashSet<String>| {
        let gate = |i: &crate::shapes::Info| i.dims[2].known() == Some(1) && i.dims[3].known() == Some(1);
        let info = shapes.get(t).filter(|i| i.rank() == 4 && i.dims[0] == batch && (exited.is_empty() || gate(i)))?;
        if constants.contains(t) {
            return None;
        }
        // H and W may be open (an export with dynamic H and W): the view then copies them.
        Some([info.dims[1].known(), info.dims[2].known(), info.dims[3].known()])
    };
    let original = graph.node.clone();
    let live_before = live_tensors(graph);
    for n in std::mem::take(&mut graph.node) {
        if let Some(&r) = region_of.get(n.name()) {
            let rec = &records[r];
            let decision = *replaced[r].get_or_insert_with(|| {
                rec.segments as i64 == l.segments
                    && !outside_readers[r]
                    && !l.last.contains(&rec.input)
                    && (l.five.contains_key(&rec.input) || entry(&rec.input, &exited).is_some())
                    && weight_bytes(rec.elem_type).is_some()
            });
            if decision {
                if !l.five.contains_key(&rec.output) {
                    if let (false, Some(chw)) = (l.five.contains_key(&rec.input), entry(&rec.input, &exited)) {
                        out.extend(l.enter(&rec.input, chw));
                        entered.insert(rec.input.clone());
                    }
                    out.extend(l.shift(rec));
                    lifted_shifts += 1;
                }
                continue;
            }
        }
        // A reader of a lifted tensor reads its 5D twin; its outputs stay as they are.
        let reader = READERS.iter().find(|(op, _)| *op == n.op_type() && crate::graph::default_domain(&n));
        let channels_last = n.input.iter().any(|i| l.last.contains(i));
        if let Some((_, reader)) = reader.filter(|_| !channels_last) {
            let inputs: Vec<Option<String>> = n.input.iter().map(|i| l.five.get(i).cloned()).collect();
            if inputs.first().is_some_and(Option::is_some) {
                if let Some(nodes) = reader(&mut l, &n, &inputs) {
                    out.extend(nodes);
                    continue;
                }
            }
        }
        // Inputs lifted, entering 5D at a frame input where a rule can take the node. Twins of
        // both layouts meet in no node: one of them goes back first.
        let serves = if channels_last { ChannelsLast } else { ChannelsFirst };
        let rule = RULES
            .iter()
            .find(|(op, _, s)| *op == n.op_type() && (*s == serves || *s == Both) && crate::graph::default_domain(&n))
            .map(|r| r.1);
        let mixed = channels_last && n.input.iter().any(|i| l.five.contains_key(i) && !l.last.contains(i));
        let mut lifted_node = None;
        if let Some(rule) = rule.filter(|_| !mixed) {
            // A Slice takes what is in the volume already and brings nothing in: the 2D shifts'
            // frame masks slice the input before any convolution has taken it, and lifted there
            // the first node without a rule would send the volume back at once. What enters is
            // channels first, so nothing enters beside a channels-last twin.
            let enters = n.op_type() != "Slice" && !channels_last;
            let reads_frames = n.input.iter().any(|i| l.five.contains_key(i) || enters && entry(i, &exited).is_some());
            if reads_frames {
                for i in n.input.iter().filter(|_| enters) {
                    if let (false, Some(chw)) = (l.five.contains_key(i), entry(i, &exited)) {
                        out.extend(l.enter(i, chw));
                        entered.insert(i.clone());
                    }
                }
                let inputs: Vec<Option<String>> = n.input.iter().map(|i| l.five.get(i).cloned()).collect();
                lifted_node = rule(&mut l, &n, &inputs);
            }
        }
        match lifted_node {
            Some(nodes) => {
                // A Transpose is the one rule that changes the layout (see `rules::transpose`).
                let last = channels_last != (n.op_type() == "Transpose");
                for o in n.output.iter().filter(|o| !o.is_empty()) {
                    l.five.insert(o.clone(), volume_name(o));
                    if last {
                        l.last.insert(o.clone());
                    }
                }
                out.extend(nodes);
            }
            None => {
                for i in &n.input {
                    if l.five.contains_key(i) && !entered.contains(i) && exited.insert(i.clone()) {
                        out.extend(l.exit(i));
                    }
                }
                out.push(n);
            }
        }
    }
    // A volume with no shift in it only adds its ways in and out (timm's ResNet-50-GN, whose stem
    // ends in a GroupNorm: 1.09x per clip in OpenVINO against 1.04x left in 2D).
    if lifted_shifts == 0 {
        graph.node = original;
        return 0;
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for o in outputs {
        if l.five.contains_key(&o) && !entered.contains(&o) && exited.insert(o.clone()) {
            out.extend(l.exit(&o));
        }
    }
    // The lift's own nodes may be left unread too (a frame input entered for a node whose rule
    // then declined it).
    // So may the input's own nodes that only fed a node the volume replaced: the pads a TF-style
    // "same" padding computes from Shape, once the lifted Pad has them as a constant (433 nodes
    // on tf_efficientnet_b0, whose Ceil TVM's frontend cannot convert).
    let mut sweepable = new_nodes.clone();
    sweepable.extend(out.iter().filter(|n| n.name().contains("/volume")).map(|n| n.name().to_string()));
    let mut sweepable_inits = new_inits.clone();
    sweepable_inits.extend(l.inits.iter().map(|t| t.name().to_string()));
    graph.node = out;
    graph.initializer.extend(l.inits);
    sweep(graph, &sweepable, &sweepable_inits, &live_before);
    lifted_shifts
}

/// The tensors the graph's outputs depend on: what its nodes compute that the outputs need.
fn live_tensors(graph: &GraphProto) -> HashSet<String> {
    let mut live: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for n in graph.node.iter().rev() {
        if n.output.iter().any(|o| live.contains(o)) {
            live.extend(read_by(n));
        }
    }
    live
}

/// What a node reads: its inputs and the outer names its subgraphs use.
fn read_by(n: &NodeProto) -> Vec<String> {
    let mut names: Vec<String> = n.input.iter().filter(|i| !i.is_empty()).cloned().collect();
    crate::graph::outer_names(n, &mut names);
    names
}

/// For each record, whether a node outside it reads one of its tensors other than its output.
fn outside_readers(graph: &GraphProto, records: &[ShiftRecord], region_of: &HashMap<&str, usize>) -> Vec<bool> {
    let mut inner: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        if let Some(&r) = region_of.get(n.name()) {
            for o in n.output.iter().filter(|o| **o != records[r].output) {
                inner.insert(o, r);
            }
        }
    }
    let mut read = vec![false; records.len()];
    for n in &graph.node {
        for i in &n.input {
            if let Some(&r) = inner.get(i.as_str()) {
                read[r] |= region_of.get(n.name()) != Some(&r);
            }
        }
    }
    for o in &graph.output {
        if let Some(&r) = inner.get(o.name()) {
            read[r] = true;
        }
    }
    read
}

fn volume_name(t: &str) -> String {
    format!("{t}/volume")
}

/// Removes the nodes the rewrite added that nothing reads any more (the 2D shifts' masks and
/// indices), and the input's nodes the outputs needed before (`live_before`) that nothing reads
/// now, then the initializers of either kind that nothing reads. What the input itself left
/// unread stays, as it was written.
fn sweep(
    graph: &mut GraphProto,
    new_nodes: &HashSet<String>,
    new_inits: &HashSet<String>,
    live_before: &HashSet<String>,
) {
    loop {
        let read: HashSet<String> =
            graph.node.iter().flat_map(read_by).chain(graph.output.iter().map(|o| o.name().to_string())).collect();
        let dead: HashSet<usize> = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let ours = new_nodes.contains(n.name()) || n.output.iter().any(|o| live_before.contains(o));
                ours && n.output.iter().all(|o| !read.contains(o))
            })
            .map(|(i, _)| i)
            .collect();
        if dead.is_empty() {
            break;
        }
        let mut i = 0;
        graph.node.retain(|_| {
            i += 1;
            !dead.contains(&(i - 1))
        });
    }
    let read: HashSet<String> = graph.node.iter().flat_map(read_by).collect();
    graph
        .initializer
        .retain(|t| !(new_inits.contains(t.name()) || live_before.contains(t.name())) || read.contains(t.name()));
    let produced: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.input.iter().map(|i| i.name()))
        .chain(graph.initializer.iter().map(|t| t.name()))
        .collect();
    let gone: HashSet<String> =
        graph.value_info.iter().filter(|v| !produced.contains(v.name())).map(|v| v.name().to_string()).collect();
    graph.value_info.retain(|v| !gone.contains(v.name()));
}

/// 1 in the element type, as raw little-endian bytes: the taps of the shift's kernel.
fn weight_bytes(elem_type: i32) -> Option<Vec<u8>> {
    match DataType::try_from(elem_type).ok()? {
        DataType::Float => Some(1f32.to_le_bytes().to_vec()),
        DataType::Double => Some(1f64.to_le_bytes().to_vec()),
        DataType::Float16 => Some(0x3C00u16.to_le_bytes().to_vec()),
        DataType::Bfloat16 => Some(0x3F80u16.to_le_bytes().to_vec()),
        _ => None,
    }
}

impl Lift<'_> {
    fn constant(&mut self, name: &str, values: &[i64]) -> String {
        self.inits.push(int64_vec(name, values));
        name.to_string()
    }

    fn constant_scalar(&mut self, name: &str, value: i64) -> String {
        self.inits.push(crate::tensor::int64(name, &[], &[value]));
        name.to_string()
    }

    /// `[N*T, C, H, W]` to `[N, C, T, H, W]` (or `[1, C, N*T, H, W]`): the frames onto a spatial
    /// axis.
    fn enter(&mut self, t: &str, chw: [Option<i64>; 3]) -> Vec<NodeProto> {
        let v = volume_name(t);
        let clips = format!("{v}_clips_view");
        self.five.insert(t.to_string(), v.clone());
        let mut nodes = match chw {
            [Some(c), Some(h), Some(w)] => {
                let view = match self.layout {
                    Layout::Clips => [-1, self.segments, c, h, w],
                    Layout::Depth => [1, -1, c, h, w],
                };
                let shape = self.constant(&format!("{v}_clips"), &view);
                vec![node("Reshape", &format!("{v}/Reshape"), vec![t.to_string(), shape], &clips, vec![])]
            }
            // A dim left open: `[1, N*T, C, H, W]` by an Unsqueeze, then for clips a Reshape whose
            // zeros copy C, H and W.
            _ => {
                let one = format!("{v}_frames_one");
                let unsqueeze = if self.opset >= 13 {
                    let axes = self.constant(&format!("{v}_axis0"), &[0]);
                    node("Unsqueeze", &format!("{v}/Unsqueeze"), vec![t.to_string(), axes], &one, vec![])
                } else {
                    node(
                        "Unsqueeze",
                        &format!("{v}/Unsqueeze"),
                        vec![t.to_string()],
                        &one,
                        vec![ints_attr("axes", &[0])],
                    )
                };
                match self.layout {
                    Layout::Depth => vec![NodeProto { output: vec![clips.clone()], ..unsqueeze }],
                    Layout::Clips => {
                        let shape = self.constant(&format!("{v}_clips"), &[-1, self.segments, 0, 0, 0]);
                        vec![unsqueeze, node("Reshape", &format!("{v}/Reshape"), vec![one, shape], &clips, vec![])]
                    }
                }
            }
        };
        nodes.push(node(
            "Transpose",
            &format!("{v}/Transpose"),
            vec![clips],
            &v,
            vec![ints_attr("perm", &[0, 2, 1, 3, 4])],
        ));
        nodes
    }

    /// Back to `[N*T, C, H, W]` (or `[N*T, H, W, C]`) under the tensor's own name, for the nodes
    /// that stay 2D. A channels-last twin has the frames' axes together in front: a view.
    fn exit(&mut self, t: &str) -> Vec<NodeProto> {
        let v = self.five[t].clone();
        let (frames, mut nodes) = if self.last.contains(t) {
            (v.clone(), vec![])
        } else {
            let frames = format!("{v}_frames_view");
            let perm = ints_attr("perm", &[0, 2, 1, 3, 4]);
            (
                frames.clone(),
                vec![node("Transpose", &format!("{v}/Transpose_back"), vec![v.clone()], &frames, vec![perm])],
            )
        };
        let known = self.shapes.get(t).and_then(|i| match i.dims.as_slice() {
            [_, a, b, c] => Some([a.known()?, b.known()?, c.known()?]),
            _ => None,
        });
        let shape = match known {
            Some([a, b, c]) => self.constant(&format!("{v}_frames"), &[-1, a, b, c]),
            None => {
                let all = format!("{v}_frames_all");
                nodes.push(node("Shape", &format!("{v}/Shape"), vec![frames.clone()], &all, vec![]));
                let idx = self.constant(&format!("{v}_chw_axes"), &[2, 3, 4]);
                let chw = format!("{v}_chw");
                nodes.push(node("Gather", &format!("{v}/Gather"), vec![all, idx], &chw, vec![int_attr("axis", 0)]));
                let minus = self.constant(&format!("{v}_minus_one"), &[-1]);
                let s = format!("{v}_frames");
                nodes.push(node("Concat", &format!("{v}/Concat"), vec![minus, chw], &s, vec![int_attr("axis", 0)]));
                s
            }
        };
        nodes.push(node("Reshape", &format!("{v}/Reshape_back"), vec![frames, shape], t, vec![]));
        nodes
    }

    /// The shift of a record as one depthwise convolution over T on its lifted input.
    fn shift(&mut self, rec: &ShiftRecord) -> Vec<NodeProto> {
        let one = weight_bytes(rec.elem_type).expect("checked before");
        let width = one.len();
        let mut raw = vec![0u8; rec.channels as usize * 3 * width];
        for c in 0..rec.channels {
            let tap = match rec.groups.get((c / rec.fold.max(1)) as usize) {
                Some(Neighbour::Next) => 2,
                Some(Neighbour::Previous) => 0,
                None => 1,
            };
            let at = (c as usize * 3 + tap) * width;
            raw[at..at + width].copy_from_slice(&one);
        }
        let out = volume_name(&rec.output);
        let w = format!("{out}_taps");
        self.inits.push(TensorProto {
            name: Some(w.clone()),
            data_type: Some(rec.elem_type),
            dims: vec![rec.channels, 1, 3, 1, 1],
            raw_data: Some(Bytes::from(raw)),
            ..Default::default()
        });
        self.five.insert(rec.output.clone(), out.clone());
        let attrs = vec![
            int_attr("group", rec.channels),
            ints_attr("kernel_shape", &[3, 1, 1]),
            ints_attr("pads", &[1, 0, 0, 1, 0, 0]),
        ];
        let x = self.five[&rec.input].clone();
        // Along one depth of several clips, a frame at a clip's border has the next clip's first
        // frame (or the last one's last) as its neighbour, not the padding.
        let one_clip = self.frames == Some(self.segments);
        if self.layout == Layout::Clips || one_clip {
            return vec![node("Conv", &format!("{out}{SHIFT_NODE}"), vec![x, w], &out, attrs)];
        }
        let through = format!("{out}_across_clips");
        let mut nodes = vec![node("Conv", &format!("{out}{SHIFT_NODE}"), vec![x.clone(), w], &through, attrs)];
        let mask = self.border_mask(rec, &x, &one, &mut nodes);
        nodes.push(node("Mul", &format!("{out}/Mul_clip_borders"), vec![through, mask], &out, vec![]));
        nodes
    }

    /// `[1, C, N*T, 1, 1]` in the record's element type: 0 where a frame's moved channels would
    /// come from another clip, else 1. A constant where the batch is known; else a `[1, C, T, 1,
    /// 1]` table gathered by each frame's index in its clip (see [`Lift::frame_index`]). Not an
    /// Expand of the table to a shape computed from the depth: TVM's frontend then loses the
    /// shape, and cannot convert the Reshape after it.
    fn border_mask(&mut self, rec: &ShiftRecord, x: &str, one: &[u8], nodes: &mut Vec<NodeProto>) -> String {
        let (t, c) = (self.segments, rec.channels);
        let keeps = |channel: i64, frame: i64| match rec.groups.get((channel / rec.fold.max(1)) as usize) {
            Some(Neighbour::Next) => frame < t - 1,
            Some(Neighbour::Previous) => frame > 0,
            None => true,
        };
        let known = self.frames.filter(|f| f % t == 0);
        let depth = known.unwrap_or(t);
        let mut raw = Vec::with_capacity((c * depth) as usize * one.len());
        for channel in 0..c {
            for frame in 0..depth {
                match keeps(channel, frame % t) {
                    true => raw.extend_from_slice(one),
                    false => raw.extend(std::iter::repeat_n(0u8, one.len())),
                }
            }
        }
        let v = volume_name(&rec.output);
        let mask = format!("{v}_clip_borders");
        let table = if known.is_some() { mask.clone() } else { format!("{mask}_in_clip") };
        self.inits.push(TensorProto {
            name: Some(table.clone()),
            data_type: Some(rec.elem_type),
            dims: vec![1, c, depth, 1, 1],
            raw_data: Some(Bytes::from(raw)),
            ..Default::default()
        });
        if known.is_some() {
            return mask;
        }
        let index = self.frame_index(x, rec.elem_type, nodes);
        nodes.push(node(
            "Gather",
            &format!("{v}/Gather_clip_borders"),
            vec![table, index],
            &mask,
            vec![int_attr("axis", 2)],
        ));
        mask
    }

    /// Each frame's index in its clip, `[N*T]`, counted along the depth of `x` (a lifted tensor of
    /// element type `elem_type`) as the 2D masks count the input's frames
    /// ([`super::batch::frame_counter`]), and made once, at the first site, which comes before
    /// every other.
    fn frame_index(&mut self, x: &str, elem_type: i32, nodes: &mut Vec<NodeProto>) -> String {
        if let Some(index) = &self.frame_index {
            return index.clone();
        }
        let n = |what: &str| format!("{x}_frames/{what}");
        let frame = super::batch::frame_counter(x, 5, 2, elem_type, &n, nodes, &mut self.inits);
        let segments = self.constant(&n("segments"), &[self.segments]);
        let index = n("index");
        nodes.push(node("Mod", &n("Mod"), vec![frame, segments], &index, vec![]));
        self.frame_index = Some(index.clone());
        index
    }

    /// `t` with a unit axis inserted at `axis` (a weight's depth, a constant's time axis).
    fn unsqueeze(&mut self, t: &str, axis: i64, nodes: &mut Vec<NodeProto>) -> String {
        if let Some(u) = self.unsqueezed.get(&(t.to_string(), axis)) {
            return u.clone();
        }
        let u = format!("{t}/volume_axis{axis}");
        let n = if self.opset >= 13 {
            let axes = self.constant(&format!("{u}_axes"), &[axis]);
            node("Unsqueeze", &format!("{u}/Unsqueeze"), vec![t.to_string(), axes], &u, vec![])
        } else {
            node("Unsqueeze", &format!("{u}/Unsqueeze"), vec![t.to_string()], &u, vec![ints_attr("axes", &[axis])])
        };
        nodes.push(n);
        self.unsqueezed.insert((t.to_string(), axis), u.clone());
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ShiftForm};
    use crate::graph::tests::{node as n, value_info};
    use crate::onnx::{ModelProto, OperatorSetIdProto, ValueInfoProto};
    use crate::tensor::FloatArray;
    use prost::Message;

    const T: usize = 4;

    fn floats(name: &str, dims: &[i64], seed: u64) -> TensorProto {
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        FloatArray::random(&shape, seed).to_proto(name)
    }

    fn with_attrs(mut node: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
        node.attribute = attrs;
        node
    }

    fn run(graph: &GraphProto, opset: i64, x: &FloatArray) -> FloatArray {
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
            graph: Some(graph.clone()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        crate::validate::run(&path, std::slice::from_ref(x)).unwrap().remove(0)
    }

    /// The graph lifted, the shifts' nodes and initializers (named under `/tsm`) swept if unread.
    fn lifted(graph: &GraphProto, records: &[ShiftRecord], opset: i64) -> (GraphProto, usize) {
        lifted_in(graph, records, opset, Layout::Clips)
    }

    fn lifted_in(graph: &GraphProto, records: &[ShiftRecord], opset: i64, layout: Layout) -> (GraphProto, usize) {
        let mut g = graph.clone();
        let shapes = Shapes::infer(&g);
        let new_nodes = g.node.iter().map(|n| n.name().to_string()).filter(|n| n.contains("/tsm")).collect();
        let new_inits = g.initializer.iter().map(|t| t.name().to_string()).filter(|t| t.contains("/tsm")).collect();
        let frames = Frames { segments: T, layout };
        let count = lift(&mut g, &shapes, records, frames, opset, &new_nodes, &new_inits);
        crate::graph::Dataflow::build(&g).unwrap();
        (g, count)
    }

    /// The largest difference between a test graph (input `x`: 3 channels of 5x6) and its lift,
    /// both run in tract on two clips of seeded noise.
    fn lift_difference(g: &GraphProto, five: &GraphProto, opset: i64) -> f32 {
        let x = FloatArray::random(&[2 * T, 3, 5, 6], 7);
        run(g, opset, &x).max_abs_diff(&run(five, opset, &x))
    }

    fn graph(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, c: i64, out: &str) -> GraphProto {
        GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![value_info("x", &[-1, c, 5, 6])],
            output: vec![ValueInfoProto { name: Some(out.into()), ..Default::default() }],
            ..Default::default()
        }
    }

    /// A real 2D shift of `t` (`c` channels of `h` x `w`, the frames the input's) as the emitters
    /// write it for a site that is not a stream site, with its record; the masks it needs first.
    fn shift_2d(
        t: &str,
        c: i64,
        (h, w): (i64, i64),
        fold: i64,
        opset: i64,
        config: &Config,
    ) -> (Vec<NodeProto>, Vec<TensorProto>, String, ShiftRecord) {
        let site = crate::plan::Site {
            tensor: t.into(),
            batch: crate::shapes::Dim::Sym("N".into()),
            channels: c,
            fold,
            height: crate::shapes::Dim::Known(h),
            width: crate::shapes::Dim::Known(w),
            elem_type: Some(1),
            segments: T,
            prefix: format!("/{t}/tsm"),
            ..Default::default()
        };
        let input = GraphProto { input: vec![value_info("x", &[-1, 3, 5, 6])], ..Default::default() };
        let mut masks = crate::emit::FrameMasks::new(&input);
        let (nodes, inits, out) = crate::emit::shift_subgraph(&site, config, opset, &mut masks);
        let record = crate::emit::shift_record(&site, config, t, &out, &nodes).unwrap();
        let nodes = masks.nodes.into_iter().chain(nodes).collect();
        (nodes, masks.inits.into_iter().chain(inits).collect(), out, record)
    }

    /// A Pad whose pads the graph computes from a Shape in float (timm's "same" padding) goes 5D
    /// with its pads a constant; the computation that only fed it goes, TVM cannot convert its
    /// Ceil. A node the input itself left unread stays.
    #[test]
    fn the_pads_a_lifted_pad_no_longer_reads_are_swept() {
        let opset = 13;
        let config = Config { shift_form: ShiftForm::Tract, ..Config::default() };
        let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
        let to = |t: DataType| vec![int_attr("to", t as i64)];
        // pads [0, 0, 0, 0, 0, 0, H % 2, 0], H % 2 as ceil(H / 2) - floor(H / 2) in float.
        let mut nodes = vec![
            with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
            n("Relu", "relu", &["c1"], &["r1"]),
            n("Shape", "shape", &["r1"], &["s"]),
            with_attrs(n("Gather", "gather", &["s", "two_i"], &["h"]), vec![int_attr("axis", 0)]),
            with_attrs(n("Cast", "to_float", &["h"], &["hf"]), to(DataType::Float)),
            n("Div", "div", &["hf", "two_f"], &["half"]),
            n("Ceil", "ceil", &["half"], &["up"]),
            n("Floor", "floor", &["half"], &["down"]),
            n("Sub", "sub", &["up", "down"], &["odd"]),
            with_attrs(n("Cast", "to_int", &["odd"], &["odd_i"]), to(DataType::Int64)),
            n("Unsqueeze", "unsqueeze", &["odd_i", "axis0"], &["odd1"]),
            with_attrs(n("Concat", "pads", &["zeros6", "odd1", "zero1"], &["pads"]), vec![int_attr("axis", 0)]),
            n("Identity", "stray", &["b"], &["unread"]),
            n("Pad", "pad", &[shifted.as_str(), "pads"], &["pd"]),
            n("GlobalAveragePool", "gap", &["pd"], &["g"]),
            n("Flatten", "flatten", &["g"], &["y"]),
        ];
        nodes.splice(2..2, shift);
        let mut inits = vec![
            floats("w", &[8, 3, 3, 2], 1),
            floats("b", &[8], 2),
            crate::tensor::int64("two_i", &[], &[2]),
            FloatArray { shape: vec![], data: vec![2.0] }.to_proto("two_f"),
            int64_vec("axis0", &[0]),
            int64_vec("zeros6", &[0; 6]),
            int64_vec("zero1", &[0]),
        ];
        inits.extend(shift_inits);
        let g = graph(nodes, inits, 3, "y");
        let (five, count) = lifted_in(&g, &[record], opset, Layout::Depth);
        assert_eq!(count, 1);
        let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
        for gone in ["shape", "gather", "to_float", "div", "ceil", "floor", "sub", "to_int", "unsqueeze", "pads"] {
            assert!(!names.contains(&gone), "{gone}: {names:?}");
        }
        assert!(names.contains(&"stray"), "{names:?}");
        let left: Vec<&str> = five.initializer.iter().map(|t| t.name()).collect();
        assert!(!left.contains(&"two_f") && !left.contains(&"zeros6") && left.contains(&"w"), "{left:?}");
        let pad = five.node.iter().find(|n| n.op_type() == "Pad").unwrap();
        let pads = five.initializer.iter().find(|t| t.name() == pad.input[1]).unwrap();
        assert_eq!(crate::tensor::int_values(pads), Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
        let x = FloatArray::random(&[2 * T, 3, 5, 6], 7);
        let (want, got) = (run(&g, opset, &x), run(&five, opset, &x));
        assert_eq!((want.shape.clone(), want.data.len()), (got.shape.clone(), got.data.len()));
        let diff = want.max_abs_diff(&got);
        assert!(diff < 1e-5, "{diff}");
    }

    /// `g`'s input with H and W open, as an export with dynamic height and width declares them.
    fn open_height_and_width(g: &mut GraphProto) {
        use crate::onnx::tensor_shape_proto::dimension::Value as D;
        let Some(crate::onnx::type_proto::Value::TensorType(t)) = g.input[0].r#type.as_mut().unwrap().value.as_mut()
        else {
            unreachable!()
        };
        let dims = &mut t.shape.as_mut().unwrap().dim;
        dims[2].value = Some(D::DimParam("H".into()));
        dims[3].value = Some(D::DimParam("W".into()));
    }

    /// With H and W open (an export with dynamic height and width) the way in is an Unsqueeze, an
    /// attribute before opset 13, and for clips a Reshape whose zeros copy C, H and W: the lifted
    /// graph still computes the 2D graph's output.
    #[test]
    fn open_height_and_width_enter_by_an_unsqueeze() {
        for (opset, layout) in [11, 13].into_iter().flat_map(|o| [(o, Layout::Clips), (o, Layout::Depth)]) {
            let config = Config { shift_form: ShiftForm::Openvino, ..Config::default() };
            let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
            let mut nodes = vec![
                with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
                n("Relu", "relu", &["c1"], &["r1"]),
                n("GlobalAveragePool", "gap", &[shifted.as_str()], &["g"]),
                n("Flatten", "flatten", &["g"], &["y"]),
            ];
            nodes.splice(2..2, shift);
            let inits = [floats("w", &[8, 3, 3, 2], 1), floats("b", &[8], 2)].into_iter().chain(shift_inits).collect();
            let mut g = graph(nodes, inits, 3, "y");
            open_height_and_width(&mut g);
            let (five, count) = lifted_in(&g, &[record], opset, layout);
            assert_eq!(count, 1);
            let unsqueeze = five.node.iter().find(|n| n.name() == "x/volume/Unsqueeze").expect("an Unsqueeze in");
            assert_eq!(unsqueeze.input.len(), if opset >= 13 { 2 } else { 1 }, "opset {opset}");
            let diff = lift_difference(&g, &five, opset);
            assert!(diff < 1e-5, "opset {opset}, {layout:?}: {diff}");
        }
    }

    /// A BatchNormalization whose scale is an Identity of another constant (the TorchScript
    /// exporter keeps equal weights once: timm's MixNet, a BatchNormalization after each mixed
    /// convolution's Concat) is lifted like any other.
    #[test]
    fn a_parameter_that_is_an_identity_of_a_constant_is_a_constant() {
        let opset = 13;
        let config = Config { shift_form: ShiftForm::Tract, ..Config::default() };
        let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
        let mut nodes = vec![
            with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
            n("Relu", "relu", &["c1"], &["r1"]),
            n("Identity", "same_as_scale", &["scale"], &["bn_bias"]),
            n("BatchNormalization", "bn", &[shifted.as_str(), "scale", "bn_bias", "mean", "var"], &["bn_out"]),
            n("GlobalAveragePool", "gap", &["bn_out"], &["g"]),
            n("Flatten", "flatten", &["g"], &["y"]),
        ];
        nodes.splice(2..2, shift);
        let positive = FloatArray { shape: vec![8], data: (1..=8).map(|v| v as f32 / 4.0).collect() };
        let inits = [
            floats("w", &[8, 3, 3, 2], 1),
            floats("b", &[8], 2),
            positive.to_proto("scale"),
            floats("mean", &[8], 3),
            positive.to_proto("var"),
        ];
        let g = graph(nodes, inits.into_iter().chain(shift_inits).collect(), 3, "y");
        let (five, count) = lifted_in(&g, &[record], opset, Layout::Depth);
        assert_eq!(count, 1);
        assert!(
            five.node.iter().any(|n| n.name() == "bn/volume"),
            "{:?}",
            five.node.iter().map(|n| n.name()).collect::<Vec<_>>()
        );
        let diff = lift_difference(&g, &five, opset);
        assert!(diff < 1e-5, "{diff}");
    }

    /// A Slice of channels in the volume is lifted (GhostNet's crop), its axes moved; a Slice of a
    /// tensor not yet in the volume (the 2D shifts' frame masks slice the input first) brings
    /// nothing in, or the node without a rule after it would end the volume before it began.
    #[test]
    fn a_slice_is_lifted_where_its_input_is_and_brings_nothing_in() {
        for (opset, layout) in [(11, Layout::Depth), (13, Layout::Clips)] {
            let config = Config { shift_form: ShiftForm::Tract, ..Config::default() };
            let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
            let mut nodes = vec![
                n("Slice", "first_channel", &["x", "zero", "one", "axis1"], &["x0"]),
                n("Shape", "no_rule", &["x0"], &["x0_shape"]),
                with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
                n("Relu", "relu", &["c1"], &["r1"]),
                n("Slice", "crop", &[shifted.as_str(), "zero", "six", "axis1"], &["cropped"]),
                n("GlobalAveragePool", "gap", &["cropped"], &["g"]),
                n("Flatten", "flatten", &["g"], &["y"]),
            ];
            nodes.splice(4..4, shift);
            let inits = [
                floats("w", &[8, 3, 3, 2], 1),
                floats("b", &[8], 2),
                int64_vec("zero", &[0]),
                int64_vec("one", &[1]),
                int64_vec("six", &[6]),
                int64_vec("axis1", &[1]),
            ];
            let g = graph(nodes, inits.into_iter().chain(shift_inits).collect(), 3, "y");
            let (five, count) = lifted_in(&g, &[record], opset, layout);
            assert_eq!(count, 1, "opset {opset}");
            let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
            assert!(names.contains(&"crop/volume") && names.contains(&"first_channel"), "{names:?}");
            let diff = lift_difference(&g, &five, opset);
            assert!(diff < 1e-5, "opset {opset}, {layout:?}: {diff}");
        }
    }

    /// ECA attention as timm exports it: the pooled tensor (a ReduceMean that drops H and W) viewed
    /// through the input's Shape, a 1D convolution over channels, the gate expanded to that Shape.
    /// Without the readers, the Shape sends the tensor back to 2D and the Mul stays there. With H
    /// and W open the Shape is read from the 5D twin's.
    #[test]
    fn eca_attention_reads_the_volume_and_its_gate_comes_back_in() {
        let cases = [
            (13, Layout::Depth, false),
            (17, Layout::Clips, false),
            (18, Layout::Depth, false),
            (13, Layout::Depth, true),
            (17, Layout::Clips, true),
        ];
        for (opset, layout, open) in cases {
            let config = Config { shift_form: ShiftForm::Tract, ..Config::default() };
            let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
            let keep = int_attr("keepdims", 0);
            let reduce = if opset >= 18 {
                with_attrs(n("ReduceMean", "pool", &["c2", "hw"], &["pooled"]), vec![keep])
            } else {
                with_attrs(n("ReduceMean", "pool", &["c2"], &["pooled"]), vec![ints_attr("axes", &[2, 3]), keep])
            };
            let mut nodes = vec![
                with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
                n("Relu", "relu", &["c1"], &["r1"]),
                n("Conv", "conv2", &[shifted.as_str(), "w2"], &["c2"]),
                reduce,
                n("Shape", "shape", &["c2"], &["s"]),
                with_attrs(n("Gather", "batch", &["s", "first"], &["b0"]), vec![int_attr("axis", 0)]),
                n("Unsqueeze", "batch1", &["b0", "axis0"], &["b1"]),
                with_attrs(n("Concat", "view", &["b1", "one", "minus_one"], &["v"]), vec![int_attr("axis", 0)]),
                n("Reshape", "as_1d", &["pooled", "v"], &["p1"]),
                with_attrs(n("Conv", "eca", &["p1", "w1d"], &["e"]), vec![ints_attr("pads", &[1, 1])]),
                n("Sigmoid", "gate", &["e"], &["g"]),
                with_attrs(
                    n("Concat", "gate_view", &["b1", "minus_one", "one", "one"], &["gv"]),
                    vec![int_attr("axis", 0)],
                ),
                n("Reshape", "as_gate", &["g", "gv"], &["g4"]),
                n("Shape", "shape_1", &["c2"], &["s1"]),
                n("Expand", "expand", &["g4", "s1"], &["ge"]),
                n("Mul", "mul", &["c2", "ge"], &["m"]),
                n("GlobalAveragePool", "gap", &["m"], &["gp"]),
                n("Flatten", "flatten", &["gp"], &["y"]),
            ];
            nodes.splice(2..2, shift);
            let inits = [
                floats("w", &[8, 3, 3, 2], 1),
                floats("b", &[8], 2),
                floats("w2", &[8, 8, 1, 1], 3),
                floats("w1d", &[1, 1, 3], 4),
                crate::tensor::int64("first", &[], &[0]),
                int64_vec("axis0", &[0]),
                int64_vec("one", &[1]),
                int64_vec("minus_one", &[-1]),
                int64_vec("hw", &[2, 3]),
            ];
            let mut g = graph(nodes, inits.into_iter().chain(shift_inits).collect(), 3, "y");
            if open {
                open_height_and_width(&mut g);
            }
            let (five, count) = lifted_in(&g, &[record], opset, layout);
            assert_eq!(count, 1, "opset {opset}");
            let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
            // Known C, H and W: the frames' count from the input's Shape; else the twin's dims.
            let read_by = match (open, layout) {
                (false, _) => "s/volume/Gather",
                (true, Layout::Depth) => "s/volume/Gather_frames",
                (true, Layout::Clips) => "s/volume/Mul",
            };
            for lifted in ["expand/volume", "mul/volume", "gap/volume", "shape/volume", "pool/volume", read_by] {
                assert!(names.contains(&lifted), "opset {opset}, open {open}: {lifted} not in {names:?}");
            }
            let diff = lift_difference(&g, &five, opset);
            assert!(diff < 1e-5, "opset {opset}, {layout:?}, open {open}: {diff}");
        }
    }

    /// A ConvNeXt block (torchvision's and timm's): the depthwise convolution's output transposed
    /// to channels last, LayerNorm (a LayerNormalization, or before opset 17 the exporter's
    /// ReduceMean chain), a Linear-GELU-Linear MLP as MatMuls, a layer scale, the Transpose back;
    /// then a node without a rule reading a channels-last tensor, which goes back by a view. Along
    /// one depth only: in the clips' volume the block goes back at its first Transpose.
    #[test]
    fn a_convnext_block_runs_channels_last_in_the_volume() {
        let cases = [
            (13, Layout::Depth, false),
            (13, Layout::Depth, true),
            (17, Layout::Depth, false),
            (17, Layout::Depth, true),
            (18, Layout::Depth, false),
            (17, Layout::Clips, false),
        ];
        for (opset, layout, open) in cases {
            let config = Config { shift_form: ShiftForm::Tract, ..Config::default() };
            let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
            let perm = |p: &[i64]| vec![ints_attr("perm", p)];
            let last_axis = |node: NodeProto| match opset {
                18.. => NodeProto { input: [node.input, vec!["minus_one".into()]].concat(), ..node },
                _ => with_attrs(node, vec![ints_attr("axes", &[-1])]),
            };
            let layer_norm = match opset {
                17.. => vec![with_attrs(
                    n("LayerNormalization", "ln", &["t", "g", "bn"], &["ln"]),
                    vec![int_attr("axis", -1)],
                )],
                _ => vec![
                    last_axis(n("ReduceMean", "mean", &["t"], &["mu"])),
                    n("Sub", "dev", &["t", "mu"], &["dev"]),
                    n("Pow", "sq", &["dev", "two"], &["sq"]),
                    last_axis(n("ReduceMean", "var", &["sq"], &["var"])),
                    n("Add", "eps", &["var", "eps"], &["ve"]),
                    n("Sqrt", "sd", &["ve"], &["sd"]),
                    n("Div", "norm", &["dev", "sd"], &["nrm"]),
                    n("Mul", "scale", &["nrm", "g"], &["ng"]),
                    n("Add", "shift", &["ng", "bn"], &["ln"]),
                ],
            };
            let mut nodes = vec![
                with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
                n("Relu", "relu", &["c1"], &["r1"]),
                with_attrs(
                    n("Conv", "dw", &[shifted.as_str(), "wdw", "bdw"], &["d"]),
                    vec![int_attr("group", 8), ints_attr("pads", &[1, 1, 1, 1])],
                ),
                with_attrs(n("Transpose", "to_last", &["d"], &["t"]), perm(&[0, 2, 3, 1])),
            ];
            nodes.extend(layer_norm);
            nodes.extend([
                n("MatMul", "fc1", &["ln", "w1"], &["h"]),
                n("Add", "fc1_bias", &["b1", "h"], &["hb"]),
                n("Div", "gelu_div", &["hb", "sqrt2"], &["hd"]),
                n("Erf", "gelu_erf", &["hd"], &["he"]),
                n("Add", "gelu_add", &["he", "one_f"], &["ha"]),
                n("Mul", "gelu_mul", &["hb", "ha"], &["hm"]),
                n("Mul", "gelu_half", &["hm", "half"], &["act"]),
                n("MatMul", "fc2", &["act", "w2"], &["o"]),
                n("Add", "fc2_bias", &["o", "b2"], &["ob"]),
                n("Mul", "gamma", &["ob", "gamma"], &["og"]),
                with_attrs(n("Transpose", "to_first", &["og"], &["back"]), perm(&[0, 3, 1, 2])),
                n("Mul", "layer_scale", &["ls", "back"], &["scaled"]),
                n("Add", "join", &["scaled", "r1"], &["j"]),
                with_attrs(n("Transpose", "head_last", &["j"], &["tl"]), perm(&[0, 2, 3, 1])),
                with_attrs(n("Softmax", "softmax", &["tl"], &["sm"]), vec![int_attr("axis", -1)]),
                with_attrs(
                    n("ReduceMean", "pool", &["sm"], &["y"]),
                    vec![ints_attr("axes", &[1, 2]), int_attr("keepdims", 0)],
                ),
            ]);
            nodes.splice(2..2, shift);
            let scalar = |name: &str, v: f32| FloatArray { shape: vec![], data: vec![v] }.to_proto(name);
            let inits = [
                floats("w", &[8, 3, 3, 2], 1),
                floats("b", &[8], 2),
                floats("wdw", &[8, 1, 3, 3], 3),
                floats("bdw", &[8], 4),
                floats("g", &[8], 5),
                floats("bn", &[8], 6),
                floats("w1", &[8, 16], 7),
                floats("b1", &[16], 8),
                floats("w2", &[16, 8], 9),
                floats("b2", &[8], 10),
                floats("gamma", &[1, 1, 1, 8], 11),
                floats("ls", &[8, 1, 1], 12),
                scalar("two", 2.0),
                scalar("eps", 1e-6),
                scalar("sqrt2", std::f32::consts::SQRT_2),
                scalar("one_f", 1.0),
                scalar("half", 0.5),
                int64_vec("minus_one", &[-1]),
            ];
            let mut g = graph(nodes, inits.into_iter().chain(shift_inits).collect(), 3, "y");
            if open {
                open_height_and_width(&mut g);
            }
            let (five, count) = lifted_in(&g, &[record], opset, layout);
            assert_eq!(count, 1, "opset {opset}");
            let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
            let ln = if opset >= 17 { "ln/volume" } else { "var/volume" };
            for lifted in ["to_last/volume", ln, "fc1/volume", "gelu_erf/volume", "gamma/volume", "to_first/volume"] {
                let want = layout == Layout::Depth;
                assert_eq!(
                    names.contains(&lifted),
                    want,
                    "opset {opset}, {layout:?}, open {open}: {lifted} in {names:?}"
                );
            }
            // The Softmax's input goes back by a view, no Transpose.
            if layout == Layout::Depth {
                assert!(names.contains(&"tl/volume/Reshape_back") && !names.contains(&"tl/volume/Transpose_back"));
            }
            let diff = lift_difference(&g, &five, opset);
            assert!(diff < 1e-5, "opset {opset}, {layout:?}, open {open}: {diff}");
        }
    }

    /// A tensor a subgraph reads from outside it is read: its producer is live, and the sweep keeps it.
    #[test]
    fn what_a_subgraph_reads_from_outside_stays() {
        let branch = GraphProto {
            node: vec![n("Identity", "inner", &["captured"], &["inner_out"])],
            output: vec![ValueInfoProto { name: Some("inner_out".into()), ..Default::default() }],
            ..Default::default()
        };
        let mut if_node = n("If", "if", &["cond"], &["y"]);
        for name in ["then_branch", "else_branch"] {
            if_node.attribute.push(AttributeProto {
                name: Some(name.into()),
                r#type: Some(crate::onnx::attribute_proto::AttributeType::Graph as i32),
                g: Some(branch.clone()),
                ..Default::default()
            });
        }
        let mut g = graph(vec![n("Relu", "producer", &["x"], &["captured"]), if_node], vec![], 3, "y");
        assert!(live_tensors(&g).contains("captured"));
        let ours = HashSet::from(["producer".to_string()]);
        sweep(&mut g, &ours, &HashSet::new(), &HashSet::new());
        assert_eq!(g.node.len(), 2);
    }

    #[test]
    fn every_rule_computes_what_its_2d_node_does() {
        // Every operator with a rule, on 2 clips of 4 frames: the lifted graph's output is the 2D
        // graph's, which only holds if each rule keeps the frames apart and maps the axes right,
        // and, along one depth, if the shift's mask keeps the clips apart.
        for (opset, layout) in [11, 13, 18].into_iter().flat_map(|o| [(o, Layout::Clips), (o, Layout::Depth)]) {
            let config = Config { shift_form: ShiftForm::Openvino, ..Config::default() };
            let (shift, shift_inits, shifted, record) = shift_2d("r1", 8, (5, 7), 2, opset, &config);
            let mut nodes = vec![
                with_attrs(n("Conv", "conv", &["x", "w", "b"], &["c1"]), vec![ints_attr("pads", &[1, 0, 1, 2])]),
                n("Relu", "relu", &["c1"], &["r1"]),
                with_attrs(
                    n("MaxPool", "max", &[shifted.as_str()], &["p1"]),
                    vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2])],
                ),
                n("Pad", "pad", &["p1", "pads"], &["pd"]),
                n("Mul", "mul", &["pd", "scale"], &["m"]),
                n("Add", "add", &["m", "shift"], &["a"]),
                with_attrs(n("Clip", "clip", &["a", "lo", ""], &["cl"]), vec![]),
                with_attrs(n("Split", "split", &["cl", "sizes"], &["s1", "s2"]), vec![int_attr("axis", 1)]),
                with_attrs(n("Concat", "concat", &["s2", "s1", "cl"], &["cc"]), vec![int_attr("axis", -3)]),
                with_attrs(
                    n("AveragePool", "avg", &["cc"], &["ap"]),
                    vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("pads", &[1, 1, 1, 1])],
                ),
                n("GlobalAveragePool", "gap", &["ap"], &["g0"]),
                n("Add", "add_mean", &["g0", "mean"], &["g"]),
                n("Flatten", "flatten", &["g"], &["y"]),
            ];
            // timm's squeeze-excitation mean: a ReduceMean over H and W, axes an input from 18.
            let mean = if opset >= 18 {
                n("ReduceMean", "mean", &["ap", "mean_axes"], &["mean"])
            } else {
                with_attrs(n("ReduceMean", "mean", &["ap"], &["mean"]), vec![ints_attr("axes", &[2, -1])])
            };
            nodes.insert(10, mean);
            if opset < 13 {
                // Split's sizes were an attribute before opset 13.
                nodes[7] = with_attrs(
                    n("Split", "split", &["cl"], &["s1", "s2"]),
                    vec![int_attr("axis", 1), ints_attr("split", &[3, 5])],
                );
            }
            let inits = vec![
                floats("w", &[8, 3, 3, 2], 1),
                floats("b", &[8], 2),
                int64_vec("pads", &[0, 0, 1, 0, 0, 0, 0, 1]),
                floats("scale", &[1, 8, 1, 1], 3),
                floats("shift", &[8, 1, 1], 4),
                floats("lo", &[], 5),
                int64_vec("sizes", &[3, 5]),
                int64_vec("mean_axes", &[-2, 3]),
            ];
            // The shift's nodes go right after the Relu, as the patch places them.
            let at = nodes.iter().position(|n| n.name() == "relu").unwrap() + 1;
            nodes.splice(at..at, shift);
            let g = graph(nodes, inits.into_iter().chain(shift_inits).collect(), 3, "y");
            let (five, count) = lifted_in(&g, &[record], opset, layout);
            assert_eq!(count, 1);
            let ops: Vec<&str> = five.node.iter().map(|n| n.op_type()).collect();
            assert_eq!(ops.iter().filter(|o| **o == "Transpose").count(), 2, "{ops:?}");
            assert_eq!(ops.contains(&"CumSum"), layout == Layout::Depth, "{ops:?}");
            assert!(
                !ops.contains(&"GlobalAveragePool") && ops.iter().filter(|o| **o == "ReduceMean").count() == 2,
                "{ops:?}"
            );
            let diff = lift_difference(&g, &five, opset);
            assert!(diff < 1e-5, "opset {opset}, {layout:?}: {diff}");
        }
    }

    #[test]
    fn a_node_without_a_rule_reads_its_tensor_back_in_2d_and_nothing_enters_after() {
        // The input's shift and the Relu are lifted; Transpose has no rule, so the Relu's output
        // goes back under its own name; the Sigmoid after the Transpose stays 2D, though its
        // input's first dim is the frames'. The 2D shift's nodes and masks are gone.
        let config = Config { shift_form: ShiftForm::Openvino, ..Config::default() };
        let (mut nodes, inits, shifted, record) = shift_2d("x", 3, (5, 6), 1, 13, &config);
        nodes.extend([
            n("Relu", "relu", &[shifted.as_str()], &["r"]),
            with_attrs(n("Transpose", "t", &["r"], &["tr"]), vec![ints_attr("perm", &[0, 1, 3, 2])]),
            n("Sigmoid", "sig", &["tr"], &["y"]),
        ]);
        let (five, count) = lifted(&graph(nodes, inits, 3, "y"), &[record], 13);
        assert_eq!(count, 1);
        let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
        assert_eq!(
            names,
            [
                "x/volume/Reshape",
                "x/volume/Transpose",
                &format!("{shifted}/volume/Conv_time"),
                "relu/volume",
                "r/volume/Transpose_back",
                "r/volume/Reshape_back",
                "t",
                "sig"
            ]
        );
        assert_eq!(five.node[5].output, ["r"]);
        assert!(five.initializer.iter().all(|t| !t.name().contains("/tsm/frames")), "masks swept");
    }

    /// The plain shift of `[N*T, C, H, W]`: channel c of group j takes frame t+1 (Next) or t-1
    /// (Previous), zeros outside the clip; channels past the groups stay.
    fn shifted(x: &FloatArray, fold: usize, groups: &[Neighbour]) -> FloatArray {
        let (c, hw) = (x.shape[1], x.shape[2] * x.shape[3]);
        let mut out = vec![0f32; x.data.len()];
        for f in 0..x.shape[0] {
            for ch in 0..c {
                let from = match groups.get(ch / fold) {
                    Some(Neighbour::Next) => (f % T + 1 < T).then_some(f + 1),
                    Some(Neighbour::Previous) => (f % T > 0).then(|| f - 1),
                    None => Some(f),
                };
                if let Some(s) = from {
                    let (dst, src) = ((f * c + ch) * hw, (s * c + ch) * hw);
                    out[dst..dst + hw].copy_from_slice(&x.data[src..src + hw]);
                }
            }
        }
        FloatArray { shape: x.shape.clone(), data: out }
    }

    /// The record of a shift of 6 channels written as one Identity named `shift`, `input` to
    /// `moved`: the lift replaces it whole, so what it computed does not matter.
    fn identity_record(input: &str, fold: i64, groups: &'static [Neighbour]) -> ShiftRecord {
        ShiftRecord {
            input: input.into(),
            output: "moved".into(),
            nodes: vec!["shift".into()],
            channels: 6,
            fold,
            segments: T,
            elem_type: DataType::Float as i32,
            groups,
        }
    }

    #[test]
    fn a_shift_becomes_a_depthwise_convolution_over_time_exact_for_finite_values() {
        // The 2D shift's nodes (here one Identity standing for them) give way to the convolution;
        // its output equals the plain shift bit for bit, for each direction and group order, in
        // both layouts, along one depth with the batch unknown (a mask made at run time), known
        // (a constant mask) and of one clip (no mask: the padding is the clip's border).
        let cases = [
            (2, &[Neighbour::Next, Neighbour::Previous][..]),
            (1, &[Neighbour::Previous, Neighbour::Next][..]),
            (3, &[Neighbour::Previous][..]),
        ];
        let layouts = [(Layout::Clips, -1, 2), (Layout::Depth, -1, 3), (Layout::Depth, 3, 3), (Layout::Depth, 1, 1)];
        for ((fold, groups), (layout, clips, run_clips)) in cases.into_iter().flat_map(|c| layouts.map(|l| (c, l))) {
            let x = FloatArray::random(&[run_clips * T, 6, 5, 6], 11);
            let nodes = vec![n("Identity", "shift", &["x"], &["moved"]), n("Relu", "relu", &["moved"], &["y"])];
            let record = identity_record("x", fold as i64, groups);
            let mut g = graph(nodes, vec![], 6, "y");
            g.input = vec![value_info("x", &[if clips < 0 { -1 } else { clips * T as i64 }, 6, 5, 6])];
            let (five, count) = lifted_in(&g, &[record], 13, layout);
            assert_eq!(count, 1);
            assert!(!five.node.iter().any(|n| n.op_type() == "Identity"));
            let masked = five.node.iter().any(|n| n.op_type() == "Mul");
            assert_eq!(masked, layout == Layout::Depth && clips != 1, "{layout:?}, {clips} clips");
            let got = run(&five, 13, &x);
            let mut want = shifted(&x, fold, groups);
            want.data.iter_mut().for_each(|v| *v = v.max(0.0));
            // Bit for bit but for the sign of a zero: the depth's mask multiplies a negative value
            // from the next clip by 0.
            let bits =
                |a: &FloatArray| a.data.iter().map(|v| if *v == 0.0 { 0 } else { v.to_bits() }).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{groups:?}, {layout:?}, {clips} clips");
        }
    }

    #[test]
    fn a_depthwise_convolution_runs_on_the_frames_where_they_outnumber_its_inside_outputs() {
        // A 3x3 depthwise convolution on 5x6 frames has 3x4 outputs whose window lies inside: along
        // a depth of more frames than 4 it runs on the frames in 2D, else as a 3D convolution. The
        // depth is the batch where known, else two clips (8). Either way the output is the 2D
        // graph's on the shifted input.
        let cases = [
            // (declared batch, clips run, strides, on the frames)
            (-1, 3, [1, 1], true),
            (3 * T as i64, 3, [1, 1], true),
            (T as i64, 1, [1, 1], false),
            (-1, 3, [2, 2], false),
        ];
        for (batch, clips, strides, on_frames) in cases {
            let groups = &[Neighbour::Next, Neighbour::Previous][..];
            let conv = with_attrs(
                n("Conv", "dw", &["moved", "w", "b"], &["c"]),
                vec![int_attr("group", 6), ints_attr("pads", &[1, 1, 1, 1]), ints_attr("strides", &strides)],
            );
            let nodes = vec![n("Identity", "shift", &["x"], &["moved"]), conv, n("Relu", "relu", &["c"], &["y"])];
            let record = identity_record("x", 1, groups);
            let mut g = graph(nodes, vec![floats("w", &[6, 1, 3, 3], 1), floats("b", &[6], 2)], 6, "y");
            g.input = vec![value_info("x", &[batch, 6, 5, 6])];
            let (five, count) = lifted_in(&g, &[record], 13, Layout::Depth);
            assert_eq!(count, 1);
            let ops: Vec<&str> = five.node.iter().map(|n| n.op_type()).collect();
            assert_eq!(ops.contains(&"Pad"), on_frames, "{batch}, {strides:?}: {ops:?}");
            assert_eq!(ops.iter().filter(|o| **o == "Transpose").count(), if on_frames { 4 } else { 2 }, "{ops:?}");
            let x = FloatArray::random(&[clips * T, 6, 5, 6], 13);
            let (want, got) = (run(&g, 13, &shifted(&x, 1, groups)), run(&five, 13, &x));
            let diff = want.max_abs_diff(&got);
            assert!(diff < 1e-5, "{batch}, {strides:?}: {diff}");
        }
    }

    #[test]
    fn a_weight_whose_first_dim_equals_a_fixed_batch_is_not_frames() {
        // Two clips of 4 frames fixed in the file, and a convolution of 8 filters: its weight,
        // [8, 6, 1, 1], is rank 4 with the batch's first dim, but a constant. Taken for frames, it
        // entered the volume and the convolution went back to 2D, and with it the rest of the graph.
        for layout in [Layout::Clips, Layout::Depth] {
            let nodes = vec![
                n("Identity", "shift", &["x"], &["moved"]),
                n("Conv", "conv", &["moved", "w"], &["c"]),
                n("Relu", "relu", &["c"], &["y"]),
            ];
            let record = identity_record("x", 1, &[Neighbour::Next]);
            let mut g = graph(nodes, vec![floats("w", &[2 * T as i64, 6, 1, 1], 1)], 6, "y");
            g.input = vec![value_info("x", &[2 * T as i64, 6, 5, 6])];
            let (five, count) = lifted_in(&g, &[record], 13, layout);
            assert_eq!(count, 1);
            let names: Vec<&str> = five.node.iter().map(|n| n.name()).collect();
            assert!(names.contains(&"conv/volume") && names.contains(&"relu/volume"), "{layout:?}: {names:?}");
            let x = FloatArray::random(&[2 * T, 6, 5, 6], 3);
            let (want, got) = (run(&g, 13, &shifted(&x, 1, &[Neighbour::Next])), run(&five, 13, &x));
            let diff = want.max_abs_diff(&got);
            assert!(diff < 1e-5, "{layout:?}: {diff}");
        }
    }

    #[test]
    fn a_shift_whose_input_stays_2d_keeps_its_2d_form() {
        // The Transpose (no rule) sends the Relu's output back to 2D before the site, and nothing
        // enters again: the record's nodes stay, and a volume with no shift in it is not kept.
        let nodes = vec![
            n("Relu", "relu", &["x"], &["r"]),
            with_attrs(n("Transpose", "t", &["r"], &["tx"]), vec![ints_attr("perm", &[0, 1, 3, 2])]),
            n("Identity", "shift", &["tx"], &["moved"]),
            n("Sigmoid", "sig", &["moved"], &["y"]),
        ];
        let record = identity_record("tx", 1, &[Neighbour::Next]);
        let g = graph(nodes, vec![], 6, "y");
        let (five, count) = lifted(&g, &[record], 13);
        assert_eq!(count, 0);
        assert_eq!(five, g);
    }
}
