//! Turns a plan into a [`Patch`]: the shift subgraphs, written in the operator forms the model's
//! opset defines, the edges to rewire, and (the stream form) the nodes to replace.
//! [`Patch::apply`] is the one place the model changes.
//!
//! The shift is plain ONNX that onnxruntime, OpenVINO, tract and TVM all convert (no custom op, no
//! zeros-then-assign), one form per file: [`stream`] (where the channel blocks align: the site's
//! tensor computed in two halves, the consumer convolution split; its head moved offline by one
//! Gather over rows, [`rows`]), [`batch`] (offline, from opset 10: along the batch axis, no
//! Reshape; with the clip-border masks and row indices the graph's sites share, [`FrameMasks`]),
//! [`clip`] (offline where the stream form does not apply, and before opset 10: on a
//! `[N, T, C, H*W]` view), [`scatter`] (offline with `--shift-form tract`: the head shifted
//! on its own clip view and written back by a ScatterND), [`online`] (one frame, with buffers).
//! With `--shift-form openvino` offline, [`volume`] then rewrites the patched graph on each clip
//! as `[N, C, T, H, W]`, every shift the emitters recorded one depthwise convolution over T.

mod batch;
pub use batch::FrameMasks;
mod clip;
pub mod consensus;
pub(crate) mod online;
mod rows;
mod scatter;
pub mod stream;
mod temporal_pool;
pub mod volume;

use crate::config::{Config, ShiftForm};
use crate::onnx::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, NodeProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::plan::{Plan, Site};
use crate::tensor::int64_vec;
use std::collections::{HashMap, HashSet};

/// Everything a rewrite changes, applied in one place.
#[derive(Debug, Default)]
pub struct Patch {
    /// Nodes to insert right after the node at the index (`None`: before the first node).
    pub inserts: Vec<(Option<usize>, Vec<NodeProto>)>,
    pub initializers: Vec<TensorProto>,
    /// (node, input slot, new tensor name).
    pub rewires: Vec<(usize, usize, String)>,
    /// Graph inputs to add right after the model's own data inputs, and graph outputs to append.
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    pub metadata: Vec<StringStringEntryProto>,
    /// Tensors renamed everywhere but in the graph's outputs (old, new): a new node then produces
    /// the output under its old name.
    pub renames: Vec<(String, String)>,
    /// New dims of graph outputs whose shape the patch changes.
    pub output_dims: Vec<(String, Vec<tensor_shape_proto::Dimension>)>,
    /// Nodes replaced (the stream form's split convolutions): the node at the index gives way to
    /// the nodes listed, in its place.
    pub replacements: Vec<(usize, Vec<NodeProto>)>,
    /// Initializers and value_info entries of tensors the patch leaves without a reader (weights
    /// partitioned) or without a producer (tensors computed in halves).
    pub removed_initializers: Vec<String>,
    pub removed_value_info: Vec<String>,
    /// Shapes to declare in value_info (the pooled tensor's).
    pub value_info: Vec<ValueInfoProto>,
    /// Masks shared by the sites, placed before the first node.
    pub frame_masks: FrameMasks,
    /// Each site's shift as written (`--shift-form openvino` offline), for [`volume::lift`].
    pub shifts: Vec<volume::ShiftRecord>,
}

impl Patch {
    /// Applies the patch. Node indices refer to the graph the plan was made for.
    pub fn apply(self, graph: &mut GraphProto, metadata: &mut Vec<StringStringEntryProto>) {
        for (node, slot, name) in self.rewires {
            graph.node[node].input[slot] = name;
        }
        let mut replacements: HashMap<usize, Vec<NodeProto>> = self.replacements.into_iter().collect();
        for (old, new) in &self.renames {
            for n in graph.node.iter_mut().chain(replacements.values_mut().flatten()) {
                for t in n.input.iter_mut().chain(n.output.iter_mut()).filter(|t| *t == old) {
                    t.clone_from(new);
                }
            }
            for vi in graph.value_info.iter_mut().filter(|v| v.name() == old) {
                vi.name = Some(new.clone());
            }
        }
        for (name, dims) in self.output_dims {
            let out = graph.output.iter_mut().find(|o| o.name() == name);
            if let Some(type_proto::Value::TensorType(t)) =
                out.and_then(|o| o.r#type.as_mut()).and_then(|t| t.value.as_mut())
            {
                t.shape = Some(TensorShapeProto { dim: dims });
            }
        }
        let mut inserts = self.inserts;
        inserts.insert(0, (None, self.frame_masks.nodes));
        // Stable: sites after the same node keep plan order.
        inserts.sort_by_key(|(after, _)| after.map_or(0, |a| a + 1));
        let old = std::mem::take(&mut graph.node);
        let mut nodes = Vec::with_capacity(old.len() + inserts.iter().map(|(_, n)| n.len()).sum::<usize>());
        let mut pending = inserts.into_iter().peekable();
        while let Some((_, ns)) = pending.next_if(|(after, _)| after.is_none()) {
            nodes.extend(ns);
        }
        for (i, node) in old.into_iter().enumerate() {
            match replacements.remove(&i) {
                Some(r) => nodes.extend(r),
                None => nodes.push(node),
            }
            while let Some((_, ns)) = pending.next_if(|(after, _)| *after == Some(i)) {
                nodes.extend(ns);
            }
        }
        graph.node = nodes;
        // Before IR 4 initializers may be listed as inputs too; new inputs go after the data inputs
        // so that positional feeding sees the model's own inputs first.
        let at = graph
            .input
            .iter()
            .rposition(|i| !graph.initializer.iter().any(|t| t.name() == i.name()))
            .map_or(0, |p| p + 1);
        graph.input.splice(at..at, self.inputs);
        graph.output.extend(self.outputs);
        let removed: HashSet<&str> = self.removed_initializers.iter().map(String::as_str).collect();
        graph.initializer.retain(|t| !removed.contains(t.name()));
        graph.initializer.extend(self.frame_masks.inits);
        graph.initializer.extend(self.initializers);
        let removed: HashSet<&str> = self.removed_value_info.iter().map(String::as_str).collect();
        graph.value_info.retain(|v| !removed.contains(v.name()));
        graph.value_info.extend(self.value_info);
        metadata.extend(self.metadata);
    }
}

/// The names, under a site's prefix, of its online buffer's input and output (`<prefix>/buffer_in`):
/// the buffer list, the stream writer's heads and the Slice that makes the output agree on them.
pub(crate) const BUFFER_IN: &str = "buffer_in";
pub(crate) const BUFFER_OUT: &str = "buffer_out";
/// The unshifted tensor joined back from an online site's two slices (see [`online`]).
pub(crate) const REJOINED: &str = "rejoined";

/// A node with one output.
pub(crate) fn node(
    op: &str,
    name: &str,
    input: Vec<String>,
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input,
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub(crate) fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// Builds the nodes of one site, naming everything under the site's prefix.
struct Emitter<'a> {
    prefix: &'a str,
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// The tensor holding what a real zero is in the shifted tensor's type, where it is not 0 (a
    /// quantized tensor's zero point): frames outside the clip are padded with it.
    zero: Option<String>,
    /// The graph's frame masks, shared by its sites (offline, a symbolic batch).
    masks: Option<&'a mut FrameMasks>,
}

impl<'a> Emitter<'a> {
    fn new(prefix: &'a str, opset: i64) -> Emitter<'a> {
        Emitter { prefix, opset, nodes: Vec::new(), inits: Vec::new(), zero: None, masks: None }
    }

    fn name(&self, what: &str) -> String {
        format!("{}/{what}", self.prefix)
    }

    /// What a real zero is in `site`'s tensor: the zero point where one is set, else a new scalar 0
    /// of its type (float32 where unknown).
    fn zero(&mut self, site: &Site) -> String {
        if let Some(z) = &self.zero {
            return z.clone();
        }
        let z = self.name("zero");
        self.inits.push(crate::tensor::zero_scalar(&z, site.elem_type.unwrap_or(1)));
        z
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.name(output);
        self.nodes.push(node(op, &self.name(name), inputs, &out, attribute));
        out
    }

    fn constant(&mut self, name: &str, values: &[i64]) -> String {
        let n = self.name(name);
        self.inits.push(int64_vec(&n, values));
        n
    }

    /// `data[.., starts:ends, ..]` on `axes`, whose full sizes are `dims`; inputs from opset 10.
    /// Before 10 Slice takes attributes, a form TVM's ONNX frontend cannot convert: a Split per
    /// axis (into the parts before, inside and after the range, keeping the inside) says the same
    /// in a form every runtime converts.
    fn slice(&mut self, what: &str, data: &str, starts: &[i64], ends: &[i64], axes: &[i64], dims: &[i64]) -> String {
        let name = format!("Slice_{what}");
        if self.opset >= 10 {
            let s = self.constant(&format!("{what}_starts"), starts);
            let e = self.constant(&format!("{what}_ends"), ends);
            let a = self.constant(&format!("{what}_axes"), axes);
            return self.node("Slice", &name, vec![data.into(), s, e, a], what, vec![]);
        }
        let mut x = data.to_string();
        for (k, &axis) in axes.iter().enumerate() {
            let (start, end, dim) = (starts[k], ends[k], dims[k]);
            if start == 0 && end >= dim {
                continue;
            }
            let parts: Vec<i64> = [start, end - start, dim - end].into_iter().filter(|&p| p > 0).collect();
            let keep = usize::from(start > 0);
            let stem = if k + 1 == axes.len() { what.to_string() } else { format!("{what}_axis{axis}") };
            let outputs: Vec<String> = (0..parts.len())
                .map(|i| if i == keep { self.name(&stem) } else { self.name(&format!("{stem}_unused{i}")) })
                .collect();
            self.nodes.push(NodeProto {
                op_type: Some("Split".into()),
                name: Some(self.name(&format!("Split_{stem}"))),
                input: vec![x],
                output: outputs.clone(),
                attribute: vec![int_attr("axis", axis), ints_attr("split", &parts)],
                ..Default::default()
            });
            x = outputs[keep].clone();
        }
        if x == data {
            // The whole tensor: still a tensor of this name (an online buffer output is one).
            x = self.node("Identity", &format!("Identity_{what}"), vec![x], what, vec![]);
        }
        x
    }

    /// Zero frames on the time axis (axis 1 of `[N, T, C, HW]`): one before or one after.
    fn pad_time(&mut self, what: &str, data: &str, before: bool) -> String {
        let pads: [i64; 8] = if before { [0, 1, 0, 0, 0, 0, 0, 0] } else { [0, 0, 0, 0, 0, 1, 0, 0] };
        self.pad(what, data, &pads)
    }

    /// Zeros around a 4D tensor, `pads` being all begins then all ends; attributes before opset 11.
    fn pad(&mut self, what: &str, data: &str, pads: &[i64; 8]) -> String {
        let name = format!("Pad_{what}");
        let out = format!("{what}_padded");
        if self.opset < 11 {
            let attrs = vec![
                AttributeProto {
                    name: Some("mode".into()),
                    r#type: Some(AttributeType::String as i32),
                    s: Some("constant".into()),
                    ..Default::default()
                },
                ints_attr("pads", pads),
                AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(AttributeType::Float as i32),
                    f: Some(0.0),
                    ..Default::default()
                },
            ];
            self.node("Pad", &name, vec![data.into()], &out, attrs)
        } else {
            let p = self.constant(&format!("{what}_pads"), pads);
            let inputs = [data.to_string(), p].into_iter().chain(self.zero.clone()).collect();
            self.node("Pad", &name, inputs, &out, vec![])
        }
    }
}

/// Whether a site that is not a stream site shifts along the batch axis offline (else on a clip view).
///
/// The clip view ends in a Reshape, over which tract cannot pull the Downsample of a strided 1x1
/// convolution: such a site gets the batch form whenever the opset allows it. The default's sites
/// that the stream form does not take get the clip view too: tract runs a convolution fed by the
/// batch form's channel Concat as one product per part, and on MobileNetV2, MobileNetV3 and
/// EfficientNet-B0 the clip view cost 0.08-0.16 less there, onnxruntime and OpenVINO about the same
/// (bench/RESULTS-clip-carrier.md). Quantized sites keep the batch form: in onnxruntime, which
/// QDQ models are made for, the clip view cost an int8 ResNet-50 0.13-0.20 more per clip
/// (bench/RESULTS-qdq-clip.md). So do a QDQ model's sites that shift floats (the pooled tensor
/// before opset 12, a per-channel activation): in such a model OpenVINO 2026.4, compiling with the
/// batch dynamic, quantizes the output of the convolution that reads the clip view wrongly (a
/// quantize_static pre-activation ResNet at opset 11 with `--temporal-pool`: 98 steps off there,
/// logits 9; right with the batch form, with the batch static, or with the clip view's batch-carrier
/// Concat taken out; bench/fixture_sweep.py, stop 34). So do sites whose height or width the model leaves open: the clip
/// view would reshape to a shape computed at run time, which TVM's Relax frontend cannot convert
/// ("Reshape requires the input new shape to be Shape"); the batch form needs no H and W.
pub fn takes_batch_form(site: &Site, config: &Config, opset: i64) -> bool {
    let open = site.height.known().is_none() || site.width.known().is_none();
    opset >= 10
        && match config.shift_form {
            ShiftForm::Batch => true,
            ShiftForm::Clip | ShiftForm::Tract => site.strided_1x1,
            ShiftForm::Stream | ShiftForm::Openvino => {
                site.strided_1x1 || site.quant.is_some() || site.in_qdq_model || open
            }
        }
}

/// The shift subgraph of one site; returns its nodes, initializers and the shifted tensor's name.
pub fn shift_subgraph(
    site: &Site,
    config: &Config,
    opset: i64,
    masks: &mut FrameMasks,
) -> (Vec<NodeProto>, Vec<TensorProto>, String) {
    let mut e = Emitter { masks: Some(masks), ..Emitter::new(&site.prefix, opset) };
    let batch_form = takes_batch_form(site, config, opset);
    let form = |e: &mut Emitter, site: &Site| {
        if batch_form {
            batch::subgraph(e, site, config)
        } else if config.shift_form == ShiftForm::Tract {
            scatter::subgraph(e, site, config).unwrap_or_else(|| clip::subgraph(e, site, config))
        } else {
            clip::subgraph(e, site, config)
        }
    };
    // A QDQ model's consumers read a DequantizeLinear, which runtimes fuse into a quantized
    // convolution: the shift moves the quantized values, padding with the zero point (a real zero
    // once dequantized), and a copy of the DequantizeLinear follows. Moving values is exact in any
    // type, so this equals the float shift of the dequantized tensor. (The clip form pads by the
    // Pad's `value` attribute before opset 11, a float: it shifts the floats there.)
    if site.channels_last {
        let out = on_channels_first(&mut e, site, form);
        return (e.nodes, e.inits, out);
    }
    let out = match site.quant.as_ref().filter(|_| batch_form || opset >= 11) {
        Some(q) => {
            e.zero = Some(q.zero_point.clone());
            let inner = Site { tensor: q.tensor.clone(), elem_type: Some(q.elem_type), ..site.clone() };
            let shifted = form(&mut e, &inner);
            let inputs = vec![shifted, q.scale.clone(), q.zero_point.clone()];
            e.node("DequantizeLinear", "DequantizeLinear", inputs, "shifted_dequantized", vec![])
        }
        None => form(&mut e, site),
    };
    (e.nodes, e.inits, out)
}

/// The stream form's head shifted offline (see [`stream`]), alone: `site` is the head, its
/// `channels` the head's. For tests of the emitted form; the stream writer calls [`head_shift`].
pub fn head_subgraph(
    site: &Site,
    config: &Config,
    opset: i64,
    masks: &mut FrameMasks,
) -> (Vec<NodeProto>, Vec<TensorProto>, String) {
    let mut e = Emitter { masks: Some(masks), ..Emitter::new(&site.prefix, opset) };
    let out = head_shift(&mut e, site, config);
    (e.nodes, e.inits, out)
}

/// The head's shift: one Gather over rows ([`rows`]) where it applies, else the batch form on the
/// head ([`batch::head`]).
fn head_shift(e: &mut Emitter, site: &Site, config: &Config) -> String {
    rows::head(e, site, config).unwrap_or_else(|| batch::head(e, site, config))
}

/// What [`volume::lift`] needs to know of a site's shift, with `--shift-form openvino` offline: not
/// for a quantized tensor, which the lift never takes into 5D. A channels-last site's record is
/// its shift between the Transposes to channels first and back ([`on_channels_first`]): tract's
/// volume takes the Transposes (it runs channels last), and the shift on channels first;
/// OpenVINO's has no channels-last form.
pub(crate) fn shift_record(
    site: &Site,
    config: &Config,
    input: &str,
    output: &str,
    nodes: &[NodeProto],
) -> Option<volume::ShiftRecord> {
    let volume = matches!(config.shift_form, ShiftForm::Openvino | ShiftForm::Tract);
    if !volume || config.online || site.quant.is_some() {
        return None;
    }
    let transpose = |n: &NodeProto| n.op_type() == "Transpose";
    let (input, output, nodes) = match nodes {
        [to_nchw, inner @ .., to_nhwc]
            if site.channels_last
                && config.shift_form == ShiftForm::Tract
                && transpose(to_nchw)
                && transpose(to_nhwc) =>
        {
            (to_nchw.output.first()?.as_str(), to_nhwc.input.first()?.as_str(), inner)
        }
        _ if site.channels_last => return None,
        _ => (input, output, nodes),
    };
    Some(volume::ShiftRecord {
        input: input.to_string(),
        output: output.to_string(),
        nodes: nodes.iter().map(|n| n.name().to_string()).collect(),
        channels: site.channels,
        fold: site.fold,
        segments: site.segments,
        elem_type: site.elem_type.unwrap_or(1),
        groups: config.moved_groups(),
    })
}

/// The online form of one site (see [`online`]): returns its nodes, initializers and the shifted
/// tensor's name.
pub fn online_subgraph(site: &Site, opset: i64, spatial: (i64, i64)) -> (Vec<NodeProto>, Vec<TensorProto>, String) {
    let mut e = Emitter::new(&site.prefix, opset);
    let out = if site.channels_last {
        on_channels_first(&mut e, site, |e, inner| online::subgraph(e, inner, spatial))
    } else {
        online::subgraph(&mut e, site, spatial)
    };
    (e.nodes, e.inits, out)
}

/// A channels-last site's shift: `form` on the tensor's NCHW transpose, transposed back. The
/// shift moves whole channels of whole frames, so this equals shifting the `[N, H, W, C]` tensor
/// along its last axis; the online buffer is then `[N, fold, H, W]` as everywhere else.
fn on_channels_first(e: &mut Emitter, site: &Site, form: impl FnOnce(&mut Emitter, &Site) -> String) -> String {
    let perm = |p: &[i64]| vec![ints_attr("perm", p)];
    let nchw = e.node("Transpose", "to_nchw", vec![site.tensor.clone()], "nchw", perm(&[0, 3, 1, 2]));
    let shifted = form(e, &Site { tensor: nchw, channels_last: false, ..site.clone() });
    e.node("Transpose", "to_nhwc", vec![shifted], "shifted_nhwc", perm(&[0, 2, 3, 1]))
}

/// The state one online site carries from frame to frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// Graph input holding the previous frame's channels `[0, fold)` (zeros before the first frame).
    pub input: String,
    /// Graph output giving the current frame's channels `[0, fold)`, to feed back as `input`.
    pub output: String,
    /// `[N, fold, H, W]`, N being the model's own batch dimension.
    pub shape: Vec<tensor_shape_proto::Dimension>,
}

impl Buffer {
    /// The shape as text: sizes as numbers, the batch by its symbol (`N` when it has none).
    pub fn shape_text(&self) -> Vec<String> {
        self.shape
            .iter()
            .map(|d| match &d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => v.to_string(),
                Some(tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => p.clone(),
                _ => "N".into(),
            })
            .collect()
    }
}

/// A shape dimension as the graph declares it: a size, a symbol, or nothing.
pub(super) fn dimension(d: &crate::shapes::Dim) -> tensor_shape_proto::Dimension {
    use crate::shapes::Dim;
    use tensor_shape_proto::dimension::Value;
    let value = match d {
        Dim::Known(v) => Some(Value::DimValue(*v)),
        Dim::Sym(s) => Some(Value::DimParam(s.clone())),
        Dim::Unknown => None,
    };
    tensor_shape_proto::Dimension { value, denotation: None }
}

pub(super) fn tensor_info(name: &str, elem_type: i32, dims: &[tensor_shape_proto::Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for ch in s.chars() {
        match ch {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            _ => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// The metadata value listing the buffers in order, as JSON a runtime wrapper can read:
/// `[{"input": "...", "output": "...", "shape": ["N", 8, 56, 56]}, ...]`.
pub fn buffers_json(buffers: &[Buffer]) -> String {
    let items: Vec<String> = buffers
        .iter()
        .map(|b| {
            let shape: Vec<String> = b
                .shape_text()
                .into_iter()
                .map(|d| if d.parse::<i64>().is_ok() { d } else { json_string(&d) })
                .collect();
            format!(
                "{{\"input\": {}, \"output\": {}, \"shape\": [{}]}}",
                json_string(&b.input),
                json_string(&b.output),
                shape.join(", ")
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The metadata key under which online models list their buffers.
pub const BUFFERS_KEY: &str = "tsm-rewrite.buffers";

/// What an online rewrite needs beyond the plan: each site's height and width, and the frame
/// input's batch dimension and element type, which the buffers share.
pub struct OnlineShapes {
    pub spatial: Vec<(i64, i64)>,
    pub batch: tensor_shape_proto::Dimension,
    pub elem_type: i32,
}

/// The patch for a whole plan.
pub fn emit(plan: &Plan, config: &Config, opset: i64, metadata_value: String, masks: FrameMasks) -> Patch {
    let mut patch = Patch { frame_masks: masks, ..Patch::default() };
    // First, so that a shift of the pooled tensor inserted after the same node comes after it.
    if let Some(pool) = &plan.pool {
        let mut e = Emitter::new(&pool.prefix, opset);
        let out = temporal_pool::subgraph(&mut e, pool);
        patch.value_info.extend(temporal_pool::declared(pool, &out));
        patch.inserts.push((pool.after, e.nodes));
        patch.initializers.extend(e.inits);
        patch.rewires.extend(pool.edges.iter().map(|&(n, s)| (n, s, out.clone())));
    }
    for site in plan.sites.iter().filter(|s| s.stream.is_none()) {
        let (nodes, inits, out) = shift_subgraph(site, config, opset, &mut patch.frame_masks);
        if let Some(r) = shift_record(site, config, &site.tensor, &out, &nodes) {
            patch.shifts.push(r);
        }
        patch.inserts.push((site.after, nodes));
        patch.initializers.extend(inits);
        patch.rewires.extend(site.edges.iter().map(|&(n, s)| (n, s, out.clone())));
    }
    patch.metadata.push(StringStringEntryProto { key: Some("tsm-rewrite".into()), value: Some(metadata_value) });
    patch
}

/// The patch for an online rewrite of a plan, and its buffers in plan (network-depth) order.
pub fn emit_online(plan: &Plan, shapes: &OnlineShapes, opset: i64, metadata_value: String) -> (Patch, Vec<Buffer>) {
    let mut patch = Patch::default();
    let mut buffers = Vec::new();
    for (site, &(h, w)) in plan.sites.iter().zip(&shapes.spatial) {
        // A stream site's buffers are written by `stream::emit`.
        if site.stream.is_none() {
            let (nodes, inits, out) = online_subgraph(site, opset, (h, w));
            let rejoined = format!("{}/{REJOINED}", site.prefix);
            patch.rewires.extend(site.rejoined.iter().map(|&(n, s)| (n, s, rejoined.clone())));
            patch.inserts.push((site.after, nodes));
            patch.initializers.extend(inits);
            patch.rewires.extend(site.edges.iter().map(|&(n, s)| (n, s, out.clone())));
        }
        let known = |v: i64| dimension(&crate::shapes::Dim::Known(v));
        let buffer = Buffer {
            input: format!("{}/{BUFFER_IN}", site.prefix),
            output: format!("{}/{BUFFER_OUT}", site.prefix),
            shape: vec![shapes.batch.clone(), known(site.fold), known(h), known(w)],
        };
        // The shifted tensor's own type: a float16 model converted with float32 inputs and outputs
        // (`keep_io_types`) computes in float16 behind a Cast of its frame.
        let elem_type = site.elem_type.unwrap_or(shapes.elem_type);
        patch.inputs.push(tensor_info(&buffer.input, elem_type, &buffer.shape));
        patch.outputs.push(tensor_info(&buffer.output, elem_type, &buffer.shape));
        buffers.push(buffer);
    }
    patch.metadata.push(StringStringEntryProto { key: Some("tsm-rewrite".into()), value: Some(metadata_value) });
    patch.metadata.push(StringStringEntryProto { key: Some(BUFFERS_KEY.into()), value: Some(buffers_json(&buffers)) });
    (patch, buffers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Direction;
    use crate::shapes::Dim;

    /// A site emitted on its own, no graph to share frame masks with.
    fn shift_subgraph_alone(site: &Site, c: &Config, opset: i64) -> (Vec<NodeProto>, Vec<TensorProto>, String) {
        shift_subgraph(site, c, opset, &mut FrameMasks::default())
    }

    fn site(h: Dim) -> Site {
        Site {
            block_name: "/l/Add".into(),
            tensor: "x".into(),
            batch: Dim::Sym("N".into()),
            channels: 16,
            fold: 2,
            height: h,
            width: Dim::Known(4),
            elem_type: Some(1),
            segments: 8,
            edges: vec![(3, 0)],
            into: vec!["conv".into()],
            after: Some(1),
            prefix: "/l/tsm".into(),
            ..Site::default()
        }
    }

    fn ops(nodes: &[NodeProto]) -> Vec<String> {
        nodes.iter().map(|n| format!("{}({})", n.op_type(), n.input.len())).collect()
    }

    #[test]
    fn slice_and_pad_take_attributes_before_opsets_10_and_11() {
        let c = Config::default();
        let (n9, i9, out) = shift_subgraph_alone(&site(Dim::Known(4)), &c, 9);
        // Slice-1 becomes a Split per axis (TVM cannot convert Slice-1); the next group is frames
        // [1, T) of channels [0, fold): Split on T into [1, 7], then on C into [2, 14].
        assert_eq!(
            ops(&n9),
            [
                "Reshape(2)",
                "Split(1)",
                "Split(1)",
                "Pad(1)",
                "Split(1)",
                "Split(1)",
                "Pad(1)",
                "Split(1)",
                "Concat(3)",
                "Reshape(2)"
            ]
        );
        let split = |n: &NodeProto| n.attribute.iter().find(|a| a.name() == "split").unwrap().ints.clone();
        assert_eq!((split(&n9[1]), split(&n9[2])), (vec![1, 7], vec![2, 14]));
        assert_eq!(n9[2].output, ["/l/tsm/next", "/l/tsm/next_unused1"]);
        assert_eq!(n9[3].input, ["/l/tsm/next"]);
        assert_eq!(split(&n9[7]), vec![4, 12]);
        assert_eq!(out, "/l/tsm/shifted");
        assert_eq!(i9.len(), 2);
        // With H open the clip view computes no shape: the frames side by side on channels
        // ([-1, T*C, 0, 0]), one Split into each frame's next group, previous group and rest,
        // joined in shifted order, a Where of zeros where the neighbour is outside the clip.
        let (nodes, inits, out) = shift_subgraph_alone(&site(Dim::Sym("H".into())), &c, 9);
        assert_eq!(ops(&nodes), ["Reshape(2)", "Split(1)", "Where(3)", "Where(3)", "Concat(24)", "Reshape(2)"]);
        assert_eq!(split(&nodes[1]), [2, 2, 12].repeat(8));
        let part = |f: usize, g: usize| format!("/l/tsm/part{f}_{g}");
        let joined = &nodes[4].input;
        // frame 0: next group of frame 1, zeros (no frame before), its own rest
        assert_eq!(joined[..3], [part(1, 0), "/l/tsm/zeros0_1".into(), part(0, 2)]);
        // frame 7: zeros (no frame after), previous group of frame 6, its own rest
        assert_eq!(joined[21..], ["/l/tsm/zeros7_0".into(), part(6, 1), part(7, 2)]);
        assert_eq!(
            (&nodes[2].input[1], &nodes[3].input[1]),
            (&part(0, 1), &part(7, 0)),
            "zeros shaped as the part they stand for"
        );
        let shape =
            |n: &NodeProto| crate::tensor::int_values(inits.iter().find(|i| i.name() == n.input[1]).unwrap()).unwrap();
        assert_eq!((shape(&nodes[0]), shape(&nodes[5])), (vec![-1, 128, 0, 0], vec![-1, 16, 0, 0]));
        assert_eq!(out, "/l/tsm/shifted");
    }

    #[test]
    fn a_qdq_models_float_sites_take_the_batch_form_by_default() {
        let float_in_qdq = Site { in_qdq_model: true, ..site(Dim::Known(4)) };
        let default = Config::default();
        assert!(!takes_batch_form(&site(Dim::Known(4)), &default, 13), "a float model's site: the clip view");
        assert!(takes_batch_form(&float_in_qdq, &default, 13));
        // What the user asks for stands; before opset 10 only the clip view exists.
        assert!(!takes_batch_form(&float_in_qdq, &Config { shift_form: ShiftForm::Clip, ..default.clone() }, 13));
        assert!(!takes_batch_form(&float_in_qdq, &default, 9));
        let (nodes, _, _) = shift_subgraph_alone(&float_in_qdq, &default, 11);
        assert!(nodes.iter().all(|n| n.op_type() != "Reshape" || !n.name().contains("clip")), "{:?}", ops(&nodes));
    }

    #[test]
    fn from_opset_10_the_batch_form_shifts_along_the_batch_axis() {
        let c = Config { shift_form: ShiftForm::Batch, ..Config::default() };
        let (nodes, inits, out) = shift_subgraph_alone(&site(Dim::Sym("H".into())), &c, 13);
        // next: frames [1, end) of channels [0, 2), a zero frame after, kept where the frame has a
        // next one in its clip (a [T,1,1,1] constant expanded to the clips at run time).
        assert_eq!(
            ops(&nodes),
            [
                "Slice(4)",
                "Shape(1)",
                "Slice(4)",
                "Div(2)",
                "Concat(2)",
                "Expand(2)",
                "Reshape(2)",
                "Slice(4)",
                "Pad(2)",
                "Where(3)",
                "Expand(2)",
                "Reshape(2)",
                "Slice(4)",
                "Pad(2)",
                "Where(3)",
                "Slice(4)",
                "Concat(4)"
            ]
        );
        assert_eq!(out, "/l/tsm/shifted");
        // First in the Concat, an empty slice of x: its batch symbol is the output's in ONNX's shape
        // inference, which takes a symbol from the first input that has one.
        assert_eq!(nodes[16].input, ["/l/tsm/batch_carrier", "/l/tsm/next_kept", "/l/tsm/prev_kept", "/l/tsm/rest"]);
        assert_eq!(nodes[0].input[0], site(Dim::Known(4)).tensor);
        let v = |n: &str| inits.iter().find(|t| t.name() == n).and_then(crate::tensor::int_values);
        assert_eq!((v("/l/tsm/next_starts"), v("/l/tsm/next_ends")), (Some(vec![1, 0]), Some(vec![i64::MAX, 2])));
        assert_eq!((v("/l/tsm/prev_starts"), v("/l/tsm/prev_ends")), (Some(vec![0, 2]), Some(vec![-1, 4])));
        assert_eq!(
            (v("/l/tsm/next_pads"), v("/l/tsm/prev_pads")),
            (Some(vec![0, 0, 0, 0, 1, 0, 0, 0]), Some(vec![1, 0, 0, 0, 0, 0, 0, 0]))
        );
        let mask = |n: &str| inits.iter().find(|t| t.name() == n).unwrap().raw_data().to_vec();
        assert_eq!(mask("/l/tsm/has_next_in_clip"), [1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(mask("/l/tsm/has_prev_in_clip"), [0, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(mask("/l/tsm/zero"), [0, 0, 0, 0]);
        assert_eq!(v("/l/tsm/batch_carrier_ends"), Some(vec![0]));
        // Opset 10: Pad still takes attributes. A fixed batch needs no carrier.
        let (n10, _, _) = shift_subgraph_alone(&Site { batch: Dim::Known(8), ..site(Dim::Known(4)) }, &c, 10);
        assert_eq!(ops(&n10)[..2], ["Slice(4)", "Pad(1)"]);
        assert_eq!(n10.last().unwrap().input.len(), 3);
    }

    #[test]
    fn from_opset_10_the_clip_view_gives_the_batch_symbol_back() {
        let c = Config { shift_form: ShiftForm::Clip, ..Config::default() };
        let (nodes, inits, out) = shift_subgraph_alone(&site(Dim::Known(4)), &c, 13);
        assert_eq!(
            ops(&nodes),
            [
                "Reshape(2)",
                "Slice(4)",
                "Pad(2)",
                "Slice(4)",
                "Pad(2)",
                "Slice(4)",
                "Concat(3)",
                "Reshape(2)",
                "Slice(4)",
                "Concat(2)"
            ]
        );
        // An empty channel range of the site's tensor, then the frames back from the clip view: the
        // first input with a symbol gives the output its own in ONNX's shape inference.
        let last = nodes.last().unwrap();
        assert_eq!(last.input, ["/l/tsm/batch_carrier", "/l/tsm/shifted_frames"]);
        assert_eq!(last.attribute[0].i, Some(1));
        assert_eq!(out, "/l/tsm/shifted");
        let carrier = &nodes[nodes.len() - 2];
        assert_eq!(carrier.input[0], site(Dim::Known(4)).tensor);
        let v = |n: &str| inits.iter().find(|t| t.name() == n).and_then(crate::tensor::int_values);
        let range = |w: &str| {
            (v(&format!("/l/tsm/{w}_starts")), v(&format!("/l/tsm/{w}_ends")), v(&format!("/l/tsm/{w}_axes")))
        };
        assert_eq!(range("batch_carrier"), (Some(vec![0]), Some(vec![0]), Some(vec![1])));
        // Before opset 10 a Slice cannot take an empty range (it is a Split there): no carrier.
        let (n9, _, _) = shift_subgraph_alone(&site(Dim::Known(4)), &c, 9);
        assert_eq!(n9.last().unwrap().op_type(), "Reshape");
    }

    #[test]
    fn the_tract_form_shifts_the_head_alone_and_scatters_it_back() {
        let c = Config { shift_form: ShiftForm::Tract, ..Config::default() };
        let head_clip = ["Reshape(2)", "Slice(4)", "Pad(2)", "Slice(4)", "Pad(2)", "Concat(2)", "Reshape(2)"];
        // A fixed batch of whole clips: the indices are a constant the graph's sites share.
        let mut masks = FrameMasks::default();
        let fixed = Site { batch: Dim::Known(16), ..site(Dim::Known(4)) };
        let (nodes, inits, out) = shift_subgraph(&fixed, &c, 13, &mut masks);
        let want: Vec<&str> = ["Slice(4)"].iter().chain(&head_clip).chain(&["ScatterND(3)"]).copied().collect();
        assert_eq!(ops(&nodes), want);
        let v = |n: &str| inits.iter().find(|t| t.name() == n).and_then(crate::tensor::int_values);
        assert_eq!((v("/l/tsm/head_starts"), v("/l/tsm/head_ends")), (Some(vec![0]), Some(vec![4])));
        // The head's clip view: [-1, T, 2 * fold, H * W]; its groups take channels [0, 2) and [2, 4).
        assert_eq!(v("/l/tsm/clip_shape"), Some(vec![-1, 8, 4, 16]));
        assert_eq!((v("/l/tsm/prev_starts"), v("/l/tsm/prev_ends")), (Some(vec![0, 2]), Some(vec![7, 4])));
        let scatter = nodes.last().unwrap();
        assert_eq!(scatter.input, ["x", "/tsm/frames/positions0", "/l/tsm/shifted_frames"]);
        assert_eq!(out, scatter.output[0]);
        assert!(masks.nodes.is_empty());
        let positions = &masks.inits[0];
        assert_eq!(positions.dims, [16, 4, 2]);
        assert_eq!(crate::tensor::int_values(positions).unwrap()[..10], [0, 0, 0, 1, 0, 2, 0, 3, 1, 0]);
        // A second site of the same width shares them.
        shift_subgraph(&Site { prefix: "/m/tsm".into(), ..fixed.clone() }, &c, 13, &mut masks);
        assert_eq!(masks.inits.len(), 1);
        // A symbolic batch that a graph input carries: made at run time from the input's frames.
        let input = ValueInfoProto {
            name: Some("in".into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto {
                        dim: vec![tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimParam("N".into())),
                            ..Default::default()
                        }],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut masks = FrameMasks::new(&GraphProto { input: vec![input], ..Default::default() });
        let (nodes, _, _) = shift_subgraph(&site(Dim::Known(4)), &c, 13, &mut masks);
        assert_eq!(nodes.last().unwrap().input[1], "/tsm/frames/positions0");
        assert_eq!(
            ops(&masks.nodes),
            [
                "Slice(4)",
                "Where(3)",
                "Reshape(2)",
                "Cast(1)",
                "CumSum(2)",
                "Cast(1)",
                "Reshape(2)",
                "Add(2)",
                "Mul(2)",
                "Add(2)",
                "Concat(2)"
            ]
        );
        // No indices to make (a batch no input carries), before opset 11 (no ScatterND), or every
        // channel moving: the clip view.
        let clip = |s: &Site, c: &Config, opset: i64| ops(&shift_subgraph(s, c, opset, &mut FrameMasks::default()).0);
        let clip_c = Config { shift_form: ShiftForm::Clip, ..Config::default() };
        assert_eq!(clip(&site(Dim::Known(4)), &c, 13), clip(&site(Dim::Known(4)), &clip_c, 13));
        assert_eq!(clip(&fixed, &c, 10), clip(&fixed, &clip_c, 10));
        let all = Site { fold: 8, ..fixed.clone() };
        assert_eq!(clip(&all, &c, 13), clip(&all, &clip_c, 13));
    }

    #[test]
    fn a_fixed_batch_of_whole_clips_gets_constant_masks() {
        let fixed = Site { batch: Dim::Known(16), elem_type: Some(10), ..site(Dim::Known(4)) };
        let c = Config { direction: Direction::Past, shift_form: ShiftForm::Batch, ..Config::default() };
        let (nodes, inits, _) = shift_subgraph_alone(&fixed, &c, 13);
        assert_eq!(ops(&nodes), ["Slice(4)", "Pad(2)", "Where(3)", "Slice(4)", "Concat(2)"]);
        let has_prev = inits.iter().find(|t| t.name() == "/l/tsm/has_prev").unwrap();
        assert_eq!(has_prev.dims, [16, 1, 1, 1]);
        let want: Vec<u8> = (0..16).map(|i| u8::from(i % 8 > 0)).collect();
        assert_eq!(has_prev.raw_data(), &want[..]);
        // The zero has the tensor's own type (float16 here).
        let zero = inits.iter().find(|t| t.name() == "/l/tsm/zero").unwrap();
        assert_eq!((zero.data_type(), zero.raw_data()), (10, &[0u8, 0][..]));
        let rest = inits.iter().find(|t| t.name() == "/l/tsm/rest_starts").unwrap();
        assert_eq!(crate::tensor::int_values(rest), Some(vec![2]));
        // A fixed batch that does not hold whole clips: the masks are computed at run time.
        let odd = Site { batch: Dim::Known(1), ..fixed };
        let (nodes, _, _) = shift_subgraph_alone(&odd, &c, 13);
        assert!(ops(&nodes).contains(&"Expand(2)".to_string()));
    }

    #[test]
    fn online_site_reads_the_buffer_and_gives_the_current_frame() {
        let (nodes, inits, out) = online_subgraph(&site(Dim::Sym("H".into())), 13, (3, 4));
        let want = ["Reshape(2)", "Slice(4)", "Reshape(2)", "Slice(4)", "Reshape(2)", "Concat(2)", "Reshape(2)"];
        assert_eq!(ops(&nodes), want);
        // The buffer output comes from the flattened frame, as the rest does.
        assert_eq!((nodes[1].input[0].as_str(), nodes[2].output[0].as_str()), ("/l/tsm/x_flat", "/l/tsm/buffer_out"));
        assert_eq!(nodes[4].input[0], "/l/tsm/buffer_in");
        assert_eq!(nodes[5].input, ["/l/tsm/buffer_flat", "/l/tsm/rest"]);
        assert_eq!(out, "/l/tsm/shifted");
        let v = |n: &str| inits.iter().find(|t| t.name() == n).and_then(crate::tensor::int_values);
        // Channels [0, 2) of a 3x4 frame, flattened, and back to [N, 2, 3, 4].
        assert_eq!(
            (v("/l/tsm/buffer_out_flat_starts"), v("/l/tsm/buffer_out_flat_ends")),
            (Some(vec![0]), Some(vec![24]))
        );
        assert_eq!(v("/l/tsm/buffer_shape"), Some(vec![0, 2, 3, 4]));
        // Channels [2, 16) of a 3x4 frame, flattened.
        assert_eq!((v("/l/tsm/rest_starts"), v("/l/tsm/rest_ends")), (Some(vec![24]), Some(vec![192])));
        // 0 copies the batch, so shape inference keeps its symbol.
        assert_eq!(v("/l/tsm/frame_shape"), Some(vec![0, 16, 3, 4]));
        // Opset 9: Splits, the buffer keeping its name.
        let (nodes, _, _) = online_subgraph(&site(Dim::Known(4)), 9, (4, 4));
        assert_eq!(ops(&nodes), ["Split(1)", "Reshape(2)", "Split(1)", "Reshape(2)", "Concat(2)", "Reshape(2)"]);
        assert_eq!(nodes[0].output, ["/l/tsm/buffer_out", "/l/tsm/buffer_out_unused1"]);
        let all = Site { fold: 16, ..site(Dim::Known(4)) };
        let (nodes, _, _) = online_subgraph(&all, 9, (4, 4));
        assert_eq!(
            (ops(&nodes), nodes[0].output.clone()),
            (vec!["Identity(1)".to_string(), "Identity(1)".into()], vec!["/l/tsm/buffer_out".to_string()])
        );
        // A fold of every channel: the buffer is the shifted tensor.
        let all = Site { fold: 16, ..site(Dim::Known(4)) };
        let (nodes, _, _) = online_subgraph(&all, 13, (4, 4));
        assert_eq!(ops(&nodes), ["Slice(4)", "Identity(1)"]);
    }

    #[test]
    fn online_patch_adds_buffers_after_the_data_inputs_and_lists_them() {
        let plan = Plan { sites: vec![site(Dim::Known(4))], ..Default::default() };
        let batch = tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimParam("batch".into())),
            ..Default::default()
        };
        let shapes = OnlineShapes { spatial: vec![(4, 4)], batch, elem_type: 1 };
        let (mut patch, buffers) = emit_online(&plan, &shapes, 13, "rec".into());
        assert_eq!(buffers[0].shape_text(), ["batch", "2", "4", "4"]);
        assert_eq!(
            patch.metadata[1].value(),
            r#"[{"input": "/l/tsm/buffer_in", "output": "/l/tsm/buffer_out", "shape": ["batch", 2, 4, 4]}]"#
        );
        // Before IR 4 an initializer may be listed as an input: the buffer goes before it.
        let mut g = GraphProto {
            input: vec![
                ValueInfoProto { name: Some("x".into()), ..Default::default() },
                ValueInfoProto { name: Some("w".into()), ..Default::default() },
            ],
            initializer: vec![crate::tensor::int64_vec("w", &[1])],
            ..Default::default()
        };
        (patch.inserts, patch.rewires) = (vec![], vec![]);
        patch.apply(&mut g, &mut vec![]);
        let names: Vec<&str> = g.input.iter().map(|i| i.name()).collect();
        assert_eq!(names, ["x", "/l/tsm/buffer_in", "w"]);
        assert_eq!(g.output[0].name(), "/l/tsm/buffer_out");
    }

    #[test]
    fn buffer_names_are_escaped_in_the_metadata() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn apply_inserts_after_the_producer_and_rewires() {
        let mut g = GraphProto {
            node: (0..3)
                .map(|i| NodeProto { name: Some(format!("n{i}")), input: vec!["a".into()], ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let mk = |n: &str| NodeProto { name: Some(n.into()), ..Default::default() };
        let patch = Patch {
            inserts: vec![(Some(1), vec![mk("s1")]), (None, vec![mk("s0")]), (Some(1), vec![mk("s2")])],
            rewires: vec![(2, 0, "b".into())],
            ..Default::default()
        };
        let mut md = vec![];
        patch.apply(&mut g, &mut md);
        let names: Vec<&str> = g.node.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["s0", "n0", "n1", "s1", "s2", "n2"]);
        assert_eq!(g.node[5].input[0], "b");
    }

    #[test]
    fn frame_masks_are_made_once_per_graph_and_shared_by_the_sites() {
        let graph =
            GraphProto { input: vec![crate::graph::tests::value_info("input", &[-1, 3, 8, 8])], ..Default::default() };
        let c = Config { shift_form: ShiftForm::Batch, ..Config::default() };
        let mut masks = FrameMasks::new(&graph);
        let (first, _, _) = shift_subgraph(&site(Dim::Known(4)), &c, 13, &mut masks);
        let second_site =
            Site { tensor: "y".into(), prefix: "/m/tsm".into(), channels: 32, fold: 4, ..site(Dim::Known(4)) };
        let (second, _, _) = shift_subgraph(&second_site, &c, 13, &mut masks);
        // One frame index read from the input, one mask per neighbour, whatever the sites' widths.
        let made: Vec<&str> = masks.nodes.iter().map(|n| n.name()).collect();
        assert_eq!(
            made,
            [
                "/tsm/frames/Slice_first",
                "/tsm/frames/Where_ones",
                "/tsm/frames/Reshape_ones",
                "/tsm/frames/Cast_ones",
                "/tsm/frames/CumSum",
                "/tsm/frames/Cast_frame",
                "/tsm/frames/Mod",
                "/tsm/frames/mask0/Gather",
                "/tsm/frames/mask1/Gather"
            ]
        );
        assert_eq!(masks.nodes[0].input[0], "input", "the ones are made from the input");
        for nodes in [&first, &second] {
            let wheres: Vec<&str> =
                nodes.iter().filter(|n| n.op_type() == "Where").map(|n| n.input[0].as_str()).collect();
            assert_eq!(wheres, ["/tsm/frames/mask0", "/tsm/frames/mask1"]);
            assert!(!nodes.iter().any(|n| n.op_type() == "Expand"));
        }
        // A batch that is not the input's (after --temporal-pool), or opset 10 (no CumSum): the
        // site expands its own masks.
        for (batch, opset) in [(Dim::Unknown, 13), (Dim::Sym("N".into()), 10)] {
            let (nodes, _, _) = shift_subgraph(&Site { batch, ..site(Dim::Known(4)) }, &c, opset, &mut masks);
            assert_eq!(nodes.iter().filter(|n| n.op_type() == "Expand").count(), 2, "opset {opset}");
        }
        assert_eq!(masks.nodes.len(), 9);
    }
}
