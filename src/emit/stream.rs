//! The stream form (the default where channel blocks align): instead of slicing the shifted channels
//! out of the site's tensor `x` and joining them back, `x` is computed as two tensors from the start,
//! its head (channels `[0, s)`: the `m` that move in time, rounded up to a whole block) and its tail
//! (`[s, C)`), and the convolution that reads the shifted tensor becomes two convolutions and an Add.
//!
//! - Each convolution that produces (part of) `x` is split by output channel into a head and a tail
//!   convolution; Relu and the like, pools, and the residual Add that lead to `x` are applied to
//!   each half. That is how a ResNet's residual stream is carried: split once, it stays split from
//!   block to block.
//! - The consumer `Conv(x, W, B)` becomes `Conv(tail, W[:, s:], B) + Conv(moved, W[:, :s])`: `moved`
//!   is the head shifted offline, by one Gather over its rows of `fold` channels after a zero
//!   frame ([`rows`](super::rows); `[m, s)` rows gathered in place), or where that does not apply
//!   the [`batch`](super::batch) form on `s` channels; online the buffer input, followed by the
//!   head's `[m, s)` where the head was rounded up, and the head's `[0, m)` is the buffer output.
//! - Any other convolution reading a split tensor is folded the same way
//!   (`Conv(tail, W[:, s:], B) + Conv(head, W[:, :s])`); any other reader gets a channel Concat of
//!   the halves under the tensor's old name.
//!
//! Why: the time axis is the batch axis, so any shift moves data across images, which no runtime
//! fuses into a convolution. Every other form costs a pass over the whole tensor (a Slice of the
//! rest and a Concat, and in onnxruntime a reorder out of its blocked NCHWc layout and back); here
//! only the `s` shifted channels are touched, the rest never leaves the convolutions, and the
//! residual Add still fuses into the convolution before it. The multiply-adds and the weights are
//! the same (the weights are partitioned, not copied). Measured on ResNet-50 (`bench/RESULTS-forms.md`,
//! and the runs the README's "What the shift costs" lists): per frame, onnxruntime 1.02-1.06x of
//! the 2D model against 1.17-1.23x for the previous form; per clip 1.01-1.08x against 1.25-1.41x.
//!
//! Where it applies: both halves must be whole blocks of 16 channels (onnxruntime's NCHWc block
//! with AVX-512, 8 with AVX2; OpenVINO's blocked layouts are 16 wide): unaligned halves cost more
//! than they save (MobileNetV2, measured). The head is the moved channels rounded up to whole
//! blocks: up to 15 channels that stay ride through the shift, a small copy against the batch
//! form's pass over all of `x`. The consumer must be a group-1 Conv with constant weights (or
//! weights the graph computes from constants, BiT's standardized ones, cut by Slices) and no
//! more output channels than `x` has (its two partial sums are added in a pass over its output).
//! With `--mode inplace` the shortcut reads the shifted tensor too: a downsample convolution is
//! folded by the shifted halves as the consumer is, and the residual Add adds the shifted head to
//! the branch's head (where a later site splits it; after the last site it reads the shifted
//! halves joined, one channel Concat); any other reader of the shifted tensor keeps the site out
//! of the stream form. In a pre-activation block (ResNetV2) the shifted tensor's one reader is a
//! BatchNormalization (or a one-input elementwise op, or an Add or Mul of a per-channel constant),
//! then a ReLU, before the consumer: each of those, having one reader, is applied to the shifted
//! head and to the tail (the shift must stay before the norm, since a normalized zero frame is not
//! zero). Offline, that norm may be a GroupNorm (ResNetV2-50d-GN, BiT), which reads the shifted
//! tensor by its first Reshape (its Shape, the same shape, reads either), or a GroupNormalization:
//! it is computed in halves split between its groups, as on the way back. Every tensor on the way
//! back to the producing convolutions must be made by a Conv (group 1, constant float weights or
//! weights computed from constants), a one-input elementwise op, a pool, an inference
//! BatchNormalization, an Add or a Mul (SiLU's `x * Sigmoid(x)`; or of a per-channel constant, a
//! GroupNorm's affine), a GroupNorm as PyTorch exports it (Reshape, InstanceNormalization, Reshape
//! back; or from opset 21 one GroupNormalization; split between its groups: each half normalizes
//! its own), or be a part of a channel Split (a CSP stage's), which the Split then writes as two
//! parts, its head and tail, in the one pass it made (these two offline only: per frame they did
//! not pay); no more than one tensor it splits may be read whole elsewhere (each is joined back by
//! a Concat, a pass over it); and no other convolution reading a split tensor may write more values
//! than that tensor holds (its partial sums would pass over more than `x`: ResNet-50's first
//! downsample). Every convolution it splits must be 1x1 (tract unfolds a split 3x3's input once per
//! part). Other sites get the clip view offline ([`super::clip`]) and the batch form's online
//! Concat ([`super::online`]). The sums are split in two, so the output equals the other forms'
//! within rounding, not bit for bit.

use super::{node, Emitter, FrameMasks, Patch, BUFFER_IN, BUFFER_OUT};
use crate::config::{Config, Direction, ShiftForm};
use crate::error::Error;
use crate::graph::{default_domain, outer_names, Dataflow, Producer};
use crate::onnx::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::plan::{Plan, Site};
use crate::shapes::{attr_int, attr_ints, Shapes};
use crate::tensor::{constant_identity, constants};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Both halves of a split tensor must be whole multiples of this many channels.
pub const BLOCK: i64 = 16;

/// One-input elementwise operators: applied to each half (any other input must be a scalar constant).
const ELEMENTWISE: &[&str] = &[
    "Relu",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Softplus",
    "Identity",
];
/// Pools act per channel: applied to each half. (BatchNormalization too, its constants partitioned.)
const POOLS: &[&str] = &["MaxPool", "AveragePool"];

/// How one site is written in the stream form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The head is channels `[0, split)`: the channels that move, rounded up to whole blocks.
    pub split: i64,
    /// The channels that move are `[0, moved)`: the fold, or both folds offline-bidirectional.
    /// The head's channels `[moved, split)` stay where they are.
    pub moved: i64,
    /// The output of the convolution that reads the shifted tensor (it keeps its name).
    pub consumer: String,
    /// Tensors this site splits, the site's tensor among them (those split for an earlier site
    /// are listed there).
    pub chain: Vec<String>,
    /// The channel Splits whose parts it splits (by their first output), with their part sizes.
    pub parts: Vec<(String, Vec<i64>)>,
    /// The GroupNorms (the exporters' Reshape form) computed in halves, by their last Reshape.
    pub norms: Vec<(usize, GroupNorm)>,
}

/// Bytes per element of a float type whose values can be partitioned: held in `raw_data`, in
/// `float_data`/`double_data`, or in an external data file inside `folder`.
fn element_size(t: &TensorProto, folder: &Path) -> Option<usize> {
    let (size, typed) = match DataType::try_from(t.data_type()).ok()? {
        DataType::Float => (4, t.float_data.len()),
        DataType::Double => (8, t.double_data.len()),
        DataType::Float16 | DataType::Bfloat16 => (2, 0),
        _ => return None,
    };
    let n = usize::try_from(crate::tensor::numel(t)).ok()?;
    if crate::external::is_external(t) {
        let extent = crate::external::extent(t, folder).ok()?;
        return (extent.length == (n * size) as u64).then_some(size);
    }
    (t.raw_data().len() == n * size || (t.raw_data().is_empty() && typed == n)).then_some(size)
}

/// The little-endian bytes of a tensor that passed [`element_size`].
fn tensor_bytes(t: &TensorProto, folder: &Path) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    if crate::external::is_external(t) {
        let extent = crate::external::extent(t, folder).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::open(&extent.file)?;
        f.seek(SeekFrom::Start(extent.offset))?;
        let mut buf = vec![0u8; extent.length as usize];
        f.read_exact(&mut buf)?;
        return Ok(Bytes::from(buf));
    }
    Ok(if !t.raw_data().is_empty() {
        t.raw_data.clone().unwrap_or_default()
    } else if !t.float_data.is_empty() {
        Bytes::from(t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    } else {
        Bytes::from(t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    })
}

/// Convolution weights the graph computes from constants alone, with their dims where shape
/// inference knows them all: BiT's and NF-ResNet's standardized weights, `(W - mean) / std` per
/// output channel, which the exporters leave as nodes (a training-mode BatchNormalization on the
/// weight, or its ReduceMeans). The stream form cuts such a weight by Slice nodes on the computed
/// tensor: the weights stay what the model computes (folding them here would round them
/// differently), and every runtime folds the Slices with the rest when it loads the model.
fn computed_weights(
    graph: &GraphProto,
    consts: &HashMap<&str, &TensorProto>,
    shapes: &Shapes,
) -> BTreeMap<String, Vec<i64>> {
    // In node order (the graph is sorted): a node of the default domain without subgraphs whose
    // inputs are all constant or computed from constants alone computes from constants alone. A
    // quantized weight is not taken: runtimes fuse its DequantizeLinear into the convolution it
    // feeds, which a Slice between them would stop.
    let mut constant: HashSet<&str> = consts.keys().copied().collect();
    for n in &graph.node {
        let inputs = n.input.iter().filter(|i| !i.is_empty());
        let subgraph = n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        let quantized = matches!(n.op_type(), "DequantizeLinear" | "QuantizeLinear");
        if default_domain(n)
            && !subgraph
            && !quantized
            && !n.input.is_empty()
            && inputs.clone().all(|i| constant.contains(i.as_str()))
        {
            constant.extend(n.output.iter().map(String::as_str));
        }
    }
    let mut weights = BTreeMap::new();
    for n in &graph.node {
        let Some(w) = n.input.get(1).filter(|_| n.op_type() == "Conv" && default_domain(n)) else { continue };
        if consts.contains_key(w.as_str()) || !constant.contains(w.as_str()) {
            continue;
        }
        let dims: Option<Vec<i64>> = shapes.get(w).and_then(|i| i.dims.iter().map(|d| d.known()).collect());
        if let Some(dims) = dims.filter(|d| d.len() >= 3 && d.iter().all(|&v| v > 0)) {
            weights.insert(w.clone(), dims);
        }
    }
    weights
}

/// Stand-ins for the computed weights: their names and dims, no data.
fn stand_ins(weights: &BTreeMap<String, Vec<i64>>) -> Vec<TensorProto> {
    weights
        .iter()
        .map(|(name, dims)| TensorProto { name: Some(name.clone()), dims: dims.clone(), ..Default::default() })
        .collect()
}

/// A Conv with group 1, weights of rank >= 3 that are constant and partitionable or computed from
/// constants (`computed`, see [`computed_weights`]), and an optional constant bias.
fn conv_weights<'a>(
    n: &NodeProto,
    inits: &HashMap<&str, &'a TensorProto>,
    computed: &HashMap<&str, &'a TensorProto>,
    folder: &Path,
) -> Option<&'a TensorProto> {
    if n.op_type() != "Conv" || !default_domain(n) || attr_int(n, "group").unwrap_or(1) != 1 || n.output.len() != 1 {
        return None;
    }
    let name = n.input.get(1)?.as_str();
    let w = match computed.get(name) {
        Some(&w) => w,
        None => inits.get(name).copied().filter(|&w| element_size(w, folder).is_some())?,
    };
    if w.dims.len() < 3 {
        return None;
    }
    if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) {
        element_size(inits.get(b.as_str())?, folder)?;
    }
    Some(w)
}

/// A GroupNorm as both PyTorch exporters write it: `Reshape(InstanceNormalization(Reshape(x,
/// [0, G, -1]), scale, bias), Shape(x))` (its affine a Mul and an Add after, per-channel
/// constants). Split between groups, each half is the same on its own groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNorm {
    x: String,
    groups: i64,
    /// The nodes before the last Reshape, which the halves replace: the first Reshape, the
    /// InstanceNormalization and the Shape.
    inner: [usize; 3],
}

/// The GroupNorm whose last Reshape is node `n`, if it is one (`producer`: the node making a tensor).
fn group_norm(
    graph: &GraphProto,
    n: usize,
    producer: impl Fn(&str) -> Option<usize>,
    consts: &HashMap<&str, &TensorProto>,
    folder: &Path,
) -> Option<GroupNorm> {
    let reshape = |k: &NodeProto| {
        k.op_type() == "Reshape"
            && default_domain(k)
            && k.input.len() == 2
            && attr_int(k, "allowzero").unwrap_or(0) == 0
    };
    let last = &graph.node[n];
    if !reshape(last) {
        return None;
    }
    let (norm, shape) = (producer(&last.input[0])?, producer(&last.input[1])?);
    let (inorm, shape_node) = (&graph.node[norm], &graph.node[shape]);
    let whole_shape = attr_int(shape_node, "start").unwrap_or(0) == 0 && attr_int(shape_node, "end").is_none();
    if shape_node.op_type() != "Shape" || !default_domain(shape_node) || !whole_shape {
        return None;
    }
    if inorm.op_type() != "InstanceNormalization" || !default_domain(inorm) || inorm.input.len() != 3 {
        return None;
    }
    let first = producer(&inorm.input[0])?;
    let x = shape_node.input.first()?;
    if !reshape(&graph.node[first]) || graph.node[first].input[0] != *x {
        return None;
    }
    let groups = match crate::tensor::int_values(consts.get(graph.node[first].input[1].as_str())?)?.as_slice() {
        &[0, g, -1] if g > 0 => g,
        _ => return None,
    };
    let affine =
        |i: &String| consts.get(i.as_str()).is_some_and(|t| t.dims == [groups] && element_size(t, folder).is_some());
    if !inorm.input[1..].iter().all(affine) {
        return None;
    }
    Some(GroupNorm { x: x.clone(), groups, inner: [first, norm, shape] })
}

/// The part sizes of a Split along channels (axis 1), if `n` is one: constant (an input from opset
/// 13, an attribute before), or from opset 18 `num_outputs` parts of its input's `channels`, the
/// last one smaller where they do not divide evenly (the dynamo exporter's `torch.split`).
fn split_sizes(n: &NodeProto, consts: &HashMap<&str, &TensorProto>, channels: Option<i64>) -> Option<Vec<i64>> {
    if n.op_type() != "Split" || !default_domain(n) || attr_int(n, "axis").unwrap_or(0) != 1 {
        return None;
    }
    let sizes = match (n.input.get(1).filter(|i| !i.is_empty()), attr_int(n, "num_outputs")) {
        (Some(i), _) => crate::tensor::int_values(consts.get(i.as_str())?)?,
        (None, Some(parts)) if parts > 0 => {
            let c = channels?;
            let chunk = (c + parts - 1) / parts;
            (0..parts).map(|k| chunk.min(c - k * chunk)).collect()
        }
        _ => attr_ints(n, "split")?.to_vec(),
    };
    (sizes.len() == n.output.len() && sizes.iter().all(|&k| k > 0)).then_some(sizes)
}

/// Decides which sites take the stream form (setting `Site::stream`), before anything changes.
/// `folder` is the model's, where its external data files are.
pub fn choose(
    graph: &GraphProto,
    df: &Dataflow,
    shapes: &Shapes,
    plan: &mut Plan,
    config: &Config,
    opset: i64,
    folder: &Path,
) {
    // The offline head is shifted by the batch form, which needs Slice with inputs (opset 10).
    let form = config.shift_form;
    let stream = matches!(form, ShiftForm::Stream | ShiftForm::Openvino) || form == ShiftForm::Tract && config.online;
    if !stream || (!config.online && opset < 10) {
        return;
    }
    let inits = constants(graph);
    plan.computed_weights = computed_weights(graph, &inits, shapes);
    let stand_ins = stand_ins(&plan.computed_weights);
    let computed: HashMap<&str, &TensorProto> = stand_ins.iter().map(|t| (t.name(), t)).collect();
    let edges: HashSet<(usize, usize)> = plan
        .sites
        .iter()
        .flat_map(|s| s.edges.iter().copied())
        .chain(plan.pool.iter().flat_map(|p| p.edges.iter().copied()))
        .collect();
    let past = config.online || config.direction == Direction::Past;
    // Sites kept out because their halves would be joined back whole too often, and why; the
    // choice is made again without them (another site's walk may have counted on their tensors).
    let mut excluded: HashMap<usize, String> = HashMap::new();
    loop {
        let mut finder = Finder {
            graph,
            df,
            inits: inits.clone(),
            computed: computed.clone(),
            outputs: graph.output.iter().map(|o| o.name()).collect(),
            split: HashMap::new(),
            consumers: HashSet::new(),
            stream_edges: HashMap::new(),
            edges: edges.clone(),
            folder,
            tract: form == ShiftForm::Tract,
            online: config.online,
            refusal: std::cell::RefCell::new(None),
            shapes,
            parts: std::cell::RefCell::new(Vec::new()),
            norms: std::cell::RefCell::new(Vec::new()),
        };
        for (k, site) in plan.sites.iter_mut().enumerate() {
            let found = if site.channels_last {
                Err("its tensor is channels-last".to_string())
            } else if let Some(why) = excluded.get(&k) {
                Err(why.clone())
            } else {
                finder.site(site, if past { site.fold } else { 2 * site.fold })
            };
            (site.stream, site.stream_refused) = match found {
                Ok(stream) => (Some(stream), None),
                Err(why) => (None, Some(why)),
            };
        }
        // Each tensor a site splits that a node still reads whole is joined back by a Concat, a
        // pass over it: where a walk leaves more than one, the site costs more than the clip view
        // it replaces. timm's ResNetV2-50d-GN, whose stage-first sites' walks ran back through
        // their stages' residual streams, each tensor also read whole by its block's GroupNorm
        // (13 joins for 3 sites), measured dearer per clip than with those sites on the clip view:
        // onnxruntime 1.017, OpenVINO 1.024, tract 1.004 (bench/RESULTS-stream-refusals.md);
        // ResNet-50 has one join (its last site), CSPResNet-50 one per stage.
        let over: Vec<(usize, usize)> = finder.joins(plan).into_iter().filter(|&(_, n)| n > 1).collect();
        if over.is_empty() {
            return;
        }
        for (k, n) in over {
            excluded.insert(
                k,
                format!(
                    "{n} of the tensors it would split are read whole elsewhere, each joined back by a pass over it"
                ),
            );
        }
    }
}

struct Finder<'a> {
    graph: &'a GraphProto,
    df: &'a Dataflow,
    inits: HashMap<&'a str, &'a TensorProto>,
    /// Convolution weights computed from constants (stand-ins: names and dims).
    computed: HashMap<&'a str, &'a TensorProto>,
    outputs: HashSet<&'a str>,
    /// Tensors split so far, and where.
    split: HashMap<String, i64>,
    /// Outputs of the sites' consumer convolutions (rewritten as joins, so never split).
    consumers: HashSet<String>,
    /// The inputs (node, slot) a stream site's shift takes over, and where its halves split.
    stream_edges: HashMap<(usize, usize), i64>,
    /// Inputs (node, slot) that another site's shift may take over: a node reading one is not
    /// split by halves of its input (a convolution, which reads it whole, is).
    edges: HashSet<(usize, usize)>,
    folder: &'a Path,
    /// `--shift-form tract` (online): refuse a site whose head is rounded up past the fold, or
    /// where any other convolution reads a tensor that would be split, not only one that widens.
    tract: bool,
    online: bool,
    /// Why the last walk back refused, where it knows better than "cannot be computed in halves".
    refusal: std::cell::RefCell<Option<String>>,
    shapes: &'a Shapes,
    /// The channel Splits the current site's walk reached, with their part sizes.
    parts: std::cell::RefCell<Vec<(String, Vec<i64>)>>,
    /// The GroupNorms the current site's walk computes in halves, by their last Reshape.
    norms: std::cell::RefCell<Vec<(usize, GroupNorm)>>,
}

impl Finder<'_> {
    /// The site's stream form, or why it cannot take it (for the report: a phrase that follows
    /// "not in the stream form:").
    fn site(&mut self, site: &Site, moved: i64) -> Result<Stream, String> {
        let c = site.channels;
        self.parts.borrow_mut().clear();
        self.norms.borrow_mut().clear();
        self.refusal.take();
        if site.quant.is_some() {
            return Err("it shifts a quantized tensor".into());
        }
        if site.edges.is_empty() {
            return Err("nothing reads its tensor".into());
        }
        // A head of whole blocks, channels that stay riding with the ones that move (a fold of 8
        // online: ResNet-50's first site, ResNet-18's two 64-channel ones). Against the batch form
        // there, onnxruntime measured 0.03-0.06 cheaper on ResNet-18, OpenVINO the same, tract
        // 0.04-0.06 dearer (bench/RESULTS-rounded-head.md), so `--shift-form tract` takes none.
        let s = (moved + BLOCK - 1) / BLOCK * BLOCK;
        if moved <= 0 || s >= c {
            return Err(format!("its {moved} moved channels, rounded up to {s}, leave no tail of its {c}"));
        }
        if (c - s) % BLOCK != 0 {
            return Err(format!(
                "the tail after a head of {s} channels, {} of {c}, is not whole blocks of {BLOCK}",
                c - s
            ));
        }
        if self.tract && s != moved {
            return Err(format!("--shift-form tract takes no head rounded up ({moved} moved channels)"));
        }
        // Every reader of the shifted tensor reads it in halves: the consumer, a convolution (the
        // residual branch's first), and with `--mode inplace` the shortcut too: the downsample
        // convolution, folded by its input halves as the consumer is, or the residual Add, which
        // adds the shifted head to the head of the branch's output (or, where no later site splits
        // that Add, reads the shifted halves joined).
        let mut consumer = None;
        let mut convs = Vec::new();
        let mut forward = Vec::new();
        // A pre-activation GroupNorm reads the shifted tensor by its first Reshape (and its Shape,
        // where that reads it too); the walk goes on from its output, computed in halves, to the
        // nodes that read that.
        let edges = match self.group_norm_after(site, s, c)? {
            Some(out) => {
                let readers = self.df.consumers_of(&out).to_vec();
                forward.push(out);
                readers
            }
            None => site.edges.clone(),
        };
        for &(n, slot) in &edges {
            let k = &self.graph.node[n];
            if k.op_type() == "Add" && default_domain(k) && k.input.len() == 2 && edges.len() > 1 {
                continue;
            }
            // A pre-activation block normalizes and activates the shifted tensor before its
            // first convolution: those nodes are applied to the halves and the convolution is the
            // consumer. (The shift must stay before them: a normalized zero frame is not zero.)
            let norm = self.per_channel(k, c) || k.op_type() == "GroupNormalization";
            let starts = slot == 0 && norm || self.affine(k, c);
            let (n, slot) =
                if edges.len() == 1 && starts { (self.forward(n, s, c, &mut forward), 0) } else { (n, slot) };
            let k = &self.graph.node[n];
            let Some(w) =
                conv_weights(k, &self.inits, &self.computed, self.folder).filter(|w| slot == 0 && w.dims[1] == c)
            else {
                // Named by kind, not by node, so that the report groups the sites it keeps out.
                return Err(if let Some(why) = self.refusal.take() {
                    why
                } else if k.op_type() != "Conv" {
                    format!("a {} reads its tensor, where only convolutions may", k.op_type())
                } else if attr_int(k, "group").unwrap_or(1) != 1 {
                    "a grouped or depthwise convolution reads its tensor".into()
                } else {
                    "a convolution whose weights are not constant floats reads its tensor".into()
                });
            };
            convs.push(w);
            // The two partial sums are added in one pass over the consumer's output; the batch
            // form passes over x. Where the consumer widens (MobileNetV2's expansion, 6C), that
            // Add costs more than it saves (measured: bench/RESULTS-forms.md, the stream form's
            // section). Other convolutions reading x are held to `other_reader`'s rule below.
            if consumer.is_none() && w.dims[0] <= c {
                consumer = Some((n, k.output[0].clone()));
            }
        }
        let Some((consumer_node, consumer)) = consumer else {
            return Err(match convs.first() {
                Some(w) => format!("its consumer widens the tensor ({c} to {} channels)", w.dims[0]),
                None => "no convolution reads its tensor".into(),
            });
        };
        if self.split.contains_key(&consumer) {
            return Err(format!("its consumer's output '{consumer}' is split for another site"));
        }
        let mut chain = Vec::new();
        if !self.chain(&site.tensor, s, c, &mut chain) {
            return Err(self.refusal.take().unwrap_or_else(|| {
                "a node on the way back to the convolutions that make its tensor cannot be computed in halves".into()
            }));
        }
        chain.extend(forward);
        // tract splits a convolution with a spatial kernel at a cost above the copies it saves: a
        // producer split by output channel repeats its im2col of the whole input. On ResNet-18,
        // whose sites sit between 3x3 convolutions, per clip 1.228 and 1.265 with the stream form
        // at its five aligned sites against 1.008 and 0.991 for the clip view everywhere, while
        // onnxruntime (1.045, 1.023 against 1.032, 1.030) and OpenVINO (1.088, 1.059 against
        // 1.083, 1.040) gained nothing from it (bench/RESULTS-scatter.md). Online the same: with
        // two streams tract 1.310 against 1.002 for the batch form's Concat, onnxruntime 1.052
        // against 1.050, OpenVINO 1.084 against 1.084; with one, tract about even and the others
        // within the noise, OpenVINO with states perhaps 0.01-0.03 cheaper with them
        // (bench/RESULTS-online-spatial-splits.md). So such sites take the clip view offline and
        // the Concat online. ResNet-50's are 1x1 on both sides.
        let pointwise = |w: &TensorProto| w.dims[2..].iter().all(|&d| d == 1);
        let consumers = site.edges.iter().map(|&(n, _)| n).chain([consumer_node]);
        let producers = chain.iter().filter_map(|t| self.producer(t));
        let spatial = consumers.chain(producers).find_map(|n| {
            let k = &self.graph.node[n];
            conv_weights(k, &self.inits, &self.computed, self.folder).filter(|w| !pointwise(w)).map(|w| (k, w))
        });
        if let Some((k, w)) = spatial {
            let kernel: Vec<String> = w.dims[2..].iter().map(|d| d.to_string()).collect();
            return Err(format!("it would split the {} convolution {}, not 1x1", kernel.join("x"), k.name()));
        }
        // Any other convolution reading a split tensor is folded by its input halves too, its
        // two partial sums added in a pass over its output. Where that output holds more values
        // than x (ResNet-50's first downsample: 64 to 256 channels at stride 1), the fold costs
        // more than the site saves: tract runs the head's part as a matrix product with a short
        // inner dimension over the whole output (per frame 6.3 ms for that downsample against
        // 1.7 ms unsplit), and the stem's split repeats tract's im2col of the image
        // (bench/RESULTS-widening-readers.md). tract pays for every such fold (two matrix products
        // and a sum where there was one), so `--shift-form tract` (online; offline it is the clip
        // view) leaves out a stage's first block too, whose downsample reads x at stride 2: per
        // frame on ResNet-50 1.028-1.050 against 1.061-1.079 with those sites split, in six runs;
        // onnxruntime measured 0.01-0.06 dearer without the split, OpenVINO 0.07
        // (bench/RESULTS-tract-form.md).
        if chain.iter().any(|t| self.other_reader(t, c, consumer_node)) {
            return Err(if self.tract {
                "--shift-form tract: another convolution reads a tensor it would split".into()
            } else {
                "another convolution reading a tensor it would split writes more values than that tensor holds".into()
            });
        }
        for t in &chain {
            self.split.insert(t.clone(), s);
        }
        self.stream_edges.extend(site.edges.iter().map(|&e| (e, s)));
        self.consumers.insert(consumer.clone());
        Ok(Stream { split: s, moved, consumer, chain, parts: self.parts.take(), norms: self.norms.take() })
    }

    /// Whether a convolution other than the site's `consumer` (a node index) reads `t`, of `c`
    /// channels, and writes more values than `t` holds (more output channels than `c` times the
    /// product of its strides), or, for `tract`, reads it at all.
    fn other_reader(&self, t: &str, c: i64, consumer: usize) -> bool {
        self.df.consumers.get(t).into_iter().flatten().any(|&(n, slot)| {
            let reader = &self.graph.node[n];
            n != consumer
                && slot == 0
                && conv_weights(reader, &self.inits, &self.computed, self.folder).is_some_and(|w| {
                    let stride: i64 = attr_ints(reader, "strides").map_or(1, |s| s.iter().product());
                    self.tract || w.dims[0] > c * stride
                })
        })
    }

    /// Whether `t` (of `c` channels) can be computed as two halves split at `s`; collects the
    /// tensors to split in producer order.
    fn chain(&self, t: &str, s: i64, c: i64, out: &mut Vec<String>) -> bool {
        if let Some(&at) = self.split.get(t) {
            return at == s;
        }
        if out.iter().any(|o| o == t) {
            return true;
        }
        // A graph output keeps its name (and a consumer's output is rewritten as a join).
        if self.outputs.contains(t) || self.consumers.contains(t) {
            return false;
        }
        let Some(&Producer::Node(p, slot)) = self.df.producer.get(t) else { return false };
        let n = &self.graph.node[p];
        // A channel Split's part (a CSP stage's halves): the Split writes it as two parts instead,
        // in the same pass over its input. Per clip that costs OpenVINO less (timm's CSPResNet-50
        // at 160: 1.168 -> 1.024) and onnxruntime and tract the same (1.024 -> 1.030, 1.021 ->
        // 1.028); per frame OpenVINO 0.97-0.98 of before, onnxruntime 1.01-1.03 and tract
        // 1.01-1.03 in two runs (bench/RESULTS-stream-refusals.md): online, the site keeps the Concat.
        let channels = || {
            let info = self.shapes.get(n.input.first()?)?;
            info.is_nchw().then(|| info.dims[1].known()).flatten()
        };
        if let Some(sizes) = split_sizes(n, &self.inits, channels()) {
            if self.online {
                self.refusal.replace(Some("online, a channel Split's part costs more in halves than whole".into()));
                return false;
            }
            let ok = sizes.get(slot) == Some(&c) && !self.edges.contains(&(p, 0));
            if ok && !out.iter().any(|o| o == t) {
                out.push(t.to_string());
                self.parts.borrow_mut().push((n.output[0].clone(), sizes));
            }
            return ok;
        }
        if slot != 0 || !default_domain(n) || n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return false;
        }
        let op = n.op_type();
        // A node reading a tensor that a site's shift takes over is split by halves only where
        // that site's shifted halves are split at the same channel (`--mode inplace`: the residual
        // Add reads the shifted head and the tail).
        let shifted_elsewhere = |slot: usize| {
            self.edges.contains(&(p, slot)) && self.stream_edges.get(&(p, slot)).is_none_or(|&at| at != s)
        };
        if op != "Conv" && (0..n.input.len()).any(shifted_elsewhere) {
            return false;
        }
        let ok = if op == "Conv" {
            conv_weights(n, &self.inits, &self.computed, self.folder).is_some_and(|w| w.dims[0] == c)
        } else if ELEMENTWISE.contains(&op) || op == "BatchNormalization" {
            self.per_channel(n, c) && self.chain(&n.input[0], s, c, out)
        } else if POOLS.contains(&op) {
            n.input.len() == 1 && self.chain(&n.input[0], s, c, out)
        } else if op == "Add" || op == "Mul" {
            // Mul: SiLU's `x * Sigmoid(x)` (timm's ByobNets, EfficientNets), a squeeze-excitation's
            // scale. Every tensor on the chain has `c` channels, so a product is per channel. One
            // input may be a constant instead (a GroupNorm's affine), partitioned with the channels.
            n.input.len() == 2
                && n.input.iter().any(|i| !self.constant_operand(i, c))
                && n.input.iter().all(|i| self.constant_operand(i, c) || self.chain(i, s, c, out))
        } else if op == "GroupNormalization" {
            match self.group_normalization(n, s, c, false) {
                Ok(halves) => halves && self.chain(&n.input[0], s, c, out),
                Err(why) => {
                    self.refusal.replace(Some(why));
                    false
                }
            }
        } else if op == "Reshape" {
            // A GroupNorm (ResNet-50-GN): each half normalizes its own groups, so the split must
            // fall between two. Per clip that is cheaper everywhere (timm's ResNet-50-GN at 160:
            // onnxruntime 1.135 -> 1.027, OpenVINO f32 1.072 -> 1.009, tract 1.017 -> 0.987); per
            // frame it is even in onnxruntime and OpenVINO and 5% dearer in tract, whose cost per
            // node the halves' twelve nodes for six add to (bench/RESULTS-stream-refusals.md):
            // online, the site keeps the Concat.
            let Some(g) = self.group_norm(p) else { return false };
            if let Err(why) = self.groups_split(g.groups, s, c, false) {
                self.refusal.replace(Some(why));
                return false;
            }
            let ok = self.chain(&g.x, s, c, out);
            if ok && !self.norms.borrow().iter().any(|&(k, _)| k == p) {
                self.norms.borrow_mut().push((p, g));
            }
            ok
        } else {
            false
        };
        if ok && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
        ok
    }

    /// The node whose first output is `t`, if a node's is.
    fn producer(&self, t: &str) -> Option<usize> {
        match self.df.producer.get(t) {
            Some(Producer::Node(p, 0)) => Some(*p),
            _ => None,
        }
    }

    /// Whether `i` is a constant that an Add or a Mul on the chain can take half by half: a scalar
    /// (kept) or one value per channel, `[c, 1, 1]` or `[1, c, 1, 1]` (partitioned).
    fn constant_operand(&self, i: &str, c: i64) -> bool {
        self.inits.get(i).is_some_and(|t| {
            crate::tensor::numel(t) == 1
                || (t.dims == [c, 1, 1] || t.dims == [1, c, 1, 1]) && element_size(t, self.folder).is_some()
        })
    }

    /// The GroupNorm whose last Reshape is node `n`, if its inner tensors have no other reader and
    /// no site's shift takes its input over there.
    fn group_norm(&self, n: usize) -> Option<GroupNorm> {
        let g = group_norm(self.graph, n, |t| self.producer(t), &self.inits, self.folder)?;
        let alone = g.inner.iter().all(|&k| {
            let t = self.graph.node[k].output[0].as_str();
            !self.outputs.contains(t) && self.df.consumers_of(t).len() == 1
        });
        let [first, _, shape] = g.inner;
        let shifted = self.edges.contains(&(first, 0)) || self.edges.contains(&(shape, 0));
        (alone && !shifted).then_some(g)
    }

    /// Per stream site (by index into the plan), how many of the tensors its walk split some node
    /// reads whole (`read_whole`), where the readers that read halves are the nodes split
    /// themselves and the convolutions with constant weights, folded by the halves.
    fn joins(&self, plan: &Plan) -> BTreeMap<usize, usize> {
        let streams = plan.sites.iter().filter_map(|s| s.stream.as_ref());
        let inner: HashSet<usize> = streams.flat_map(|s| &s.norms).flat_map(|(_, g)| g.inner).collect();
        let whole = read_whole(
            self.graph,
            &self.split,
            &inner,
            |n, slot| self.stream_edges.contains_key(&(n, slot)),
            |_, n| {
                let conv = || conv_weights(n, &self.inits, &self.computed, self.folder).is_some();
                n.output.iter().any(|o| self.split.contains_key(o)) || data_only(n, &self.split) && conv()
            },
        );
        let mut joins = BTreeMap::new();
        for (k, site) in plan.sites.iter().enumerate() {
            let Some(stream) = &site.stream else { continue };
            joins.insert(k, stream.chain.iter().filter(|t| whole.contains(*t)).count());
        }
        joins
    }

    /// Whether `n` acts on each of `c` channels alone and can be applied to halves: a one-input
    /// elementwise op (any other input a scalar constant), or an inference BatchNormalization
    /// (one output, per-channel constants, partitioned with the channels).
    fn per_channel(&self, n: &NodeProto, c: i64) -> bool {
        if !default_domain(n) || n.output.is_empty() || n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return false;
        }
        let scalar =
            |i: &String| i.is_empty() || self.inits.get(i.as_str()).is_some_and(|t| crate::tensor::numel(t) == 1);
        let per_channel = |i: &String| {
            self.inits.get(i.as_str()).is_some_and(|t| t.dims == [c] && element_size(t, self.folder).is_some())
        };
        match n.op_type() {
            "BatchNormalization" => n.input.len() == 5 && n.input.iter().skip(1).all(per_channel),
            op => ELEMENTWISE.contains(&op) && n.input.iter().skip(1).all(scalar),
        }
    }

    /// From node `n`, which reads a site's shifted tensor, forward through per-channel nodes
    /// that each have one reader (a pre-activation block's BatchNormalization and ReLU before its
    /// first convolution): the node where the walk stops, and the tensors passed, which are then
    /// computed in halves too (the shifted head and the tail, each normalized and activated).
    fn forward(&self, mut n: usize, s: i64, c: i64, passed: &mut Vec<String>) -> usize {
        loop {
            let k = &self.graph.node[n];
            let halves = match self.group_normalization(k, s, c, true) {
                Ok(halves) => halves,
                Err(why) => {
                    self.refusal.replace(Some(why));
                    return n;
                }
            };
            if !halves && !self.per_channel(k, c) && !self.affine(k, c) {
                return n;
            }
            let t = &k.output[0];
            if self.outputs.contains(t.as_str()) || self.split.contains_key(t) || self.consumers.contains(t) {
                return n;
            }
            match self.df.consumers_of(t) {
                &[(next, slot)] if slot == 0 || self.affine(&self.graph.node[next], c) => {
                    passed.push(t.clone());
                    n = next;
                }
                _ => return n,
            }
        }
    }

    /// Whether `n` is an Add or a Mul of one tensor and one constant that it can take half by
    /// half (`constant_operand`): a GroupNorm's affine.
    fn affine(&self, n: &NodeProto, c: i64) -> bool {
        matches!(n.op_type(), "Add" | "Mul")
            && default_domain(n)
            && n.input.len() == 2
            && n.output.len() == 1
            && n.input.iter().filter(|i| self.constant_operand(i, c)).count() == 1
    }

    /// Whether `n` is a GroupNormalization (the operator, which the dynamo exporter writes for a
    /// GroupNorm from opset 21) over `c` channels that halves split at `s` can each compute on
    /// their own groups: false if it is none; an error where it cannot be split (online, `after`
    /// the shift or on the way back, as the exporters' Reshape form; or where the head would cut
    /// its groups).
    fn group_normalization(&self, n: &NodeProto, s: i64, c: i64, after: bool) -> Result<bool, String> {
        let groups = attr_int(n, "num_groups").unwrap_or(0);
        let affine = |i: &String| {
            self.inits
                .get(i.as_str())
                .is_some_and(|t| (t.dims == [c] || t.dims == [groups]) && element_size(t, self.folder).is_some())
        };
        let one_output = n.output.len() == 1;
        if n.op_type() != "GroupNormalization" || !default_domain(n) || groups <= 0 || !one_output {
            return Ok(false);
        }
        if n.input.len() != 3 || !n.input[1..].iter().all(affine) {
            return Ok(false);
        }
        self.groups_split(groups, s, c, after).map(|()| true)
    }

    /// Whether a GroupNorm of `groups` over `c` channels can be computed in halves split at `s`
    /// (`after` the shift, or on the way back): offline, where the split falls between two groups.
    fn groups_split(&self, groups: i64, s: i64, c: i64, after: bool) -> Result<(), String> {
        if self.online {
            let place = if after { "after the shift" } else { "on the way back" };
            return Err(format!("online, a GroupNorm {place} costs more in halves than whole (tract, per frame)"));
        }
        let size = c / groups.max(1);
        if c % groups != 0 || s % size != 0 {
            return Err(format!("its head of {s} channels would cut a GroupNorm's groups of {size}"));
        }
        Ok(())
    }

    /// The GroupNorm a pre-activation block applies to `site`'s shifted tensor, where the shift
    /// is read by its first Reshape (and its Shape, unless that reads the unshifted tensor, the
    /// same shape): the GroupNorm's output (its last Reshape's), which the halves then start
    /// from. An error where it cannot be split: online (as on the way back), or where the head
    /// would cut its groups.
    fn group_norm_after(&self, site: &Site, s: i64, c: i64) -> Result<Option<String>, String> {
        let only_reader = |n: usize| match self.df.consumers_of(self.graph.node[n].output.first()?) {
            &[(next, 0)] => Some(next),
            _ => None,
        };
        let found = site.edges.iter().find_map(|&(first, _)| {
            let last = only_reader(only_reader(first)?)?;
            let g = group_norm(self.graph, last, |t| self.producer(t), &self.inits, self.folder)?;
            let [f, _, shape] = g.inner;
            let alone = g.inner.iter().all(|&k| !self.outputs.contains(self.graph.node[k].output[0].as_str()));
            let read = |e: &(usize, usize)| *e == (f, 0) || *e == (shape, 0);
            let ours = g.x == site.tensor && f == first && site.edges.iter().all(read);
            let dims_alone = self.df.consumers_of(&self.graph.node[shape].output[0]) == [(last, 1)];
            (alone && ours && dims_alone).then_some((last, g))
        });
        let Some((last, g)) = found else { return Ok(None) };
        // Per clip it pays everywhere (timm's ResNetV2-50d-GN at 160, 15 of 16 sites against
        // none: onnxruntime 1.095 -> 1.037, OpenVINO f32 1.027 -> 0.999, tract 1.017 -> 1.008);
        // per frame onnxruntime 0.959 of before, OpenVINO even and tract 1.025, as on the way back
        // (bench/RESULTS-stream-refusals.md): online, the site keeps the Concat.
        self.groups_split(g.groups, s, c, true)?;
        self.norms.borrow_mut().push((last, g));
        Ok(Some(self.graph.node[last].output[0].clone()))
    }
}

/// Whether none of `n`'s inputs but its first (the data; a convolution's weights and bias after it)
/// is `split`.
fn data_only(n: &NodeProto, split: &HashMap<String, i64>) -> bool {
    n.input.iter().skip(1).all(|i| !split.contains_key(i))
}

/// The `split` tensors that some reader still takes whole, each then joined back by a Concat
/// under its own name: graph outputs, names a subgraph reads from outside, and inputs of nodes
/// that are not rewritten to read halves (`reads_halves`: the Finder's prediction or the Writer's
/// rule), except where a stream site's shift takes the input over (`taken`, node and slot: read
/// as the shifted halves) and in the nodes inside a GroupNorm computed in halves (`inner`), which
/// give way to each half's own.
fn read_whole(
    graph: &GraphProto,
    split: &HashMap<String, i64>,
    inner: &HashSet<usize>,
    taken: impl Fn(usize, usize) -> bool,
    reads_halves: impl Fn(usize, &NodeProto) -> bool,
) -> HashSet<String> {
    let mut whole: HashSet<String> = HashSet::new();
    for (i, n) in graph.node.iter().enumerate() {
        if inner.contains(&i) {
            continue;
        }
        if !reads_halves(i, n) {
            let unshifted = n.input.iter().enumerate().filter(|&(k, _)| !taken(i, k));
            whole.extend(unshifted.map(|(_, t)| t).filter(|t| split.contains_key(*t)).cloned());
        }
        let mut outer = Vec::new();
        outer_names(n, &mut outer);
        whole.extend(outer.into_iter().filter(|t| split.contains_key(t)));
    }
    whole.extend(graph.output.iter().map(|o| o.name().to_string()).filter(|o| split.contains_key(o)));
    whole
}

/// Adds the stream sites of `plan` to `patch` (which holds the other sites already): the nodes
/// that replace the producers and consumers of each split tensor, the partitioned weights, and the
/// weights and shapes of tensors that no longer exist. An external weight that cannot be read is
/// an error naming it.
pub fn emit(
    graph: &GraphProto,
    plan: &Plan,
    config: &Config,
    opset: i64,
    folder: &Path,
    patch: &mut Patch,
) -> Result<(), Error> {
    let sites: Vec<&Site> = plan.sites.iter().filter(|s| s.stream.is_some()).collect();
    if sites.is_empty() {
        return Ok(());
    }
    let consts = constants(graph);
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().filter_map(|(i, n)| Some((n.output.first()?.as_str(), i))).collect();
    let mut w = Writer {
        split: HashMap::new(),
        heads: HashMap::new(),
        edges: HashMap::new(),
        shifted: HashMap::new(),
        // A node the patch rewires to another site's shift reads that shift, not a split tensor.
        rewired: patch.rewires.iter().map(|r| r.0).collect(),
        // A Constant node's value takes its output's name, which its slices are named after.
        inits: consts
            .iter()
            .map(|(&k, &t)| (k.to_string(), TensorProto { name: Some(k.into()), ..t.clone() }))
            .chain(stand_ins(&plan.computed_weights).into_iter().map(|t| (t.name().to_string(), t)))
            .collect(),
        computed: plan.computed_weights.keys().cloned().collect(),
        cut: HashSet::new(),
        pending: Vec::new(),
        new_inits: BTreeMap::new(),
        graph,
        group_norms: HashMap::new(),
        group_normalizations: HashMap::new(),
        replaced_weights: HashSet::new(),
        bytes: HashMap::new(),
        error: None,
        folder,
        config,
        opset,
        masks: std::mem::take(&mut patch.frame_masks),
    };
    for site in &sites {
        let stream = site.stream.as_ref().expect("filtered");
        for t in &stream.chain {
            w.split.insert(t.clone(), stream.split);
            let Some(&p) = producer.get(t.as_str()) else { continue };
            if graph.node[p].op_type() == "GroupNormalization" {
                w.group_normalizations.insert(p, site.channels);
            }
        }
        w.group_norms.extend(stream.norms.iter().map(|(p, g)| (*p, (g.clone(), site.channels))));
        // Online, a head of the moved channels only is the buffer output itself.
        if config.online && stream.moved == stream.split {
            w.heads.insert(site.tensor.clone(), format!("{}/{BUFFER_OUT}", site.prefix));
        }
        w.edges.extend(site.edges.iter().map(|&e| (e, *site)));
    }
    // A split tensor still read whole (by an op that is not rewritten, another site's shift, a
    // subgraph or as a graph output) is joined back under its own name.
    let parts: HashMap<&str, &Vec<i64>> =
        sites.iter().flat_map(|s| &s.stream.as_ref().expect("filtered").parts).map(|(o, p)| (o.as_str(), p)).collect();
    // The nodes inside a GroupNorm computed in halves give way to each half's own.
    let inner: HashSet<usize> = w.group_norms.values().flat_map(|(g, _)| g.inner).collect();
    let whole = read_whole(graph, &w.split, &inner, |i, k| w.edges.contains_key(&(i, k)), |i, n| w.reads_halves(i, n));

    let mut read: HashSet<String> = HashSet::new();
    let mut identities = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if inner.contains(&i) {
            patch.replacements.push((i, vec![]));
            continue;
        }
        // A producer convolution whose input another site's shift (or the temporal pool) takes
        // over reads that.
        let rewired;
        let n = if w.rewired.contains(&i) {
            let mut m = n.clone();
            for (_, slot, name) in patch.rewires.iter().filter(|r| r.0 == i) {
                m.input[*slot].clone_from(name);
            }
            rewired = m;
            &rewired
        } else {
            n
        };
        let out = n.output.first().cloned().unwrap_or_default();
        let mut nodes = Vec::new();
        let shifted_whole = (0..n.input.len()).find_map(|k| w.edges.get(&(i, k)).map(|site| (k, *site)));
        // The Splits the sites' walks reached (by their first output).
        let parted = n.output.first().filter(|_| n.op_type() == "Split").and_then(|o| parts.get(o.as_str()));
        if let Some(sizes) = parted {
            w.split_parts(n, sizes, &mut nodes);
            for o in n.output.iter().filter(|o| w.split.contains_key(*o) && whole.contains(*o)) {
                let (head, tail) = w.halves(o);
                nodes.push(node("Concat", &format!("{}/join_{o}", label(n)), vec![head, tail], o, vec![axis1()]));
            }
        } else if let Some(&s) = w.split.get(&out) {
            w.split_node(i, n, s, &mut nodes);
            if whole.contains(&out) {
                let (head, tail) = w.halves(&out);
                nodes.push(node("Concat", &format!("{}/join", label(n)), vec![head, tail], &out, vec![axis1()]));
            }
        } else if w.foldable(i, n) {
            let c = w.weight(n).dims[0];
            w.conv(i, n, &n.input[0], (0, c), &out, "", &mut nodes);
        } else if let Some((k, site)) = shifted_whole {
            // A reader of the shifted tensor that is not split (`--mode inplace`: a residual Add
            // that no later site splits) reads the shifted head and the tail joined.
            let mut m = n.clone();
            m.input[k] = w.shifted_whole(site, &mut nodes);
            nodes.push(m);
        } else if constant_identity(n, &consts) {
            identities.push(i);
            continue;
        } else {
            read.extend(n.input.iter().cloned());
            let mut inner = Vec::new();
            outer_names(n, &mut inner);
            read.extend(inner);
            continue;
        }
        read.extend(nodes.iter().flat_map(|n| n.input.iter().cloned()));
        patch.replacements.push((i, nodes));
    }
    // An Identity of a constant whose readers the rewrite replaced goes where nothing reads it
    // any more (latest first: one may read another), and so may the constant it reads; any other
    // stays as it was.
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name()).collect();
    let mut unread = Vec::new();
    for &i in identities.iter().rev() {
        let n = &graph.node[i];
        let replaced = w.replaced_weights.contains(&n.output[0]) || unread.contains(&n.output[0]);
        if !replaced || read.contains(&n.output[0]) || outputs.contains(n.output[0].as_str()) {
            read.insert(n.input[0].clone());
        } else {
            patch.replacements.push((i, vec![]));
            unread.push(n.input[0].clone());
        }
    }
    w.replaced_weights.extend(unread);
    // Weights no node reads any more go (a weight also listed as a graph input stays: before IR 4
    // it may be fed), and so do the shapes recorded for tensors that no longer exist.
    let listed: HashSet<&str> = graph.input.iter().map(|i| i.name()).collect();
    let mut gone: Vec<String> =
        w.replaced_weights.iter().filter(|t| !read.contains(*t) && !listed.contains(t.as_str())).cloned().collect();
    gone.sort();
    // So do Constant nodes no node reads any more (a GroupNorm's shape and scales).
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type() == "Constant" && n.output.len() == 1 && gone.contains(&n.output[0]) {
            patch.replacements.push((i, vec![]));
        }
    }
    patch.removed_initializers.extend(gone);
    let inner_tensors: HashSet<&str> = inner.iter().map(|&i| graph.node[i].output[0].as_str()).collect();
    patch.removed_value_info.extend(
        graph
            .value_info
            .iter()
            .map(|v| v.name().to_string())
            .filter(|v| w.split.contains_key(v) && !whole.contains(v) || inner_tensors.contains(v.as_str())),
    );
    patch.initializers.extend(w.new_inits.into_values());
    patch.frame_masks = w.masks;
    match w.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn label(n: &NodeProto) -> String {
    if n.name().is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name().to_string()
    }
}

fn axis1() -> AttributeProto {
    super::int_attr("axis", 1)
}

struct Writer<'a> {
    split: HashMap<String, i64>,
    /// Head names given by the sites (online: the buffer output); others are `<tensor>/head`.
    heads: HashMap<String, String>,
    /// The inputs (node, slot) a site's shift takes over, and their site.
    edges: HashMap<(usize, usize), &'a Site>,
    /// Each site's shifted head, and its shifted halves joined, once emitted (by the site's prefix).
    shifted: HashMap<String, String>,
    /// Nodes (by index) whose input the patch rewires to another site's shift.
    rewired: HashSet<usize>,
    /// The graph's constants: initializers and Constant nodes' values.
    inits: HashMap<String, TensorProto>,
    new_inits: BTreeMap<String, TensorProto>,
    graph: &'a GraphProto,
    /// GroupNorms computed in halves, by their last Reshape, with their channels.
    group_norms: HashMap<usize, (GroupNorm, i64)>,
    /// GroupNormalization nodes computed in halves, with their channels.
    group_normalizations: HashMap<usize, i64>,
    /// Weights and biases of replaced convolutions: removed if nothing reads them after.
    replaced_weights: HashSet<String>,
    /// Convolution weights the graph computes (their stand-ins are in `inits`), and the parts of
    /// them cut so far, by the Slices' output names.
    computed: HashSet<String>,
    cut: HashSet<String>,
    /// Slices of computed weights not yet placed: they go before the node that reads them.
    pending: Vec<NodeProto>,
    /// Weights read so far (an external one is read once).
    bytes: HashMap<String, Bytes>,
    /// The first weight that could not be read.
    error: Option<Error>,
    folder: &'a Path,
    config: &'a Config,
    opset: i64,
    /// The graph's frame masks, taken from the patch and given back.
    masks: FrameMasks,
}

impl Writer<'_> {
    fn halves(&self, t: &str) -> (String, String) {
        let head = self.heads.get(t).cloned().unwrap_or_else(|| format!("{t}/head"));
        (head, format!("{t}/tail"))
    }

    fn weight(&self, n: &NodeProto) -> &TensorProto {
        &self.inits[n.input[1].as_str()]
    }

    /// A group-1 Conv with constant weights reading a split tensor or a site's shifted one (the
    /// site's consumer among them), not otherwise rewritten.
    fn foldable(&self, i: usize, n: &NodeProto) -> bool {
        if self.rewired.contains(&i) {
            return false;
        }
        let inits: HashMap<&str, &TensorProto> =
            n.input.iter().skip(1).filter_map(|i| self.inits.get(i.as_str()).map(|t| (i.as_str(), t))).collect();
        let computed = inits.iter().filter(|(k, _)| self.computed.contains(**k)).map(|(&k, &t)| (k, t)).collect();
        let halves = n.input.first().is_some_and(|i| self.split.contains_key(i)) || self.edges.contains_key(&(i, 0));
        halves && conv_weights(n, &inits, &computed, self.folder).is_some()
    }

    /// Whether the rewrite of `n` reads the halves of its split inputs (so not the whole tensor).
    fn reads_halves(&self, i: usize, n: &NodeProto) -> bool {
        let out = n.output.first().map(String::as_str).unwrap_or_default();
        self.split.contains_key(out) || (self.foldable(i, n) && data_only(n, &self.split))
    }

    /// The halves node `i` reads at input `slot` (the tensor `t`), and the name of the head's
    /// part: a site's shifted head and the tail where the site's shift takes that input over
    /// (its nodes emitted into `nodes` the first time), else `t`'s head and tail, if `t` is split.
    fn halves_at(
        &mut self,
        (i, slot): (usize, usize),
        t: &str,
        nodes: &mut Vec<NodeProto>,
    ) -> Option<(String, String, &'static str)> {
        if let Some(site) = self.edges.get(&(i, slot)).copied() {
            let (_, tail) = self.halves(&site.tensor);
            return Some((self.shifted(site, nodes), tail, "from_shifted"));
        }
        self.split.contains_key(t).then(|| {
            let (head, tail) = self.halves(t);
            (head, tail, "from_head")
        })
    }

    /// Emits `n` (node `i`, the producer of a split tensor) as its two halves.
    fn split_node(&mut self, i: usize, n: &NodeProto, s: i64, nodes: &mut Vec<NodeProto>) {
        let out = &n.output[0];
        let (head, tail) = self.halves(out);
        if n.op_type() == "Conv" {
            let input = n.input[0].clone();
            let c = self.weight(n).dims[0];
            self.conv(i, n, &input, (0, s), &head, "/head", nodes);
            self.conv(i, n, &input, (s, c), &tail, "/tail", nodes);
            return;
        }
        if let Some((g, c)) = self.group_norms.get(&i).cloned() {
            for (half, which) in [(head, 0), (tail, 1)] {
                self.group_norm_half(n, (&g, c), if which == 0 { (0, s) } else { (s, c) }, half, which, nodes);
            }
            return;
        }
        // A GroupNormalization: each half on its own groups, its scale and bias partitioned by
        // channel (opset 21) or by group (opset 18).
        if let Some(&c) = self.group_normalizations.get(&i) {
            let size = c / attr_int(n, "num_groups").unwrap_or(1).max(1);
            let (h, t) = match self.halves_at((i, 0), &n.input[0], nodes) {
                Some((h, t, _)) => (h, t),
                None => self.halves(&n.input[0]),
            };
            for (half, which, x) in [(head, 0, h), (tail, 1, t)] {
                let part = if which == 0 { (0, s) } else { (s, c) };
                let mut m = n.clone();
                m.input[0] = x;
                for input in &mut m.input[1..] {
                    let t = self.inits[input.as_str()].clone();
                    self.replaced_weights.insert(t.name().to_string());
                    let range = if t.dims == [c] { part } else { (part.0 / size, part.1 / size) };
                    *input = self.sliced(&t, range, (0, 1));
                }
                m.attribute.retain(|a| a.name() != "num_groups");
                m.attribute.push(super::int_attr("num_groups", (part.1 - part.0) / size));
                m.output = vec![half];
                m.name = Some(format!("{}/{}", label(n), ["head", "tail"][which]));
                nodes.push(m);
            }
            return;
        }
        let binary = matches!(n.op_type(), "Add" | "Mul");
        for (half, which) in [(head, 0), (tail, 1)] {
            let mut m = n.clone();
            for (k, input) in m.input.iter_mut().enumerate() {
                let halves = self.split.contains_key(input.as_str()) || self.edges.contains_key(&(i, k));
                if k == 0 && !binary || binary && halves {
                    let (h, t) = match self.halves_at((i, k), input, nodes) {
                        Some((h, t, _)) => (h, t),
                        None => self.halves(input),
                    };
                    *input = if which == 0 { h } else { t };
                } else if binary {
                    // A constant: a scalar stays; one value per channel, `[c, 1, 1]` or
                    // `[1, c, 1, 1]`, is partitioned.
                    let t = self.inits[input.as_str()].clone();
                    if crate::tensor::numel(&t) > 1 {
                        self.replaced_weights.insert(t.name().to_string());
                        let lead = t.dims.len() == 4;
                        let c = t.dims[usize::from(lead)];
                        let part = if which == 0 { (0, s) } else { (s, c) };
                        *input = if lead { self.sliced(&t, (0, 1), part) } else { self.sliced(&t, part, (0, 1)) };
                    }
                } else if n.op_type() == "BatchNormalization" {
                    let t = self.inits[input.as_str()].clone();
                    self.replaced_weights.insert(t.name().to_string());
                    *input = self.sliced(&t, if which == 0 { (0, s) } else { (s, t.dims[0]) }, (0, 1));
                }
            }
            m.output = vec![half];
            m.name = Some(format!("{}/{}", label(n), ["head", "tail"][which]));
            nodes.push(m);
        }
    }

    /// The Split `n` (part `sizes`) with each of its parts that is split written as the two halves.
    fn split_parts(&mut self, n: &NodeProto, sizes: &[i64], nodes: &mut Vec<NodeProto>) {
        let (mut parts, mut outputs) = (Vec::new(), Vec::new());
        for (o, &size) in n.output.iter().zip(sizes) {
            match self.split.get(o) {
                Some(&s) => {
                    let (head, tail) = self.halves(o);
                    parts.extend([s, size - s]);
                    outputs.extend([head, tail]);
                }
                None => {
                    parts.push(size);
                    outputs.push(o.clone());
                }
            }
        }
        // A new name, as every node the stream form changes has: what keeps its name keeps its bytes.
        let mut m = NodeProto { name: Some(format!("{}/halves", label(n))), ..n.clone() };
        m.attribute.retain(|a| a.name() != "split" && a.name() != "num_outputs");
        // The sizes are an input from opset 13 (opset 18's `num_outputs` gives way to them).
        if self.opset >= 13 {
            self.replaced_weights.extend(n.input.get(1).filter(|i| !i.is_empty()).cloned());
            let name = format!("{}/halves/split", label(n));
            self.new_inits.insert(name.clone(), crate::tensor::int64_vec(&name, &parts));
            m.input.truncate(1);
            m.input.push(name);
        } else {
            m.attribute.push(super::ints_attr("split", &parts));
        }
        m.output = outputs;
        nodes.push(m);
    }

    /// Channels `part` of the GroupNorm `g` of `c` channels, whose last Reshape is `n`, as `out`
    /// (`which`: 0 the head, 1 the tail): the same four nodes on the half's tensor and groups.
    fn group_norm_half(
        &mut self,
        n: &NodeProto,
        (g, c): (&GroupNorm, i64),
        part: (i64, i64),
        out: String,
        which: usize,
        nodes: &mut Vec<NodeProto>,
    ) {
        let graph = self.graph;
        let [first, norm, shape] = g.inner.map(|k| &graph.node[k]);
        let half = ["head", "tail"][which];
        // A pre-activation GroupNorm reads a site's shifted halves.
        let (h, t) = match self.halves_at((g.inner[0], 0), &g.x, nodes) {
            Some((h, t, _)) => (h, t),
            None => self.halves(&g.x),
        };
        let x = if which == 0 { h } else { t };
        let size = c / g.groups;
        let groups = (part.0 / size, part.1 / size);
        let copy = |k: &NodeProto, input: Vec<String>, output: String| NodeProto {
            input,
            output: vec![output],
            name: Some(format!("{}/{half}", label(k))),
            ..k.clone()
        };
        let grouped = format!("{}/{half}/groups", label(first));
        self.new_inits.insert(grouped.clone(), crate::tensor::int64_vec(&grouped, &[0, groups.1 - groups.0, -1]));
        self.replaced_weights.insert(first.input[1].clone());
        let mut affine = Vec::new();
        for a in &norm.input[1..] {
            let t = self.inits[a.as_str()].clone();
            self.replaced_weights.insert(a.clone());
            affine.push(self.sliced(&t, groups, (0, 1)));
        }
        let (grouped_x, normed, dims) = [first, norm, shape].map(|k| format!("{}/{half}", k.output[0])).into();
        nodes.push(copy(first, vec![x.clone(), grouped], grouped_x.clone()));
        nodes.push(copy(norm, [vec![grouped_x], affine].concat(), normed.clone()));
        nodes.push(copy(shape, vec![x], dims.clone()));
        nodes.push(copy(n, vec![normed, dims], out));
    }

    /// Output channels `rows` of the Conv `n` (node `i`) applied to `input` (split, shifted by a
    /// site, or whole), as `out`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        i: usize,
        n: &NodeProto,
        input: &str,
        rows: (i64, i64),
        out: &str,
        suffix: &str,
        nodes: &mut Vec<NodeProto>,
    ) {
        let cin = self.weight(n).dims[1];
        let name = format!("{}{suffix}", label(n));
        match self.halves_at((i, 0), input, nodes) {
            Some((head, tail, what)) => {
                // Where a site's shift takes the input over, it splits where the site's tensor does.
                let at = self.edges.get(&(i, 0)).map_or(input, |site| site.tensor.as_str());
                let s_in = self.split[at];
                self.summed(n, rows, (&tail, &head, what), s_in, out, &name, nodes);
            }
            None => self.conv_part(n, input, rows, (0, cin), true, out, &name, nodes),
        }
    }

    /// `Conv(tail, W[rows, s:], B[rows]) + Conv(head, W[rows, :s])` as `out`: a convolution whose
    /// input comes in two parts (`head` named `what` in the new names), summed in one Add.
    #[allow(clippy::too_many_arguments)]
    fn summed(
        &mut self,
        n: &NodeProto,
        rows: (i64, i64),
        (tail, head, what): (&str, &str, &str),
        s: i64,
        out: &str,
        name: &str,
        nodes: &mut Vec<NodeProto>,
    ) {
        let cin = self.weight(n).dims[1];
        let (a, b) = (format!("{out}/from_tail"), format!("{out}/{what}"));
        self.conv_part(n, tail, rows, (s, cin), true, &a, &format!("{name}/from_tail"), nodes);
        self.conv_part(n, head, rows, (0, s), false, &b, &format!("{name}/{what}"), nodes);
        nodes.push(node("Add", &format!("{name}/sum"), vec![a, b], out, vec![]));
    }

    /// The site's shifted head, emitted into `nodes` the first time one of its readers asks: offline
    /// the batch form on the head's `s` channels; online the buffer input (joined on channels with
    /// the head's `[moved, s)` where the head was rounded up, whose `[0, moved)` is then the
    /// buffer output).
    fn shifted(&mut self, site: &Site, nodes: &mut Vec<NodeProto>) -> String {
        if let Some(name) = self.shifted.get(&site.prefix) {
            return name.clone();
        }
        let stream = site.stream.as_ref().expect("a stream site");
        let (s, moved) = (stream.split, stream.moved);
        let (head, _) = self.halves(&site.tensor);
        let mut e = Emitter { masks: Some(&mut self.masks), ..Emitter::new(&site.prefix, self.opset) };
        let shifted = if !self.config.online {
            super::head_shift(&mut e, &Site { tensor: head, channels: s, ..site.clone() }, self.config)
        } else if moved == s {
            e.name(BUFFER_IN)
        } else {
            e.slice(BUFFER_OUT, &head, &[0], &[moved], &[1], &[s]);
            let stay = e.slice("stay", &head, &[moved], &[s], &[1], &[s]);
            e.node("Concat", "Concat", vec![e.name(BUFFER_IN), stay], "shifted", vec![axis1()])
        };
        nodes.append(&mut e.nodes);
        self.new_inits.extend(e.inits.into_iter().map(|t| (t.name().to_string(), t)));
        self.shifted.insert(site.prefix.clone(), shifted.clone());
        shifted
    }

    /// The site's shifted tensor whole: its shifted head and its tail joined on channels, emitted
    /// into `nodes` the first time.
    fn shifted_whole(&mut self, site: &Site, nodes: &mut Vec<NodeProto>) -> String {
        let key = format!("{}/shifted_whole", site.prefix);
        if self.shifted.contains_key(&key) {
            return key;
        }
        let head = self.shifted(site, nodes);
        let (_, tail) = self.halves(&site.tensor);
        nodes.push(node("Concat", &format!("{}/Concat_whole", site.prefix), vec![head, tail], &key, vec![axis1()]));
        self.shifted.insert(key.clone(), key.clone());
        key
    }

    /// A copy of Conv `n` on `input` with weights `W[rows, cols]` (and bias `B[rows]` if `bias`),
    /// into `nodes` after the Slices of a computed weight.
    #[allow(clippy::too_many_arguments)]
    fn conv_part(
        &mut self,
        n: &NodeProto,
        input: &str,
        rows: (i64, i64),
        cols: (i64, i64),
        bias: bool,
        out: &str,
        name: &str,
        nodes: &mut Vec<NodeProto>,
    ) {
        let w = self.inits[n.input[1].as_str()].clone();
        self.replaced_weights.insert(w.name().to_string());
        let mut inputs = vec![input.to_string(), self.sliced(&w, rows, cols)];
        if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) {
            self.replaced_weights.insert(b.clone());
            if bias {
                let b = self.inits[b.as_str()].clone();
                inputs.push(self.sliced(&b, rows, (0, 1)));
            }
        }
        let mut m = n.clone();
        m.input = inputs;
        m.output = vec![out.to_string()];
        m.name = Some(name.to_string());
        nodes.append(&mut self.pending);
        nodes.push(m);
    }

    /// The name of `t[rows, cols]` (`cols` ignored for a bias), added once as an initializer.
    fn sliced(&mut self, t: &TensorProto, rows: (i64, i64), cols: (i64, i64)) -> String {
        let (o, i) = (t.dims[0], t.dims.get(1).copied().unwrap_or(1));
        let cols = if t.dims.len() == 1 { (0, 1) } else { cols };
        if rows == (0, o) && cols == (0, i) {
            return t.name().to_string();
        }
        if self.computed.contains(t.name()) {
            return self.cut(t, rows, cols);
        }
        let mut name = t.name().to_string();
        if rows != (0, o) {
            name += &format!("/rows_{}_{}", rows.0, rows.1);
        }
        if cols != (0, i) {
            name += &format!("/cols_{}_{}", cols.0, cols.1);
        }
        if !self.new_inits.contains_key(&name) && !self.inits.contains_key(&name) {
            if !self.bytes.contains_key(t.name()) {
                match tensor_bytes(t, self.folder) {
                    Ok(b) => {
                        self.bytes.insert(t.name().to_string(), b);
                    }
                    Err(e) => {
                        self.error.get_or_insert(Error::BadModel {
                            path: self.folder.to_path_buf(),
                            reason: format!("tensor '{}': cannot read its external data: {e}", t.name()),
                        });
                        return name;
                    }
                }
            }
            let width = element_size(t, self.folder).unwrap_or(4);
            let sliced = slice_tensor(t, &self.bytes[t.name()], width, &name, rows, cols);
            self.new_inits.insert(name.clone(), sliced);
        }
        name
    }

    /// `t[rows, cols]` of a weight the graph computes: a Slice of the computed tensor (before opset
    /// 10 a Split per axis), into `pending` the first time.
    fn cut(&mut self, t: &TensorProto, rows: (i64, i64), cols: (i64, i64)) -> String {
        let (mut what, mut starts, mut ends, mut axes, mut dims) = (Vec::new(), vec![], vec![], vec![], vec![]);
        for (axis, (part, dim)) in [rows, cols].into_iter().zip(t.dims.iter().copied()).enumerate() {
            if part != (0, dim) {
                what.push(format!("{}_{}_{}", ["rows", "cols"][axis], part.0, part.1));
                starts.push(part.0);
                ends.push(part.1);
                axes.push(axis as i64);
                dims.push(dim);
            }
        }
        let what = what.join("/");
        let mut e = Emitter::new(t.name(), self.opset);
        let name = e.name(&what);
        if self.cut.insert(name.clone()) {
            e.slice(&what, t.name(), &starts, &ends, &axes, &dims);
            self.pending.append(&mut e.nodes);
            self.new_inits.extend(e.inits.into_iter().map(|t| (t.name().to_string(), t)));
        }
        name
    }
}

/// `t[rows, cols, ...]` of a weight `[O, I, ...]` (or `t[rows]` of a bias) whose elements are
/// `width` bytes in `bytes`, as a tensor of the same type.
fn slice_tensor(
    t: &TensorProto,
    bytes: &[u8],
    width: usize,
    name: &str,
    rows: (i64, i64),
    cols: (i64, i64),
) -> TensorProto {
    let i = t.dims.get(1).copied().unwrap_or(1) as usize;
    let inner: usize = t.dims.iter().skip(2).product::<i64>() as usize;
    let mut raw = Vec::new();
    for r in rows.0 as usize..rows.1 as usize {
        let from = (r * i + cols.0 as usize) * inner * width;
        let to = (r * i + cols.1 as usize) * inner * width;
        raw.extend_from_slice(&bytes[from..to]);
    }
    let mut dims = t.dims.clone();
    dims[0] = rows.1 - rows.0;
    if dims.len() > 1 {
        dims[1] = cols.1 - cols.0;
    }
    TensorProto {
        name: Some(name.into()),
        dims,
        data_type: t.data_type,
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{node, value_info};
    use crate::shapes::Shapes;

    #[test]
    fn split_tensors_are_read_whole_by_unrewritten_nodes_subgraphs_and_graph_outputs() {
        let split: HashMap<String, i64> = ["a", "b", "c", "d", "e", "f"].iter().map(|t| (t.to_string(), 16)).collect();
        let mut branch = node("If", "/if", &["cond"], &["y"]);
        branch.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(crate::onnx::attribute_proto::AttributeType::Graph as i32),
            g: Some(GraphProto { node: vec![node("Identity", "/then", &["d"], &["z"])], ..Default::default() }),
            ..Default::default()
        });
        let g = GraphProto {
            node: vec![
                node("Relu", "/relu", &["a"], &["r"]),              // not rewritten: a whole
                node("Conv", "/conv", &["b", "w"], &["k"]),         // reads halves
                node("Add", "/add", &["c", "a"], &["s"]),           // c taken over by a shift
                branch,                                             // d read from a subgraph
                node("Reshape", "/inner", &["f", "shape"], &["q"]), // inside a GroupNorm in halves
            ],
            output: vec![value_info("e", &[-1, 16, 1, 1])],
            ..Default::default()
        };
        let inner = HashSet::from([4]);
        let whole = read_whole(&g, &split, &inner, |i, k| (i, k) == (2, 0), |i, _| i == 1);
        let mut whole: Vec<&str> = whole.iter().map(String::as_str).collect();
        whole.sort();
        assert_eq!(whole, ["a", "d", "e"]);
    }

    /// stem Conv (3 -> c) -> Relu -> one identity block (conv1 -> Relu -> conv2, Add, Relu) ->
    /// GlobalAveragePool, all 1x1 float convolutions.
    fn one_block(c: i64) -> GraphProto {
        let w = |name: &str, o: i64, i: i64| floats(name, &[o, i, 1, 1], (0..o * i).map(|v| v as f32));
        GraphProto {
            input: vec![value_info("x", &[-1, 3, 4, 4])],
            initializer: vec![
                w("w_stem", c, 3),
                w("w1", c, c),
                floats("b1", &[c], (0..c).map(|v| v as f32)),
                w("w2", c, c),
            ],
            node: vec![
                node("Conv", "/stem/Conv", &["x", "w_stem"], &["s"]),
                node("Relu", "/stem/Relu", &["s"], &["s_r"]),
                node("Conv", "/b/conv1/Conv", &["s_r", "w1", "b1"], &["a1"]),
                node("Relu", "/b/relu/Relu", &["a1"], &["a2"]),
                node("Conv", "/b/conv2/Conv", &["a2", "w2"], &["a3"]),
                node("Add", "/b/Add", &["a3", "s_r"], &["b0"]),
                node("Relu", "/b/relu_1/Relu", &["b0"], &["b0r"]),
                node("GlobalAveragePool", "/pool", &["b0r"], &["y"]),
            ],
            output: vec![value_info("y", &[-1, c, 1, 1])],
            ..Default::default()
        }
    }

    /// stem Conv (3 -> c) -> Relu -> a projection block (conv1 c -> c -> Relu -> conv2 c -> o at
    /// `stride`; downsample c -> o at `stride`; Add, Relu) -> GlobalAveragePool, all 1x1.
    fn projection_block(c: i64, o: i64, stride: i64) -> GraphProto {
        let w = |name: &str, o: i64, i: i64| floats(name, &[o, i, 1, 1], (0..o * i).map(|v| v as f32));
        let strided = |mut n: NodeProto| {
            n.attribute.push(crate::emit::ints_attr("strides", &[stride, stride]));
            n
        };
        GraphProto {
            input: vec![value_info("x", &[-1, 3, 4, 4])],
            initializer: vec![w("w_stem", c, 3), w("w1", c, c), w("w2", o, c), w("w_down", o, c)],
            node: vec![
                node("Conv", "/stem/Conv", &["x", "w_stem"], &["s"]),
                node("Relu", "/stem/Relu", &["s"], &["s_r"]),
                node("Conv", "/b/conv1/Conv", &["s_r", "w1"], &["a1"]),
                node("Relu", "/b/relu/Relu", &["a1"], &["a2"]),
                strided(node("Conv", "/b/conv2/Conv", &["a2", "w2"], &["a3"])),
                strided(node("Conv", "/b/downsample/Conv", &["s_r", "w_down"], &["d"])),
                node("Add", "/b/Add", &["a3", "d"], &["b0"]),
                node("Relu", "/b/relu_1/Relu", &["b0"], &["b0r"]),
                node("GlobalAveragePool", "/pool", &["b0r"], &["y"]),
            ],
            output: vec![value_info("y", &[-1, o, 1, 1])],
            ..Default::default()
        }
    }

    fn rewrite(c: i64, config: &Config) -> (Plan, GraphProto) {
        rewrite_graph(one_block(c), config)
    }

    fn rewrite_graph(g: GraphProto, config: &Config) -> (Plan, GraphProto) {
        rewrite_at(g, config, 13)
    }

    fn rewrite_at(mut g: GraphProto, config: &Config, opset: i64) -> (Plan, GraphProto) {
        let df = Dataflow::build(&g).unwrap();
        let shapes = Shapes::infer(&g);
        let findings = crate::blocks::find(&g, &df, &shapes);
        let mut plan = crate::plan::plan(&g, &df, &findings, &shapes, config, opset).unwrap();
        choose(&g, &df, &shapes, &mut plan, config, opset, Path::new("."));
        let mut patch = super::super::emit(&plan, config, opset, String::new(), FrameMasks::new(&g));
        emit(&g, &plan, config, opset, Path::new("."), &mut patch).unwrap();
        patch.apply(&mut g, &mut vec![]);
        (plan, g)
    }

    #[test]
    fn the_site_tensor_is_computed_in_two_halves_and_the_consumer_in_two_convolutions() {
        let config = Config { fold_div: 4, ..Config::default() };
        let (plan, g) = rewrite(64, &config);
        let stream = plan.sites[0].stream.as_ref().expect("64 channels split at 2 * 16 = 32");
        assert_eq!((stream.split, stream.consumer.as_str()), (32, "a1"));
        assert_eq!(stream.chain, ["s", "s_r"]);
        let ops: Vec<String> = g.node.iter().map(|n| format!("{} {}", n.op_type(), n.name())).collect();
        let at = |name: &str| ops.iter().position(|o| o.ends_with(name)).unwrap_or_else(|| panic!("{name}: {ops:?}"));
        // The stem's rows [0, 32) and [32, 64), the Relu on each; the shift on the head only.
        assert!(at("/stem/Conv/head") < at("/stem/Relu/head") && at("/stem/Relu/tail") < at("/b/tsm/Gather_rows"));
        let conv = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap();
        assert_eq!(conv("/b/conv1/Conv/from_tail").input, ["s_r/tail", "w1/cols_32_64", "b1"]);
        assert_eq!(conv("/b/conv1/Conv/from_shifted").input, ["/b/tsm/shifted", "w1/cols_0_32"]);
        assert_eq!(conv("/b/conv1/Conv/sum").output, ["a1"]);
        // The residual Add still reads the whole tensor: the halves are joined back under its name.
        let join = conv("/stem/Relu/join");
        assert_eq!(
            (join.input.clone(), join.output.clone()),
            (vec!["s_r/head".into(), "s_r/tail".into()], vec!["s_r".to_string()])
        );
        // The partitioned weights replace the originals; nothing is added.
        let size = |g: &GraphProto| {
            let weights = g.initializer.iter().filter(|t| t.data_type() == 1 && !t.name().contains("/tsm/"));
            weights.map(crate::tensor::numel).sum::<i64>()
        };
        assert_eq!(size(&g), size(&one_block(64)));
        assert!(!g.initializer.iter().any(|t| t.name() == "w1" || t.name() == "w_stem"));
        let w = g.initializer.iter().find(|t| t.name() == "w_stem/rows_32_64").unwrap();
        assert_eq!((w.dims.clone(), f32s(w)[0]), (vec![32, 3, 1, 1], 96.0));
    }

    #[test]
    fn a_silu_before_the_site_is_split_as_its_sigmoid_and_its_product() {
        // The stem's activation as SiLU, `s * Sigmoid(s)` (timm's ByobNets): both nodes halved.
        let mut g = one_block(64);
        let at = g.node.iter().position(|n| n.name() == "/stem/Relu").unwrap();
        g.node.splice(
            at..=at,
            [
                node("Sigmoid", "/stem/act/Sigmoid", &["s"], &["s_sig"]),
                node("Mul", "/stem/act/Mul", &["s", "s_sig"], &["s_r"]),
            ],
        );
        let (plan, g) = rewrite_graph(g, &Config { fold_div: 4, ..Config::default() });
        let stream = plan.sites[0].stream.as_ref().expect("the chain passes through Mul and Sigmoid");
        assert_eq!(stream.chain, ["s", "s_sig", "s_r"]);
        let find = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(find("/stem/act/Mul/head").input, ["s/head", "s_sig/head"]);
        assert_eq!(find("/stem/act/Mul/tail").input, ["s/tail", "s_sig/tail"]);
        assert_eq!(find("/stem/act/Sigmoid/tail").input, ["s/tail"]);
    }

    #[test]
    fn the_head_is_rounded_up_to_whole_blocks_and_an_unaligned_tail_keeps_the_batch_form() {
        let node = |g: &GraphProto, name: &str| g.node.iter().find(|n| n.name() == name).cloned();
        // Default fold_div 8 on 64 channels: 16 move offline-bidirectional, a head of its own.
        let (plan, g) = rewrite(64, &Config::default());
        let stream = plan.sites[0].stream.as_ref().unwrap();
        assert_eq!((stream.split, stream.moved), (16, 16));
        assert!(node(&g, "/b/tsm/Slice_stay").is_none());
        // Online (past only) 8 move: the head is 16 channels, its first 8 the buffer output, and
        // the consumer reads the buffer input in their place.
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        let (plan, g) = rewrite(64, &online);
        let stream = plan.sites[0].stream.as_ref().expect("a 16-channel head and a 48-channel tail");
        assert_eq!((stream.split, stream.moved), (16, 8));
        let buffer_out = node(&g, "/b/tsm/Slice_buffer_out").unwrap();
        assert_eq!((buffer_out.input[0].as_str(), buffer_out.output[0].as_str()), ("s_r/head", "/b/tsm/buffer_out"));
        assert_eq!(node(&g, "/b/tsm/Concat").unwrap().input, ["/b/tsm/buffer_in", "/b/tsm/stay"]);
        assert_eq!(node(&g, "/b/conv1/Conv/from_shifted").unwrap().input, ["/b/tsm/shifted", "w1/cols_0_16"]);
        // Offline, fold_div 16: 4 + 4 move, 8 stay in the head, as four rows of 4 channels a frame
        // that one Gather reads (see `rows`): the next frame's, the previous one's, its own twice.
        let (plan, g) = rewrite(64, &Config { fold_div: 16, ..Config::default() });
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| (s.split, s.moved)), Some((16, 8)));
        assert_eq!(node(&g, "/b/tsm/Gather_rows").unwrap().input, ["/b/tsm/rows", "/tsm/frames/rows0"]);
        assert_eq!(node(&g, "/b/tsm/Concat").unwrap().input, ["/b/tsm/batch_carrier", "/b/tsm/shifted_frames"]);
        // The index is the graph's, made from each frame's position in the batch and in its clip.
        let table = |name: &str| {
            let t = g.initializer.iter().find(|t| t.name() == name).unwrap();
            (t.dims.clone(), crate::tensor::int_values(t).unwrap())
        };
        let (dims, offset) = table("/tsm/frames/rows0_offset_rows");
        assert_eq!((dims, &offset[..8], &offset[28..]), (vec![8, 4], &[8, 0, 6, 7, 8, 1, 6, 7][..], &[0, 1, 6, 7][..]));
        let (_, keep) = table("/tsm/frames/rows0_keep_rows");
        assert_eq!((&keep[..4], &keep[28..]), (&[1, 0, 1, 1][..], &[0, 1, 1, 1][..]));
        assert_eq!(
            node(&g, "/tsm/frames/rows0/Gather_offset").unwrap().input,
            ["/tsm/frames/rows0_offset_rows", "/tsm/frames/frame_index"]
        );
        // 24 channels: a 16-channel head would leave a tail of 8, not a whole block.
        let (plan, g) = rewrite(24, &online);
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("the tail after a head of 16 channels, 8 of 24, is not whole blocks of 16")
        );
        assert!(node(&g, "/b/tsm/Concat").is_some());
        // --shift-form batch never splits, nor says why: the stream form was not asked for.
        let (plan, _) = rewrite(64, &Config { shift_form: ShiftForm::Batch, ..Config::default() });
        assert_eq!((&plan.sites[0].stream, &plan.sites[0].stream_refused), (&None, &None));
    }

    /// `one_block(c)` as a pre-activation block: the stem's ReLU gone (the block reads the
    /// stem's convolution `s`), conv1 reading `p_r`, a ReLU named `relu` of `input` making it; and
    /// the index of that ReLU, before which a test inserts the block's norm from `s`.
    fn pre_activation_block(c: i64, relu: &str, input: &str) -> (GraphProto, usize) {
        let mut g = one_block(c);
        g.node.retain(|n| n.name() != "/stem/Relu");
        for n in &mut g.node {
            for i in n.input.iter_mut().filter(|i| i.as_str() == "s_r") {
                *i = "s".into();
            }
        }
        let at = g.node.iter().position(|n| n.name() == "/b/conv1/Conv").unwrap();
        g.node[at].input[0] = "p_r".into();
        g.node.insert(at, node("Relu", relu, &[input], &["p_r"]));
        (g, at)
    }

    #[test]
    fn a_pre_activation_block_carries_the_halves_through_its_norm_and_activation() {
        // ResNetV2's block: x -> BatchNormalization -> Relu -> conv1; the shortcut adds x itself.
        // The shift stays before the norm (a normalized zero frame is not zero), so the norm and
        // the ReLU are applied to the shifted head and to the tail, and conv1 folds the halves.
        let c = 64;
        let (mut g, at) = pre_activation_block(c, "/b/norm1/Relu", "p");
        g.node
            .insert(at, node("BatchNormalization", "/b/norm1/BatchNormalization", &["s", "g", "be", "m", "v"], &["p"]));
        for name in ["g", "be", "m", "v"] {
            g.initializer.push(floats(name, &[c], (0..c).map(|v| 1.0 + v as f32)));
        }
        let find = |g: &GraphProto, name: &str| g.node.iter().find(|n| n.name() == name).cloned().unwrap();
        for config in [Config::default(), Config { online: true, direction: Direction::Past, ..Config::default() }] {
            let (plan, g) = rewrite_graph(g.clone(), &config);
            let stream = plan.sites[0].stream.as_ref().expect("the stream form through the norm");
            assert_eq!(stream.consumer, "a1");
            assert!(stream.chain.iter().any(|t| t == "p") && stream.chain.iter().any(|t| t == "p_r"));
            // Offline the head moved by rows; online the buffer joined with the head's 8 that stay.
            let norm = find(&g, "/b/norm1/BatchNormalization/head");
            assert_eq!((norm.input[0].as_str(), norm.input[1].as_str()), ("/b/tsm/shifted", "g/rows_0_16"));
            assert_eq!(find(&g, "/b/norm1/BatchNormalization/tail").input[0], "s/tail");
            assert_eq!(find(&g, "/b/norm1/Relu/head").output, ["p_r/head"]);
            assert_eq!(find(&g, "/b/conv1/Conv/from_head").input, ["p_r/head", "w1/cols_0_16"]);
            assert_eq!(find(&g, "/b/conv1/Conv/from_tail").input, ["p_r/tail", "w1/cols_16_64", "b1"]);
        }
        // A second reader of the normalized tensor (its value needed whole) keeps the site out.
        let mut two = g.clone();
        two.node.push(node("GlobalAveragePool", "/tap", &["p"], &["tap"]));
        two.output.push(value_info("tap", &[-1, c, 1, 1]));
        let (plan, _) = rewrite_graph(two, &Config::default());
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("a BatchNormalization reads its tensor, where only convolutions may")
        );
    }

    /// `g` with a GroupNorm of `groups` over `x` (of `c` channels) inserted at node `at`, as the
    /// TorchScript exporter writes it: its shape and InstanceNormalization constants as Constant
    /// nodes, its affine a Mul and an Add of `[c, 1, 1]` initializers; its output is `gn`, its
    /// nodes named `<name>/...`.
    fn with_group_norm(mut g: GraphProto, at: usize, name: &str, x: &str, c: i64, groups: i64) -> GraphProto {
        let constant = |name: &str, value: TensorProto| NodeProto {
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(crate::onnx::attribute_proto::AttributeType::Tensor as i32),
                t: Some(value),
                ..Default::default()
            }],
            ..node("Constant", name, &[], &[name])
        };
        let n = |op: &str, suffix: &str, inputs: &[&str], output: &str| {
            node(op, &format!("{name}/{suffix}"), inputs, &[output])
        };
        let unit = [
            constant("grouped", crate::tensor::int64_vec("", &[0, groups, -1])),
            n("Reshape", "Reshape", &[x, "grouped"], "gx"),
            constant("ones", floats("", &[groups], (0..groups).map(|v| 1.0 + v as f32))),
            constant("zeros", floats("", &[groups], (0..groups).map(|v| v as f32))),
            n("InstanceNormalization", "InstanceNormalization", &["gx", "ones", "zeros"], "gn_in"),
            n("Shape", "Shape", &[x], "s_shape"),
            n("Reshape", "Reshape_1", &["gn_in", "s_shape"], "gn_r"),
            n("Mul", "Mul", &["gn_r", "gamma"], "gn_m"),
            n("Add", "Add", &["gn_m", "beta"], "gn"),
        ];
        g.node.splice(at..at, unit);
        g.initializer.push(floats("gamma", &[c, 1, 1], (0..c).map(|v| 2.0 + v as f32)));
        g.initializer.push(floats("beta", &[c, 1, 1], (0..c).map(|v| -(v as f32))));
        g
    }

    /// `one_block(c)` with the stem's activation after a GroupNorm of `groups`.
    fn group_norm_stem(c: i64, groups: i64) -> GraphProto {
        let mut g = one_block(c);
        let at = g.node.iter().position(|n| n.name() == "/stem/Relu").unwrap();
        g.node[at].input[0] = "gn".into();
        with_group_norm(g, at, "/stem/gn", "s", c, groups)
    }

    #[test]
    fn a_group_norm_before_the_site_is_computed_in_halves_between_its_groups() {
        // ResNet-50-GN: every site's tensor is made through a GroupNorm. Split at 32 of 64
        // channels in 8 groups of 8, each half normalizes its own 4 groups.
        let (plan, g) = rewrite_graph(group_norm_stem(64, 8), &Config { fold_div: 4, ..Config::default() });
        let stream = plan.sites[0].stream.as_ref().expect("the chain passes through the GroupNorm");
        assert_eq!(stream.chain, ["s", "gn_r", "gn_m", "gn", "s_r"]);
        let find = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("{name}"));
        let init = |name: &str| g.initializer.iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(find("/stem/gn/Reshape/head").input, ["s/head", "/stem/gn/Reshape/head/groups"]);
        assert_eq!(crate::tensor::int_values(init("/stem/gn/Reshape/tail/groups")), Some(vec![0, 4, -1]));
        assert_eq!(find("/stem/gn/InstanceNormalization/tail").input, ["gx/tail", "ones/rows_4_8", "zeros/rows_4_8"]);
        assert_eq!(f32s(init("ones/rows_4_8")), [5., 6., 7., 8.]);
        assert_eq!(find("/stem/gn/Shape/tail").input, ["s/tail"]);
        assert_eq!(find("/stem/gn/Reshape_1/head").input, ["gn_in/head", "s_shape/head"]);
        assert_eq!(find("/stem/gn/Mul/tail").input, ["gn_r/tail", "gamma/rows_32_64"]);
        assert_eq!(f32s(init("beta/rows_32_64"))[..2], [-32., -33.]);
        // The whole GroupNorm's nodes, constants and affine are gone; nothing else reads them.
        for gone in ["/stem/gn/Reshape", "/stem/gn/InstanceNormalization", "/stem/gn/Shape", "grouped", "ones"] {
            assert!(!g.node.iter().any(|n| n.name() == gone), "{gone}");
        }
        assert!(!g.initializer.iter().any(|t| t.name() == "gamma" || t.name() == "beta"));

        // Where the split would cut a group (64 channels in 2 groups of 32, split at 16), the site
        // takes the clip view.
        let (plan, g) = rewrite_graph(group_norm_stem(64, 2), &Config::default());
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("its head of 16 channels would cut a GroupNorm's groups of 32")
        );
        assert!(g.node.iter().any(|n| n.name() == "/stem/gn/InstanceNormalization"));
        // Online the GroupNorm stays whole (measured dearer in tract per frame, even elsewhere).
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        let (plan, _) = rewrite_graph(group_norm_stem(64, 8), &online);
        assert_eq!(plan.sites[0].stream, None);
        assert!(plan.sites[0].stream_refused.as_deref().unwrap().starts_with("online, a GroupNorm"));
    }

    #[test]
    fn a_pre_activation_group_norm_is_computed_in_halves_of_the_shifted_head_and_the_tail() {
        // BiT's and ResNetV2-50d-GN's block: x -> GroupNorm -> Relu -> conv1, the shortcut x
        // itself. The GroupNorm reads the shifted tensor twice (its first Reshape, its Shape);
        // split between its groups, each half normalizes its own, from the shifted head and the
        // tail, and conv1 folds the halves.
        let c = 64;
        let preact = |groups: i64| {
            let (g, at) = pre_activation_block(c, "/b/norm1/Relu", "gn");
            with_group_norm(g, at, "/b/norm1", "s", c, groups)
        };
        let (plan, g) = rewrite_graph(preact(8), &Config::default());
        let stream = plan.sites[0].stream.as_ref().expect("the stream form through the GroupNorm");
        assert_eq!(stream.consumer, "a1");
        assert_eq!(stream.chain, ["s", "gn_r", "gn_m", "gn", "p_r"]);
        let find = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("{name}"));
        let init = |name: &str| g.initializer.iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(find("/b/norm1/Reshape/head").input, ["/b/tsm/shifted", "/b/norm1/Reshape/head/groups"]);
        assert_eq!(crate::tensor::int_values(init("/b/norm1/Reshape/head/groups")), Some(vec![0, 2, -1]));
        assert_eq!(find("/b/norm1/Shape/head").input, ["/b/tsm/shifted"]);
        assert_eq!(find("/b/norm1/Reshape/tail").input[0], "s/tail");
        assert_eq!(find("/b/norm1/InstanceNormalization/tail").input, ["gx/tail", "ones/rows_2_8", "zeros/rows_2_8"]);
        assert_eq!(find("/b/norm1/Mul/head").input, ["gn_r/head", "gamma/rows_0_16"]);
        assert_eq!(find("/b/norm1/Relu/tail").output, ["p_r/tail"]);
        assert_eq!(find("/b/conv1/Conv/from_head").input, ["p_r/head", "w1/cols_0_16"]);
        assert!(!g.node.iter().any(|n| n.name() == "/b/norm1/InstanceNormalization"));

        // A head that would cut a group (2 groups of 32) keeps the clip view, and so does online.
        let (plan, _) = rewrite_graph(preact(2), &Config::default());
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("its head of 16 channels would cut a GroupNorm's groups of 32")
        );
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        let (plan, _) = rewrite_graph(preact(8), &online);
        assert_eq!(plan.sites[0].stream, None);
        assert!(plan.sites[0].stream_refused.as_deref().unwrap().starts_with("online, a GroupNorm after the shift"));
    }

    #[test]
    fn a_scaled_pre_activation_is_applied_to_the_halves_whichever_side_its_constant_is() {
        // NF-ResNet's block scales the shifted tensor by a constant (`beta * x`, the constant
        // first in the export) before the activation and conv1: a scale is per channel, so it is
        // applied to the shifted head and to the tail, and conv1 folds the halves.
        let c = 64;
        let (mut g, at) = pre_activation_block(c, "/b/act/Relu", "p");
        g.node.insert(at, node("Mul", "/b/Mul", &["beta", "s"], &["p"]));
        g.initializer.push(floats("beta", &[], [0.5].into_iter()));
        let (plan, g) = rewrite_graph(g, &Config::default());
        let stream = plan.sites[0].stream.as_ref().expect("the stream form through the scale");
        assert_eq!(stream.consumer, "a1");
        assert!(stream.chain.iter().any(|t| t == "p") && stream.chain.iter().any(|t| t == "p_r"));
        let find = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(find("/b/Mul/head").input, ["beta", "/b/tsm/shifted"]);
        assert_eq!(find("/b/Mul/tail").input, ["beta", "s/tail"]);
        assert_eq!(find("/b/conv1/Conv/from_head").input, ["p_r/head", "w1/cols_0_16"]);
    }

    #[test]
    fn a_group_normalization_node_is_computed_in_halves_on_the_way_back_and_after_the_shift() {
        // The dynamo exporter writes a GroupNorm as one GroupNormalization from opset 21 (scale
        // and bias one per channel; opset 18's are one per group). 64 channels in 8 groups, split
        // at 16: 2 groups and 6.
        let c = 64;
        let group_norm = |name: &str, x: &str, out: &str, per: i64| {
            let mut n =
                node("GroupNormalization", name, &[x, &format!("{name}/scale"), &format!("{name}/bias")], &[out]);
            n.attribute.push(crate::emit::int_attr("num_groups", 8));
            let values = [
                floats(&format!("{name}/scale"), &[per], (0..per).map(|v| 1.0 + v as f32)),
                floats(&format!("{name}/bias"), &[per], (0..per).map(|v| v as f32)),
            ];
            (n, values)
        };
        // On the way back: the stem's activation after a GroupNormalization with scale per channel.
        let mut g = one_block(c);
        let at = g.node.iter().position(|n| n.name() == "/stem/Relu").unwrap();
        g.node[at].input[0] = "gn".into();
        let (n, values) = group_norm("/stem/gn", "s", "gn", c);
        g.node.insert(at, n);
        g.initializer.extend(values);
        let (plan, back) = rewrite_graph(g.clone(), &Config::default());
        let stream = plan.sites[0].stream.as_ref().expect("the chain passes through the GroupNormalization");
        assert_eq!(stream.chain, ["s", "gn", "s_r"]);
        let find = |g: &GraphProto, name: &str| g.node.iter().find(|n| n.name() == name).cloned().unwrap();
        let head = find(&back, "/stem/gn/head");
        assert_eq!(head.input, ["s/head", "/stem/gn/scale/rows_0_16", "/stem/gn/bias/rows_0_16"]);
        assert_eq!(attr_int(&head, "num_groups"), Some(2));
        assert_eq!(attr_int(&find(&back, "/stem/gn/tail"), "num_groups"), Some(6));

        // After the shift (a pre-activation block), with scale and bias per group.
        let (mut g, at) = pre_activation_block(c, "/b/norm1/Relu", "gn");
        let (n, values) = group_norm("/b/norm1", "s", "gn", 8);
        g.node.insert(at, n);
        g.initializer.extend(values);
        let (plan, after) = rewrite_graph(g.clone(), &Config::default());
        let stream = plan.sites[0].stream.as_ref().expect("the stream form through the GroupNormalization");
        assert_eq!(stream.consumer, "a1");
        let tail = find(&after, "/b/norm1/tail");
        assert_eq!(tail.input, ["s/tail", "/b/norm1/scale/rows_2_8", "/b/norm1/bias/rows_2_8"]);
        assert_eq!(find(&after, "/b/norm1/head").input[0], "/b/tsm/shifted");
        assert_eq!(find(&after, "/b/conv1/Conv/from_head").input, ["p_r/head", "w1/cols_0_16"]);

        // Online both keep the Concat, and say why.
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        let (plan, _) = rewrite_graph(g, &online);
        assert!(plan.sites[0].stream_refused.as_deref().unwrap().starts_with("online, a GroupNorm after the shift"));
    }

    #[test]
    fn a_constant_read_through_an_identity_is_partitioned_and_the_identity_goes() {
        // The TorchScript exporter keeps a weight equal to another once and reads it through an
        // Identity (fresh GroupNorms' ones and zeros): the GroupNorm's affine is still constant.
        let mut g = group_norm_stem(64, 8);
        let at = g.node.iter().position(|n| n.name() == "/stem/gn/Mul").unwrap();
        g.node[at].input[1] = "gamma_again".into();
        g.node.insert(at, node("Identity", "/Identity", &["gamma"], &["gamma_again"]));
        let (plan, g) = rewrite_graph(g, &Config { fold_div: 4, ..Config::default() });
        assert!(plan.sites[0].stream.is_some(), "{:?}", plan.sites[0].stream_refused);
        let mul = g.node.iter().find(|n| n.name() == "/stem/gn/Mul/tail").unwrap();
        assert_eq!(mul.input, ["gn_r/tail", "gamma_again/rows_32_64"]);
        // Nothing reads the Identity or its constant any more.
        assert!(!g.node.iter().any(|n| n.op_type() == "Identity"));
        assert!(!g.initializer.iter().any(|t| t.name() == "gamma"));
    }

    #[test]
    fn weights_computed_from_constants_are_cut_by_slices_before_their_convolutions() {
        // BiT standardizes each convolution's weight in the graph: here the stem's and conv1's are
        // a constant times two. Their parts are Slices of the computed tensor, which stays.
        let mut g = one_block(64);
        for w in ["w_stem", "w1"] {
            g.initializer.iter_mut().find(|t| t.name() == w).unwrap().name = Some(format!("{w}_raw"));
            g.node.insert(0, node("Mul", &format!("/{w}/Mul"), &[&format!("{w}_raw"), "two"], &[w]));
        }
        g.initializer.push(floats("two", &[], std::iter::once(2.0)));
        let (plan, out) = rewrite_graph(g.clone(), &Config { fold_div: 4, ..Config::default() });
        assert!(plan.sites[0].stream.is_some(), "{:?}", plan.sites[0].stream_refused);
        assert_eq!(plan.computed_weights.keys().collect::<Vec<_>>(), ["w1", "w_stem"]);
        let at = |name: &str| out.node.iter().position(|n| n.name() == name).unwrap_or_else(|| panic!("{name}"));
        let conv = |name: &str| &out.node[at(name)];
        assert_eq!(conv("/b/conv1/Conv/from_tail").input, ["s_r/tail", "w1/cols_32_64", "b1"]);
        assert_eq!(conv("/b/conv1/Conv/from_shifted").input[1], "w1/cols_0_32");
        assert_eq!(conv("/stem/Conv/head").input[1], "w_stem/rows_0_32");
        let slice = conv("w1/Slice_cols_32_64");
        assert_eq!((slice.op_type(), slice.input[0].as_str()), ("Slice", "w1"));
        assert!(at("/w1/Mul") < at("w1/Slice_cols_32_64") && at("w1/Slice_cols_32_64") < at("/b/conv1/Conv/from_tail"));
        assert!(out.initializer.iter().any(|t| t.name() == "w1_raw"));
        // Online before opset 10, where Slice takes attributes (which TVM cannot convert), the
        // parts are Splits.
        let online = Config { online: true, direction: Direction::Past, fold_div: 4, ..Config::default() };
        let (plan, out) = rewrite_at(g.clone(), &online, 9);
        assert!(plan.sites[0].stream.is_some(), "{:?}", plan.sites[0].stream_refused);
        let cut = out.node.iter().find(|n| n.output.iter().any(|o| o == "w1/cols_16_64")).unwrap();
        assert_eq!((cut.op_type(), cut.input[0].as_str()), ("Split", "w1"));

        // A weight computed from a graph input is an input, not a weight; a quantized weight stays
        // whole for the runtimes to fuse its DequantizeLinear.
        g.input.push(value_info("scale", &[]));
        g.node.iter_mut().find(|n| n.name() == "/w1/Mul").unwrap().input[1] = "scale".into();
        assert_eq!(computed_weights(&g, &constants(&g), &Shapes::infer(&g)).keys().collect::<Vec<_>>(), ["w_stem"]);
        let at = g.node.iter().position(|n| n.name() == "/w_stem/Mul").unwrap();
        g.node[at] = node("DequantizeLinear", "/w_stem/DequantizeLinear", &["w_stem_raw", "two"], &["w_stem"]);
        let shapes = Shapes::infer(&g);
        assert!(shapes.get("w_stem").is_some() && computed_weights(&g, &constants(&g), &shapes).is_empty());
    }

    #[test]
    fn a_channel_split_writes_the_part_a_site_shifts_as_two_parts() {
        // A CSP stage: the stem makes 2c channels, a Split hands c of them to the blocks and c to
        // the stage's final Concat. The Split writes the blocks' part as its head and tail.
        let c = 64;
        let mut g = one_block(c);
        g.initializer[0] = floats("w_stem", &[2 * c, 3, 1, 1], (0..6 * c).map(|v| v as f32));
        g.initializer.push(crate::tensor::int64_vec("parts", &[c, c]));
        let stem = g.node.iter().position(|n| n.name() == "/stem/Relu").unwrap();
        let mut split = node("Split", "/stem/Split", &["s", "parts"], &["xs", "s_r"]);
        split.attribute.push(crate::emit::int_attr("axis", 1));
        g.node[stem] = split;
        let pool = g.node.len() - 1;
        g.node.insert(pool, node("Concat", "/stage/Concat", &["xs", "b0r"], &["stage"]));
        g.node[pool + 1].input[0] = "stage".into();
        g.node[pool].attribute.push(crate::emit::int_attr("axis", 1));
        let config = Config { fold_div: 4, ..Config::default() };
        // The sizes as an input (opset 13), an attribute (before), or opset 18's `num_outputs` of
        // the input's channels (the dynamo exporter's `torch.split`).
        for opset in [13, 11, 18] {
            let mut g = g.clone();
            let split = g.node.iter_mut().find(|n| n.op_type() == "Split").unwrap();
            if opset != 13 {
                split.input.truncate(1);
                g.initializer.retain(|t| t.name() != "parts");
            }
            match opset {
                11 => split.attribute.push(crate::emit::ints_attr("split", &[c, c])),
                18 => split.attribute.push(crate::emit::int_attr("num_outputs", 2)),
                _ => {}
            }
            let attribute = opset < 13;
            let (plan, g) = rewrite_at(g, &config, opset);
            let stream = plan.sites[0].stream.as_ref().expect("the chain ends at the Split");
            assert_eq!((stream.split, stream.chain.as_slice()), (32, &["s_r".to_string()][..]));
            let split = g.node.iter().find(|n| n.op_type() == "Split").unwrap();
            assert_eq!(split.output, ["xs", "s_r/head", "s_r/tail"]);
            let sizes = match split.input.get(1) {
                Some(name) => crate::tensor::int_values(g.initializer.iter().find(|t| t.name() == name).unwrap()),
                None => attr_ints(split, "split"),
            };
            assert_eq!(sizes, Some(vec![64, 32, 32]));
            assert_eq!(attribute, !g.initializer.iter().any(|t| t.name() == "/stem/Split/halves/split"));
            assert!(!g.initializer.iter().any(|t| t.name() == "parts"));
            // The residual Add, which no later site splits, reads the part whole.
            let join = g.node.iter().find(|n| n.name() == "/stem/Split/join_s_r").unwrap();
            assert_eq!(
                (join.input.as_slice(), join.output.as_slice()),
                (&["s_r/head".into(), "s_r/tail".into()][..], &["s_r".into()][..])
            );
            assert!(!split.attribute.iter().any(|a| a.name() == "num_outputs"));
        }
        // opset 18's `num_outputs` parts, the last smaller where the channels do not divide.
        let split = |k: i64| {
            let mut n = node("Split", "s", &["x"], &["a", "b", "c"]);
            n.attribute.extend([crate::emit::int_attr("axis", 1), crate::emit::int_attr("num_outputs", k)]);
            n
        };
        assert_eq!(split_sizes(&split(3), &HashMap::new(), Some(64)), Some(vec![22, 22, 20]));
        assert_eq!(split_sizes(&split(3), &HashMap::new(), None), None);
        // Online the part stays whole (measured dearer per frame in onnxruntime and tract).
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        let (plan, _) = rewrite_graph(g, &online);
        assert_eq!(plan.sites[0].stream, None);
        assert!(plan.sites[0].stream_refused.as_deref().unwrap().starts_with("online, a channel Split"));
    }

    #[test]
    fn a_site_whose_halves_would_be_joined_back_more_than_once_keeps_the_clip_view() {
        // one_block's walk splits the stem's output and its ReLU; the residual Add reads the ReLU
        // whole (one join, as ResNet-50's last site). A second whole reader of the stem's output
        // makes two joins, a pass over the tensor each: more than the clip view costs.
        let config = Config { fold_div: 4, ..Config::default() };
        let mut g = one_block(64);
        g.node.push(node("GlobalAveragePool", "/tap", &["s"], &["tap"]));
        g.output.push(value_info("tap", &[-1, 64, 1, 1]));
        let (plan, out) = rewrite_graph(g, &config);
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("2 of the tensors it would split are read whole elsewhere, each joined back by a pass over it")
        );
        assert!(out.node.iter().any(|n| n.name() == "/stem/Conv"), "the stem is not split");
        let (plan, _) = rewrite_graph(one_block(64), &config);
        assert!(plan.sites[0].stream.is_some());
    }

    #[test]
    fn a_consumer_that_widens_the_tensor_keeps_the_site_out_and_says_so() {
        // MobileNetV2's expansion: the partial sums would be added over six times x.
        let mut g = one_block(32);
        for (name, dims) in [("w1", [192, 32, 1, 1]), ("w2", [32, 192, 1, 1])] {
            let i = g.initializer.iter().position(|t| t.name() == name).unwrap();
            g.initializer[i] = floats(name, &dims, (0..dims.iter().product::<i64>()).map(|v| v as f32));
        }
        let i = g.initializer.iter().position(|t| t.name() == "b1").unwrap();
        g.initializer[i] = floats("b1", &[192], (0..192).map(|v| v as f32));
        let (plan, _) = rewrite_graph(g, &Config::default());
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("its consumer widens the tensor (32 to 192 channels)")
        );
    }

    #[test]
    fn a_site_whose_other_reader_writes_more_than_x_keeps_its_own_form() {
        // ResNet-50's first block: the downsample widens 64 to 256 channels at stride 1. Folded by
        // its input halves it would add two partial sums over four times x; the site takes the
        // clip view offline and the batch form's Concat online, and nothing is split.
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        for config in [Config::default(), online] {
            let (plan, g) = rewrite_graph(projection_block(64, 256, 1), &config);
            assert_eq!(plan.sites.len(), 1);
            assert_eq!(plan.sites[0].stream, None, "online: {}", config.online);
            assert_eq!(
                plan.sites[0].stream_refused.as_deref(),
                Some("another convolution reading a tensor it would split writes more values than that tensor holds")
            );
            assert!(!g.node.iter().any(|n| n.name().contains("/head") || n.name().contains("/from_")));
        }
        // A stage's first block in ResNet-50 from layer2 on: twice the channels at stride 2 is half
        // of x's values; the downsample is folded and the site takes the stream form.
        let (plan, g) = rewrite_graph(projection_block(64, 128, 2), &Config::default());
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| s.split), Some(16));
        let down = g.node.iter().filter(|n| n.name().starts_with("/b/downsample/Conv/from_"));
        assert_eq!(down.count(), 2);
    }

    #[test]
    fn no_form_splits_a_convolution_with_a_spatial_kernel() {
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        // ResNet-18's 3x3s: the consumer, or the stem that writes x. Where both are 1x1, it splits.
        let (plan, _) = rewrite_graph(one_block(128), &online);
        assert!(plan.sites[0].stream.is_some());
        for (at, name) in [(1, "w1"), (0, "w_stem")] {
            let mut g = one_block(128);
            let i = g.initializer.iter().position(|t| t.name() == name).unwrap();
            let (o, c) = (g.initializer[i].dims[0], g.initializer[i].dims[1]);
            g.initializer[i] = floats(name, &[o, c, 3, 3], (0..o * c * 9).map(|v| v as f32));
            let conv = g.node.iter_mut().filter(|n| n.op_type() == "Conv").nth(at).unwrap();
            conv.attribute.push(crate::emit::ints_attr("pads", &[1, 1, 1, 1]));
            for config in [Config::default(), online.clone(), Config { shift_form: ShiftForm::Tract, ..online.clone() }]
            {
                let (plan, g) = rewrite_graph(g.clone(), &config);
                assert_eq!(plan.sites[0].stream, None, "{name} {config:?}");
                let why = plan.sites[0].stream_refused.as_deref();
                let conv = if at == 1 { "/b/conv1/Conv" } else { "/stem/Conv" };
                assert_eq!(why, Some(format!("it would split the 3x3 convolution {conv}, not 1x1").as_str()), "{name}");
                assert!(!g.node.iter().any(|n| n.name().contains("/from_")), "{name} {config:?}");
            }
        }
    }

    #[test]
    fn the_tract_form_splits_only_pointwise_convolutions_that_no_other_convolution_reads() {
        let online =
            Config { online: true, direction: Direction::Past, shift_form: ShiftForm::Tract, ..Config::default() };
        // The downsample of a stage's first block reads x: folded by halves it would be two
        // products and a sum in tract, so the site keeps the batch form's Concat.
        let (plan, g) = rewrite_graph(projection_block(128, 256, 2), &online);
        assert_eq!(plan.sites[0].stream, None);
        assert_eq!(
            plan.sites[0].stream_refused.as_deref(),
            Some("--shift-form tract: another convolution reads a tensor it would split")
        );
        assert!(!g.node.iter().any(|n| n.name().contains("/head") || n.name().contains("/from_")));
        assert!(g.node.iter().any(|n| n.op_type() == "Concat"));
        // An identity block: only the shifted convolution reads x, which is split as by the default
        // where the fold is whole blocks (128 channels: 16 move)...
        let (plan, _) = rewrite(128, &online);
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| s.split), Some(16));
        // ...but not where the head would be rounded up past the fold (64 channels: 8 move).
        let (plan, _) = rewrite(64, &online);
        assert_eq!(plan.sites[0].stream, None);
        let why = plan.sites[0].stream_refused.as_deref();
        assert_eq!(why, Some("--shift-form tract takes no head rounded up (8 moved channels)"));
        let (plan, _) = rewrite(64, &Config { shift_form: ShiftForm::Stream, ..online.clone() });
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| (s.split, s.moved)), Some((16, 8)));
        // Offline it is the clip view everywhere, as --shift-form clip.
        let offline = Config { shift_form: ShiftForm::Tract, ..Config::default() };
        let (plan, g) = rewrite(64, &offline);
        assert_eq!(plan.sites[0].stream, None);
        assert!(g.node.iter().any(|n| n.op_type() == "Reshape"));
    }

    #[test]
    fn inplace_placement_reads_the_shifted_halves_on_both_paths() {
        let inplace = Config { fold_div: 4, mode: crate::config::Mode::Inplace, ..Config::default() };
        let find = |g: &GraphProto, name: &str| g.node.iter().find(|n| n.name() == name).cloned();
        // One identity block: conv1 reads the shifted head and the tail; the residual Add, which no
        // later site splits, reads them joined. x itself is never joined back.
        let (plan, g) = rewrite(64, &inplace);
        assert_eq!(plan.sites[0].edges.len(), 2);
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| s.split), Some(32));
        assert_eq!(find(&g, "/b/conv1/Conv/from_shifted").unwrap().input, ["/b/tsm/shifted", "w1/cols_0_32"]);
        assert_eq!(find(&g, "/b/tsm/Concat_whole").unwrap().input, ["/b/tsm/shifted", "s_r/tail"]);
        assert_eq!(find(&g, "/b/Add").unwrap().input, ["a3", "/b/tsm/shifted_whole"]);
        assert!(find(&g, "/stem/Relu/join").is_none());
        // Two blocks: the second site splits the first block's Add, whose head adds the branch's
        // head to the shifted head.
        let mut two = one_block(64);
        two.node.pop();
        let w = |name: &str| floats(name, &[64, 64, 1, 1], (0..64 * 64).map(|v| v as f32));
        two.initializer.extend([w("w3"), w("w4")]);
        two.node.extend([
            node("Conv", "/c/conv1/Conv", &["b0r", "w3"], &["c1"]),
            node("Relu", "/c/relu/Relu", &["c1"], &["c2"]),
            node("Conv", "/c/conv2/Conv", &["c2", "w4"], &["c3"]),
            node("Add", "/c/Add", &["c3", "b0r"], &["c0"]),
            node("Relu", "/c/relu_1/Relu", &["c0"], &["c0r"]),
            node("GlobalAveragePool", "/pool", &["c0r"], &["y"]),
        ]);
        let (plan, g) = rewrite_graph(two, &inplace);
        assert!(plan.sites.iter().all(|s| s.stream.is_some()));
        assert_eq!(find(&g, "/b/Add/head").unwrap().input, ["a3/head", "/b/tsm/shifted"]);
        assert_eq!(find(&g, "/b/Add/tail").unwrap().input, ["a3/tail", "s_r/tail"]);
        assert!(find(&g, "/b/tsm/Concat_whole").is_none());
        assert_eq!(find(&g, "/c/Add").unwrap().input, ["c3", "/c/tsm/shifted_whole"]);
        // A projection block: the downsample is folded by the shifted halves as the consumer is.
        let (plan, g) = rewrite_graph(projection_block(64, 128, 2), &inplace);
        assert!(plan.sites[0].stream.is_some());
        assert_eq!(find(&g, "/b/downsample/Conv/from_shifted").unwrap().input, ["/b/tsm/shifted", "w_down/cols_0_32"]);
        assert_eq!(find(&g, "/b/downsample/Conv/from_tail").unwrap().input[0], "s_r/tail");
        // Online the buffer input is the shifted head on both paths.
        let online = Config { online: true, direction: Direction::Past, ..inplace };
        let (_, g) = rewrite(64, &online);
        assert_eq!(find(&g, "/b/tsm/Concat_whole").unwrap().input, ["/b/tsm/buffer_in", "s_r/tail"]);
        assert_eq!(find(&g, "/b/conv1/Conv/from_shifted").unwrap().input[0], "/b/tsm/buffer_in");
    }

    fn floats(name: &str, dims: &[i64], values: impl Iterator<Item = f32>) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            float_data: values.collect(),
            ..Default::default()
        }
    }

    fn f32s(t: &TensorProto) -> Vec<f32> {
        t.raw_data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn weights_are_partitioned_by_rows_and_columns() {
        // W[o, i, k] = 100 o + 10 i + k, shape [4, 3, 2].
        let w = floats("w", &[4, 3, 2], (0..24).map(|x| (100 * (x / 6) + 10 * (x / 2 % 3) + x % 2) as f32));
        let here = Path::new(".");
        let s = slice_tensor(&w, &tensor_bytes(&w, here).unwrap(), 4, "s", (1, 3), (1, 3));
        assert_eq!(s.dims, [2, 2, 2]);
        assert_eq!(f32s(&s), [110., 111., 120., 121., 210., 211., 220., 221.]);
        let b = floats("b", &[4], (0..4).map(|x| x as f32));
        assert_eq!(f32s(&slice_tensor(&b, &tensor_bytes(&b, here).unwrap(), 4, "s", (2, 4), (0, 1))), [2., 3.]);
        // Integer weights are not partitioned.
        assert_eq!(element_size(&crate::tensor::int64_vec("i", &[1, 2]), here), None);
    }
}
