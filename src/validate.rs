//! Runs a written model in tract before it is kept: two clips of seeded random input at the model's
//! own size, optimized as a deployment would, with output shapes and finiteness checked.
//! [`run`] is also what the tests use to compare against reference outputs.

use crate::error::Error;
use crate::onnx::{GraphProto, ValueInfoProto};
use crate::shapes::{declared_dims, Dim};
use crate::tensor::FloatArray;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

/// Tensor names with concrete shapes.
pub type NamedShapes = Vec<(String, Vec<usize>)>;

/// What validation checked.
#[derive(Debug, Clone)]
pub struct Report {
    pub inputs: NamedShapes,
    pub outputs: NamedShapes,
    pub clips: usize,
    pub per_clip: Duration,
}

/// Runs the model at `path` in tract on the given inputs (one per graph input, in order).
pub fn run(path: &Path, inputs: &[FloatArray]) -> Result<Vec<FloatArray>> {
    Ok(run_timed(path, inputs)?.0)
}

fn run_timed(path: &Path, inputs: &[FloatArray]) -> Result<(Vec<FloatArray>, Duration)> {
    // value_info is only a hint, and exporters (torch's dynamo exporter) write it with the symbolic
    // batch; with the batch pinned to whole clips here, tract would refuse to unify the two.
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)
        .with_context(|| format!("tract cannot load {}", path.display()))?;
    for (i, a) in inputs.iter().enumerate() {
        model.set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), &a.shape))?;
    }
    let plan = model
        .into_optimized()
        .context("tract cannot analyse or optimize the model")?
        .into_runnable()
        .context("tract cannot plan the model")?;
    let values: TVec<TValue> =
        inputs.iter().map(|a| Tensor::from_shape(&a.shape, &a.data).map(TValue::from)).collect::<TractResult<_>>()?;
    let start = Instant::now();
    let outputs = plan.run(values).context("tract failed running the model")?;
    let elapsed = start.elapsed();
    let outputs = outputs
        .iter()
        .map(|o| {
            let v = o.cast_to::<f32>()?;
            let view = v.to_plain_array_view::<f32>()?;
            Ok(FloatArray { shape: view.shape().to_vec(), data: view.iter().copied().collect() })
        })
        .collect::<Result<_>>()?;
    Ok((outputs, elapsed))
}

/// The graph inputs that are data (not initializers listed as inputs, as before IR 4).
pub fn data_inputs(graph: &GraphProto) -> Vec<&ValueInfoProto> {
    graph.input.iter().filter(|i| !graph.initializer.iter().any(|t| t.name == i.name)).collect()
}

/// The concrete input shapes validation uses: `clips * T` frames at the model's own size, with
/// `--input-shape` filling dims the model leaves symbolic.
pub fn input_shapes(
    graph: &GraphProto,
    segments: usize,
    input_shape: Option<&[usize]>,
) -> Result<(NamedShapes, usize), Error> {
    let mut shapes = Vec::new();
    let mut clips = 2;
    for vi in data_inputs(graph) {
        let dims = declared_dims(vi).filter(|d| d.len() == 4).ok_or_else(|| {
            Error::Config(format!(
                "validation feeds [N, C, H, W] images, but input '{}' is not a rank-4 tensor; use --no-validate",
                vi.name
            ))
        })?;
        let elem = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(crate::onnx::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => 0,
        };
        if elem != crate::onnx::tensor_proto::DataType::Float as i32 {
            let name = crate::onnx::tensor_proto::DataType::try_from(elem).map_or("unknown", |d| d.as_str_name());
            return Err(Error::Config(format!(
                "validation feeds float32 images, but input '{}' is {name}; use --no-validate",
                vi.name
            )));
        }
        if let Dim::Known(b) = dims[0] {
            clips = b as usize / segments;
        }
        let mut shape = vec![0; 4];
        for k in 1..4 {
            shape[k] = match (&dims[k], input_shape) {
                (Dim::Known(v), _) => *v as usize,
                (_, Some(s)) => s[k - 1],
                (d, None) => {
                    return Err(Error::Config(format!(
                        "input '{}' leaves dim {k} open ({d}): give --input-shape C,H,W to validate, or --no-validate",
                        vi.name
                    )))
                }
            };
        }
        shapes.push((vi.name.clone(), shape));
    }
    for (_, s) in &mut shapes {
        s[0] = clips * segments;
    }
    Ok((shapes, clips))
}

/// Validates the model at `path`, whose graph is `graph`.
pub fn validate(
    path: &Path,
    graph: &GraphProto,
    segments: usize,
    input_shape: Option<&[usize]>,
) -> Result<Report, Error> {
    let (shapes, clips) = input_shapes(graph, segments, input_shape)?;
    let inputs: Vec<FloatArray> =
        shapes.iter().enumerate().map(|(i, (_, s))| FloatArray::random(s, 0x75_6d + i as u64)).collect();
    let (outputs, elapsed) = run_timed(path, &inputs).map_err(|e| Error::Validation(format!("{e:#}")))?;
    let mut report = Report { inputs: shapes, outputs: Vec::new(), clips, per_clip: elapsed / clips.max(1) as u32 };
    for (out, vi) in outputs.iter().zip(&graph.output) {
        if let Some(dims) = declared_dims(vi) {
            let fits = dims.len() == out.shape.len()
                && dims.iter().zip(&out.shape).all(|(d, &s)| d.known().is_none_or(|v| v as usize == s));
            if !fits {
                let want: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                return Err(Error::Validation(format!(
                    "output '{}' has shape {:?}, the model declares [{}]",
                    vi.name,
                    out.shape,
                    want.join(", ")
                )));
            }
        }
        if let Some(bad) = out.data.iter().find(|v| !v.is_finite()) {
            return Err(Error::Validation(format!("output '{}' holds a non-finite value ({bad})", vi.name)));
        }
        report.outputs.push((vi.name.clone(), out.shape.clone()));
    }
    if report.outputs.len() != graph.output.len() {
        return Err(Error::Validation(format!(
            "tract returned {} outputs, the model declares {}",
            outputs.len(),
            graph.output.len()
        )));
    }
    Ok(report)
}
