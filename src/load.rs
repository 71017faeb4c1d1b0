//! Reads a model file. The file is memory-mapped and decoded into prost types whose `bytes` fields
//! share the mapping, so a 100 MB model costs about its own size in memory, not a copy of it.

use crate::error::Error;
use crate::onnx::ModelProto;
use bytes::Bytes;
use prost::Message;
use std::fs::File;
use std::path::Path;

/// A decoded model and the facts every later stage needs.
pub struct Loaded {
    pub model: ModelProto,
    /// The version of the default (`ai.onnx`) operator set.
    pub opset: i64,
    /// Whether any tensor is stored in an external data file (all of them checked).
    pub external_data: bool,
    /// What the user should know that does not stop the rewrite.
    pub warnings: Vec<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadModel { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads and decodes `path`; refuses files that are not ONNX models with a graph.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let file = File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| bad(path, format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(bad(path, "is a folder, not a model file"));
    }
    if meta.len() == 0 {
        return Err(bad(path, "is empty"));
    }
    // SAFETY: the map is read-only and this tool never writes to its input; another process
    // truncating the file while we run is outside what any reader can defend against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(path, format!("cannot map: {e}")))?;
    decode(Bytes::from_owner(map), path)
}

/// Decodes a model read from `path` (named in errors; external data is resolved beside it).
pub fn decode(bytes: Bytes, path: &Path) -> Result<Loaded, Error> {
    let mut model = ModelProto::decode(bytes.clone())
        .map_err(|e| bad(path, format!("not an ONNX model (protobuf decoding failed: {e})")))?;
    let Some(graph) = &model.graph else {
        return Err(bad(path, "the model has no graph"));
    };
    if graph.node.is_empty() {
        return Err(bad(path, "the model's graph has no nodes"));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .ok_or_else(|| bad(path, "the model imports no default (ai.onnx) operator set"))?;
    if opset < 9 {
        return Err(bad(
            path,
            format!(
                "opset {opset} is older than this tool supports (9 and later); re-export with a newer opset, or \
                 convert it with onnx's version converter: python -c \"import onnx; from onnx import \
                 version_converter as v; onnx.save(v.convert_version(onnx.load('IN.onnx'), 13), 'OUT.onnx')\""
            ),
        ));
    }
    if let Some(why) = payload_mismatch(graph) {
        return Err(bad(path, why));
    }
    let external_data = crate::external::check(&mut model, path)?;
    let unknown = crate::fields::unknown_fields(&bytes);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|(m, f, n)| format!("{m} field {f} ({n}x)")).collect();
        warnings.push(format!(
            "{}: holds fields this tool's ONNX schema (IR 13) does not know, which the output will not have: {}; \
             the model may come from a newer ONNX",
            path.display(),
            list.join(", ")
        ));
    }
    Ok(Loaded { model, opset, external_data, warnings })
}

/// The first tensor of the graph (an initializer, or a Constant node's value) whose stored data is
/// not what its dims declare, and how.
fn payload_mismatch(graph: &crate::onnx::GraphProto) -> Option<String> {
    let initializers = graph.initializer.iter().map(|t| (format!("initializer '{}'", t.name()), t));
    let constants = graph.node.iter().enumerate().filter(|(_, n)| n.op_type() == "Constant").flat_map(|(i, n)| {
        let label = crate::graph::node_label(n, i);
        n.attribute.iter().filter_map(|a| a.t.as_ref()).map(move |t| (format!("node {label}: value"), t))
    });
    initializers
        .chain(constants)
        .find_map(|(what, t)| crate::tensor::payload_mismatch(t).map(|why| format!("{what} {why}")))
}
