//! Finds residual blocks: an `Add` (or two-input `Sum`) joining two rank-4 activations that fork
//! from one tensor. The fork is the join's immediate dominator in the dataflow graph; the shortcut is
//! the identity or the shorter, linear path (a downsample Conv, AvgPool + Conv, with or without BN);
//! the residual branch is the other path. Every Add that is not such a join is reported with the
//! reason, so a user can see why a block they expected was not shifted.

use crate::graph::{node_label, Dataflow, Producer, Vertex};
use crate::onnx::{GraphProto, NodeProto};
use crate::shapes::{Dim, Shapes};
use petgraph::graph::NodeIndex;
use std::collections::HashSet;

/// The path a residual block's shortcut takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortcut {
    Identity,
    /// A projection (downsample) path of this many nodes.
    Projection(usize),
}

/// One residual block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Index of the joining Add in `graph.node`.
    pub add: usize,
    /// The Add's name (or a label when it has none).
    pub name: String,
    /// The tensor both paths fork from: the block input.
    pub fork: String,
    /// Batch, channels, height and width of the fork tensor.
    pub batch: Dim,
    pub channels: i64,
    pub height: Dim,
    pub width: Dim,
    /// The fork is `[N, H, W, C]` (see `classify`); the shift then runs on its NCHW transpose.
    pub channels_last: bool,
    pub shortcut: Shortcut,
    /// Nodes on the residual branch.
    pub branch_len: usize,
    /// Consumers (node, input slot) of the fork inside the residual branch.
    pub branch_edges: Vec<(usize, usize)>,
    /// Consumers of the fork on the shortcut (the Add itself for an identity shortcut).
    pub shortcut_edges: Vec<(usize, usize)>,
    /// The block input that `--mode inplace` shifts, and its consumers in the block. Usually the
    /// fork; in pre-activation blocks whose projection forks after BN-ReLU, the tensor before them,
    /// so that the block computes exactly `block(shift(x))`.
    pub input: String,
    pub input_edges: Vec<(usize, usize)>,
    /// Stage number (from 0) and the block's index within its stage, for `--every`.
    pub stage: usize,
    pub index_in_stage: usize,
}

/// An Add that is not a residual join, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: String,
    /// Index of the Add in `graph.node`.
    pub index: usize,
}

/// What the finder saw, in node order.
#[derive(Debug, Default)]
pub struct Findings {
    pub blocks: Vec<Block>,
    pub skipped: Vec<Skipped>,
}

/// Ops a projection shortcut may consist of: linear maps that keep the block input's content.
const SHORTCUT_OPS: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "AveragePool",
    "MaxPool",
    "Identity",
    "Pad",
    "Mul",
    "Add",
];
const MAX_SHORTCUT_NODES: usize = 4;
/// Ops that only change how a tensor is stored (quantized, or in another float type): a QDQ model's
/// shortcut reads `DequantizeLinear -> Conv -> QuantizeLinear -> DequantizeLinear`, which is the
/// float model's one-Conv projection, so they neither count towards a shortcut's length nor make it
/// something else than a projection.
const STORAGE_OPS: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Cast"];
/// Ops that do not end a chain of blocks: a block whose input comes from the previous block's
/// join through these stays in the previous block's stage.
const CHAIN_OPS: &[&str] = &[
    "Relu",
    "Clip",
    "LeakyRelu",
    "PRelu",
    "Identity",
    "Dropout",
    "HardSwish",
    "Gelu",
    "Elu",
    "Selu",
    "Celu",
    "QuantizeLinear",
    "DequantizeLinear",
    "Cast",
];

/// Finds the residual blocks of `graph`, in node (network-depth) order.
pub fn find(graph: &GraphProto, df: &Dataflow, shapes: &Shapes) -> Findings {
    let mut found = Findings::default();
    for (ni, node) in graph.node.iter().enumerate() {
        let is_join = (node.op_type() == "Add" || node.op_type() == "Sum")
            && (node.domain().is_empty() || node.domain() == "ai.onnx");
        if !is_join {
            continue;
        }
        let name = node_label(node, ni);
        match classify(graph, df, shapes, ni) {
            Ok(block) => found.blocks.push(block),
            Err(reason) => found.skipped.push(Skipped { node: name, reason, index: ni }),
        }
    }
    assign_stages(graph, df, &mut found.blocks);
    found
}

fn classify(graph: &GraphProto, df: &Dataflow, shapes: &Shapes, ni: usize) -> Result<Block, String> {
    let node = &graph.node[ni];
    let inputs: Vec<&String> = node.input.iter().filter(|n| !n.is_empty()).collect();
    if inputs.len() != 2 {
        return Err(format!("adds {} tensors; a residual join adds two", inputs.len()));
    }
    let (a, b) = (inputs[0], inputs[1]);
    for t in [a, b] {
        if df.constant.contains(t) {
            return Err(format!("input '{t}' is a constant (a bias, not a residual join)"));
        }
    }
    if a == b {
        return Err(format!("adds '{a}' to itself"));
    }
    for t in [a, b] {
        match shapes.get(t) {
            None => {
                let op = match df.producer.get(t) {
                    Some(Producer::Node(p, _)) => format!(
                        " (produced by {}, an operator whose shape this tool does not infer)",
                        graph.node[*p].op_type()
                    ),
                    _ => String::new(),
                };
                return Err(format!("shape of input '{t}' is unknown{op}"));
            }
            Some(info) if !info.is_nchw() => {
                let last =
                    (info.rank() == 4 && info.channel_axis == Some(3)).then_some(" (its channels are its last axis)");
                return Err(format!(
                    "input '{t}' {} is not a rank-4 [N, C, H, W] activation{}",
                    info.display(),
                    last.unwrap_or_default()
                ));
            }
            Some(_) => {}
        }
    }
    let (sa, sb) = (shapes.get(a).unwrap(), shapes.get(b).unwrap());
    let clash = sa.dims.iter().zip(&sb.dims).any(|(x, y)| matches!((x, y), (Dim::Known(p), Dim::Known(q)) if p != q));
    if clash {
        return Err(format!(
            "inputs have different shapes {} and {} (a broadcast, not a residual join)",
            sa.display(),
            sb.display()
        ));
    }
    let add_vx = df.node_vx[ni];
    let fork_vx = match df.dominators.immediate_dominator(add_vx) {
        Some(f) if f != df.root => f,
        _ => return Err("its inputs do not fork from one tensor".into()),
    };
    let path = |t: &str| -> HashSet<NodeIndex> {
        match df.producer_vertex(t) {
            Some(v) if v == fork_vx => HashSet::new(),
            Some(v) => df.ancestors_until(v, fork_vx),
            None => HashSet::new(),
        }
    };
    let (pa, pb) = (path(a), path(b));
    if !pa.is_disjoint(&pb) {
        return Err("its two paths share nodes after the fork".into());
    }
    // The fork tensor: the one output of the fork vertex that both paths (or the Add) consume.
    let fork_outputs = vertex_outputs(graph, df, fork_vx);
    let used_by = |set: &HashSet<NodeIndex>, t: &str| -> Vec<&String> {
        let on_path = |o: &String| o == t || df.consumers_of(o).iter().any(|(c, _)| set.contains(&df.node_vx[*c]));
        fork_outputs.iter().filter(|o| on_path(o)).collect()
    };
    let fork = match (used_by(&pa, a).as_slice(), used_by(&pb, b).as_slice()) {
        ([x], [y]) if x == y => (*x).clone(),
        _ => {
            let f = match df.g[fork_vx] {
                Vertex::Node(f) => node_label(&graph.node[f], f),
                _ => "the graph input".into(),
            };
            return Err(format!("its paths leave {f} through different outputs"));
        }
    };
    // A channels-last fork between channel-first joins: a MetaFormer (timm's ConvFormer) whose
    // exporter folded the Transpose back out of the stem's LayerNorm2d into the next one's
    // Transpose in, so the block's branch reads the stem's `[N, H, W, C]` LayerNorm output.
    let Some(info) = shapes.get(&fork).filter(|i| i.rank() == 4 && matches!(i.channel_axis, Some(1) | Some(3))) else {
        return Err(format!("fork tensor '{fork}' is not a known rank-4 [N, C, H, W] activation"));
    };
    let channels_last = info.channel_axis == Some(3);
    let (c, h, w) = if channels_last { (3, 1, 2) } else { (1, 2, 3) };
    let Some(channels) = info.dims[c].known() else {
        return Err(format!("channel count of fork tensor '{fork}' is unknown"));
    };
    let (short_in, short_set, branch_set) = match pa.len().cmp(&pb.len()) {
        std::cmp::Ordering::Less => (a, &pa, &pb),
        std::cmp::Ordering::Greater => (b, &pb, &pa),
        std::cmp::Ordering::Equal => {
            return Err(format!(
                "both paths from '{fork}' have {} nodes: no shorter shortcut to tell from the branch",
                pa.len()
            ));
        }
    };
    let short_nodes: Vec<usize> = short_set
        .iter()
        .filter_map(|v| match df.g[*v] {
            Vertex::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    // From a channels-last fork, the shortcut's Transpose to NCHW only changes the layout.
    let to_nchw = |n: usize| {
        channels_last
            && graph.node[n].op_type() == "Transpose"
            && crate::shapes::attr_ints(&graph.node[n], "perm").as_deref() == Some(&[0, 3, 1, 2][..])
    };
    let mut short_ops: Vec<&str> = short_nodes
        .iter()
        .filter(|&&n| !to_nchw(n))
        .map(|&n| graph.node[n].op_type())
        .filter(|op| !STORAGE_OPS.contains(op))
        .collect();
    short_ops.sort_unstable();
    let group_norms = short_ops.iter().filter(|op| **op == "InstanceNormalization").count();
    if group_norms > 0 {
        // GroupNorm as PyTorch exports it (timm's `resnet50_gn` normalizes its projections so): a
        // Reshape to `[0, G, -1]`, InstanceNormalization, a Reshape back to `Shape(x)`, the affine
        // Mul and Add. One normalization, as BatchNormalization is, if its Reshapes keep each frame
        // apart.
        if short_nodes.iter().all(|&n| keeps_frames(graph, shapes, n, &info.dims[0])) {
            short_ops.retain(|op| !matches!(*op, "Reshape" | "Shape"));
            for affine in ["Mul", "Add"] {
                for _ in 0..group_norms {
                    if let Some(k) = short_ops.iter().position(|op| *op == affine) {
                        short_ops.remove(k);
                    }
                }
            }
        }
    }
    if short_ops.len() > MAX_SHORTCUT_NODES || short_ops.iter().any(|op| !SHORTCUT_OPS.contains(op)) {
        return Err(format!(
            "the shorter path from '{fork}' ({}) is not an identity or projection shortcut",
            short_ops.join(", ")
        ));
    }
    let mut branch_edges = Vec::new();
    let mut shortcut_edges = Vec::new();
    for &(c, slot) in df.consumers_of(&fork) {
        if c == ni {
            if node.input[slot] == *short_in {
                shortcut_edges.push((c, slot));
            }
        } else if branch_set.contains(&df.node_vx[c]) {
            branch_edges.push((c, slot));
        } else if short_set.contains(&df.node_vx[c]) {
            shortcut_edges.push((c, slot));
        }
    }
    let (input, input_edges) = match pre_activation_input(graph, df, shapes, &fork) {
        Some(found) => found,
        None => {
            let mut all: Vec<(usize, usize)> = branch_edges.iter().chain(&shortcut_edges).copied().collect();
            all.sort_unstable();
            (fork.clone(), all)
        }
    };
    Ok(Block {
        input,
        input_edges,
        add: ni,
        name: node_label(node, ni),
        fork,
        batch: info.dims[0].clone(),
        channels,
        height: info.dims[h].clone(),
        width: info.dims[w].clone(),
        channels_last,
        shortcut: if short_ops.is_empty() { Shortcut::Identity } else { Shortcut::Projection(short_ops.len()) },
        branch_len: branch_set.len(),
        branch_edges,
        shortcut_edges,
        stage: 0,
        index_in_stage: 0,
    })
}

/// The tensors a dataflow vertex gives: a graph input's, or a node's outputs (none for the root).
fn vertex_outputs(graph: &GraphProto, df: &Dataflow, v: NodeIndex) -> Vec<String> {
    match df.g[v] {
        Vertex::Input(i) => vec![graph.input[i].name().to_owned()],
        Vertex::Node(f) => graph.node[f].output.iter().filter(|o| !o.is_empty()).cloned().collect(),
        Vertex::Root => Vec::new(),
    }
}

/// Skipped Adds that may be residual joins the finder could not judge for want of shapes: both
/// inputs are activations that fork from one tensor (the Add's immediate dominator is a node or a
/// graph input), and an input or the fork has no known channel count. Each with those tensors.
pub fn open_joins(
    graph: &GraphProto,
    df: &Dataflow,
    shapes: &Shapes,
    findings: &Findings,
) -> Vec<(String, Vec<String>)> {
    let open = |t: &str| shapes.get(t).is_none_or(|i| i.rank() < 2 || i.dims[1].known().is_none());
    let mut out = Vec::new();
    for s in &findings.skipped {
        let node = &graph.node[s.index];
        let inputs: Vec<&String> = node.input.iter().filter(|n| !n.is_empty()).collect();
        if inputs.len() != 2 || inputs.iter().any(|t| df.constant.contains(*t)) || inputs[0] == inputs[1] {
            continue;
        }
        let fork = match df.dominators.immediate_dominator(df.node_vx[s.index]) {
            Some(v) if v != df.root => vertex_outputs(graph, df, v),
            _ => continue,
        };
        let tensors: Vec<String> = inputs.iter().map(|t| t.to_string()).chain(fork).filter(|t| open(t)).collect();
        if !tensors.is_empty() {
            out.push((s.node.clone(), tensors));
        }
    }
    out
}

/// Per-frame ops a pre-activation's normalization and activation are written with, between a
/// block's input and its fork: BatchNormalization, or GroupNorm as PyTorch exports it (a Reshape to
/// `[0, G, -1]`, InstanceNormalization, a Reshape back to `Shape(x)`, the affine Mul and Add).
const PRE_ACTIVATION_OPS: &[&str] = &[
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "Reshape",
    "Shape",
    "Mul",
    "Add",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "HardSwish",
    "Elu",
    "Selu",
    "Celu",
];

const NORMALIZATIONS: &[&str] = &["BatchNormalization", "InstanceNormalization", "GroupNormalization"];

/// Where the fork is computed by a normalization and an activation that nothing else reads, from
/// the output of a previous residual join or of a pool (a pre-activation block's projection: `x ->
/// BN -> ReLU -> fork`, or GroupNorm in BiT's blocks), the block input `x` and its consumers. Shifting after a
/// normalization is not the same as shifting before it: the zero frames at the clip's edges would
/// become BN's bias, and GroupNorm normalizes each frame over channels the shift moves. A chain that
/// starts anywhere else (a stem's Conv-BN-ReLU, MobileNetV2's projection BN) belongs to the layer
/// before the block, and the fork stays the block input.
fn pre_activation_input(
    graph: &GraphProto,
    df: &Dataflow,
    shapes: &Shapes,
    fork: &str,
) -> Option<(String, Vec<(usize, usize)>)> {
    let data_inputs = |n: &NodeProto| -> Vec<String> {
        n.input.iter().filter(|i| !i.is_empty() && !df.constant.contains(*i)).cloned().collect()
    };
    let is_join = |p: usize| {
        let n = &graph.node[p];
        (n.op_type() == "Add" || n.op_type() == "Sum") && data_inputs(n).len() == 2
    };
    // A normalization after a pool is the block's own: a layer before the block would have put it
    // after its convolution (BiT's first block reads the stem's max pool so).
    let is_entry = |p: usize| is_join(p) || matches!(graph.node[p].op_type(), "MaxPool" | "AveragePool");
    let Some(Producer::Node(last, 0)) = df.producer.get(fork) else { return None };
    // The fork straight out of a normalization is a projection's BN, not a pre-activation.
    if NORMALIZATIONS.contains(&graph.node[*last].op_type()) || is_join(*last) {
        return None;
    }
    // Walk back from the fork to the one join (or pool) output the chain starts from.
    let mut chain = std::collections::BTreeSet::new();
    let mut todo = vec![fork.to_string()];
    let mut x: Option<String> = None;
    while let Some(t) = todo.pop() {
        let Some(Producer::Node(p, _)) = df.producer.get(&t) else { return None };
        if is_entry(*p) {
            if x.as_ref().is_some_and(|x| *x != t) {
                return None;
            }
            x = Some(t);
            continue;
        }
        let node = &graph.node[*p];
        if !PRE_ACTIVATION_OPS.contains(&node.op_type()) || chain.len() >= 16 {
            return None;
        }
        if chain.insert(*p) {
            todo.extend(data_inputs(node));
        }
    }
    let x = x?;
    let batch = &shapes.get(&x)?.dims[0];
    // The chain is the block's own and keeps each frame apart: nothing outside it reads x or what
    // it computes (but the fork), and its Reshapes keep the batch axis.
    let inside = |t: &str| df.consumers_of(t).iter().all(|(c, _)| chain.contains(c));
    let outputs_inside = chain.iter().all(|&p| graph.node[p].output.iter().all(|o| o.as_str() == fork || inside(o)));
    let normalized = chain.iter().any(|&p| NORMALIZATIONS.contains(&graph.node[p].op_type()));
    if !(outputs_inside && inside(&x) && normalized && chain.iter().all(|&p| keeps_frames(graph, shapes, p, batch))) {
        return None;
    }
    let edges = df.consumers_of(&x).to_vec();
    Some((x, edges))
}

/// Whether node `n` keeps each frame apart: anything but a Reshape, or a Reshape whose output keeps
/// the `batch` axis (GroupNorm's to `[0, G, -1]` and back).
fn keeps_frames(graph: &GraphProto, shapes: &Shapes, n: usize, batch: &Dim) -> bool {
    let node = &graph.node[n];
    node.op_type() != "Reshape" || shapes.get(&node.output[0]).is_some_and(|i| i.dims.first() == Some(batch))
}

/// Numbers stages and blocks within them. A stage starts at the first block, at each block whose
/// shortcut is a projection, and at each block whose input does not come from the previous block's
/// join (through activations only): e.g. MobileNetV2's identity blocks after a non-residual block.
fn assign_stages(graph: &GraphProto, df: &Dataflow, blocks: &mut [Block]) {
    let mut prev_add: Option<usize> = None;
    let mut stage = 0;
    let mut index = 0;
    for (k, block) in blocks.iter_mut().enumerate() {
        let chained = prev_add.is_some_and(|p| chained_from(graph, df, &block.fork, p));
        if k > 0 && (block.shortcut != Shortcut::Identity || !chained) {
            stage += 1;
            index = 0;
        }
        block.stage = stage;
        block.index_in_stage = index;
        index += 1;
        prev_add = Some(block.add);
    }
}

/// Whether `tensor` is the output of node `join`, directly or through activation ops.
fn chained_from(graph: &GraphProto, df: &Dataflow, tensor: &str, join: usize) -> bool {
    let mut t = tensor.to_string();
    for _ in 0..8 {
        let Some(Producer::Node(p, _)) = df.producer.get(&t) else { return false };
        if *p == join {
            return true;
        }
        let n = &graph.node[*p];
        if !CHAIN_OPS.contains(&n.op_type()) {
            return false;
        }
        match n.input.first() {
            Some(i) => t = i.clone(),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::graph::tests::{node, value_info};
    use crate::onnx::NodeProto;
    use crate::tensor::int64;

    /// A tiny ResNet: stem conv, one identity block, one projection block, then a bias Add.
    pub fn tiny_resnet() -> GraphProto {
        let conv = |name: &str, x: &str, w: &str, y: &str| -> NodeProto { node("Conv", name, &[x, w], &[y]) };
        GraphProto {
            input: vec![value_info("x", &[-1, 3, 8, 8])],
            initializer: vec![
                int64("w_stem", &[8, 3, 1, 1], &[0; 24]),
                int64("w8", &[8, 8, 1, 1], &[0; 64]),
                int64("w16", &[16, 8, 1, 1], &[0; 128]),
                int64("w16b", &[16, 16, 1, 1], &[0; 256]),
                int64("bias", &[1, 16, 1, 1], &[0; 16]),
            ],
            node: vec![
                conv("/stem/Conv", "x", "w_stem", "s"),
                node("Relu", "/stem/Relu", &["s"], &["s_r"]),
                conv("/layer1/layer1.0/conv1/Conv", "s_r", "w8", "a1"),
                node("Relu", "/layer1/layer1.0/relu/Relu", &["a1"], &["a2"]),
                conv("/layer1/layer1.0/conv2/Conv", "a2", "w8", "a3"),
                node("Add", "/layer1/layer1.0/Add", &["a3", "s_r"], &["b0"]),
                node("Relu", "/layer1/layer1.0/relu_1/Relu", &["b0"], &["b0r"]),
                conv("/layer2/layer2.0/conv1/Conv", "b0r", "w16", "c1"),
                node("Relu", "/layer2/layer2.0/relu/Relu", &["c1"], &["c2"]),
                conv("/layer2/layer2.0/conv2/Conv", "c2", "w16b", "c3"),
                conv("/layer2/layer2.0/downsample/Conv", "b0r", "w16", "d"),
                node("Add", "/layer2/layer2.0/Add", &["c3", "d"], &["e"]),
                node("Add", "/head/Add", &["e", "bias"], &["y"]),
            ],
            output: vec![value_info("y", &[-1, 16, 8, 8])],
            ..Default::default()
        }
    }

    fn findings(graph: &GraphProto) -> Findings {
        let df = Dataflow::build(graph).unwrap();
        find(graph, &df, &Shapes::infer(graph))
    }

    #[test]
    fn finds_identity_and_projection_blocks() {
        let f = findings(&tiny_resnet());
        assert_eq!(f.blocks.len(), 2);
        let b0 = &f.blocks[0];
        assert_eq!((b0.name.as_str(), b0.fork.as_str(), b0.channels), ("/layer1/layer1.0/Add", "s_r", 8));
        assert_eq!(b0.shortcut, Shortcut::Identity);
        assert_eq!(b0.branch_edges, vec![(2, 0)]);
        assert_eq!(b0.shortcut_edges, vec![(5, 1)]);
        let b1 = &f.blocks[1];
        assert_eq!((b1.fork.as_str(), b1.channels), ("b0r", 8));
        assert_eq!(b1.shortcut, Shortcut::Projection(1));
        assert_eq!(b1.branch_edges, vec![(7, 0)]);
        assert_eq!(b1.shortcut_edges, vec![(10, 0)]);
        assert_eq!((b0.stage, b1.stage), (0, 1));
        assert_eq!(
            f.skipped,
            vec![Skipped {
                node: "/head/Add".into(),
                reason: "input 'bias' is a constant (a bias, not a residual join)".into(),
                index: 12
            }]
        );
    }

    #[test]
    fn nonlinear_shorter_path_is_not_a_shortcut() {
        let mut g = tiny_resnet();
        g.node[10].output[0] = "d0".into();
        g.node.insert(11, node("Relu", "extra", &["d0"], &["d"]));
        let f = findings(&g);
        assert_eq!(f.blocks.len(), 1);
        assert!(
            f.skipped
                .iter()
                .any(|s| s.node == "/layer2/layer2.0/Add" && s.reason.contains("not an identity or projection")),
            "{:?}",
            f.skipped
        );
    }

    #[test]
    fn rank_2_adds_are_skipped_with_the_shape() {
        let g = GraphProto {
            input: vec![value_info("x", &[-1, 10])],
            node: vec![node("Relu", "r", &["x"], &["a"]), node("Add", "add", &["x", "a"], &["y"])],
            ..Default::default()
        };
        let f = findings(&g);
        assert!(f.blocks.is_empty());
        assert_eq!(f.skipped[0].reason, "input 'x' [N, 10] is not a rank-4 [N, C, H, W] activation");
    }
}
