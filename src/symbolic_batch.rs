//! Frees a batch pinned at 1. Most tutorials export with `torch.onnx.export(model, torch.randn(1, 3,
//! 224, 224), ...)` and no `dynamic_axes`, which gives a model that takes exactly one image; a TSM
//! model takes clips, `[N*T, C, H, W]`. Where the graph only carries the batch through (convolutions,
//! pooling, Flatten, Gemm, value_info) it becomes a symbol; a Reshape whose target writes the batch
//! as `1` copies it instead (`0`); anything else that ties the computation to one image is refused,
//! with the node named, since the tool cannot tell that it is safe. Runs before shape inference,
//! offline only: an online model keeps its batch of 1 per stream.

use crate::error::Error;
use crate::graph::node_label;
use crate::onnx::tensor_shape_proto::{dimension::Value, Dimension};
use crate::onnx::{type_proto, GraphProto, ValueInfoProto};
use crate::shapes::{Dim, Shapes};
use crate::tensor::{constants, int64_vec, int_values};
use crate::validate::data_inputs;

/// The dims of a declared tensor type, to edit.
pub(crate) fn dims_mut(vi: &mut ValueInfoProto) -> Option<&mut Vec<Dimension>> {
    match vi.r#type.as_mut()?.value.as_mut()? {
        type_proto::Value::TensorType(t) => t.shape.as_mut().map(|s| &mut s.dim),
        _ => None,
    }
}

fn batch_is_one(vi: &ValueInfoProto) -> bool {
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            t.shape.as_ref().is_some_and(|s| s.dim.len() >= 2 && matches!(s.dim[0].value, Some(Value::DimValue(1))))
        }
        _ => false,
    }
}

/// Makes a batch of 1 symbolic in `graph`; returns what changed, one line each, for the user
/// (nothing when no data input has a fixed batch of 1).
pub fn free(graph: &mut GraphProto) -> Result<Vec<String>, Error> {
    let pinned: Vec<String> =
        data_inputs(graph).into_iter().filter(|vi| batch_is_one(vi)).map(|vi| vi.name().to_owned()).collect();
    if pinned.is_empty() {
        return Ok(Vec::new());
    }
    let mut symbol = String::from("batch");
    while graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
        .any(|vi| crate::shapes::declared_dims(vi).is_some_and(|d| d.contains(&Dim::Sym(symbol.clone()))))
    {
        symbol.push('_');
    }
    let mut changes = Vec::new();
    let sym = Dimension { value: Some(Value::DimParam(symbol.clone())), denotation: None };
    for vi in graph.input.iter_mut().filter(|vi| pinned.iter().any(|p| p == vi.name())) {
        dims_mut(vi).expect("checked by batch_is_one")[0] = sym.clone();
        changes.push(format!("input '{}': batch 1 -> {symbol}", vi.name()));
    }
    // Declared batches of 1 further down would pin it again in shape inference: open them, and give
    // them the symbol below where inference carries it there.
    let mut opened = Vec::new();
    for vi in graph.value_info.iter_mut().chain(graph.output.iter_mut()) {
        if batch_is_one(vi) {
            dims_mut(vi).expect("checked by batch_is_one")[0] = Dimension::default();
            opened.push(vi.name().to_owned());
        }
    }
    let carries =
        |shapes: &Shapes, t: &str| shapes.get(t).is_some_and(|i| i.dims.first() == Some(&Dim::Sym(symbol.clone())));
    // A Reshape to [1, ...] of a tensor that carries the batch: keep it (0 copies the input's dim).
    let mut k = 0;
    while k < graph.node.len() {
        let shapes = Shapes::infer(graph);
        let next = {
            let consts = constants(graph);
            (k..graph.node.len()).find_map(|i| {
                let n = &graph.node[i];
                if n.op_type() != "Reshape" || !n.input.first().is_some_and(|x| carries(&shapes, x)) {
                    return None;
                }
                let target = int_values(consts.get(n.input.get(1)?.as_str())?)?;
                (target.first() == Some(&1)).then_some((i, target))
            })
        };
        let Some((i, mut target)) = next else { break };
        let node = &graph.node[i];
        let allowzero = crate::shapes::attr_int(node, "allowzero").unwrap_or(0) != 0;
        let label = node_label(node, i);
        let before = format!("{target:?}");
        target[0] = match (allowzero, target.contains(&-1)) {
            (false, _) => 0,
            (true, false) => -1,
            (true, true) => {
                return Err(Error::Config(format!(
                    "node {label}: Reshape to {before} (allowzero) ties the batch to 1 and already infers another \
                     dim: re-export the model with a dynamic batch axis"
                )))
            }
        };
        let name = format!("{}/tsm_batch", node.input[1]);
        graph.initializer.push(int64_vec(&name, &target));
        changes.push(format!("node {label}: Reshape target {before} -> {target:?} (keeps the batch)"));
        graph.node[i].input[1] = name;
        k = i + 1;
    }
    let shapes = Shapes::infer(graph);
    for (i, node) in graph.node.iter().enumerate() {
        let from = node.input.iter().find(|x| carries(&shapes, x));
        let to = node.output.first().and_then(|o| shapes.get(o));
        if let (Some(x), Some(out)) = (from, to) {
            // A Reshape to a constant first dim other than 1 has the batch of 1 multiplied into it
            // (MobileViT's unfolding, `[B*C*n_h, 2, n_w, 2]` as [512, 2, 8, 2]).
            let folded = node.op_type() == "Reshape" && out.dims[0].known().is_some();
            if out.rank() >= 2 && (out.dims[0] == Dim::Known(1) || folded) {
                let how = if out.dims[0] == Dim::Known(1) {
                    "with a batch of 1 fixed by a constant"
                } else {
                    "whose first dim is a constant the batch of 1 was multiplied into"
                };
                return Err(Error::Config(format!(
                    "node {}: {} turns '{x}', which carries the batch, into {} {how}: \
                     the model only works on one image at a time; re-export it with a dynamic batch axis \
                     (torch.onnx.export(..., dynamic_axes={{'{}': {{0: 'batch'}}}}))",
                    node_label(node, i),
                    node.op_type(),
                    out.display(),
                    pinned[0]
                )));
            }
        }
    }
    let mut kept = 0;
    for vi in graph.value_info.iter_mut().chain(graph.output.iter_mut()) {
        if opened.iter().any(|o| o == vi.name()) && carries(&shapes, vi.name()) {
            dims_mut(vi).expect("opened above")[0] = sym.clone();
            kept += 1;
        }
    }
    let outputs: Vec<&str> =
        graph.output.iter().filter(|o| opened.iter().any(|p| p == o.name())).map(|o| o.name()).collect();
    for o in outputs {
        changes
            .push(format!("output '{o}': batch 1 -> {}", if carries(&shapes, o) { symbol.as_str() } else { "open" }));
    }
    let value_info = opened.len() - graph.output.iter().filter(|o| opened.iter().any(|p| p == o.name())).count();
    if value_info > 0 {
        let kept = kept.min(value_info);
        let rest = if kept == value_info { String::new() } else { format!(", {} open", value_info - kept) };
        changes.push(format!(
            "{value_info} value_info entr{} with a batch of 1: {kept} now {symbol}{rest}",
            if value_info == 1 { "y" } else { "ies" },
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{node, value_info};
    use crate::tensor::int64;

    /// Pool, Reshape to `target`; with `token`, a constant `[1, 4, 1, 1]` concatenated before the
    /// pooled tensor on the channels (a class token as a batch-1 export writes it).
    fn pinned(target: &[i64], token: bool) -> GraphProto {
        let mut nodes = vec![node("GlobalAveragePool", "/pool", &["x"], &["p"])];
        let mut last = "p";
        if token {
            let mut cat = node("Concat", "/token/Concat", &["token", "p"], &["b"]);
            cat.attribute.push(crate::emit::int_attr("axis", 1));
            nodes.push(cat);
            last = "b";
        }
        nodes.push(node("Reshape", "/flatten/Reshape", &[last, "target"], &["flat"]));
        GraphProto {
            input: vec![value_info("x", &[1, 4, 8, 8])],
            output: vec![value_info("flat", &[1, 4])],
            value_info: vec![value_info("p", &[1, 4, 1, 1])],
            initializer: vec![int64("target", &[2], target), int64("token", &[1, 4, 1, 1], &[0; 4])],
            node: nodes,
            ..Default::default()
        }
    }

    fn first_dim(vi: &ValueInfoProto) -> Dim {
        crate::shapes::declared_dims(vi).unwrap()[0].clone()
    }

    #[test]
    fn a_reshape_to_batch_one_keeps_the_batch_and_declarations_get_the_symbol() {
        let mut g = pinned(&[1, 4], false);
        let changes = free(&mut g).unwrap();
        assert_eq!(g.node[1].input[1], "target/tsm_batch");
        assert_eq!(int_values(g.initializer.last().unwrap()), Some(vec![0, 4]));
        for vi in [&g.input[0], &g.output[0], &g.value_info[0]] {
            assert_eq!(first_dim(vi), Dim::Sym("batch".into()), "{}", vi.name());
        }
        assert_eq!(changes[0], "input 'x': batch 1 -> batch");
        assert!(changes[1].starts_with("node /flatten/Reshape: Reshape target [1, 4] -> [0, 4]"), "{changes:?}");
        assert_eq!(changes[2], "output 'flat': batch 1 -> batch");
        // The original target is untouched (another node may read it).
        assert_eq!(int_values(&g.initializer[0]), Some(vec![1, 4]));
    }

    #[test]
    fn a_reshape_target_from_a_constant_node_through_an_identity_keeps_the_batch() {
        // The TorchScript exporter writes some constants as nodes, and a value it uses twice once,
        // behind an Identity.
        let mut g = pinned(&[1, 4], false);
        let target = g.initializer.remove(0);
        let mut constant = node("Constant", "/Constant", &[], &["target_value"]);
        constant.attribute.push(crate::onnx::AttributeProto {
            name: Some("value".into()),
            r#type: Some(crate::onnx::attribute_proto::AttributeType::Tensor as i32),
            t: Some(target),
            ..Default::default()
        });
        g.node.splice(0..0, [constant, node("Identity", "/Identity", &["target_value"], &["target"])]);
        let changes = free(&mut g).unwrap();
        assert!(changes[1].starts_with("node /flatten/Reshape: Reshape target [1, 4] -> [0, 4]"), "{changes:?}");
        assert_eq!(g.node[3].input[1], "target/tsm_batch");
        assert_eq!(first_dim(&g.output[0]), Dim::Sym("batch".into()));
    }

    #[test]
    fn a_constant_that_pins_the_batch_is_refused_by_name() {
        let mut g = pinned(&[1, 8], true);
        let err = free(&mut g).unwrap_err().to_string();
        assert!(
            err.starts_with("node /token/Concat: Concat turns 'p', which carries the batch, into [1, 8, 1, 1]"),
            "{err}"
        );
    }

    #[test]
    fn a_reshape_that_multiplies_the_batch_into_a_constant_is_refused() {
        // MobileViT's unfolding in a batch-1 export: [B*C*n_h, ...] written as a constant.
        let mut g = pinned(&[4, 1], false);
        let err = free(&mut g).unwrap_err().to_string();
        assert!(
            err.starts_with("node /flatten/Reshape: Reshape turns 'p', which carries the batch, into [4, 1] whose first dim is a constant the batch of 1 was multiplied into"),
            "{err}"
        );
    }

    #[test]
    fn a_model_with_a_dynamic_batch_is_left_alone() {
        let mut g = pinned(&[1, 4], false);
        g.input[0] = value_info("x", &[-1, 4, 8, 8]);
        let before = g.clone();
        assert!(free(&mut g).unwrap().is_empty());
        assert_eq!(g, before);
    }
}
