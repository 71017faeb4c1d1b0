//! Finding: which sites take the stream form, and the tensors each splits (`choose`), decided
//! on the unchanged graph before anything is written.

use super::*;

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
pub(super) fn split_sizes(
    n: &NodeProto,
    consts: &HashMap<&str, &TensorProto>,
    channels: Option<i64>,
) -> Option<Vec<i64>> {
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
    // `--shift-form tract` offline takes the default's sites: its volume shifts their heads. Online
    // it takes none: tract runs each split convolution as two products, each with its part of the
    // residual Add fused in, where the batch form's whole products keep the Add out
    // (`Site::rejoined`; bench/RESULTS-tract-online-rejoined.md).
    let form = config.shift_form;
    let tract_online = form == ShiftForm::Tract && config.online;
    if form == ShiftForm::Batch || form == ShiftForm::Clip || tract_online || (!config.online && opset < 10) {
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
        // (bench/RESULTS-widening-readers.md).
        if chain.iter().any(|t| self.other_reader(t, c, consumer_node)) {
            return Err(
                "another convolution reading a tensor it would split writes more values than that tensor holds".into(),
            );
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
    /// product of its strides).
    fn other_reader(&self, t: &str, c: i64, consumer: usize) -> bool {
        self.df.consumers.get(t).into_iter().flatten().any(|&(n, slot)| {
            let reader = &self.graph.node[n];
            n != consumer
                && slot == 0
                && conv_weights(reader, &self.inits, &self.computed, self.folder).is_some_and(|w| {
                    let stride: i64 = attr_ints(reader, "strides").map_or(1, |s| s.iter().product());
                    w.dims[0] > c * stride
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
