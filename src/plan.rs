//! Decides which tensors get a shift: one site per residual block kept by `--every`, with the
//! consumer edges to rewire for the chosen placement and readable names for what will be inserted.
//! Planning changes nothing; `emit` turns a plan into a patch.

use crate::blocks::{Block, Findings};
use crate::config::{Config, Mode, ShiftForm};
use crate::error::Error;
use crate::graph::{node_label, Dataflow, Producer};
use crate::onnx::{GraphProto, NodeProto};
use crate::shapes::{Dim, Shapes};
use std::collections::{BTreeMap, HashSet};

/// One shift to insert. `Default` is a site of which nothing is known, a base for building one by
/// hand (a shift emitted alone, in tests): `plan` fills every field.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// Index of the block in `Findings::blocks`.
    pub block: usize,
    /// The block's Add node.
    pub block_name: String,
    /// The tensor that is shifted (the block input).
    pub tensor: String,
    /// Its first dim, the frames (`N*T`), as the model's shapes give it (unknown after a
    /// `--temporal-pool`, which halves it).
    pub batch: Dim,
    pub channels: i64,
    pub fold: i64,
    pub height: Dim,
    pub width: Dim,
    /// The tensor is `[N, H, W, C]`: the shift runs on its NCHW transpose (see `emit`).
    pub channels_last: bool,
    /// The tensor's element type (an ONNX `DataType`), where the model tells it.
    pub elem_type: Option<i32>,
    /// Where the tensor is the output of a per-tensor `DequantizeLinear` (a QDQ model): the shift
    /// moves the quantized values instead, so that the consumers still read a `DequantizeLinear`.
    pub quant: Option<Quant>,
    /// The model has a `DequantizeLinear`. A site in it that shifts floats (a per-channel or
    /// computed quantization, or the pooled tensor before opset 12) takes the batch form too: see
    /// `emit::takes_batch_form`.
    pub in_qdq_model: bool,
    /// Frames per clip where this site runs: `--segments`, halved after a `--temporal-pool`.
    pub segments: usize,
    /// A consumer is a 1x1 convolution with a stride (ResNet v1's first conv, or a projection):
    /// tract 0.23 turns it into a Downsample that it cannot pull over a Reshape, so the shift must
    /// not end in one there (see `emit`).
    pub strided_1x1: bool,
    /// Set where the site takes the stream form (see `emit::stream`).
    pub stream: Option<crate::emit::stream::Stream>,
    /// Where the stream form was considered and not taken, why (for the report).
    pub stream_refused: Option<String>,
    /// Consumers (node, input slot) that will read the shifted tensor instead.
    pub edges: Vec<(usize, usize)>,
    /// `--shift-form tract --online`: residual Adds (node, input slot) that read the unshifted
    /// tensor and that tract would fuse into the 1x1 convolution writing their other term; they
    /// read the tensor joined back from the site's two slices instead (see `emit::online`).
    pub rejoined: Vec<(usize, usize)>,
    /// Names of those consumers (indices change once the patch is applied).
    pub into: Vec<String>,
    /// The subgraph goes right after this node (the tensor's producer); `None`: at the graph's start.
    pub after: Option<usize>,
    /// Prefix of every name the subgraph adds, e.g. `/layer1/layer1.0/tsm`.
    pub prefix: String,
}

/// The quantized tensor behind a shifted `DequantizeLinear` output, and its quantization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quant {
    /// The `DequantizeLinear`'s input.
    pub tensor: String,
    pub scale: String,
    /// The zero point: what a real zero is in the quantized tensor, so what the shift pads with.
    pub zero_point: String,
    /// The quantized type (the zero point's).
    pub elem_type: i32,
}

/// The quantization of `tensor`, when it is the output of a `DequantizeLinear` with a scalar scale
/// and zero point given as initializers (per-tensor, as quantizers write activations). A
/// per-channel or computed quantization stays `None`: the shift then moves the float values.
fn quant(graph: &GraphProto, df: &Dataflow, tensor: &str) -> Option<Quant> {
    let Some(Producer::Node(p, 0)) = df.producer.get(tensor) else { return None };
    let dq = &graph.node[*p];
    if dq.op_type() != "DequantizeLinear" || !(dq.domain().is_empty() || dq.domain() == "ai.onnx") {
        return None;
    }
    let scalar = |name: &str| {
        graph.initializer.iter().find(|t| t.name() == name).filter(|t| t.dims.iter().product::<i64>() == 1)
    };
    let (x, scale, zp) = (dq.input.first()?, dq.input.get(1)?, dq.input.get(2).filter(|z| !z.is_empty())?);
    scalar(scale)?;
    let elem_type = scalar(zp)?.data_type?;
    Some(Quant { tensor: x.clone(), scale: scale.clone(), zero_point: zp.clone(), elem_type })
}

/// Whether the model is quantized in QDQ form: it has a `DequantizeLinear` anywhere.
pub fn is_qdq_model(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| n.op_type() == "DequantizeLinear")
}

/// Whether a consumer at `edges` is a Conv with a 1x1 kernel and a stride above 1 on its data input.
/// The kernel is read as the shape rules read it (`kernel_shape`, else the weights' dims), so weights
/// from a Constant node or through a DequantizeLinear count as initializers do.
fn strided_1x1(graph: &GraphProto, shapes: &Shapes, edges: &[(usize, usize)]) -> bool {
    use crate::shapes::attr_ints;
    edges.iter().any(|&(n, slot)| {
        let node = &graph.node[n];
        pointwise_conv(node, shapes)
            && slot == 0
            && attr_ints(node, "strides").is_some_and(|s| s.iter().any(|&d| d > 1))
    })
}

/// Whether `node` is a Conv with a 1x1 kernel, the kernel read as the shape rules read it.
fn pointwise_conv(node: &NodeProto, shapes: &Shapes) -> bool {
    let kernel = crate::shapes::conv_kernel(node, node.input.get(1).and_then(|w| shapes.get(w)));
    node.op_type() == "Conv" && kernel.is_some_and(|k| !k.is_empty() && k.iter().all(|&d| d == 1))
}

/// The residual Adds reading `tensor` (not at the shift's `edges`) that tract 0.23 fuses into the
/// convolution writing their other term, where that is a 1x1 convolution: at one stream tract
/// computes such a product with the Add in it by gathering the other term's tile a float per channel
/// row, and on ResNet-50 the fused product ran at about a third of its speed without the Add
/// (bench/RESULTS-tract-fused-add.md). tract fuses only where the Add's two terms have equal facts
/// and the convolution has no other reader; a term joined by a Concat is not fused. After a 3x3
/// convolution (ResNet-18) the Add is a small part of the product and keeping it out gained nothing.
fn fused_joins(
    graph: &GraphProto,
    df: &Dataflow,
    shapes: &Shapes,
    tensor: &str,
    edges: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name()).collect();
    let Some(dims) = shapes.get(tensor).map(|i| &i.dims) else {
        return Vec::new();
    };
    df.consumers_of(tensor)
        .iter()
        .copied()
        .filter(|&(n, slot)| {
            let add = &graph.node[n];
            if add.op_type() != "Add" || add.input.len() != 2 || slot > 1 || edges.contains(&(n, slot)) {
                return false;
            }
            let other = add.input[1 - slot].as_str();
            let after_pointwise =
                matches!(df.producer.get(other), Some(Producer::Node(c, _)) if pointwise_conv(&graph.node[*c], shapes));
            after_pointwise
                && df.consumers_of(other).len() == 1
                && !outputs.contains(other)
                && shapes.get(other).map(|i| &i.dims) == Some(dims)
        })
        .collect()
}

/// The element type of `tensor`: declared in the graph, or else that of the weights its consumers
/// (at `edges`) apply to it, which a convolution shares with its input, or else the data input's.
fn elem_type(graph: &GraphProto, tensor: &str, edges: &[(usize, usize)]) -> Option<i32> {
    use crate::onnx::type_proto::Value;
    let declared = graph.value_info.iter().chain(&graph.input).chain(&graph.output).find(|v| v.name() == tensor);
    if let Some(Value::TensorType(t)) = declared.and_then(|v| v.r#type.as_ref()).and_then(|t| t.value.as_ref()) {
        return t.elem_type;
    }
    // Only float weights say: a consumer's int64 input is a shape, pads or axes (tf2onnx's Pad).
    use crate::onnx::tensor_proto::DataType;
    let float = |d: &i32| {
        [DataType::Float, DataType::Float16, DataType::Double, DataType::Bfloat16].iter().any(|&f| f as i32 == *d)
    };
    let weights = edges.iter().find_map(|&(n, _)| {
        graph.node[n]
            .input
            .iter()
            .find_map(|i| graph.initializer.iter().find(|t| t.name() == i.as_str())?.data_type.filter(float))
    });
    // Else the model's own float type, as its data input has it (a float16 model is float16 through).
    weights.or_else(|| {
        crate::validate::data_inputs(graph).iter().find_map(|v| match v.r#type.as_ref()?.value.as_ref()? {
            Value::TensorType(t) => t.elem_type.filter(float),
            _ => None,
        })
    })
}

/// The whole rewrite, before anything is changed.
#[derive(Debug, Default)]
pub struct Plan {
    pub sites: Vec<Site>,
    /// Blocks found but not shifted, with the reason (e.g. `--every`).
    pub not_shifted: Vec<(String, String)>,
    /// `--temporal-pool`: where the frames are pooled.
    pub pool: Option<Pool>,
    /// Convolution weights the graph computes from constants (no initializer), with their dims:
    /// the stream form cuts them by Slice nodes (see `emit::stream`).
    pub computed_weights: BTreeMap<String, Vec<i64>>,
}

/// The paper's temporal pool (`make_temporal_pool`): a max over time, kernel 3, stride 2, padding
/// 1, on the input of the second stage; every later shift then sees T/2 frames.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The first block of the second stage (its Add).
    pub block_name: String,
    /// The pooled tensor: that block's input.
    pub tensor: String,
    pub channels: i64,
    /// Its frame size, for the pooled tensor's declared shape (the pool itself needs neither).
    pub height: Dim,
    pub width: Dim,
    /// Frames per clip before the pool.
    pub segments: usize,
    /// The pooled tensor's batch (frames) and element type, for its declared shape.
    pub batch: Dim,
    pub elem_type: Option<i32>,
    /// Consumers (node, input slot) that read the pooled tensor instead, but for those a shift
    /// site claims (they read the shift of the pooled tensor).
    pub edges: Vec<(usize, usize)>,
    pub after: Option<usize>,
    /// Prefix of the pool's names; its output is `<prefix>/pooled`.
    pub prefix: String,
    /// Where the pooled tensor is a QDQ model's per-tensor `DequantizeLinear` output with a positive
    /// scale, and the opset has Max of integers (12): the pool runs on the quantized tensor and a
    /// `DequantizeLinear` follows, so that the convolutions reading it stay quantized (onnxruntime
    /// fuses DequantizeLinear-Conv-QuantizeLinear into QLinearConv). Exact: dequantizing is
    /// increasing in the quantized value, so the max commutes with it.
    pub quant: Option<Quant>,
}

impl Pool {
    pub fn output(&self) -> String {
        format!("{}/pooled", self.prefix)
    }

    /// The pooled quantized tensor, with [`Pool::quant`].
    pub fn quantized_output(&self) -> String {
        format!("{}/pooled_quantized", self.prefix)
    }
}

/// Whether the float initializer `name` holds only positive values.
fn positive(graph: &GraphProto, name: &str) -> bool {
    let t = graph.initializer.iter().find(|t| t.name() == name);
    t.and_then(|t| crate::tensor::FloatArray::from_proto(t).ok()).is_some_and(|a| a.data.iter().all(|&v| v > 0.0))
}

/// Where `--temporal-pool` goes: the input of the first block of the second stage, which must be a
/// projection block (the paper pools torchvision's `layer2`); anything else is refused as ambiguous.
fn pool_site(graph: &GraphProto, df: &Dataflow, findings: &Findings, config: &Config) -> Result<Pool, Error> {
    let Some((k, block)) = findings.blocks.iter().enumerate().find(|(_, b)| b.stage == 1) else {
        return Err(Error::Config(format!(
            "--temporal-pool pools the frames at the input of the second stage, but the {} block(s) found form one \
             stage: no stage boundary to pool at",
            findings.blocks.len()
        )));
    };
    if block.shortcut == crate::blocks::Shortcut::Identity {
        return Err(Error::Config(format!(
            "node {}: --temporal-pool pools at the second stage's input, but the block that starts it has an identity \
             shortcut (a stage that starts because its input does not come from the previous block): cannot tell \
             which stage the paper's layer2 is",
            block.name
        )));
    }
    if let Dim::Known(b) = block.batch {
        return Err(Error::Config(format!(
            "--temporal-pool halves the batch, but the model fixes it at {b}: re-export with a dynamic batch axis"
        )));
    }
    let after = match df.producer.get(&block.input) {
        Some(Producer::Node(n, _)) => Some(*n),
        _ => None,
    };
    Ok(Pool {
        block_name: block.name.clone(),
        tensor: block.input.clone(),
        channels: block.channels,
        height: block.height.clone(),
        width: block.width.clone(),
        segments: config.segments,
        batch: block.batch.clone(),
        elem_type: elem_type(graph, &block.input, df.consumers_of(&block.input)),
        edges: df.consumers_of(&block.input).to_vec(),
        after,
        prefix: format!("{}/pool", base_prefix(graph, block, k)),
        quant: None,
    })
}

/// The module path torch's dynamo exporter records on a node, `['', 'layer1', 'layer1.0', 'add_20']`
/// in `pkg.torch.onnx.name_scopes`, as its parts.
pub fn torch_name_scopes(node: &NodeProto) -> Option<Vec<&str>> {
    let scopes = node.metadata_props.iter().find(|m| m.key() == "pkg.torch.onnx.name_scopes")?;
    Some(scopes.value().trim_matches(['[', ']']).split(", ").map(|s| s.trim_matches(['\'', '"'])).collect())
}

/// The prefix for a block's new names: the Add's scope plus `/tsm`. The scope is read from the
/// name (`/layer1/layer1.0/Add`, the TorchScript exporter) or, where the name has none
/// (`node_add_20`, torch's dynamo exporter), from the module path the exporter records in
/// `pkg.torch.onnx.name_scopes` (`['', 'layer1', 'layer1.0', 'add_20']`).
fn base_prefix(graph: &GraphProto, block: &Block, index: usize) -> String {
    if let Some(pos) = block.name.rfind('/').filter(|&p| p > 0) {
        return format!("{}/tsm", &block.name[..pos]);
    }
    if let Some(parts) = torch_name_scopes(&graph.node[block.add]) {
        let scope = &parts[..parts.len().saturating_sub(1)];
        if scope.iter().any(|p| !p.is_empty()) {
            return format!("{}/tsm", scope.join("/"));
        }
    }
    if block.name.starts_with('#') {
        format!("/tsm/block{index}")
    } else {
        format!("{}/tsm", block.name)
    }
}

/// Plans the shifts for the blocks found.
/// `opset` is the model's (default domain): it decides whether the temporal pool may run on a
/// QDQ model's quantized tensor.
pub fn plan(
    graph: &GraphProto,
    df: &Dataflow,
    findings: &Findings,
    shapes: &Shapes,
    config: &Config,
    opset: i64,
) -> Result<Plan, Error> {
    let mut names: HashSet<&str> = HashSet::new();
    names.extend(graph.node.iter().map(|n| n.name()));
    names.extend(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)));
    names.extend(graph.initializer.iter().map(|t| t.name()));
    names.extend(graph.input.iter().map(|v| v.name()));
    let taken = |p: &str| names.iter().any(|n| n.starts_with(p) && n[p.len()..].starts_with('/'));

    let in_qdq_model = is_qdq_model(graph);
    let mut plan = Plan::default();
    let mut claimed: HashSet<(usize, usize)> = HashSet::new();
    let mut prefixes: HashSet<String> = HashSet::new();
    for (k, block) in findings.blocks.iter().enumerate() {
        if block.index_in_stage % config.every != 0 {
            plan.not_shifted.push((
                block.name.clone(),
                format!("--every {}: block {} of its stage", config.every, block.index_in_stage),
            ));
            continue;
        }
        if block.channels > crate::config::MAX_CHANNELS {
            return Err(Error::Config(format!(
                "node {}: tensor '{}' declares {} channels, more than the {} this tool shifts (is a weight's shape \
                 larger than its data?)",
                block.name,
                block.fork,
                block.channels,
                crate::config::MAX_CHANNELS
            )));
        }
        if let (Some(h), Some(w)) = (block.height.known(), block.width.known()) {
            crate::config::check_pixels(&block.name, &block.fork, (h, w))?;
        }
        // As in the reference code (`fold = c // fold_div`), a fold of zero shifts nothing: such a
        // block (a stem's multi-branch convolution on the 3-channel image) stays as it is.
        let fold = block.channels / config.fold_div as i64;
        if fold == 0 {
            plan.not_shifted.push((
                block.name.clone(),
                format!(
                    "tensor '{}' has {} channels: --fold-div {} leaves no channel to shift",
                    block.fork, block.channels, config.fold_div
                ),
            ));
            continue;
        }
        let (tensor, edges) = match config.mode {
            Mode::Residual => (&block.fork, block.branch_edges.clone()),
            Mode::Inplace => (&block.input, block.input_edges.clone()),
        };
        if let Some(e) = edges.iter().find(|e| claimed.contains(e)) {
            plan.not_shifted.push((
                block.name.clone(),
                format!("its input edge into {} is already shifted by an enclosing block", graph.node[e.0].name()),
            ));
            continue;
        }
        claimed.extend(edges.iter().copied());
        let after = match df.producer.get(tensor) {
            Some(Producer::Node(n, _)) => Some(*n),
            _ => None,
        };
        let base = base_prefix(graph, block, k);
        let mut prefix = base.clone();
        let mut n = 1;
        while taken(&prefix) || prefixes.contains(&prefix) {
            n += 1;
            prefix = format!("{base}_{n}");
        }
        prefixes.insert(prefix.clone());
        let mut site = Site {
            block: k,
            block_name: block.name.clone(),
            tensor: tensor.clone(),
            batch: block.batch.clone(),
            channels: block.channels,
            fold,
            height: block.height.clone(),
            width: block.width.clone(),
            channels_last: block.channels_last,
            elem_type: elem_type(graph, tensor, &edges),
            // A QDQ model's channels-last site (none seen) shifts the floats.
            quant: quant(graph, df, tensor).filter(|_| !block.channels_last),
            in_qdq_model,
            segments: config.segments,
            strided_1x1: strided_1x1(graph, shapes, &edges),
            rejoined: Vec::new(),
            stream: None,
            stream_refused: None,
            into: edges.iter().map(|&(n, _)| node_label(&graph.node[n], n)).collect(),
            edges,
            after,
            prefix,
        };
        let tract_online = config.online && config.shift_form == ShiftForm::Tract;
        if tract_online && !site.channels_last && crate::emit::online::slices_flat(&site, opset) {
            site.rejoined = fused_joins(graph, df, shapes, &site.tensor, &site.edges);
        }
        plan.sites.push(site);
    }
    if plan.sites.is_empty() {
        // The first of the widest (max_by_key keeps the last of equals).
        if let Some(widest) = findings.blocks.iter().rev().max_by_key(|b| b.channels) {
            if widest.channels < config.fold_div as i64 {
                return Err(Error::Config(format!(
                    "node {}: tensor '{}' has {} channels, the most of any block; --fold-div {} leaves no channel to shift (use a --fold-div of at most {})",
                    widest.name, widest.fork, widest.channels, config.fold_div, widest.channels
                )));
            }
        }
    }
    if config.temporal_pool {
        let mut pool = pool_site(graph, df, findings, config)?;
        pool.quant = quant(graph, df, &pool.tensor).filter(|q| opset >= 12 && positive(graph, &q.scale));
        for site in plan.sites.iter_mut().filter(|s| findings.blocks[s.block].stage >= 1) {
            site.segments = config.segments / 2;
            // Half the frames: no longer the batch the model's shapes gave the block (a symbol).
            site.batch = Dim::Unknown;
            if site.tensor == pool.tensor {
                site.tensor = pool.output();
                pool.edges.retain(|e| !site.edges.contains(e));
                // A QDQ site shifts the quantized tensor before its DequantizeLinear: the pooled one,
                // where the pool runs on it, or else the floats (the quantized tensor before the
                // pool would bypass it: its branch would see T frames, its shortcut T/2).
                site.quant = pool.quant.as_ref().map(|q| Quant { tensor: pool.quantized_output(), ..q.clone() });
            }
        }
        plan.pool = Some(pool);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{find, tests::tiny_resnet};
    use crate::shapes::Shapes;

    fn plan_for(config: &Config) -> Result<Plan, Error> {
        let g = tiny_resnet();
        let df = Dataflow::build(&g).unwrap();
        let shapes = Shapes::infer(&g);
        let f = find(&g, &df, &shapes);
        plan(&g, &df, &f, &shapes, config, 13)
    }

    /// A strided 1x1 consumer is found from its weights' dims wherever they come from: without a
    /// `kernel_shape`, weights from a Constant node (older exporters) were read as no kernel, and
    /// tract's optimizer then failed on the rewrite (a Downsample pulled over the shift's Reshape).
    #[test]
    fn a_strided_1x1_is_found_without_kernel_shape_from_constant_weights() {
        use crate::onnx::{attribute_proto::AttributeType, AttributeProto};
        let mut g = tiny_resnet();
        let w = g.initializer.iter().position(|t| t.name() == "w16").unwrap();
        let w = g.initializer.remove(w);
        let value = AttributeProto {
            name: Some("value".into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(w),
            ..Default::default()
        };
        let mut constant = crate::graph::tests::node("Constant", "/w16", &[], &["w16"]);
        constant.attribute.push(value);
        g.node.insert(0, constant);
        let conv1 = g.node.iter().position(|n| n.name() == "/layer2/layer2.0/conv1/Conv").unwrap();
        let strides = AttributeProto {
            name: Some("strides".into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: vec![2, 2],
            ..Default::default()
        };
        g.node[conv1].attribute.push(strides);
        let shapes = Shapes::infer(&g);
        assert!(strided_1x1(&g, &shapes, &[(conv1, 0)]));
        let conv2 = g.node.iter().position(|n| n.name() == "/layer2/layer2.0/conv2/Conv").unwrap();
        assert!(!strided_1x1(&g, &shapes, &[(conv2, 0)]), "no stride");
        assert!(!strided_1x1(&g, &shapes, &[(conv1, 1)]), "the weights' slot");
    }

    #[test]
    fn residual_rewires_branch_only_and_inplace_both_paths() {
        let p = plan_for(&Config::default()).unwrap();
        assert_eq!(p.sites.len(), 2);
        assert_eq!(p.sites[0].prefix, "/layer1/layer1.0/tsm");
        assert_eq!(p.sites[0].edges, vec![(2, 0)]);
        assert_eq!(p.sites[0].after, Some(1));
        assert_eq!(p.sites[0].fold, 1);
        let p = plan_for(&Config { mode: Mode::Inplace, ..Config::default() }).unwrap();
        assert_eq!(p.sites[0].edges, vec![(2, 0), (5, 1)]);
        assert_eq!(p.sites[1].edges, vec![(7, 0), (10, 0)]);
    }

    #[test]
    fn zero_fold_everywhere_names_the_widest_block() {
        // Both blocks fork from 8 channels. (A block left unshifted beside shifted ones: tests/cli.rs
        // and the resnet_basic fd16 reference.)
        let err = plan_for(&Config { fold_div: 16, ..Config::default() }).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "node /layer1/layer1.0/Add: tensor 's_r' has 8 channels, the most of any block; --fold-div 16"
            ),
            "{err}"
        );
    }
}
