//! The model's dataflow as a petgraph: one vertex per node and per graph input, plus a virtual root
//! that feeds every graph input and every node with no data inputs, so dominators are defined for the
//! whole graph. Vertex weights are small indices into the model's own lists, never copies.

use crate::onnx::{GraphProto, NodeProto};
use anyhow::{bail, Result};
use petgraph::algo::dominators::{self, Dominators};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// Whether `n` is an operator of ONNX's own domain (written empty or as `ai.onnx`), not a
/// vendor's op of the same name.
pub(crate) fn default_domain(n: &NodeProto) -> bool {
    n.domain().is_empty() || n.domain() == "ai.onnx"
}

/// Ops whose output is an activation's shape, not its values.
const SHAPE_OPS: &[&str] = &["Shape", "Size"];

/// What a vertex stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vertex {
    Root,
    /// Index into `graph.input`.
    Input(usize),
    /// Index into `graph.node`.
    Node(usize),
}

/// Who produces a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    Input(usize),
    Initializer,
    /// Node index and output slot.
    Node(usize, usize),
}

/// The dataflow graph and the name lookups every later stage uses.
pub struct Dataflow {
    pub g: DiGraph<Vertex, ()>,
    pub root: NodeIndex,
    pub node_vx: Vec<NodeIndex>,
    pub input_vx: Vec<NodeIndex>,
    pub producer: HashMap<String, Producer>,
    /// Consumers of each tensor as (node index, input slot), in node order.
    pub consumers: HashMap<String, Vec<(usize, usize)>>,
    /// Tensors whose value does not depend on any graph input.
    pub constant: HashSet<String>,
    pub dominators: Dominators<NodeIndex>,
}

/// Names a node by its name, or by op type and index when it has none.
pub fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name().is_empty() {
        format!("#{index} ({})", node.op_type())
    } else {
        node.name().to_owned()
    }
}

/// Names used inside a node's subgraphs that come from outside them (implicit inputs).
pub(crate) fn outer_names(node: &NodeProto, out: &mut Vec<String>) {
    for attr in &node.attribute {
        for g in attr.g.iter().chain(attr.graphs.iter()) {
            let mut defined: HashSet<&str> = HashSet::new();
            defined.extend(g.input.iter().map(|v| v.name()));
            defined.extend(g.initializer.iter().map(|t| t.name()));
            for n in &g.node {
                defined.extend(n.output.iter().map(String::as_str));
            }
            for n in &g.node {
                for i in &n.input {
                    if !i.is_empty() && !defined.contains(i.as_str()) {
                        out.push(i.clone());
                    }
                }
                let mut inner = Vec::new();
                outer_names(n, &mut inner);
                out.extend(inner.into_iter().filter(|i| !defined.contains(i.as_str())));
            }
        }
    }
}

impl Dataflow {
    /// Builds the dataflow; refuses graphs with dangling inputs, duplicate outputs or nodes out of
    /// topological order (which includes cycles).
    pub fn build(graph: &GraphProto) -> Result<Dataflow> {
        let mut g = DiGraph::new();
        let root = g.add_node(Vertex::Root);
        let mut producer: HashMap<String, Producer> = HashMap::new();
        let mut constant: HashSet<String> = HashSet::new();
        let values = graph.sparse_initializer.iter().filter_map(|t| t.values.as_ref());
        for t in graph.initializer.iter().chain(values) {
            if producer.insert(t.name().to_owned(), Producer::Initializer).is_some() {
                bail!("initializer '{}' is declared twice (duplicate tensor name)", t.name());
            }
            constant.insert(t.name().to_owned());
        }
        // Tensors computed from activations' shapes alone (the dynamo exporter's batch size, read
        // once from the input's Shape and used by every Reshape after): no data edges, or each of
        // those Reshapes would be reached from the input around every fork.
        let mut shape_values: HashSet<String> = HashSet::new();
        let mut input_vx = Vec::with_capacity(graph.input.len());
        for (i, vi) in graph.input.iter().enumerate() {
            let v = g.add_node(Vertex::Input(i));
            input_vx.push(v);
            // Before IR 4 initializers were listed as inputs too; they stay constants.
            if producer.get(vi.name()) != Some(&Producer::Initializer) {
                if producer.insert(vi.name().to_owned(), Producer::Input(i)).is_some() {
                    bail!("graph input '{}' is declared twice", vi.name());
                }
                g.add_edge(root, v, ());
            }
        }
        let node_vx: Vec<NodeIndex> = (0..graph.node.len()).map(|i| g.add_node(Vertex::Node(i))).collect();
        let mut consumers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (ni, node) in graph.node.iter().enumerate() {
            let mut implicit = Vec::new();
            outer_names(node, &mut implicit);
            let explicit = node.input.iter().enumerate().filter(|(_, n)| !n.is_empty());
            let mut has_data_input = false;
            let mut all_const = true;
            let mut any_shape = false;
            for (slot, name) in explicit.map(|(s, n)| (Some(s), n)).chain(implicit.iter().map(|n| (None, n))) {
                let Some(p) = producer.get(name) else {
                    let what = if graph.node[ni + 1..].iter().any(|n| n.output.contains(name)) {
                        "is used before it is produced (nodes out of topological order, or a cycle)"
                    } else {
                        "is produced by no node and is neither a graph input nor an initializer"
                    };
                    bail!("node {}: input '{}' {}", node_label(node, ni), name, what);
                };
                if let Some(slot) = slot {
                    consumers.entry(name.clone()).or_default().push((ni, slot));
                }
                // Only data edges: a constant reaching a node from the root would otherwise let the
                // root bypass every fork, and no join would have a dominator but the root.
                match *p {
                    Producer::Initializer => {}
                    Producer::Node(_, _) if shape_values.contains(name) => {
                        any_shape = true;
                        all_const = false;
                    }
                    Producer::Input(i) => {
                        has_data_input = true;
                        all_const = false;
                        g.update_edge(input_vx[i], node_vx[ni], ());
                    }
                    Producer::Node(_, _) if constant.contains(name) => {}
                    Producer::Node(pi, _) => {
                        has_data_input = true;
                        all_const = false;
                        g.update_edge(node_vx[pi], node_vx[ni], ());
                    }
                }
            }
            if !has_data_input {
                g.add_edge(root, node_vx[ni], ());
            }
            for (slot, out) in node.output.iter().enumerate() {
                if out.is_empty() {
                    continue;
                }
                if producer.insert(out.clone(), Producer::Node(ni, slot)).is_some() {
                    bail!(
                        "node {}: output '{}' is already produced elsewhere (duplicate tensor name)",
                        node_label(node, ni),
                        out
                    );
                }
                if all_const {
                    constant.insert(out.clone());
                } else if SHAPE_OPS.contains(&node.op_type()) || (any_shape && !has_data_input) {
                    shape_values.insert(out.clone());
                }
            }
        }
        let mut listed = HashSet::new();
        for out in &graph.output {
            if !producer.contains_key(out.name()) {
                bail!("graph output '{}' is produced by no node", out.name());
            }
            if !listed.insert(out.name()) {
                bail!("graph output '{}' is listed twice", out.name());
            }
        }
        let dominators = dominators::simple_fast(&g, root);
        Ok(Dataflow { g, root, node_vx, input_vx, producer, consumers, constant, dominators })
    }

    /// The vertex producing a tensor (None for initializers and unknown names).
    pub fn producer_vertex(&self, tensor: &str) -> Option<NodeIndex> {
        match self.producer.get(tensor)? {
            Producer::Input(i) => Some(self.input_vx[*i]),
            Producer::Node(n, _) => Some(self.node_vx[*n]),
            Producer::Initializer => None,
        }
    }

    /// Consumers of a tensor, empty if none.
    pub fn consumers_of(&self, tensor: &str) -> &[(usize, usize)] {
        self.consumers.get(tensor).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Vertices from which `to` can be reached, walking back no further than `stop` (excluded).
    pub fn ancestors_until(&self, to: NodeIndex, stop: NodeIndex) -> HashSet<NodeIndex> {
        let mut seen = HashSet::new();
        let mut stack = vec![to];
        while let Some(v) = stack.pop() {
            if v == stop || v == self.root || !seen.insert(v) {
                continue;
            }
            stack.extend(self.g.neighbors_directed(v, petgraph::Direction::Incoming));
        }
        seen
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::onnx::{tensor_proto::DataType, type_proto, TensorShapeProto, TypeProto, ValueInfoProto};

    pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
        use crate::onnx::tensor_shape_proto::{dimension::Value, Dimension};
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(if d < 0 { Value::DimParam("N".into()) } else { Value::DimValue(d) }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn dominator_of_a_join_is_the_fork() {
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 4, 8, 8])],
            node: vec![
                node("Relu", "fork", &["x"], &["a"]),
                node("Relu", "b1", &["a"], &["b"]),
                node("Relu", "b2", &["b"], &["c"]),
                node("Add", "join", &["a", "c"], &["y"]),
            ],
            ..Default::default()
        };
        let df = Dataflow::build(&graph).unwrap();
        assert_eq!(df.dominators.immediate_dominator(df.node_vx[3]), Some(df.node_vx[0]));
        assert_eq!(df.consumers_of("a"), &[(1, 0), (3, 0)]);
    }

    #[test]
    fn shapes_read_from_the_input_do_not_bypass_a_fork() {
        // The dynamo exporter reads the batch size once from the input and reshapes with it deep
        // inside a block: the join's dominator is still the block input.
        let graph = GraphProto {
            input: vec![value_info("x", &[-1, 4, 8, 8])],
            node: vec![
                node("Shape", "shape", &["x"], &["s"]),
                node("Gather", "batch", &["s", "zero"], &["n"]),
                node("Relu", "fork", &["x"], &["a"]),
                node("Relu", "b1", &["a"], &["b"]),
                node("Reshape", "view", &["b", "n"], &["c"]),
                node("Add", "join", &["a", "c"], &["y"]),
            ],
            initializer: vec![crate::tensor::int64("zero", &[], &[0])],
            ..Default::default()
        };
        let df = Dataflow::build(&graph).unwrap();
        assert_eq!(df.dominators.immediate_dominator(df.node_vx[5]), Some(df.node_vx[2]));
        assert!(!df.constant.contains("n"));
    }

    #[test]
    fn dangling_input_is_named() {
        let graph = GraphProto { node: vec![node("Relu", "r", &["nowhere"], &["y"])], ..Default::default() };
        let err = Dataflow::build(&graph).err().unwrap().to_string();
        assert!(err.contains("node r: input 'nowhere'"), "{err}");
    }

    #[test]
    fn cycle_is_refused() {
        let graph = GraphProto {
            input: vec![value_info("x", &[1])],
            node: vec![node("Add", "a", &["x", "c"], &["b"]), node("Relu", "r", &["b"], &["c"])],
            ..Default::default()
        };
        let err = Dataflow::build(&graph).err().unwrap().to_string();
        assert!(err.contains("used before it is produced"), "{err}");
    }

    #[test]
    fn duplicate_output_is_refused() {
        let graph = GraphProto {
            input: vec![value_info("x", &[1])],
            node: vec![node("Relu", "a", &["x"], &["y"]), node("Relu", "b", &["x"], &["y"])],
            ..Default::default()
        };
        let err = Dataflow::build(&graph).err().unwrap().to_string();
        assert!(err.contains("duplicate tensor name"), "{err}");
    }

    #[test]
    fn duplicate_initializer_is_refused() {
        let w = crate::onnx::TensorProto { name: Some("w".into()), ..Default::default() };
        let graph = GraphProto {
            input: vec![value_info("x", &[1])],
            initializer: vec![w.clone(), w],
            node: vec![node("Add", "a", &["x", "w"], &["y"])],
            ..Default::default()
        };
        let err = Dataflow::build(&graph).err().unwrap().to_string();
        assert_eq!(err, "initializer 'w' is declared twice (duplicate tensor name)");
    }
}
