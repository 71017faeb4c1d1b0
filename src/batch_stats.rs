//! A copy of a model whose BatchNormalizations in training mode are written as the ops they
//! compute, for validation only. timm's and transformers' weight-standardized convolutions (BiT,
//! NF-ResNet, as `StdConv2d` and `ScaledStdConv2d` export) standardize each weight by a
//! BatchNormalization with `training_mode = 1` on the weight viewed `[1, O, -1]`, which tract
//! (0.23) cannot load ("Wrong number of outputs. Op says 1, node says 3"), the input model as much
//! as its rewrite. The copy computes the same function: the mean and the biased variance of `x`
//! over every axis but the channels, then `(x - mean) / sqrt(var + epsilon) * scale + B`. Only a
//! node whose running statistics (its second and third outputs) nothing reads is written so; the
//! rewrite itself is never changed.

use crate::onnx::tensor_proto::DataType;
use crate::onnx::{attribute_proto::AttributeType, AttributeProto, ModelProto, NodeProto, TensorProto};
use crate::shapes::Shapes;
use bytes::Bytes;
use std::collections::HashSet;

fn training(n: &NodeProto) -> bool {
    crate::graph::default_domain(n)
        && n.op_type() == "BatchNormalization"
        && n.input.len() == 5
        && n.attribute.iter().any(|a| a.name() == "training_mode" && a.i() == 1)
}

/// Whether the model's graph has a BatchNormalization in training mode.
pub fn has_training_norm(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| g.node.iter().any(training))
}

/// The copy of `model` with each BatchNormalization in training mode whose running statistics
/// nothing reads, and whose input's rank shape inference knows, written as the ops it computes.
pub fn expand(model: &ModelProto) -> ModelProto {
    let opset =
        model.opset_import.iter().find(|o| o.domain().is_empty() || o.domain() == "ai.onnx").map_or(1, |o| o.version());
    let mut m = model.clone();
    let Some(g) = m.graph.as_mut() else { return m };
    let shapes = Shapes::infer(g);
    let read: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name().to_string()))
        .collect();
    let mut nodes = Vec::with_capacity(g.node.len());
    let mut inits = Vec::new();
    for n in std::mem::take(&mut g.node) {
        let stats_unread = n.output.iter().skip(1).all(|o| o.is_empty() || !read.contains(o));
        let written = training(&n) && stats_unread && !n.output.is_empty();
        let rank = written.then(|| shapes.get(&n.input[0]).map(|i| i.rank())).flatten().filter(|&r| r >= 2);
        match rank {
            Some(rank) => {
                let data_type = g.initializer.iter().find(|t| t.name() == n.input[1]).map_or(1, |t| t.data_type());
                let (mut more, mut consts) = written_out(&n, rank, opset, data_type);
                nodes.append(&mut more);
                inits.append(&mut consts);
            }
            None => nodes.push(n),
        }
    }
    g.node = nodes;
    g.initializer.extend(inits);
    m
}

/// The ops of one training-mode BatchNormalization `n` on a tensor of `rank` (its output's name,
/// unique where node names may not be, prefixes the new ones), and their constants.
fn written_out(n: &NodeProto, rank: usize, opset: i64, data_type: i32) -> (Vec<NodeProto>, Vec<TensorProto>) {
    let p = format!("{}/expanded", n.output[0]);
    let name = |what: &str| format!("{p}/{what}");
    let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != 1).collect();
    let mut consts = vec![crate::tensor::int64_vec(&name("axes"), &axes)];
    let mut per_channel = vec![1; rank];
    per_channel[1] = -1;
    consts.push(crate::tensor::int64_vec(&name("channel_shape"), &per_channel));
    let epsilon = n.attribute.iter().find(|a| a.name() == "epsilon").map_or(1e-5, |a| a.f());
    consts.push(scalar(&name("epsilon"), epsilon, data_type));
    let op = |op: &str, inputs: &[&str], out: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: Some(op.into()),
        name: Some(name(op) + "_" + out),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        output: vec![if out == "y" { n.output[0].clone() } else { name(out) }],
        attribute,
        ..Default::default()
    };
    // ReduceMean takes its axes as an input from opset 18, as an attribute before.
    let mean = |input: &str, out: &str| {
        let keep = AttributeProto {
            name: Some("keepdims".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(1),
            ..Default::default()
        };
        if opset >= 18 {
            op("ReduceMean", &[input, &name("axes")], out, vec![keep])
        } else {
            let axes = AttributeProto {
                name: Some("axes".into()),
                r#type: Some(AttributeType::Ints as i32),
                ints: axes.clone(),
                ..Default::default()
            };
            op("ReduceMean", &[input], out, vec![keep, axes])
        }
    };
    let (x, scale, bias) = (n.input[0].as_str(), n.input[1].as_str(), n.input[2].as_str());
    let nodes = vec![
        mean(x, "mean"),
        op("Sub", &[x, &name("mean")], "centered", vec![]),
        op("Mul", &[&name("centered"), &name("centered")], "squares", vec![]),
        mean(&name("squares"), "variance"),
        op("Add", &[&name("variance"), &name("epsilon")], "variance_eps", vec![]),
        op("Sqrt", &[&name("variance_eps")], "deviation", vec![]),
        op("Div", &[&name("centered"), &name("deviation")], "normalized", vec![]),
        op("Reshape", &[scale, &name("channel_shape")], "scale", vec![]),
        op("Reshape", &[bias, &name("channel_shape")], "bias", vec![]),
        op("Mul", &[&name("normalized"), &name("scale")], "scaled", vec![]),
        op("Add", &[&name("scaled"), &name("bias")], "y", vec![]),
    ];
    (nodes, consts)
}

/// A scalar of the floating-point `data_type` (float32 where it is another).
fn scalar(name: &str, v: f32, data_type: i32) -> TensorProto {
    let (data_type, raw) = match DataType::try_from(data_type) {
        Ok(DataType::Double) => (DataType::Double, f64::from(v).to_le_bytes().to_vec()),
        Ok(DataType::Float16) => {
            (DataType::Float16, tract_onnx::prelude::f16::from_f32(v).to_bits().to_le_bytes().to_vec())
        }
        _ => (DataType::Float, v.to_le_bytes().to_vec()),
    };
    TensorProto {
        name: Some(name.into()),
        data_type: Some(data_type as i32),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{node, value_info};
    use crate::onnx::GraphProto;

    fn floats(name: &str, values: &[f32]) -> TensorProto {
        crate::tensor::FloatArray { shape: vec![values.len()], data: values.to_vec() }.to_proto(name)
    }

    /// `x [1, 2, 3]` through a training-mode BatchNormalization (its running statistics unread),
    /// at `opset`.
    fn model(opset: i64) -> ModelProto {
        let mut bn = node("BatchNormalization", "/bn", &["x", "scale", "bias", "mean", "var"], &["y", "rm", "rv"]);
        let f = |name: &str, v: f32| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(v),
            ..Default::default()
        };
        bn.attribute = vec![f("epsilon", 1e-3), crate::emit::int_attr("training_mode", 1)];
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![crate::onnx::OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
            graph: Some(GraphProto {
                input: vec![value_info("x", &[1, 2, 3])],
                initializer: vec![
                    floats("scale", &[2.0, 0.5]),
                    floats("bias", &[1.0, -1.0]),
                    floats("mean", &[0.0, 0.0]),
                    floats("var", &[1.0, 1.0]),
                ],
                node: vec![bn],
                output: vec![value_info("y", &[1, 2, 3])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_ops_compute_what_the_training_mode_norm_does() {
        let x = [1.0f32, 2.0, 6.0, -3.0, 0.0, 9.0];
        // Per channel: the mean and the biased variance over the other axes, then the affine.
        let mut want = Vec::new();
        for (c, (scale, bias)) in [(2.0f32, 1.0f32), (0.5, -1.0)].into_iter().enumerate() {
            let v = &x[3 * c..3 * c + 3];
            let mean = v.iter().sum::<f32>() / 3.0;
            let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / 3.0;
            want.extend(v.iter().map(|a| (a - mean) / (var + 1e-3).sqrt() * scale + bias));
        }
        for opset in [15, 18] {
            let m = model(opset);
            assert!(has_training_norm(&m));
            let copy = expand(&m);
            assert!(!has_training_norm(&copy));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("expanded.onnx");
            std::fs::write(&path, prost::Message::encode_to_vec(&copy)).unwrap();
            let input = crate::tensor::FloatArray { shape: vec![1, 2, 3], data: x.to_vec() };
            let got = crate::validate::run(&path, &[input]).unwrap();
            for (g, w) in got[0].data.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "opset {opset}: {:?} against {want:?}", got[0].data);
            }
        }
    }

    #[test]
    fn a_norm_whose_running_statistics_are_read_stays() {
        let mut m = model(15);
        m.graph.as_mut().unwrap().output.push(value_info("rm", &[2]));
        assert!(has_training_norm(&expand(&m)));
    }
}
