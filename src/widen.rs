//! A float32 copy of a float16 model, for validation only. tract (0.23) cannot type some float16
//! graphs that are valid ONNX and that onnxruntime runs (a float16 `Gemm`: "Output mismatch after
//! rewiring expansion ... expected F16 got F32"), the input model as much as its rewrite. Then the
//! rewrite is checked as the same graph computed in float32: every float16 tensor, `Cast` target
//! and declared type becomes float32, values unchanged (every float16 is exactly a float32), so
//! what is checked is the structure and the shift, not float16 rounding.

use crate::onnx::tensor_proto::DataType;
use crate::onnx::{attribute_proto::AttributeType, type_proto, GraphProto, ModelProto, TensorProto, ValueInfoProto};
use bytes::Bytes;
use tract_onnx::prelude::f16;

const F16: i32 = DataType::Float16 as i32;
const F32: i32 = DataType::Float as i32;

/// Whether the model declares or holds any float16 tensor.
pub fn has_float16(model: &ModelProto) -> bool {
    let Some(g) = &model.graph else { return false };
    g.initializer.iter().any(|t| t.data_type() == F16)
        || g.input.iter().chain(&g.output).chain(&g.value_info).any(|v| elem_type(v) == Some(F16))
        || g.node.iter().any(|n| n.attribute.iter().any(|a| a.t.as_ref().is_some_and(|t| t.data_type() == F16)))
}

fn elem_type(vi: &ValueInfoProto) -> Option<i32> {
    match vi.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

fn widen_tensor(t: &mut TensorProto) {
    if t.data_type() != F16 {
        return;
    }
    let halves: Vec<u16> = if t.raw_data().is_empty() {
        t.int32_data.iter().map(|&v| v as u16).collect()
    } else {
        t.raw_data().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
    };
    let raw: Vec<u8> = halves.iter().flat_map(|&h| f16::from_bits(h).to_f32().to_le_bytes()).collect();
    t.int32_data.clear();
    t.raw_data = Some(Bytes::from(raw));
    t.data_type = Some(F32);
}

fn widen_graph(g: &mut GraphProto) {
    g.initializer.iter_mut().for_each(widen_tensor);
    for vi in g.input.iter_mut().chain(g.output.iter_mut()).chain(g.value_info.iter_mut()) {
        if let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if t.elem_type == Some(F16) {
                t.elem_type = Some(F32);
            }
        }
    }
    for n in &mut g.node {
        let cast = n.op_type() == "Cast";
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                widen_tensor(t);
            }
            if cast && a.name() == "to" && a.r#type() == AttributeType::Int && a.i() == F16 as i64 {
                a.i = Some(F32 as i64);
            }
            if let Some(sub) = a.g.as_mut() {
                widen_graph(sub);
            }
        }
    }
}

/// The float32 copy of `model`.
pub fn to_float32(model: &ModelProto) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        widen_graph(g);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float16_values_become_the_same_float32_values() {
        let halves = [f16::from_f32(1.5), f16::from_f32(-0.0), f16::from_f32(65504.0), f16::from_f32(6e-8)];
        let raw: Vec<u8> = halves.iter().flat_map(|h| h.to_bits().to_le_bytes()).collect();
        let mut t =
            TensorProto { data_type: Some(F16), raw_data: Some(Bytes::from(raw)), dims: vec![4], ..Default::default() };
        let mut u = TensorProto {
            data_type: Some(F16),
            int32_data: halves.iter().map(|h| h.to_bits() as i32).collect(),
            dims: vec![4],
            ..Default::default()
        };
        widen_tensor(&mut t);
        widen_tensor(&mut u);
        let want: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        for x in [&t, &u] {
            assert_eq!(x.data_type(), F32);
            let got: Vec<f32> =
                x.raw_data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(got, want);
        }
    }
}
