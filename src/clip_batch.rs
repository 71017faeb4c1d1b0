//! Declares the offline model's batch as whole clips. The rewrite takes `[N*T, C, H, W]`, and its
//! clip views reshape that batch into `[N, T, ...]`; a runtime that checks shapes symbolically
//! (tract) cannot divide a plain symbol `batch` by T ("Reshaping [batch, 64, 28, 28] to [-1, 8, 64,
//! 784]: invalid"), so a model that declares `batch` did not load there unless the batch was
//! pinned, and not at all when the export also annotates every intermediate with `batch` (torch's
//! dynamo exporter does). Declared `batch*8`, the symbol counts clips: the division is exact, and
//! the input says what it takes. Every declaration of the symbol is renamed alike (inputs, outputs,
//! value_info), with the frames per clip where the tensor is: T, T/2 after `--temporal-pool`, and a
//! consensus output's batch is the clips themselves.
//!
//! To onnxruntime, OpenVINO and TVM a `dim_param` is a name, so nothing changes there but the name.
//! A symbol tract would not read as one name (paddle2onnx's `DynamicDimension.0`) is declared under
//! a plain one (`DynamicDimension_0*8`).

use crate::onnx::tensor_shape_proto::dimension::Value;
use crate::onnx::GraphProto;
use crate::shapes::{declared_dims, Dim};
use crate::symbolic_batch::dims_mut;
use crate::validate::data_inputs;
use std::collections::HashSet;

/// Where the frames per clip differ from T: the tensors `--temporal-pool` writes (the pooled tensor,
/// and in a QDQ model also the pooled quantized tensor, which the shift of the pooled tensor reads;
/// everything computed from them has `frames` per clip) and the consensus outputs (one row per clip).
#[derive(Debug, Default)]
pub struct Frames {
    pub pooled: Option<(Vec<String>, usize)>,
    pub per_clip: Vec<String>,
}

/// A plain name, which tract reads as one symbol.
fn is_symbol(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the expression `expr` mentions `symbol` as a whole name.
fn mentions(expr: &str, symbol: &str) -> bool {
    if !is_symbol(symbol) {
        return expr.contains(symbol);
    }
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|word| word == symbol)
}

/// The plain name a symbol is declared under: itself, or for a name tract would read as an
/// expression or not at all (paddle2onnx's `DynamicDimension.0`, `batch-size`), the same with every
/// other character an underscore, made unique among the names in `taken`.
fn plain_name(symbol: &str, taken: &HashSet<String>) -> String {
    if is_symbol(symbol) {
        return symbol.to_owned();
    }
    let mut name: String = symbol.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    while taken.contains(&name) {
        name.push('_');
    }
    name
}

/// Renames the data inputs' symbolic batch `s` to `s*T` wherever the graph declares it; returns one
/// line per input renamed, for the user (nothing with T = 1 or no symbolic batch).
pub fn declare(graph: &mut GraphProto, segments: usize, frames: &Frames) -> Vec<String> {
    let (mut data, mut symbols) = (Vec::new(), Vec::new());
    for vi in data_inputs(graph) {
        data.push(vi.name().to_owned());
        if let Some(Dim::Sym(s)) = declared_dims(vi).and_then(|d| d.into_iter().next()) {
            if !symbols.contains(&s) {
                symbols.push(s);
            }
        }
    }
    if segments < 2 || symbols.is_empty() {
        return Vec::new();
    }
    let mut taken: HashSet<String> = graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
        .filter_map(declared_dims)
        .flatten()
        .filter_map(|d| match d {
            Dim::Sym(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut names: Vec<String> = Vec::new();
    for s in &symbols {
        let name = plain_name(s, &taken);
        taken.insert(name.clone());
        names.push(name);
    }
    // Graph nodes are in topological order: one pass finds everything computed from the pool.
    let mut pooled: HashSet<String> = HashSet::new();
    if let Some((tensors, _)) = &frames.pooled {
        pooled.extend(tensors.iter().cloned());
        for node in &graph.node {
            if node.input.iter().any(|i| pooled.contains(i)) {
                pooled.extend(node.output.iter().cloned());
            }
        }
    }
    let mut changes = Vec::new();
    for vi in graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut()) {
        let per_clip = frames.per_clip.iter().any(|n| n == vi.name());
        let t = match frames.pooled {
            Some((_, f)) if pooled.contains(vi.name()) => f,
            _ => segments,
        };
        let Some(dims) = dims_mut(vi) else { continue };
        let mut renamed = false;
        for (k, d) in dims.iter_mut().enumerate() {
            let Some(Value::DimParam(p)) = &d.value else { continue };
            if let Some(i) = symbols.iter().position(|s| s == p) {
                let name = &names[i];
                d.value = Some(Value::DimParam(if per_clip { name.clone() } else { format!("{name}*{t}") }));
                renamed = true;
            } else if symbols.iter().any(|s| mentions(p, s)) {
                // An expression of the old symbol would now be T times off: left open.
                d.value = None;
            } else if per_clip && k == 0 && p == "clips" {
                // What the consensus writes: the clips, which the symbol now counts.
                d.value = Some(Value::DimParam(names[0].clone()));
            }
        }
        if renamed && data.iter().any(|d| d == vi.name()) {
            let shown: Vec<String> = declared_dims(vi).unwrap_or_default().iter().map(|d| d.to_string()).collect();
            changes.push(format!("input '{}': [{}]", vi.name(), shown.join(", ")));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::tensor_shape_proto::Dimension;
    use crate::onnx::{type_proto, NodeProto, TensorShapeProto, TypeProto, ValueInfoProto};

    fn vi(name: &str, dims: &[&str]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: match d.parse::<i64>() {
                    Ok(v) => Some(Value::DimValue(v)),
                    Err(_) if d.is_empty() => None,
                    Err(_) => Some(Value::DimParam((*d).into())),
                },
                denotation: None,
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto { dim }),
                })),
                denotation: None,
            }),
            ..Default::default()
        }
    }

    fn dims(vi: &ValueInfoProto) -> Vec<String> {
        declared_dims(vi).unwrap().iter().map(|d| d.to_string()).collect()
    }

    fn node(input: &str, output: &str) -> NodeProto {
        NodeProto {
            input: vec![input.into()],
            output: vec![output.into()],
            op_type: Some("Relu".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_batch_symbol_counts_clips_everywhere_it_is_declared() {
        let mut g = GraphProto {
            input: vec![vi("x", &["batch", "3", "8", "8"])],
            output: vec![vi("y", &["batch", "5"])],
            value_info: vec![vi("a", &["batch", "4", "H", "W"]), vi("flat", &["batch*256", "5"]), vi("c", &["5"])],
            node: vec![node("x", "a"), node("a", "y")],
            ..Default::default()
        };
        let changes = declare(&mut g, 8, &Frames::default());
        assert_eq!(changes, ["input 'x': [batch*8, 3, 8, 8]"]);
        assert_eq!(dims(&g.input[0]), ["batch*8", "3", "8", "8"]);
        assert_eq!(dims(&g.output[0]), ["batch*8", "5"]);
        assert_eq!(dims(&g.value_info[0]), ["batch*8", "4", "H", "W"]);
        // An expression of the old symbol is left open, others are untouched.
        assert_eq!(dims(&g.value_info[1]), ["?", "5"]);
        assert_eq!(dims(&g.value_info[2]), ["5"]);
    }

    #[test]
    fn a_qdq_pool_halves_the_frames_of_both_its_tensors() {
        // The pool's DequantizeLinear writes `p/pooled`; the shift of the pooled tensor reads the
        // quantized `p/pooled_quantized` and computes `c` from it.
        let mut g = GraphProto {
            input: vec![vi("x", &["N", "3", "8", "8"])],
            value_info: vec![vi("b", &["N", "4", "8", "8"]), vi("c", &["N", "4", "8", "8"])],
            node: vec![
                node("x", "p/pooled_quantized"),
                node("p/pooled_quantized", "p/pooled"),
                node("p/pooled", "b"),
                node("p/pooled_quantized", "c"),
            ],
            ..Default::default()
        };
        let pooled = Some((vec!["p/pooled".into(), "p/pooled_quantized".into()], 4));
        declare(&mut g, 8, &Frames { pooled, per_clip: vec![] });
        assert_eq!(dims(&g.value_info[0])[0], "N*4");
        assert_eq!(dims(&g.value_info[1])[0], "N*4");
    }

    #[test]
    fn after_the_pool_half_the_frames_and_a_consensus_output_counts_clips() {
        let mut g = GraphProto {
            input: vec![vi("x", &["N", "3", "8", "8"])],
            output: vec![vi("frames", &["N", "5"]), vi("y", &["clips", "5"])],
            value_info: vec![vi("a", &["N", "4", "8", "8"]), vi("b", &["N", "4", "8", "8"])],
            node: vec![node("x", "a"), node("a", "p/pooled"), node("p/pooled", "b"), node("b", "frames")],
            ..Default::default()
        };
        declare(&mut g, 8, &Frames { pooled: Some((vec!["p/pooled".into()], 4)), per_clip: vec!["y".into()] });
        assert_eq!(dims(&g.value_info[0])[0], "N*8");
        assert_eq!(dims(&g.value_info[1])[0], "N*4");
        assert_eq!(dims(&g.output[0])[0], "N*4");
        assert_eq!(dims(&g.output[1])[0], "N");
    }

    #[test]
    fn a_name_tract_would_not_read_as_one_symbol_is_declared_under_a_plain_one() {
        let mut g = GraphProto {
            input: vec![vi("x", &["DynamicDimension.0", "3", "8", "8"])],
            output: vec![vi("y", &["DynamicDimension.0", "5"])],
            value_info: vec![vi("a", &["DynamicDimension_0", "4"]), vi("b", &["2*DynamicDimension.0", "4"])],
            ..Default::default()
        };
        assert_eq!(declare(&mut g, 8, &Frames::default()), ["input 'x': [DynamicDimension_0_*8, 3, 8, 8]"]);
        assert_eq!(dims(&g.output[0])[0], "DynamicDimension_0_*8");
        // Another symbol that happened to have the plain name keeps it; an expression is left open.
        assert_eq!(dims(&g.value_info[0])[0], "DynamicDimension_0");
        assert_eq!(dims(&g.value_info[1])[0], "?");
    }

    #[test]
    fn nothing_changes_without_a_symbolic_batch_or_with_one_frame_per_clip() {
        for (batch, t) in [("16", 8), ("", 8), ("batch", 1)] {
            let mut g = GraphProto { input: vec![vi("x", &[batch, "3", "8", "8"])], ..Default::default() };
            let before = g.clone();
            assert!(declare(&mut g, t, &Frames::default()).is_empty(), "{batch} {t}");
            assert_eq!(g, before, "{batch} {t}");
        }
    }
}
