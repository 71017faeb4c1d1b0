//! Finds residual blocks: an `Add` (or `Sum`) joining rank-4 activations that fork from one tensor.
//! The fork is the join's immediate dominator in the dataflow graph; the shortcut is the identity or
//! the shorter, linear path (a downsample Conv, AvgPool + Conv, with or without BN); the residual
//! branch is the other path. A chain of Adds of terms of one tensor is one join (RepVGG's and
//! MobileOne's training-time blocks: an identity BN plus convolutions, the convolutions the
//! branch); a join inside another's branch from the same tensor belongs to that block. Every Add
//! that is not such a join is reported with the reason, so a user can see why a block they
//! expected was not shifted.

use crate::graph::{node_label, Dataflow, Producer, Vertex};
use crate::onnx::{GraphProto, NodeProto};
use crate::shapes::{Dim, Info, Shapes};
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
    /// The shortcut only normalizes (RepVGG's and MobileOne's identity BatchNormalization): it keeps
    /// the block input's shape, so no new stage starts at the block.
    pub normalizing_shortcut: bool,
    /// The nodes on the residual branch (indices into `graph.node`, in order).
    pub branch: Vec<usize>,
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
        // Shape arithmetic (timm's "same" pads: a dozen Adds a convolution) is not worth a line.
        if !is_sum(node) || node.output.first().is_some_and(|o| shapes.is_folded(o)) {
            continue;
        }
        let name = node_label(node, ni);
        match classify(graph, df, shapes, ni) {
            Ok(block) => found.blocks.push(block),
            Err(reason) => found.skipped.push(Skipped { node: name, reason, index: ni }),
        }
    }
    // A join inside another's branch is part of that block: where it forks from the same tensor
    // (FastViT's RepMixer `x + s * (mixer(x) - norm(x))`, whose mixer is a MobileOne sum with its
    // own identity BN), where its shortcut only normalizes (an identity BN to re-parameterize a
    // layer of that branch: RepGhost's ghost modules), and where it adds a tensor of the branch
    // to a function of it (ConvNeXt-V2's GRN, `x + gamma * x * N(x) + beta`): TSM shifts a block
    // once, at its branch's input.
    let inner: Vec<(usize, String)> = found
        .blocks
        .iter()
        .filter_map(|j| {
            let outer = found.blocks.iter().find(|k| k.add != j.add && k.branch.binary_search(&j.add).is_ok())?;
            let reason = if outer.fork == j.fork {
                "which forks from the same tensor"
            } else if j.normalizing_shortcut {
                "its shortcut an identity BN that re-parameterizes a layer of that branch"
            } else {
                "a residual sum within that block (ConvNeXt-V2's global response norm), not a block of its own"
            };
            Some((j.add, format!("inside the branch of the block at {}, {reason}", outer.name)))
        })
        .collect();
    for (add, reason) in inner {
        found.blocks.retain(|b| b.add != add);
        found.skipped.push(Skipped { node: node_label(&graph.node[add], add), reason, index: add });
    }
    found.skipped.sort_by_key(|s| s.index);
    assign_stages(graph, df, &mut found.blocks);
    found
}

fn classify(graph: &GraphProto, df: &Dataflow, shapes: &Shapes, ni: usize) -> Result<Block, String> {
    let node = &graph.node[ni];
    let inputs: Vec<&String> = node.input.iter().filter(|n| !n.is_empty()).collect();
    if let Some(t) = inputs.iter().find(|t| df.constant.contains(**t)) {
        return Err(format!("input '{t}' is a constant (a bias, not a residual join)"));
    }
    if let Some(root) = sum_root(graph, df, ni) {
        return Err(format!(
            "a term of the sum at {}, which is judged as one join",
            node_label(&graph.node[root], root)
        ));
    }
    // RepVGG's and MobileOne's training-time blocks add an identity BatchNormalization and
    // convolutions of the block input one by one: one join of more than two terms.
    let (terms, tree) = sum_terms(graph, df, ni);
    let many = tree.len() > 1 || terms.len() > 2;
    if terms.len() < 2 {
        return Err(format!("adds {} tensors; a residual join adds two or more", terms.len()));
    }
    for (k, t) in terms.iter().enumerate() {
        if terms[..k].contains(t) {
            return Err(format!("adds '{t}' to itself"));
        }
    }
    // A join of channels-last terms only (no other kind) is judged with its branch below.
    let join_channels_last = terms.iter().all(|t| shapes.get(t).is_some_and(channels_last_activation));
    for t in &terms {
        match shapes.get(t) {
            Some(info) if !info.is_nchw() && !join_channels_last => {
                let last = channels_last_activation(info).then_some(" (its channels are its last axis)");
                return Err(format!(
                    "input '{t}' {} is not a rank-4 [N, C, H, W] activation{}",
                    info.display(),
                    last.unwrap_or_default()
                ));
            }
            Some(_) => {}
            None => {
                let op = match df.producer.get(t) {
                    Some(Producer::Node(p, _)) if crate::shapes::infers(graph.node[*p].op_type()) => {
                        format!(" (produced by {}, whose inputs' shapes do not give its own)", graph.node[*p].op_type())
                    }
                    Some(Producer::Node(p, _)) => format!(
                        " (produced by {}, an operator whose shape this tool does not infer)",
                        graph.node[*p].op_type()
                    ),
                    _ => String::new(),
                };
                return Err(format!("shape of input '{t}' is unknown{op}"));
            }
        }
    }
    let sa = shapes.get(&terms[0]).unwrap();
    for t in &terms[1..] {
        let sb = shapes.get(t).unwrap();
        let clash =
            sa.dims.iter().zip(&sb.dims).any(|(x, y)| matches!((x, y), (Dim::Known(p), Dim::Known(q)) if p != q));
        if clash {
            return Err(format!(
                "inputs have different shapes {} and {} (a broadcast, not a residual join)",
                sa.display(),
                sb.display()
            ));
        }
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
    let paths: Vec<HashSet<NodeIndex>> = terms.iter().map(|t| path(t)).collect();
    for (k, p) in paths.iter().enumerate() {
        if paths[..k].iter().any(|q| !q.is_disjoint(p)) {
            let what = if many { format!("the paths of its {} terms", terms.len()) } else { "its two paths".into() };
            return Err(format!("{what} share nodes after the fork"));
        }
    }
    // The fork tensor: the one output of the fork vertex that every path (or the Add) consumes.
    let fork_outputs = vertex_outputs(graph, df, fork_vx);
    let used_by = |set: &HashSet<NodeIndex>, t: &str| -> Vec<&String> {
        let on_path = |o: &String| o == t || df.consumers_of(o).iter().any(|(c, _)| set.contains(&df.node_vx[*c]));
        fork_outputs.iter().filter(|o| on_path(o)).collect()
    };
    let used: Vec<Vec<&String>> = terms.iter().zip(&paths).map(|(t, p)| used_by(p, t)).collect();
    let fork = match used[0].as_slice() {
        [x] if used.iter().all(|u| u.as_slice() == [*x]) => (*x).clone(),
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
    // The shortcut is the shorter path; a path that only normalizes (an identity BatchNormalization)
    // is shorter than one that does more, whatever their node counts: exported with BN folded, a
    // MobileOne block's convolution terms are one node each, as its identity's BN is. Storage ops
    // are not counted: a QDQ model's pairs would outnumber DLA's two-node projections.
    let key = |p: &HashSet<NodeIndex>| {
        let ops: Vec<Option<&str>> = p
            .iter()
            .map(|v| match df.g[*v] {
                Vertex::Node(n) => Some(graph.node[n].op_type()),
                _ => None,
            })
            .collect();
        let stored = |op: &Option<&str>| op.is_some_and(|op| STORAGE_OPS.contains(&op));
        let normalizes = ops.iter().all(|op| stored(op) || op.is_some_and(|op| NORMALIZATIONS.contains(&op)));
        (!normalizes, ops.iter().filter(|op| !stored(op)).count())
    };
    let keys: Vec<(bool, usize)> = paths.iter().map(key).collect();
    let mut shortest = (0..terms.len()).min_by_key(|&k| keys[k]).unwrap_or(0);
    let pooled = (!many).then(|| pooled_projection(graph, shapes, df, &paths)).flatten();
    if let (true, Some(k)) = (keys[0] == keys[1], pooled) {
        shortest = k;
    } else if keys.iter().filter(|k| **k == keys[shortest]).count() > 1 {
        return Err(if many {
            format!(
                "none of its {} terms from '{fork}' is an identity or shorter than the others (a sum of \
                 convolutions of one tensor, not a residual join)",
                terms.len()
            )
        } else {
            format!("both paths from '{fork}' have {} nodes: no shorter shortcut to tell from the branch", keys[0].1)
        });
    }
    let short_in = &terms[shortest];
    let short_set = &paths[shortest];
    let branch_set: HashSet<NodeIndex> =
        paths.iter().enumerate().filter(|(k, _)| *k != shortest).flat_map(|(_, p)| p.iter().copied()).collect();
    // Channels-last sums are a transformer's token blocks (Swin's and MaxViT's attention and MLP)
    // unless a convolution runs in the branch: a ConvNeXt-like block whose Transposes onnxruntime's
    // transpose optimizer (run by quant_pre_process) moved out of it, as in EdgeNeXt's QDQ copy.
    let convolves =
        || branch_set.iter().any(|v| matches!(df.g[*v], Vertex::Node(n) if graph.node[n].op_type() == "Conv"));
    if join_channels_last && !convolves() {
        let t = &terms[0];
        return Err(format!(
            "input '{t}' {} is not a rank-4 [N, C, H, W] activation (its channels are its last axis, and no \
             convolution runs in the branch: a transformer's token block or an MLP's inner sum, not a residual CNN block)",
            shapes.get(t).map(Info::display).unwrap_or_default()
        ));
    }
    let short_nodes = node_indices(df, short_set);
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
        if tree.contains(&c) {
            if graph.node[c].input[slot] == *short_in {
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
        normalizing_shortcut: !short_ops.is_empty() && short_ops.iter().all(|op| NORMALIZATIONS.contains(op)),
        branch: node_indices(df, &branch_set),
        branch_edges,
        shortcut_edges,
        stage: 0,
        index_in_stage: 0,
    })
}

/// `[N, H, W, C]`: channels last, as a Transpose of an `[N, C, H, W]` activation gives it.
fn channels_last_activation(info: &Info) -> bool {
    info.rank() == 4 && info.channel_axis == Some(3)
}

/// Of two paths of as many nodes, the one that is a projection shortcut: no convolution wider than
/// 1x1, where the other stacks two or more convolutions. A quantized ResNet-D's or DLA's
/// downsampling block: its pool and 1x1 convolution against two 3x3 convolutions, two nodes each
/// once the quantizer has taken the branch's ReLU into its QuantizeLinear. Two single convolutions
/// (RepVGG's strided terms) stay a sum of convolutions, not a block.
fn pooled_projection(
    graph: &GraphProto,
    shapes: &Shapes,
    df: &Dataflow,
    paths: &[HashSet<NodeIndex>],
) -> Option<usize> {
    let convs = |p: &HashSet<NodeIndex>| {
        let kernels: Vec<i64> = node_indices(df, p)
            .into_iter()
            .map(|n| &graph.node[n])
            .filter(|n| n.op_type() == "Conv")
            .map(|n| {
                let weights = n.input.get(1).and_then(|w| shapes.get(w));
                crate::shapes::conv_kernel(n, weights).map_or(0, |k| k.iter().product())
            })
            .collect();
        (kernels.len(), kernels.iter().all(|&k| k == 1))
    };
    let (a, b) = (convs(paths.first()?), convs(paths.get(1)?));
    match (a, b) {
        ((_, true), (n, false)) if n >= 2 => Some(0),
        ((n, false), (_, true)) if n >= 2 => Some(1),
        _ => None,
    }
}

/// The model's nodes among dataflow vertices, as indices into `graph.node`, in order.
fn node_indices(df: &Dataflow, vertices: &HashSet<NodeIndex>) -> Vec<usize> {
    let mut nodes: Vec<usize> = vertices
        .iter()
        .filter_map(|v| match df.g[*v] {
            Vertex::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

fn is_sum(node: &NodeProto) -> bool {
    (node.op_type() == "Add" || node.op_type() == "Sum") && crate::graph::default_domain(node)
}

/// An Add of one activation and constants (a bias, or MobileOne's `0 + identity`).
fn is_bias(df: &Dataflow, node: &NodeProto) -> bool {
    node.input.iter().filter(|t| !t.is_empty() && !df.constant.contains(*t)).count() == 1
}

/// The Add (or Sum) that `t` is a term of: its producer's, if that adds too, and nothing but
/// `parent` reads `t`, and it forks from the same tensor as `parent` (`fork`) or only adds a
/// constant.
fn term_of(graph: &GraphProto, df: &Dataflow, t: &str, parent: usize, fork: Option<NodeIndex>) -> Option<usize> {
    let only_parent = matches!(df.consumers_of(t), [(c, _)] if *c == parent);
    let sum = stored_from(graph, df, t);
    let Some(Producer::Node(p, 0)) = df.producer.get(sum) else { return None };
    let node = &graph.node[*p];
    let same_sum = is_bias(df, node) || df.dominators.immediate_dominator(df.node_vx[*p]) == fork;
    let is_output = graph.output.iter().any(|o| o.name() == t || o.name() == sum);
    (is_sum(node) && only_parent && same_sum && !is_output).then_some(*p)
}

/// The tensor `t` stores (QuantizeLinear then DequantizeLinear, or a Cast, that nothing else
/// reads on the way), or `t` itself: a QDQ model quantizes each Add of a sum.
fn stored_from<'a>(graph: &'a GraphProto, df: &Dataflow, mut t: &'a str) -> &'a str {
    while let Some(Producer::Node(p, _)) = df.producer.get(t) {
        let node = &graph.node[*p];
        match node.input.first() {
            Some(src) if STORAGE_OPS.contains(&node.op_type()) && df.consumers_of(src).len() == 1 => t = src,
            _ => break,
        }
    }
    t
}

/// The last stored copy of `t` (`stored_from` forward): what a parent Add reads of it.
fn stored_to<'a>(graph: &'a GraphProto, df: &Dataflow, mut t: &'a str) -> &'a str {
    while let &[(c, _)] = df.consumers_of(t) {
        let node = &graph.node[c];
        match node.output.first() {
            Some(out) if STORAGE_OPS.contains(&node.op_type()) => t = out,
            _ => break,
        }
    }
    t
}

/// The Add whose sum node `ni` is a term of (the outermost, when Adds chain), if any: that one is
/// the join. MobileOne's `identity + conv_scale + conv_kxk[0] + ...`, exported as a chain of
/// Adds, is one join of five terms, not four joins of two.
fn sum_root(graph: &GraphProto, df: &Dataflow, ni: usize) -> Option<usize> {
    let mut root = None;
    let mut n = ni;
    while let Some(out) = graph.node[n].output.first() {
        let out = stored_to(graph, df, out);
        let &[(p, _)] = df.consumers_of(out) else { break };
        let parent = &graph.node[p];
        if !is_sum(parent) || is_bias(df, parent) {
            break;
        }
        let fork = df.dominators.immediate_dominator(df.node_vx[p]);
        if term_of(graph, df, out, p, fork) != Some(n) {
            break;
        }
        root = Some(p);
        n = p;
    }
    root
}

/// The terms of the sum node `ni` computes (constants left out), and the Adds computing it, `ni`
/// first: an input that another Add makes is expanded if it is a term of this sum (`term_of`).
fn sum_terms(graph: &GraphProto, df: &Dataflow, ni: usize) -> (Vec<String>, Vec<usize>) {
    fn expand(
        graph: &GraphProto,
        df: &Dataflow,
        n: usize,
        fork: Option<NodeIndex>,
        terms: &mut Vec<String>,
        tree: &mut Vec<usize>,
    ) {
        tree.push(n);
        for t in graph.node[n].input.iter().filter(|t| !t.is_empty() && !df.constant.contains(*t)) {
            match term_of(graph, df, t, n, fork) {
                Some(p) => expand(graph, df, p, fork, terms, tree),
                None => terms.push(t.clone()),
            }
        }
    }
    let fork = df.dominators.immediate_dominator(df.node_vx[ni]);
    let (mut terms, mut tree) = (Vec::new(), Vec::new());
    expand(graph, df, ni, fork, &mut terms, &mut tree);
    (terms, tree)
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
    // Open: never reached; or of rank 4 (a rank-3 tensor of tokens is no activation, whatever its
    // sizes) and of unknown layout, or with its channels (axis 1 where the layout was lost) not
    // counted.
    let open = |t: &str| match shapes.get(t) {
        None => true,
        Some(i) if i.rank() < 2 => true,
        Some(i) if i.rank() != 4 => false,
        Some(_) if shapes.unknown_layout_rank(t).is_some() => true,
        Some(i) => i.dims.get(i.channel_axis.unwrap_or(1)).is_none_or(|d| d.known().is_none()),
    };
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
/// shortcut is a projection (but one that only normalizes), and at each block whose input does not
/// come from the previous block's join (through activations only): e.g. MobileNetV2's identity
/// blocks after a non-residual block.
fn assign_stages(graph: &GraphProto, df: &Dataflow, blocks: &mut [Block]) {
    let mut prev_add: Option<usize> = None;
    let mut stage = 0;
    let mut index = 0;
    for (k, block) in blocks.iter_mut().enumerate() {
        let chained = prev_add.is_some_and(|p| chained_from(graph, df, &block.fork, p));
        let projection = block.shortcut != Shortcut::Identity && !block.normalizing_shortcut;
        if k > 0 && (projection || !chained) {
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
        if n.op_type() == "Mul" && n.input.len() == 2 {
            // A gated activation, `x * Sigmoid(x)` (SiLU, as timm's ByobNets end a block), `x *
            // HardSigmoid(x)`, `x * Tanh(Softplus(x))` (Mish): through it to x.
            match (0..2).find(|&k| gates(df, graph, &n.input[1 - k], &n.input[k])) {
                Some(k) => t = n.input[k].clone(),
                None => return false,
            }
            continue;
        }
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

/// Whether `gate` is computed from `x` alone by one-input activations (a gated activation's gate).
fn gates(df: &Dataflow, graph: &GraphProto, gate: &str, x: &str) -> bool {
    let mut g = gate;
    for _ in 0..3 {
        let Some(Producer::Node(p, _)) = df.producer.get(g) else { return false };
        let n = &graph.node[*p];
        if !["Sigmoid", "HardSigmoid", "Tanh", "Softplus"].contains(&n.op_type()) || n.input.len() != 1 {
            return false;
        }
        if n.input[0] == x {
            return true;
        }
        g = &n.input[0];
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

    /// Two identity blocks whose join is followed by `act` (nodes reading `j0`, writing `j0a`).
    fn two_blocks_through(act: Vec<NodeProto>) -> GraphProto {
        let conv = |name: &str, x: &str, y: &str| -> NodeProto { node("Conv", name, &[x, "w8"], &[y]) };
        let mut nodes = vec![
            conv("/stem/Conv", "x", "s"),
            conv("/b0/conv/Conv", "s", "a0"),
            node("Add", "/b0/Add", &["a0", "s"], &["j0"]),
        ];
        nodes.extend(act);
        nodes.extend([conv("/b1/conv/Conv", "j0a", "a1"), node("Add", "/b1/Add", &["a1", "j0a"], &["y"])]);
        GraphProto {
            input: vec![value_info("x", &[-1, 8, 8, 8])],
            initializer: vec![int64("w8", &[8, 8, 1, 1], &[0; 64]), int64("g", &[1, 8, 1, 1], &[0; 8])],
            node: nodes,
            output: vec![value_info("y", &[-1, 8, 8, 8])],
            ..Default::default()
        }
    }

    #[test]
    fn a_gated_activation_between_blocks_keeps_them_in_one_stage() {
        let stages =
            |g: GraphProto| findings(&g).blocks.iter().map(|b| (b.stage, b.index_in_stage)).collect::<Vec<_>>();
        let silu =
            vec![node("Sigmoid", "/act/Sigmoid", &["j0"], &["sg"]), node("Mul", "/act/Mul", &["j0", "sg"], &["j0a"])];
        assert_eq!(stages(two_blocks_through(silu)), [(0, 0), (0, 1)]);
        let mish = vec![
            node("Softplus", "/act/Softplus", &["j0"], &["sp"]),
            node("Tanh", "/act/Tanh", &["sp"], &["th"]),
            node("Mul", "/act/Mul", &["th", "j0"], &["j0a"]),
        ];
        assert_eq!(stages(two_blocks_through(mish)), [(0, 0), (0, 1)]);
        // A product with anything else (a constant scale) is not an activation: a new stage.
        let scaled = vec![node("Mul", "/scale/Mul", &["j0", "g"], &["j0a"])];
        assert_eq!(stages(two_blocks_through(scaled)), [(0, 0), (1, 0)]);
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

    /// A stem and one training-time MobileOne block on it: `0 + conv_a(s) + conv_b(s) + conv_c(s)`,
    /// added one by one as the exporter writes it, plus `bn(s)` (its identity) unless `identity` is
    /// false; then Relu.
    fn mobileone_block(identity: bool) -> GraphProto {
        let conv = |name: &str, w: &str, y: &str| -> NodeProto { node("Conv", name, &["s", w], &[y]) };
        let mut g = GraphProto {
            input: vec![value_info("x", &[-1, 3, 8, 8])],
            initializer: vec![
                int64("w_stem", &[8, 3, 1, 1], &[0; 24]),
                int64("w", &[8, 8, 1, 1], &[0; 64]),
                int64("zero", &[], &[0]),
                int64("bn_p", &[8], &[1; 8]),
            ],
            node: vec![
                node("Conv", "/stem/Conv", &["x", "w_stem"], &["s"]),
                conv("/b/conv_kxk.0/Conv", "w", "k0"),
                node("Add", "/b/Add", &["k0", "zero"], &["a0"]),
                conv("/b/conv_kxk.1/Conv", "w", "k1"),
                node("Add", "/b/Add_1", &["a0", "k1"], &["a1"]),
                conv("/b/conv_kxk.2/Conv", "w", "k2"),
                node("Add", "/b/Add_2", &["a1", "k2"], &["a2"]),
            ],
            output: vec![value_info("y", &[-1, 8, 8, 8])],
            ..Default::default()
        };
        if identity {
            g.node.push(node("BatchNormalization", "/b/identity/BN", &["s", "bn_p", "bn_p", "bn_p", "bn_p"], &["i"]));
            g.node.push(node("Add", "/b/Add_3", &["a2", "i"], &["a3"]));
            g.node.push(node("Relu", "/b/act/Relu", &["a3"], &["y"]));
        } else {
            g.node.push(node("Relu", "/b/act/Relu", &["a2"], &["y"]));
        }
        g
    }

    #[test]
    fn a_chain_of_adds_is_one_join_whose_identity_bn_is_the_shortcut() {
        let f = findings(&mobileone_block(true));
        assert_eq!(f.blocks.len(), 1, "{:?}", f.skipped);
        let b = &f.blocks[0];
        assert_eq!((b.name.as_str(), b.fork.as_str()), ("/b/Add_3", "s"));
        assert_eq!((&b.shortcut, b.normalizing_shortcut), (&Shortcut::Projection(1), true));
        // every convolution term is the branch, the BN (node 7) the shortcut
        assert_eq!(b.branch_edges, vec![(1, 0), (3, 0), (5, 0)]);
        assert_eq!(b.shortcut_edges, vec![(7, 0)]);
        let reasons: Vec<(&str, &str)> = f.skipped.iter().map(|s| (s.node.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                ("/b/Add", "input 'zero' is a constant (a bias, not a residual join)"),
                ("/b/Add_1", "a term of the sum at /b/Add_3, which is judged as one join"),
                ("/b/Add_2", "a term of the sum at /b/Add_3, which is judged as one join"),
            ]
        );
        // A QDQ model stores each partial sum quantized: the same one join, and without the
        // identity still no join (else the last convolution term passes for a projection)
        for identity in [true, false] {
            let mut g = mobileone_block(identity);
            g.initializer.push(int64("q", &[], &[1]));
            for (at, sum) in [(6, "a2"), (4, "a1")] {
                g.node[at].output[0] = format!("{sum}f");
                let (f, q) = (format!("{sum}f"), format!("{sum}q"));
                g.node.insert(at + 1, node("QuantizeLinear", &format!("{sum}/Q"), &[&f, "q"], &[&q]));
                g.node.insert(at + 2, node("DequantizeLinear", &format!("{sum}/DQ"), &[&q, "q"], &[sum]));
            }
            let f = findings(&g);
            let found: Vec<(&str, usize)> = f.blocks.iter().map(|b| (b.name.as_str(), b.branch_edges.len())).collect();
            assert_eq!(found, if identity { vec![("/b/Add_3", 3)] } else { vec![] }, "{:?}", f.skipped);
        }
    }

    #[test]
    fn a_sum_of_convolutions_alone_is_not_a_join() {
        let f = findings(&mobileone_block(false));
        assert!(f.blocks.is_empty());
        let last = f.skipped.last().unwrap();
        assert_eq!(
            (last.node.as_str(), last.reason.as_str()),
            (
                "/b/Add_2",
                "none of its 3 terms from 's' is an identity or shorter than the others (a sum of \
                 convolutions of one tensor, not a residual join)"
            )
        );
        // the same two terms added without a chain stay the two-path case
        let mut g = mobileone_block(false);
        g.node.truncate(5);
        g.node[4].input[0] = "k0".into();
        g.node.push(node("Relu", "/b/act/Relu", &["a1"], &["y"]));
        let f = findings(&g);
        assert!(f
            .skipped
            .iter()
            .any(|s| s.node == "/b/Add_1" && s.reason.contains("both paths from 's' have 1 nodes")));
    }

    #[test]
    fn a_pool_and_1x1_projection_is_told_from_two_convolutions_of_as_many_nodes() {
        // A quantized ResNet-D's downsampling block, the ReLU between its convolutions taken into a
        // QuantizeLinear: two 3x3 convolutions against an AveragePool and a 1x1 projection.
        let mut graph = GraphProto {
            input: vec![value_info("x", &[-1, 8, 8, 8])],
            initializer: vec![int64("w3", &[8, 8, 3, 3], &[0; 576]), int64("w1", &[8, 8, 1, 1], &[0; 64])],
            node: vec![
                node("Conv", "/b/conv1/Conv", &["x", "w3"], &["a1"]),
                node("Conv", "/b/conv2/Conv", &["a1", "w3"], &["a2"]),
                node("AveragePool", "/b/down/pool", &["x"], &["p"]),
                node("Conv", "/b/down/Conv", &["p", "w1"], &["d"]),
                node("Add", "/b/Add", &["a2", "d"], &["y"]),
            ],
            ..Default::default()
        };
        let (same, stride) =
            (crate::emit::ints_attr("pads", &[1, 1, 1, 1]), crate::emit::ints_attr("strides", &[2, 2]));
        graph.node[0].attribute = vec![same.clone(), stride.clone()];
        graph.node[1].attribute = vec![same.clone()];
        graph.node[2].attribute = vec![crate::emit::ints_attr("kernel_shape", &[2, 2]), stride];
        let f = findings(&graph);
        assert_eq!(f.blocks.len(), 1, "{:?}", f.skipped);
        assert_eq!(f.blocks[0].shortcut, Shortcut::Projection(2));
        assert_eq!(f.blocks[0].branch_edges, vec![(0, 0)]);
        // One convolution each (RepVGG's strided terms, 3x3 and 1x1) stays a sum of convolutions.
        let mut g = graph.clone();
        g.node.remove(1);
        g.node.remove(1);
        g.node[0].attribute = vec![same];
        g.node[1] = node("Conv", "/b/down/Conv", &["x", "w1"], &["d"]);
        g.node[2].input[0] = "a1".into();
        let f = findings(&g);
        assert!(f.blocks.is_empty());
        assert!(f.skipped[0].reason.contains("both paths from 'x' have 1 nodes"), "{:?}", f.skipped);
    }

    #[test]
    fn a_join_on_dims_the_model_declared_past_an_unknown_operator_is_open_until_its_layout_is_decided() {
        // onnx shape inference's value_info gives the dims of a Tile's output (no rule here); the
        // tensor carries no layout until the rewrite decides it, as for one it never reached.
        let mut g = tiny_resnet();
        g.initializer.push(int64("reps", &[4], &[1, 1, 1, 1]));
        g.node.insert(5, node("Tile", "/layer1/layer1.0/tile", &["a3", "reps"], &["a3t"]));
        g.node[6].input[0] = "a3t".into();
        g.value_info.push(value_info("a3t", &[-1, 8, 8, 8]));
        let df = Dataflow::build(&g).unwrap();
        let mut shapes = Shapes::infer(&g);
        let f = find(&g, &df, &shapes);
        assert_eq!(f.blocks.len(), 1);
        assert!(f.skipped[0].reason.contains("'a3t' [N, 8, 8, 8] is not a rank-4"), "{:?}", f.skipped);
        let open = open_joins(&g, &df, &shapes, &f);
        assert_eq!(open, vec![("/layer1/layer1.0/Add".to_string(), vec!["a3t".to_string()])]);
        shapes.settle_layout("a3t", Some(1));
        let f = find(&g, &df, &shapes);
        assert_eq!(f.blocks.len(), 2);
        assert!(open_joins(&g, &df, &shapes, &f).is_empty());
    }

    #[test]
    fn an_unknown_shape_says_whether_its_operator_or_its_inputs_are_why() {
        let skipped = |op: &str| {
            let mut g = tiny_resnet();
            g.initializer.push(int64("m", &[8, 8], &[0; 64]));
            g.node.insert(5, node(op, "/layer1/layer1.0/odd", &["a3", "m"], &["a3t"]));
            g.node[6].input[0] = "a3t".into();
            let f = findings(&g);
            f.skipped.iter().find(|s| s.node == "/layer1/layer1.0/Add").map(|s| s.reason.clone()).unwrap()
        };
        // A Tile has no rule; a Conv has one, but not for weights of rank 2 (a hostile file's).
        assert!(skipped("Tile").ends_with("(produced by Tile, an operator whose shape this tool does not infer)"));
        assert!(skipped("Conv").ends_with("(produced by Conv, whose inputs' shapes do not give its own)"));
    }

    #[test]
    fn an_identity_bn_beats_a_convolution_of_as_many_nodes_but_is_no_block_inside_a_branch() {
        // conv(h) + bn(h), as the dynamo exporter writes a one-branch MobileOne block (no `0 +`)
        // and RepGhost its ghost modules; here inside the branch of s + conv2(relu(that))
        let g = GraphProto {
            input: vec![value_info("x", &[-1, 3, 8, 8])],
            initializer: vec![
                int64("w_stem", &[8, 3, 1, 1], &[0; 24]),
                int64("w", &[8, 8, 1, 1], &[0; 64]),
                int64("bn_p", &[8], &[1; 8]),
            ],
            node: vec![
                node("Conv", "/stem/Conv", &["x", "w_stem"], &["s"]),
                node("Conv", "/b/conv1/Conv", &["s", "w"], &["h"]),
                node("Conv", "/b/ghost/cheap/Conv", &["h", "w"], &["k"]),
                node("BatchNormalization", "/b/ghost/bn/BN", &["h", "bn_p", "bn_p", "bn_p", "bn_p"], &["i"]),
                node("Add", "/b/ghost/Add", &["k", "i"], &["a"]),
                node("Relu", "/b/ghost/Relu", &["a"], &["r"]),
                node("Conv", "/b/conv2/Conv", &["r", "w"], &["c"]),
                node("Add", "/b/Add", &["s", "c"], &["y"]),
            ],
            output: vec![value_info("y", &[-1, 8, 8, 8])],
            ..Default::default()
        };
        let f = findings(&g);
        assert_eq!(f.blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["/b/Add"]);
        assert_eq!(
            f.skipped.iter().map(|s| (s.node.as_str(), s.reason.as_str())).collect::<Vec<_>>(),
            [(
                "/b/ghost/Add",
                "inside the branch of the block at /b/Add, its shortcut an identity BN that re-parameterizes a \
                 layer of that branch"
            )]
        );
        // on its own, the same sum is a block whose shortcut is the BN
        let mut alone = g.clone();
        alone.node.truncate(6);
        alone.node[5].output[0] = "y".into();
        let f = findings(&alone);
        assert_eq!(f.blocks.len(), 1, "{:?}", f.skipped);
        let b = &f.blocks[0];
        assert_eq!((b.fork.as_str(), &b.shortcut, b.normalizing_shortcut), ("h", &Shortcut::Projection(1), true));
        assert_eq!((b.branch_edges.as_slice(), b.shortcut_edges.as_slice()), (&[(2, 0)][..], &[(3, 0)][..]));
    }

    #[test]
    fn a_join_inside_a_branch_from_the_same_tensor_is_part_of_that_block() {
        // FastViT's RepMixer: y = s + scale * (mixer(s) - norm(s)), its mixer a sum with an
        // identity BN of its own
        let mut g = mobileone_block(true);
        g.node.pop();
        g.initializer.push(int64("scale", &[8, 1, 1], &[1; 8]));
        g.node.push(node("BatchNormalization", "/norm/BN", &["s", "bn_p", "bn_p", "bn_p", "bn_p"], &["n"]));
        g.node.push(node("Sub", "/Sub", &["a3", "n"], &["d"]));
        g.node.push(node("Mul", "/Mul", &["d", "scale"], &["m"]));
        g.node.push(node("Add", "/Add", &["s", "m"], &["y"]));
        let f = findings(&g);
        assert_eq!(f.blocks.len(), 1);
        let b = &f.blocks[0];
        assert_eq!((b.name.as_str(), &b.shortcut), ("/Add", &Shortcut::Identity));
        assert_eq!(b.branch_edges, vec![(1, 0), (3, 0), (5, 0), (7, 0), (9, 0)]);
        assert!(f.skipped.iter().any(|s| s.node == "/b/Add_3"
            && s.reason == "inside the branch of the block at /Add, which forks from the same tensor"));
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

    /// A residual sum in channels-last layout: a ConvNeXt-like block whose Transposes onnxruntime's
    /// transpose optimizer moved out of it (EdgeNeXt's QDQ copy) is a block, shifted on its last
    /// axis; the same sum around a branch with no convolution (a Swin token block) is not.
    #[test]
    fn a_channels_last_join_is_a_block_where_its_branch_convolves() {
        use crate::emit::ints_attr;
        let graph = |branch: Vec<NodeProto>| {
            let mut to_last = node("Transpose", "/stem/Transpose", &["s"], &["t"]);
            to_last.attribute.push(ints_attr("perm", &[0, 2, 3, 1]));
            let mut nodes = vec![node("Conv", "/stem/Conv", &["x", "w"], &["s"]), to_last];
            nodes.extend(branch);
            nodes.push(node("Add", "/block/Add", &["b", "t"], &["y"]));
            GraphProto {
                input: vec![value_info("x", &[-1, 8, 4, 4])],
                initializer: vec![int64("w", &[8, 8, 1, 1], &[0; 64])],
                node: nodes,
                output: vec![value_info("y", &[-1, 4, 4, 8])],
                ..Default::default()
            }
        };
        let mut to_first = node("Transpose", "/block/Transpose", &["t"], &["u"]);
        to_first.attribute.push(ints_attr("perm", &[0, 3, 1, 2]));
        let mut back = node("Transpose", "/block/Transpose_1", &["v"], &["b"]);
        back.attribute.push(ints_attr("perm", &[0, 2, 3, 1]));
        let conv = node("Conv", "/block/conv_dw/Conv", &["u", "w"], &["v"]);
        let f = findings(&graph(vec![to_first, conv, back]));
        assert_eq!(f.blocks.len(), 1, "{:?}", f.skipped);
        let b = &f.blocks[0];
        assert!(b.channels_last);
        assert_eq!((b.fork.as_str(), b.channels, b.shortcut.clone()), ("t", 8, Shortcut::Identity));
        assert_eq!(b.branch_edges, vec![(2, 0)]);

        let relu = node("Relu", "/block/Relu", &["t"], &["r"]);
        let sigmoid = node("Sigmoid", "/block/Sigmoid", &["r"], &["b"]);
        let f = findings(&graph(vec![relu, sigmoid]));
        assert!(f.blocks.is_empty());
        let why = &f.skipped.iter().find(|s| s.node.contains("/block/Add")).unwrap().reason;
        assert!(why.contains("its channels are its last axis, and no convolution runs in the branch"), "{why}");
    }

    /// ConvNeXt-V2's global response norm: `x + f(x)` inside a block's branch, from a tensor of
    /// the branch. It was shifted as a block of its own (two shifts per block); it is part of the
    /// block whose branch holds it.
    #[test]
    fn a_residual_sum_inside_a_branch_is_no_block_of_its_own() {
        let conv = |name: &str, x: &str, y: &str| node("Conv", name, &[x, "w"], &[y]);
        let g = GraphProto {
            input: vec![value_info("x", &[-1, 8, 4, 4])],
            initializer: vec![int64("w", &[8, 8, 1, 1], &[0; 64])],
            node: vec![
                conv("/stem/Conv", "x", "s"),
                conv("/block/pwconv1/Conv", "s", "a"),
                node("Relu", "/block/act/Relu", &["a"], &["h"]),
                node("Mul", "/block/grn/Mul", &["h", "h"], &["m"]),
                node("Add", "/block/grn/Add", &["h", "m"], &["r"]),
                conv("/block/pwconv2/Conv", "r", "c"),
                node("Add", "/block/Add", &["c", "s"], &["y"]),
            ],
            ..Default::default()
        };
        let f = findings(&g);
        let names: Vec<&str> = f.blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["/block/Add"]);
        let grn = f.skipped.iter().find(|s| s.node == "/block/grn/Add").unwrap();
        assert_eq!(
            grn.reason,
            "inside the branch of the block at /block/Add, a residual sum within that block (ConvNeXt-V2's global \
             response norm), not a block of its own"
        );
    }
}
