//! Turns a plan into a [`Patch`]: the shift subgraphs, written in the operator forms the model's
//! opset defines, and the edges to rewire. [`Patch::apply`] is the one place the model changes.
//!
//! The shift is plain ONNX every runtime handles: Reshape to `[N, T, C, H*W]` (4D, as mmaction2
//! does, since some backends reject 5D tensors), Slice the channel groups, Pad one zero frame on the
//! time axis, Concat, Reshape back. No ScatterND, no zeros-then-assign.

use crate::config::{Config, Direction, GroupOrder};
use crate::onnx::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, StringStringEntryProto, TensorProto,
};
use crate::plan::{Plan, Site};
use crate::tensor::int64_vec;

/// Everything a rewrite changes, applied in one place.
#[derive(Debug, Default)]
pub struct Patch {
    /// Nodes to insert right after the node at the index (`None`: before the first node).
    pub inserts: Vec<(Option<usize>, Vec<NodeProto>)>,
    pub initializers: Vec<TensorProto>,
    /// (node, input slot, new tensor name).
    pub rewires: Vec<(usize, usize, String)>,
    pub metadata: Vec<StringStringEntryProto>,
}

impl Patch {
    /// Applies the patch. Node indices refer to the graph the plan was made for.
    pub fn apply(self, graph: &mut GraphProto, metadata: &mut Vec<StringStringEntryProto>) {
        for (node, slot, name) in self.rewires {
            graph.node[node].input[slot] = name;
        }
        let mut inserts = self.inserts;
        // Stable: sites after the same node keep plan order.
        inserts.sort_by_key(|(after, _)| after.map_or(0, |a| a + 1));
        let old = std::mem::take(&mut graph.node);
        let mut nodes = Vec::with_capacity(old.len() + inserts.iter().map(|(_, n)| n.len()).sum::<usize>());
        let mut pending = inserts.into_iter().peekable();
        while let Some((_, ns)) = pending.next_if(|(after, _)| after.is_none()) {
            nodes.extend(ns);
        }
        for (i, node) in old.into_iter().enumerate() {
            nodes.push(node);
            while let Some((_, ns)) = pending.next_if(|(after, _)| *after == Some(i)) {
                nodes.extend(ns);
            }
        }
        graph.node = nodes;
        graph.initializer.extend(self.initializers);
        metadata.extend(self.metadata);
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

/// Builds the nodes of one site, naming everything under the site's prefix.
struct Emitter<'a> {
    prefix: &'a str,
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Emitter<'_> {
    fn name(&self, what: &str) -> String {
        format!("{}/{what}", self.prefix)
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
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: self.name(name),
            input: inputs,
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    fn constant(&mut self, name: &str, values: &[i64]) -> String {
        let n = self.name(name);
        self.inits.push(int64_vec(&n, values));
        n
    }

    /// `data[.., starts:ends, ..]` on `axes`; attributes before opset 10, inputs from 10.
    fn slice(&mut self, what: &str, data: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let name = format!("Slice_{what}");
        if self.opset < 10 {
            let attrs = vec![ints_attr("starts", starts), ints_attr("ends", ends), ints_attr("axes", axes)];
            self.node("Slice", &name, vec![data.into()], what, attrs)
        } else {
            let s = self.constant(&format!("{what}_starts"), starts);
            let e = self.constant(&format!("{what}_ends"), ends);
            let a = self.constant(&format!("{what}_axes"), axes);
            self.node("Slice", &name, vec![data.into(), s, e, a], what, vec![])
        }
    }

    /// Zero frames on the time axis (axis 1 of `[N, T, C, HW]`): one before or one after.
    fn pad_time(&mut self, what: &str, data: &str, before: bool) -> String {
        let pads: [i64; 8] = if before { [0, 1, 0, 0, 0, 0, 0, 0] } else { [0, 0, 0, 0, 0, 1, 0, 0] };
        let name = format!("Pad_{what}");
        let out = format!("{what}_padded");
        if self.opset < 11 {
            let attrs = vec![
                AttributeProto {
                    name: "mode".into(),
                    r#type: AttributeType::String as i32,
                    s: "constant".into(),
                    ..Default::default()
                },
                ints_attr("pads", &pads),
                AttributeProto {
                    name: "value".into(),
                    r#type: AttributeType::Float as i32,
                    f: 0.0,
                    ..Default::default()
                },
            ];
            self.node("Pad", &name, vec![data.into()], &out, attrs)
        } else {
            let p = self.constant(&format!("{what}_pads"), &pads);
            self.node("Pad", &name, vec![data.into(), p], &out, vec![])
        }
    }
}

/// The shift subgraph of one site; returns its nodes, initializers and the shifted tensor's name.
pub fn shift_subgraph(site: &Site, config: &Config, opset: i64) -> (Vec<NodeProto>, Vec<TensorProto>, String) {
    let mut e = Emitter { prefix: &site.prefix, opset, nodes: Vec::new(), inits: Vec::new() };
    let (t, c, fold) = (config.segments as i64, site.channels, site.fold);
    let x = site.tensor.clone();
    // Static H and W give constant shapes; symbolic ones are read from the tensor at run time.
    let (clip_shape, frame_shape) = match (site.height.known(), site.width.known()) {
        (Some(h), Some(w)) => (e.constant("clip_shape", &[-1, t, c, h * w]), e.constant("frame_shape", &[-1, c, h, w])),
        _ => {
            let shape = e.node("Shape", "Shape", vec![x.clone()], "shape", vec![]);
            let hi = e.constant("h_index", &[2]);
            let wi = e.constant("w_index", &[3]);
            let h = e.node("Gather", "Gather_h", vec![shape.clone(), hi], "h", vec![int_attr("axis", 0)]);
            let w = e.node("Gather", "Gather_w", vec![shape.clone(), wi], "w", vec![int_attr("axis", 0)]);
            let hw = e.node("Mul", "Mul_hw", vec![h, w], "hw", vec![]);
            let lead = e.constant("clip_shape_lead", &[-1, t, c]);
            let clip_shape = e.node("Concat", "Concat_shape", vec![lead, hw], "clip_shape", vec![int_attr("axis", 0)]);
            (clip_shape, shape)
        }
    };
    let clip = e.node("Reshape", "Reshape_clip", vec![x, clip_shape], "clip", vec![]);
    // Group g of `fold` channels starting at channel g*fold, taken from the next or previous frame.
    let from_next = |e: &mut Emitter, what: &str, g: i64| {
        let s = e.slice(what, &clip, &[1, g * fold], &[t, (g + 1) * fold], &[1, 2]);
        e.pad_time(what, &s, false)
    };
    let from_prev = |e: &mut Emitter, what: &str, g: i64| {
        let s = e.slice(what, &clip, &[0, g * fold], &[t - 1, (g + 1) * fold], &[1, 2]);
        e.pad_time(what, &s, true)
    };
    let mut parts = match (config.direction, config.group_order) {
        (Direction::Bidirectional, GroupOrder::Tsm) => vec![from_next(&mut e, "next", 0), from_prev(&mut e, "prev", 1)],
        (Direction::Bidirectional, GroupOrder::Paddle) => {
            vec![from_prev(&mut e, "prev", 0), from_next(&mut e, "next", 1)]
        }
        (Direction::Past, _) => vec![from_prev(&mut e, "prev", 0)],
    };
    let shifted_channels = fold * parts.len() as i64;
    if shifted_channels < c {
        parts.push(e.slice("rest", &clip, &[shifted_channels], &[c], &[2]));
    }
    let joined = e.node("Concat", "Concat", parts, "shifted_clip", vec![int_attr("axis", 2)]);
    let out = e.node("Reshape", "Reshape_frames", vec![joined, frame_shape], "shifted", vec![]);
    (e.nodes, e.inits, out)
}

/// The patch for a whole plan.
pub fn emit(plan: &Plan, config: &Config, opset: i64, metadata_value: String) -> Patch {
    let mut patch = Patch::default();
    for site in &plan.sites {
        let (nodes, inits, out) = shift_subgraph(site, config, opset);
        patch.inserts.push((site.after, nodes));
        patch.initializers.extend(inits);
        patch.rewires.extend(site.edges.iter().map(|&(n, s)| (n, s, out.clone())));
    }
    patch.metadata.push(StringStringEntryProto { key: "tsm-rewrite".into(), value: metadata_value });
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::Dim;

    fn site(h: Dim) -> Site {
        Site {
            block: 0,
            block_name: "/l/Add".into(),
            tensor: "x".into(),
            channels: 16,
            fold: 2,
            height: h,
            width: Dim::Known(4),
            edges: vec![(3, 0)],
            into: vec!["conv".into()],
            after: Some(1),
            prefix: "/l/tsm".into(),
        }
    }

    fn ops(nodes: &[NodeProto]) -> Vec<String> {
        nodes.iter().map(|n| format!("{}({})", n.op_type, n.input.len())).collect()
    }

    #[test]
    fn slice_and_pad_take_attributes_before_opsets_10_and_11() {
        let c = Config::default();
        let (n9, i9, out) = shift_subgraph(&site(Dim::Known(4)), &c, 9);
        assert_eq!(
            ops(&n9),
            ["Reshape(2)", "Slice(1)", "Pad(1)", "Slice(1)", "Pad(1)", "Slice(1)", "Concat(3)", "Reshape(2)"]
        );
        assert_eq!(out, "/l/tsm/shifted");
        assert_eq!(i9.len(), 2);
        let (n10, _, _) = shift_subgraph(&site(Dim::Known(4)), &c, 10);
        assert_eq!(ops(&n10)[1..3], ["Slice(4)", "Pad(1)"]);
        let (n11, i11, _) = shift_subgraph(&site(Dim::Known(4)), &c, 11);
        assert_eq!(ops(&n11)[1..3], ["Slice(4)", "Pad(2)"]);
        assert_eq!(
            i11.iter().find(|t| t.name == "/l/tsm/clip_shape").map(crate::tensor::int_values),
            Some(Some(vec![-1, 8, 16, 16]))
        );
        let pads = i11.iter().find(|t| t.name == "/l/tsm/next_pads").unwrap();
        assert_eq!(crate::tensor::int_values(pads), Some(vec![0, 0, 0, 0, 0, 1, 0, 0]));
    }

    #[test]
    fn symbolic_spatial_dims_are_read_at_run_time() {
        let (nodes, _, _) = shift_subgraph(&site(Dim::Sym("H".into())), &Config::default(), 13);
        assert_eq!(ops(&nodes)[..5], ["Shape(1)", "Gather(2)", "Gather(2)", "Mul(2)", "Concat(2)"]);
        assert_eq!(nodes.last().unwrap().input[1], "/l/tsm/shape");
    }

    #[test]
    fn past_shifts_one_group() {
        let c = Config { direction: Direction::Past, ..Config::default() };
        let (nodes, inits, _) = shift_subgraph(&site(Dim::Known(4)), &c, 13);
        assert_eq!(ops(&nodes), ["Reshape(2)", "Slice(4)", "Pad(2)", "Slice(4)", "Concat(2)", "Reshape(2)"]);
        let rest = inits.iter().find(|t| t.name == "/l/tsm/rest_starts").unwrap();
        assert_eq!(crate::tensor::int_values(rest), Some(vec![2]));
    }

    #[test]
    fn apply_inserts_after_the_producer_and_rewires() {
        let mut g = GraphProto {
            node: (0..3)
                .map(|i| NodeProto { name: format!("n{i}"), input: vec!["a".into()], ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let mk = |n: &str| NodeProto { name: n.into(), ..Default::default() };
        let patch = Patch {
            inserts: vec![(Some(1), vec![mk("s1")]), (None, vec![mk("s0")]), (Some(1), vec![mk("s2")])],
            rewires: vec![(2, 0, "b".into())],
            ..Default::default()
        };
        let mut md = vec![];
        patch.apply(&mut g, &mut md);
        let names: Vec<&str> = g.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["s0", "n0", "n1", "s1", "s2", "n2"]);
        assert_eq!(g.node[5].input[0], "b");
    }
}
