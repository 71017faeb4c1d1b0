//! The pipeline: load → dataflow and shapes → find blocks → plan → emit and apply → write →
//! validate. [`prepare`] does everything up to the rewritten model in memory (what `--dry-run`
//! shows); [`finish`] writes it atomically, validating the written file before it is kept.

use crate::blocks::{self, Findings};
use crate::config::Config;
use crate::emit;
use crate::error::Error;
use crate::graph::Dataflow;
use crate::load::load;
use crate::onnx::{GraphProto, ModelProto};
use crate::plan::{self, Plan};
use crate::shapes::{declared_dims, Dim, Shapes};
use crate::validate::{self, data_inputs};
use crate::write::TempOutput;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The metadata key recording the tool version and flags in every output.
pub const METADATA_KEY: &str = "tsm-rewrite";

/// A model rewritten in memory, with what was found and planned.
pub struct Prepared {
    pub input: PathBuf,
    pub opset: i64,
    /// Nodes in the input graph.
    pub input_nodes: usize,
    pub findings: Findings,
    pub plan: Plan,
    pub model: ModelProto,
}

impl Prepared {
    /// The typed error for a model with nothing to shift (exit code 1).
    pub fn ensure_sites(&self) -> Result<(), Error> {
        if self.plan.sites.is_empty() && self.findings.blocks.is_empty() {
            return Err(Error::NoResidualBlocks { path: self.input.clone(), skipped: self.findings.skipped.len() });
        }
        Ok(())
    }

    pub fn graph(&self) -> &GraphProto {
        self.model.graph.as_ref().expect("load() refuses models without a graph")
    }
}

/// Refuses a fixed batch that cannot hold whole clips.
fn check_batch(graph: &GraphProto, segments: usize) -> Result<(), Error> {
    for vi in data_inputs(graph) {
        if let Some(Dim::Known(b)) = declared_dims(vi).and_then(|d| d.into_iter().next()) {
            if b as usize % segments != 0 {
                return Err(Error::Config(format!(
                    "input '{}' has a fixed batch of {b}, which cannot hold whole clips of {segments} frames: re-export with a \
                     dynamic batch axis (torch.onnx.export(..., dynamic_axes={{'{}': {{0: 'batch'}}}})) or a batch that is a multiple of --segments",
                    vi.name, vi.name
                )));
            }
        }
    }
    Ok(())
}

/// Loads `input` and rewrites it in memory.
pub fn prepare(input: &Path, config: &Config) -> Result<Prepared> {
    config.check()?;
    let loaded = load(input)?;
    let mut model = loaded.model;
    if let Some(m) = model.metadata_props.iter().find(|m| m.key == METADATA_KEY) {
        return Err(Error::BadModel {
            path: input.to_path_buf(),
            reason: format!(
                "was already rewritten by tsm-rewrite ({}); rewrite the original 2D model instead",
                m.value
            ),
        }
        .into());
    }
    let ModelProto { graph, metadata_props, .. } = &mut model;
    let graph = graph.as_mut().expect("load() refuses models without a graph");
    let input_nodes = graph.node.len();
    let df =
        Dataflow::build(graph).map_err(|e| Error::BadModel { path: input.to_path_buf(), reason: format!("{e:#}") })?;
    check_batch(graph, config.segments)?;
    if config.validate {
        // Fail before any work if validation could not run.
        validate::input_shapes(graph, config.segments, config.input_shape.as_deref())?;
    }
    let shapes = Shapes::infer(graph);
    let findings = blocks::find(graph, &df, &shapes);
    let plan = plan::plan(graph, &df, &findings, config)?;
    let record = format!("tsm-rewrite {} {}", env!("CARGO_PKG_VERSION"), config.flags());
    let patch = emit::emit(&plan, config, loaded.opset, record);
    drop(df);
    patch.apply(graph, metadata_props);
    Ok(Prepared { input: input.to_path_buf(), opset: loaded.opset, input_nodes, findings, plan, model })
}

/// The folder a file sits in (`.` for a bare file name).
fn folder_of(p: &Path) -> &Path {
    p.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Whether two paths name the same file (the second may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        Some(folder_of(p).canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Tensors kept in external data files are referred to by a path relative to the model's folder:
/// the output keeps those references, so it must sit in the input's folder to find the data.
fn check_external_data(prepared: &Prepared, out_folder: &Path) -> Result<(), Error> {
    let external = crate::onnx::tensor_proto::DataLocation::External as i32;
    let Some(t) = prepared.graph().initializer.iter().find(|t| t.data_location == external) else {
        return Ok(());
    };
    let in_folder = folder_of(&prepared.input);
    if same_file(in_folder, out_folder) {
        return Ok(());
    }
    let location = t.external_data.iter().find(|e| e.key == "location").map_or("?", |e| e.value.as_str());
    Err(Error::Config(format!(
        "tensor '{}' is stored in the external data file '{location}' beside the input; the output refers to it as is, \
         so write the output into the input's folder ({})",
        t.name,
        in_folder.display()
    )))
}

/// Writes the rewritten model to `output`, validating it first unless the config says not to.
pub fn finish(prepared: &Prepared, output: &Path, config: &Config) -> Result<Option<validate::Report>> {
    if same_file(&prepared.input, output) {
        return Err(Error::Config(format!(
            "output {} is the input file; write to another path (the input is never modified)",
            output.display()
        ))
        .into());
    }
    let parent = folder_of(output);
    if !parent.is_dir() {
        return Err(Error::Config(format!("output folder {} does not exist", parent.display())).into());
    }
    check_external_data(prepared, parent)?;
    let tmp = TempOutput::encode(output, &prepared.model)?;
    let report = if config.validate {
        Some(validate::validate(tmp.path(), prepared.graph(), config.segments, config.input_shape.as_deref())?)
    } else {
        None
    };
    tmp.persist().with_context(|| format!("writing {}", output.display()))?;
    Ok(report)
}

/// Writes the text dump of the rewritten model (see [`crate::dump`]).
pub fn write_dump(prepared: &Prepared, path: &Path) -> Result<()> {
    TempOutput::text(path, &crate::dump::dump(&prepared.model))?.persist()
}
