//! A readable, deterministic text dump of a model: what the golden files hold, and what `--dump`
//! gives users who want to keep golden dumps in their own CI. Weights are shown by type and shape,
//! small integer constants by value, so a diff shows exactly what a rewrite inserted.

use crate::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, ModelProto, TensorProto,
    ValueInfoProto,
};
use crate::shapes::declared_dims;
use crate::tensor::{int_values, numel};
use std::fmt::Write;

fn dtype(t: i32) -> String {
    DataType::try_from(t).map(|d| d.as_str_name().to_lowercase()).unwrap_or_else(|_| format!("type{t}"))
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

fn tensor(t: &TensorProto) -> String {
    let mut s = format!("{} {}", dtype(t.data_type()), list(&t.dims));
    if numel(t) <= 16 {
        if let Some(v) = int_values(t) {
            s += &format!(" = {}", list(&v));
        }
    }
    s
}

fn value_info(v: &ValueInfoProto) -> String {
    let elem = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(crate::onnx::type_proto::Value::TensorType(t)) => dtype(t.elem_type()),
        Some(_) => "non-tensor".into(),
        None => "untyped".into(),
    };
    match declared_dims(v) {
        Some(d) => format!("{} {elem} {}", v.name(), list(&d)),
        None => format!("{} {elem}", v.name()),
    }
}

fn attribute(a: &AttributeProto) -> String {
    let value = match a.r#type() {
        AttributeType::Int => a.i().to_string(),
        AttributeType::Ints => list(&a.ints),
        AttributeType::Float => format!("{:?}", a.f()),
        AttributeType::Floats => format!("{:?}", a.floats),
        AttributeType::String => format!("{:?}", String::from_utf8_lossy(a.s())),
        AttributeType::Strings => {
            format!("{:?}", a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>())
        }
        AttributeType::Tensor => a.t.as_ref().map(tensor).unwrap_or_default(),
        AttributeType::Graph => {
            a.g.as_ref().map(|g| format!("graph({}, {} nodes)", g.name(), g.node.len())).unwrap_or_default()
        }
        other => format!("<{}>", other.as_str_name().to_lowercase()),
    };
    format!("{}={value}", a.name())
}

fn graph(out: &mut String, g: &GraphProto) {
    for v in &g.input {
        let _ = writeln!(out, "input {}", value_info(v));
    }
    for v in &g.output {
        let _ = writeln!(out, "output {}", value_info(v));
    }
    for t in &g.initializer {
        let _ = writeln!(out, "initializer {} {}", t.name(), tensor(t));
    }
    for v in &g.value_info {
        let _ = writeln!(out, "value_info {}", value_info(v));
    }
    for n in &g.node {
        let domain = if n.domain().is_empty() { String::new() } else { format!("{}:", n.domain()) };
        let mut attrs: Vec<String> = n.attribute.iter().map(attribute).collect();
        attrs.sort();
        let _ = writeln!(
            out,
            "node {domain}{} {} ({}) -> ({}){}{}",
            n.op_type(),
            n.name(),
            n.input.join(", "),
            n.output.join(", "),
            if attrs.is_empty() { "" } else { " " },
            attrs.join(" ")
        );
    }
}

/// The dump of a whole model.
pub fn dump(model: &ModelProto) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ir_version {}", model.ir_version());
    for o in &model.opset_import {
        let _ = writeln!(out, "opset {} {}", if o.domain().is_empty() { "ai.onnx" } else { o.domain() }, o.version());
    }
    let _ = writeln!(out, "producer {} {}", model.producer_name(), model.producer_version());
    if let Some(g) = &model.graph {
        graph(&mut out, g);
    }
    for m in &model.metadata_props {
        let _ = writeln!(out, "metadata {} = {}", m.key(), m.value());
    }
    out
}
