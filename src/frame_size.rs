//! Declares the frame size at the residual joins of a model that leaves H and W open.
//!
//! onnxruntime fuses a residual Add (and the Relu after it) into the convolution that feeds it only
//! where it can prove the Add's inputs equal in shape. Its NCHWc pass proves it by following each
//! dimension back through the convolutions to the tensor it came from; a shift interrupts that
//! trail (its Slices, Pads and Concat are not NCHWc nodes), and then only the declared shapes can
//! prove it: equal values, or equal `dim_param` names. A model with a fixed frame size has values;
//! the batch is carried by the shift's empty slice. A model that leaves H and W open has neither
//! past the first convolution, so every join after a shift ran unfused: on ResNet-50 at 224x224, 52
//! Adds and 46 Relus left standalone in onnxruntime, 1.12x of the 2D model per clip against 1.06x at
//! a fixed size.
//!
//! So each input of an Add or Sum is declared with the shape tract's analysis of the rewritten model
//! gives it, H and W as tract's own expressions of the input's symbols (`(height+1)/2`): to
//! onnxruntime a name, equal where the sizes are, and to tract the very expression it infers, which
//! it unifies with the declaration when it loads the model as written.

use crate::onnx::tensor_shape_proto::{dimension::Value, Dimension};
use crate::onnx::{tensor_proto::DataLocation, type_proto, ModelProto, TensorShapeProto, TypeProto, ValueInfoProto};
use crate::shapes::{declared_dims, Dim};
use crate::validate::data_inputs;
use prost::Message;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// Whether a data input is an `[N, C, H, W]` image whose H or W is not a number.
pub fn leaves_frame_open(model: &ModelProto) -> bool {
    let Some(graph) = model.graph.as_ref() else { return false };
    data_inputs(graph).iter().any(|vi| {
        declared_dims(vi).is_some_and(|d| d.len() == 4 && d[2..].iter().any(|d| d.known().is_none()))
    })
}

/// Declares the inputs of every Add and Sum that tract types as rank 4 with a symbolic dimension;
/// returns how many tensors, or why none could be (the model is written without them then).
pub fn declare(model: &mut ModelProto) -> Result<usize, String> {
    let graph = model.graph.as_ref().ok_or("no graph")?;
    if graph.initializer.iter().any(|t| t.data_location() == DataLocation::External) {
        return Err("its weights are in external data files, which the analysis does not read".into());
    }
    let bytes = model.encode_to_vec();
    let mut analysed = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_read(&mut &bytes[..])
        .map_err(|e| format!("tract cannot load the rewritten model: {e}"))?;
    // Partial analysis is enough: a join past an op tract cannot type stays undeclared.
    let _ = analysed.analyse(false);
    // A dimension equal to one the inputs declare keeps the input's spelling (`batch*8`, where tract
    // would write `8*batch`), so the file names each size one way.
    let mut names: Vec<(TDim, String)> = Vec::new();
    for (i, vi) in data_inputs(graph).iter().enumerate() {
        let (Ok(fact), Some(declared)) = (analysed.input_fact(i), declared_dims(vi)) else { continue };
        for (d, name) in fact.shape.concretize().unwrap_or_default().into_iter().zip(declared) {
            if let Dim::Sym(name) = name {
                names.push((d, name));
            }
        }
    }
    let graph = model.graph.as_mut().expect("checked above");
    let constant = |t: &str| graph.initializer.iter().any(|i| i.name() == t);
    let mut declared: Vec<ValueInfoProto> = Vec::new();
    for n in graph.node.iter().filter(|n| n.domain().is_empty() || n.domain() == "ai.onnx") {
        if !matches!(n.op_type(), "Add" | "Sum") || n.input.len() < 2 {
            continue;
        }
        for t in n.input.iter().filter(|t| !t.is_empty() && !constant(t)) {
            if declared.iter().all(|d| d.name() != t) {
                declared.extend(fact(&analysed, t, &names));
            }
        }
    }
    let count = declared.len();
    graph.value_info.retain(|v| declared.iter().all(|d| d.name() != v.name()));
    graph.value_info.extend(declared);
    Ok(count)
}

/// `t`'s type and shape as tract's analysis found them, if rank 4 with a symbolic dimension.
fn fact(model: &InferenceModel, t: &str, names: &[(TDim, String)]) -> Option<ValueInfoProto> {
    use crate::onnx::tensor_proto::DataType;
    let fact = model.outlet_fact(model.find_outlet_label(t)?).ok()?;
    let dims = fact.shape.concretize()?;
    if dims.len() != 4 || dims.iter().all(|d| d.to_i64().is_ok()) {
        return None;
    }
    let elem_type = match fact.datum_type.concretize()? {
        DatumType::F32 => DataType::Float,
        DatumType::F16 => DataType::Float16,
        DatumType::F64 => DataType::Double,
        _ => return None,
    };
    let name = |d: &TDim| names.iter().find(|(n, _)| n == d).map_or_else(|| d.to_string(), |(_, s)| s.clone());
    let dim = |d: &TDim| Dimension {
        value: Some(d.to_i64().map_or_else(|_| Value::DimParam(name(d)), Value::DimValue)),
        denotation: None,
    };
    Some(ValueInfoProto {
        name: Some(t.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim: dims.iter().map(dim).collect() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    })
}
