//! Writing: the nodes and partitioned weights of the stream sites `choose` planned (`emit`),
//! added to the patch.

use super::*;

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
        records: Vec::new(),
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
    patch.shifts.extend(w.records);
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
    crate::emit::int_attr("axis", 1)
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
    /// The heads' shifts as written, for `volume::lift`.
    records: Vec<crate::emit::volume::ShiftRecord>,
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
                m.attribute.push(crate::emit::int_attr("num_groups", (part.1 - part.0) / size));
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
            m.attribute.push(crate::emit::ints_attr("split", &parts));
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
            let head_site = Site { tensor: head, channels: s, ..site.clone() };
            let out = crate::emit::head_shift(&mut e, &head_site, self.config);
            self.records.extend(crate::emit::shift_record(&head_site, self.config, &head_site.tensor, &out, &e.nodes));
            out
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
pub(super) fn slice_tensor(
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
