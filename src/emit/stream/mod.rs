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
//! and the runs `docs/performance.md` lists): per frame, onnxruntime 1.02-1.06x of
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

mod find;
mod write;

pub use find::choose;
pub use write::emit;

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
    let dt = DataType::try_from(t.data_type()).ok()?;
    let typed = match dt {
        DataType::Float => t.float_data.len(),
        DataType::Double => t.double_data.len(),
        DataType::Float16 | DataType::Bfloat16 => 0,
        _ => return None,
    };
    let size = usize::try_from(crate::tensor::raw_bytes(dt, 1)?).ok()?;
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

#[cfg(test)]
mod tests {
    use super::find::split_sizes;
    use super::write::slice_tensor;
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
        let mut patch = if config.online {
            let spatial = plan.sites.iter().map(|s| (s.height.known().unwrap(), s.width.known().unwrap())).collect();
            let shapes = super::super::OnlineShapes { spatial, batch: Default::default(), elem_type: 1 };
            super::super::emit_online(&plan, &shapes, opset, String::new()).0
        } else {
            super::super::emit(&plan, config, opset, String::new(), FrameMasks::new(&g))
        };
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
            for config in [Config::default(), online.clone()] {
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
    fn the_tract_form_online_splits_nothing_and_keeps_the_residual_add_out_of_the_convolution() {
        let online =
            Config { online: true, direction: Direction::Past, shift_form: ShiftForm::Tract, ..Config::default() };
        let add_inputs = |g: &GraphProto| g.node.iter().find(|n| n.name() == "/b/Add").unwrap().input.clone();
        // An identity block after a 1x1 convolution: no stream site (the default splits it), and
        // the residual Add reads x joined back from the batch form's two flat slices, which tract
        // does not fuse into conv2's product.
        let (plan, g) = rewrite(128, &online);
        assert_eq!((plan.sites[0].stream.as_ref(), plan.sites[0].stream_refused.as_ref()), (None, None));
        let add = g.node.iter().position(|n| n.name() == "/b/Add").unwrap();
        assert_eq!(plan.sites[0].rejoined, [(5, 1)]);
        assert_eq!(add_inputs(&g), ["a3", "/b/tsm/rejoined"]);
        assert!(!g.node.iter().any(|n| n.name().contains("/head") || n.name().contains("/from_")));
        let producer = |t: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == t)).unwrap().clone();
        let concat = producer(&producer("/b/tsm/rejoined").input[0]);
        assert_eq!(concat.input, ["/b/tsm/buffer_out_flat", "/b/tsm/rest"]);
        assert!(g.node.iter().position(|n| n.name() == "/b/tsm/Reshape_rejoined").unwrap() < add);
        let (plan, _) = rewrite(128, &Config { shift_form: ShiftForm::Stream, ..online.clone() });
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| s.split), Some(16));
        assert!(plan.sites[0].rejoined.is_empty(), "the default rejoins nothing");
        // Not after a 3x3 convolution (the Add a small part of its product), nor where the
        // convolution has another reader (tract fuses only a lone successor), nor with the
        // placement inplace (the Add reads the shifted tensor, a Concat's output already).
        let mut g3 = one_block(128);
        let i = g3.initializer.iter().position(|t| t.name() == "w2").unwrap();
        g3.initializer[i] = floats("w2", &[128, 128, 3, 3], (0..128 * 128 * 9).map(|v| v as f32));
        let conv2 = g3.node.iter_mut().find(|n| n.name() == "/b/conv2/Conv").unwrap();
        conv2.attribute.push(crate::emit::ints_attr("pads", &[1, 1, 1, 1]));
        let mut read_twice = one_block(128);
        read_twice.node.push(node("Relu", "/side", &["a3"], &["side"]));
        read_twice.output.push(value_info("side", &[-1, 128, 4, 4]));
        let inplace = Config { mode: crate::config::Mode::Inplace, ..online.clone() };
        // Nor before opset 10, where the buffer is sliced from x's channels, not the flat frame.
        let cases = [
            ("3x3", g3, &online, 13),
            ("read twice", read_twice, &online, 13),
            ("inplace", one_block(128), &inplace, 13),
            ("opset 9", one_block(128), &online, 9),
        ];
        for (what, g, config, opset) in cases {
            let (plan, g) = rewrite_at(g, config, opset);
            assert!(plan.sites[0].rejoined.is_empty(), "{what}");
            assert!(!add_inputs(&g).iter().any(|i| i == "/b/tsm/rejoined"), "{what}");
        }
        // A stage's first block: its Add sums two convolutions and does not read x.
        let (plan, g) = rewrite_graph(projection_block(128, 256, 2), &online);
        assert_eq!((plan.sites[0].stream.as_ref(), plan.sites[0].rejoined.len()), (None, 0));
        assert!(g.node.iter().any(|n| n.op_type() == "Concat"));
        // Offline it takes the default's sites (here both groups of 8 move: a head of 16), with the
        // default's head, which the volume then shifts, its frames along one depth (emit::volume).
        let offline = Config { shift_form: ShiftForm::Tract, ..Config::default() };
        let (plan, g) = rewrite(64, &offline);
        assert_eq!(plan.sites[0].stream.as_ref().map(|s| (s.split, s.moved)), Some((16, 16)));
        assert!(plan.sites[0].rejoined.is_empty());
        assert!(g.node.iter().any(|n| n.name() == "/b/tsm/Gather_rows"));
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
