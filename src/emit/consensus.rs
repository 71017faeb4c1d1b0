//! The clip-level output (segment consensus): each model output `[N*T, ...]` is averaged (or
//! maxed) over the T frames of each clip into `[N, ...]`, under the output's own name, as every TSM
//! deployment computes by hand (the paper's `ConsensusModule`, mmaction2's `avg_consensus`). The
//! per-frame tensor stays in the graph as `<output>/frames`.

use super::{dimension, int_attr, ints_attr, Emitter, Patch};
use crate::config::{Config, Consensus};
use crate::error::Error;
use crate::onnx::tensor_shape_proto::{dimension::Value, Dimension};
use crate::onnx::GraphProto;
use crate::shapes::{declared_dims, Dim, Shapes};

/// Adds the consensus of every graph output to `patch`, after the graph's last node.
pub fn add(
    patch: &mut Patch,
    graph: &GraphProto,
    shapes: &Shapes,
    config: &Config,
    consensus: Consensus,
    opset: i64,
) -> Result<(), Error> {
    let t = config.output_segments() as i64;
    let last = graph.node.len().checked_sub(1);
    let quantized = crate::plan::is_qdq_model(graph);
    for out in &graph.output {
        let name = out.name();
        let dims = shapes.get(name).map(|i| i.dims.clone()).or_else(|| declared_dims(out)).unwrap_or_default();
        if dims.is_empty() {
            return Err(Error::Config(format!(
                "--consensus averages the frames of each clip along the batch axis, but the rank of output '{name}' is unknown or 0"
            )));
        }
        if let Dim::Known(b) = dims[0] {
            if b % t != 0 {
                return Err(Error::Config(format!(
                    "--consensus: output '{name}' has a fixed first dim of {b}, which is not whole clips of {t} frames"
                )));
            }
        }
        if graph.input.iter().any(|i| i.name() == name) {
            return Err(Error::Config(format!("--consensus: output '{name}' is also a graph input")));
        }
        let prefix = format!("{name}/consensus");
        let mut e = Emitter::new(&prefix, opset);
        let frames = format!("{name}/frames");
        let rest: Option<Vec<i64>> = dims[1..].iter().map(Dim::known).collect();
        let clip_shape = match rest {
            Some(rest) => e.constant("clip_shape", &[&[-1, t][..], &rest].concat()),
            None => {
                let shape = e.node("Shape", "Shape", vec![frames.clone()], "shape", vec![]);
                let rest = e.slice("rest_dims", &shape, &[1], &[i64::MAX], &[0], &[]);
                let lead = e.constant("clip_lead", &[-1, t]);
                e.node("Concat", "Concat_shape", vec![lead, rest], "clip_shape", vec![int_attr("axis", 0)])
            }
        };
        // OpenVINO's low-precision passes move a DequantizeLinear down through the Reshape, and its
        // CPU plugin (2026.4) then averages an int8 `[N, T, K]` over T wrongly for every clip but
        // the first: resnet_basic_qdq's logits 1.9 off, static or dynamic
        // (bench/openvino_qdq_consensus.py). Max(x, x), x for every value, is a node those passes
        // do not move through, so the reduction runs in float; it costs one pass over the output.
        let source = if quantized {
            e.node("Max", "Max_float", vec![frames.clone(), frames.clone()], "float_frames", vec![])
        } else {
            frames.clone()
        };
        let clips = e.node("Reshape", "Reshape_clips", vec![source, clip_shape], "clips", vec![]);
        let op = match consensus {
            Consensus::Avg => "ReduceMean",
            Consensus::Max => "ReduceMax",
        };
        // Axes became an input of ReduceMean and ReduceMax in opset 18.
        let (inputs, attrs) = if opset >= 18 {
            (vec![clips, e.constant("axes", &[1])], vec![int_attr("keepdims", 0)])
        } else {
            (vec![clips], vec![ints_attr("axes", &[1]), int_attr("keepdims", 0)])
        };
        e.node(op, op, inputs, "reduced", attrs);
        let node = e.nodes.last_mut().expect("just pushed");
        node.output = vec![name.to_owned()];
        patch.renames.push((name.to_owned(), frames));
        patch.inserts.push((last, e.nodes));
        patch.initializers.extend(e.inits);
        let mut out_dims: Vec<Dimension> = dims.iter().map(dimension).collect();
        out_dims[0] = Dimension { value: Some(Value::DimParam("clips".into())), denotation: None };
        if let Dim::Known(b) = dims[0] {
            out_dims[0].value = Some(Value::DimValue(b / t));
        }
        patch.output_dims.push((name.to_owned(), out_dims));
    }
    Ok(())
}
