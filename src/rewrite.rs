//! The pipeline: load → dataflow and shapes → find blocks → plan → emit and apply → declare the
//! batch in clips → write → validate. [`prepare`] does everything up to the rewritten model in
//! memory (what `--dry-run` shows); [`finish`] writes it atomically, validating the written file
//! before it is kept.

use crate::blocks::{self, Findings};
use crate::config::{Config, ExternalData, ShiftForm};
use crate::emit;
use crate::error::Error;
use crate::external;
use crate::graph::{Dataflow, Producer};
use crate::load::{load, Loaded};
use crate::onnx::{GraphProto, ModelProto, TensorProto};
use crate::plan::{self, Plan};
use crate::shapes::{declared_dims, Dim, Shapes};
use crate::validate::{self, data_inputs};
use crate::write::{Staging, TempOutput};
use anyhow::{Context, Result};
use prost::Message;
use std::collections::HashSet;
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
    /// Warnings from loading and planning (printed before the plan).
    pub warnings: Vec<String>,
    /// What was changed to free a batch fixed at 1 (see [`crate::symbolic_batch`]).
    pub batch_changes: Vec<String>,
    /// The data inputs whose symbolic batch is now declared in clips (see [`crate::clip_batch`]).
    pub clip_batch: Vec<String>,
    /// The 2D model with that batch freed, which validation times the rewrite against (the input
    /// itself only runs one image at a time).
    pub freed_2d: Option<ModelProto>,
    /// Whether `finish` validates: the config's choice, unless tract cannot run the model.
    pub validate: bool,
    /// Whether the model keeps tensors in external data files.
    pub external_data: bool,
    /// Weights the stream form partitioned (new inline tensors; into the data file with the input's).
    pub partitioned: std::collections::HashSet<String>,
    /// Online only: the shift buffers, in the order of the graph's extra inputs and outputs.
    pub buffers: Vec<emit::Buffer>,
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

/// The channel axis of a tensor of rank `rank` whose shape only tract's analysis knows, from the
/// operators next to it: the last axis where a LayerNormalization over it or a MatMul reads or
/// writes the tensor (a vision transformer's tokens; Swin's `[N, H, W, C]` would otherwise be read
/// as `[N, C, H, W]`, its rows shifted as if channels), else an ONNX convolution's axis 1 at rank 4.
fn filled_channel_axis(graph: &GraphProto, df: &Dataflow, tensor: &str, rank: usize) -> Option<usize> {
    let last = rank.checked_sub(1)?;
    let over_last = |n: &crate::onnx::NodeProto| match n.op_type() {
        "LayerNormalization" => {
            crate::shapes::attr_int(n, "axis").unwrap_or(-1).rem_euclid(rank as i64) as usize == last
        }
        "MatMul" | "Gemm" => true,
        _ => false,
    };
    let read = df.consumers_of(tensor).iter().any(|&(c, slot)| slot == 0 && over_last(&graph.node[c]));
    let written = matches!(df.producer.get(tensor), Some(Producer::Node(p, 0)) if over_last(&graph.node[*p]));
    if read || written {
        Some(last)
    } else {
        (rank == 4).then_some(1)
    }
}

/// Refuses a fixed batch that cannot hold whole clips, or that is longer than the tool writes
/// per-frame constants for ([`crate::config::MAX_FRAMES`]).
fn check_batch(graph: &GraphProto, segments: usize) -> Result<(), Error> {
    for vi in data_inputs(graph) {
        if let Some(Dim::Known(b)) = declared_dims(vi).and_then(|d| d.into_iter().next()) {
            if b > crate::config::MAX_FRAMES as i64 {
                return Err(Error::Config(format!(
                    "input '{}' has a fixed batch of {b} frames, more than the {} the tool writes per-frame constants \
                     for: re-export with a dynamic batch axis",
                    vi.name(),
                    crate::config::MAX_FRAMES
                )));
            }
            if b as usize % segments != 0 {
                return Err(Error::Config(format!(
                    "input '{}' has a fixed batch of {b}, which cannot hold whole clips of {segments} frames: re-export with a \
                     dynamic batch axis (torch.onnx.export(..., dynamic_axes={{'{}': {{0: 'batch'}}}})) or a batch that is a multiple of --segments",
                    vi.name(), vi.name()
                )));
            }
        }
    }
    Ok(())
}

/// Loads `input` and rewrites it in memory.
pub fn prepare(input: &Path, config: &Config) -> Result<Prepared> {
    config.check()?;
    rewrite_model(load(input)?, input, config, !config.online)
}

/// [`prepare`] on the bytes of a model file (`input` names it in errors, and external data is
/// looked for beside it): the whole in-memory pipeline, which is what the fuzz target drives.
pub fn prepare_bytes(bytes: bytes::Bytes, input: &Path, config: &Config) -> Result<Prepared> {
    config.check()?;
    rewrite_model(crate::load::decode(bytes, input)?, input, config, !config.online)
}

/// [`prepare`], where the online validation's offline reference (T = all the frames streamed) may
/// skip the check that a fixed batch holds whole clips: it runs at its own batch size.
fn rewrite_model(loaded: Loaded, input: &Path, config: &Config, whole_clips: bool) -> Result<Prepared> {
    let mut model = loaded.model;
    if let Some(m) = model.metadata_props.iter().find(|m| m.key() == METADATA_KEY) {
        return Err(Error::BadModel {
            path: input.to_path_buf(),
            reason: format!(
                "was already rewritten by tsm-rewrite ({}); rewrite the original 2D model instead",
                m.value()
            ),
        }
        .into());
    }
    let ModelProto { graph, metadata_props, .. } = &mut model;
    let graph = graph.as_mut().expect("load() refuses models without a graph");
    let input_nodes = graph.node.len();
    let bad = |e: anyhow::Error| Error::BadModel { path: input.to_path_buf(), reason: format!("{e:#}") };
    let mut df = Dataflow::build(graph).map_err(bad)?;
    // Where tract's analysis stands in for the shape inference it reads the file, whose batch of 1
    // a batch-1 export bakes into its Reshapes: the file's own batch, taken before it is freed.
    let analysis_inputs = validate::input_shapes(graph, 1, config.input_shape.as_deref());
    let batch_changes = if config.online { Vec::new() } else { crate::symbolic_batch::free(graph)? };
    let mut freed_2d = None;
    if !batch_changes.is_empty() {
        df = Dataflow::build(graph).map_err(bad)?;
        freed_2d = Some(graph.clone());
    }
    if config.online {
        if let Some(shape) = &config.input_shape {
            pin_frame_shape(graph, shape)?;
        }
    }
    if whole_clips {
        check_batch(graph, config.segments)?;
    }
    // Operators of other domains pass through untouched, but tract cannot run them.
    let mut warnings = loaded.warnings;
    let foreign = graph.node.iter().enumerate().find(|(_, n)| !crate::graph::default_domain(n));
    let validate = config.validate && foreign.is_none();
    if let (true, Some((i, n))) = (config.validate, foreign) {
        warnings.push(format!(
            "node {}: operator {}::{} is outside the default domain; it is passed through untouched, but tract cannot \
             run it, so the output is written without validation",
            crate::graph::node_label(n, i),
            n.domain(),
            n.op_type()
        ));
    }
    // Fail before any work if validation could not run (online: after the buffers' shapes, whose
    // error says more about a missing --input-shape).
    if validate && !config.online {
        let (shapes, clips) = validate::input_shapes(graph, config.segments, config.input_shape.as_deref())?;
        validate::check_feed(&shapes, (clips * config.segments) as u128, config.input_shape.as_deref())?;
    }
    let mut shapes = Shapes::infer(graph);
    let mut findings = blocks::find(graph, &df, &shapes);
    let mut open = blocks::open_joins(graph, &df, &shapes, &findings);
    // Dims the model declared past an operator the inference does not follow need no tract; their
    // layout is decided as tract's would be.
    let mut settled = false;
    for t in open.iter().flat_map(|(_, t)| t) {
        if let Some(rank) = shapes.unknown_layout_rank(t) {
            shapes.settle_layout(t, filled_channel_axis(graph, &df, t, rank));
            settled = true;
        }
    }
    if settled {
        findings = blocks::find(graph, &df, &shapes);
        open = blocks::open_joins(graph, &df, &shapes, &findings);
    }
    let mut asked_tract = false;
    if !open.is_empty() {
        // Where the tool's own inference stops (an op it does not follow), tract's analysis at the
        // model's own size tells the shapes; then the blocks are found again.
        if let Ok((frames, _)) = &analysis_inputs {
            let tensors: Vec<&str> = open.iter().flat_map(|(_, t)| t.iter().map(String::as_str)).collect();
            if let Ok(found) = validate::tensor_shapes_or_copy(input, frames, &tensors) {
                asked_tract = true;
                for (t, dims) in tensors.iter().zip(found) {
                    if let Some(d) = dims {
                        let axis = filled_channel_axis(graph, &df, t, d.len());
                        shapes.fill(t, &d, axis);
                    }
                }
                findings = blocks::find(graph, &df, &shapes);
            }
        }
    }
    // A residual join left unshifted for want of shapes would give a model that is neither the 2D
    // network nor TSM: an error, unless the user asks for it.
    let still_open = blocks::open_joins(graph, &df, &shapes, &findings);
    if let (Some((add, tensors)), false) = (still_open.first(), config.skip_unknown) {
        return Err(Error::Config(format!(
            "node {add}: may be a residual join, but the channels of {} are unknown{}; shifting the other blocks \
             only would give a model that is neither the 2D network nor TSM. Give --input-shape C,H,W if the model \
             leaves its frame size open, or --skip-unknown to rewrite without the {} join(s) concerned",
            tensors.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", "),
            if asked_tract { ", even to tract's analysis of the model" } else { "" },
            still_open.len()
        ))
        .into());
    }
    let mut plan = plan::plan(graph, &df, &findings, &shapes, config, loaded.opset)?;
    emit::stream::choose(graph, &df, &shapes, &mut plan, config, loaded.opset, folder_of(input));
    let record = format!("tsm-rewrite {} {}", env!("CARGO_PKG_VERSION"), config.flags());
    let mut buffers = Vec::new();
    let mut patch = if config.online {
        let online = online_shapes(input, graph, &plan, config)?;
        if validate {
            // The reference runs every stream's frames at once (see `validate_online`).
            let (shapes, streams) = validate::input_shapes(graph, 1, config.input_shape.as_deref())?;
            let frames = streams as u128 * online_frames(config) as u128;
            validate::check_feed(&shapes, frames, config.input_shape.as_deref())?;
        }
        let (patch, b) = emit::emit_online(&plan, &online, loaded.opset, record);
        buffers = b;
        patch
    } else {
        let mut patch = emit::emit(&plan, config, loaded.opset, record, emit::FrameMasks::new(graph));
        if let Some(c) = config.consensus {
            emit::consensus::add(&mut patch, graph, &shapes, config, c, loaded.opset)?;
        }
        patch
    };
    let before = patch.initializers.len();
    emit::stream::emit(graph, &plan, config, loaded.opset, folder_of(input), &mut patch)?;
    let partitioned = patch.initializers[before..].iter().map(|t| t.name().to_string()).collect();
    drop(df);
    let per_clip: Vec<String> = patch.output_dims.iter().map(|(name, _)| name.clone()).collect();
    // The volume sweeps what the patch added and left unread: the names before it, where it runs.
    let shifts = std::mem::take(&mut patch.shifts);
    let before = (!shifts.is_empty()).then(|| {
        let nodes: HashSet<String> = graph.node.iter().map(|n| n.name().to_string()).collect();
        let inits: HashSet<String> = graph.initializer.iter().map(|t| t.name().to_string()).collect();
        (nodes, inits)
    });
    patch.apply(graph, metadata_props);
    if let Some((old_nodes, old_inits)) = before {
        let new_nodes = graph.node.iter().map(|n| n.name().to_string()).filter(|n| !old_nodes.contains(n)).collect();
        let new_inits =
            graph.initializer.iter().map(|t| t.name().to_string()).filter(|t| !old_inits.contains(t)).collect();
        let shapes = Shapes::infer(graph);
        let layout = match config.shift_form {
            ShiftForm::Tract => emit::volume::Layout::Depth,
            _ => emit::volume::Layout::Clips,
        };
        let frames = emit::volume::Frames { segments: config.segments, layout };
        emit::volume::lift(graph, &shapes, &shifts, frames, loaded.opset, &new_nodes, &new_inits);
    }
    let clip_batch = if config.online {
        Vec::new()
    } else {
        let pooled = plan.pool.as_ref().map(|p| {
            let quantized = p.quant.as_ref().map(|_| p.quantized_output());
            ([p.output()].into_iter().chain(quantized).collect(), p.segments / 2)
        });
        crate::clip_batch::declare(graph, config.segments, &crate::clip_batch::Frames { pooled, per_clip })
    };
    // What the emitters wrote must be a graph the tool itself would take (every name produced
    // once, in order): runtimes differ on what they forgive (onnxruntime took a repeated
    // initializer with a warning, onnx.checker refuses it), so no output relies on it.
    if let Err(e) = Dataflow::build(graph) {
        return Err(Error::Validation(format!("the rewritten graph is malformed: {e:#} (a bug in tsm-rewrite)")).into());
    }
    // The freed 2D model: the model's other fields around the graph kept from before the patch
    // (swapped out so that the rewritten graph is not cloned too).
    let freed_2d = freed_2d.map(|g| {
        let rewritten = model.graph.replace(g);
        let freed = model.clone();
        model.graph = rewritten;
        freed
    });
    Ok(Prepared {
        input: input.to_path_buf(),
        opset: loaded.opset,
        input_nodes,
        findings,
        plan,
        warnings,
        batch_changes,
        clip_batch,
        freed_2d,
        validate,
        external_data: loaded.external_data,
        partitioned,
        buffers,
        model,
    })
}

/// Online buffers have a fixed size, so `--input-shape` becomes part of the emitted graph: the open
/// C, H, W of each `[N, C, H, W]` data input are pinned (the batch, the number of streams, stays).
fn pin_frame_shape(graph: &mut GraphProto, shape: &[usize]) -> Result<(), Error> {
    use crate::onnx::tensor_shape_proto::dimension::Value;
    use crate::onnx::type_proto;
    let data: Vec<String> = data_inputs(graph).iter().map(|v| v.name().to_owned()).collect();
    for vi in graph.input.iter_mut().filter(|v| data.iter().any(|d| d == v.name())) {
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
            continue;
        };
        let Some(dims) = t.shape.as_mut().map(|s| &mut s.dim).filter(|d| d.len() == 4) else {
            return Err(Error::Config(format!(
                "--input-shape gives the C,H,W of an [N, C, H, W] frame, but input '{}' is not a rank-4 tensor",
                vi.name()
            )));
        };
        for (k, d) in dims.iter_mut().enumerate().skip(1) {
            match d.value {
                Some(Value::DimValue(v)) if v > 0 && v as usize != shape[k - 1] => {
                    return Err(Error::Config(format!(
                        "--input-shape {:?} does not fit input '{}', whose dim {k} is fixed at {v}",
                        shape,
                        vi.name()
                    )))
                }
                Some(Value::DimValue(v)) if v > 0 => {}
                _ => {
                    d.value = Some(Value::DimValue(shape[k - 1] as i64));
                    d.denotation = None;
                }
            }
        }
    }
    Ok(())
}

/// The buffers' spatial sizes, from the model's shapes, or where they stay open after pinning the
/// frame size, from tract's analysis of the model; and the batch dim and type they share with the
/// frame input.
fn online_shapes(input: &Path, graph: &GraphProto, plan: &Plan, config: &Config) -> Result<emit::OnlineShapes> {
    use crate::onnx::{tensor_proto::DataType, tensor_shape_proto::Dimension, type_proto};
    let frame = data_inputs(graph).first().copied().cloned();
    let (batch, elem_type) = match frame.as_ref().and_then(|v| v.r#type.as_ref()).and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            (t.shape.as_ref().and_then(|s| s.dim.first()).cloned().unwrap_or_default(), t.elem_type())
        }
        _ => (Dimension::default(), DataType::Float as i32),
    };
    let mut spatial: Vec<Option<(i64, i64)>> =
        plan.sites.iter().map(|s| s.height.known().zip(s.width.known())).collect();
    if let Some(open) = plan.sites.iter().zip(&spatial).find(|(_, hw)| hw.is_none()).map(|(s, _)| s) {
        // Where the model's own shapes do not say, tract's analysis at a concrete frame size does.
        let frames = match validate::input_shapes(graph, 1, config.input_shape.as_deref()) {
            Ok((frames, _)) => frames,
            Err(_) if config.input_shape.is_none() => {
                return Err(Error::Config(format!(
                    "node {}: the online buffer for tensor '{}' needs its height and width, which the model leaves \
                     open ({} x {}): give the frame size with --input-shape C,H,W (online buffers have a fixed shape)",
                    open.block_name, open.tensor, open.height, open.width
                ))
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        let tensors: Vec<&str> = plan.sites.iter().map(|s| s.tensor.as_str()).collect();
        let found = validate::tensor_shapes(input, &frames, &tensors)
            .context("reading the buffers' spatial sizes from tract's analysis of the model")?;
        for ((hw, site), dims) in spatial.iter_mut().zip(&plan.sites).zip(found) {
            if hw.is_none() {
                let (h, w) = if site.channels_last { (1, 2) } else { (2, 3) };
                *hw = dims.filter(|d| d.len() == 4).map(|d| (d[h] as i64, d[w] as i64));
                if let Some(hw) = *hw {
                    // `plan` bounded the sizes the model's shapes give; these are tract's.
                    crate::config::check_pixels(&site.block_name, &site.tensor, hw)?;
                } else {
                    return Err(Error::Config(format!(
                        "node {}: cannot tell the height and width of tensor '{}' for its online buffer, even with \
                         --input-shape",
                        site.block_name, site.tensor
                    ))
                    .into());
                }
            }
        }
    }
    Ok(emit::OnlineShapes {
        spatial: spatial.into_iter().map(|hw| hw.expect("filled above")).collect(),
        batch,
        elem_type,
    })
}

/// The folder a file sits in (`.` for a bare file name).
pub fn folder_of(p: &Path) -> &Path {
    p.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Whether two paths name the same file (the second may not exist yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        Some(folder_of(p).canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// With `--external-data refer` the output keeps the input's references, which are relative to the
/// model's folder: it must sit in the input's folder to find the data.
fn check_refer(prepared: &Prepared, out_folder: &Path) -> Result<(), Error> {
    let Some(t) = prepared.graph().initializer.iter().find(|t| external::is_external(t)) else {
        return Ok(());
    };
    let in_folder = folder_of(&prepared.input);
    if same_file(in_folder, out_folder) {
        return Ok(());
    }
    let location = t.external_data.iter().find(|e| e.key() == "location").map_or("?", |e| e.value());
    Err(Error::Config(format!(
        "tensor '{}' is stored in the external data file '{location}' beside the input; with --external-data refer \
         the output refers to it as is, so write the output into the input's folder ({}), or leave out \
         --external-data refer to get a data file of its own",
        t.name(),
        in_folder.display()
    )))
}

/// What validation checked, offline or online.
#[derive(Debug, Clone)]
pub enum Validated {
    Offline(validate::Report),
    Online(validate::OnlineReport),
}

/// A model written beside the output for validation only, removed when dropped.
struct Staged {
    path: PathBuf,
    _keep: (Option<Staging>, Option<TempOutput>),
}

/// Writes `model` (read from `input`) beside `output` as `<output>.<what>`, for tract to load.
/// The output need not be in the input's folder: tensors the input keeps in external data go into
/// a data file of the staged model's own (tract refuses absolute locations).
fn stage_model(model: &mut ModelProto, external_data: bool, input: &Path, output: &Path, what: &str) -> Result<Staged> {
    if external_data {
        let mut stage = Staging::new(folder_of(output), what)?;
        let data = external::plan_data_file(model, folder_of(input), &format!("{what}.data"), &|_| false)?;
        stage.write_data(&data)?;
        let path = stage.encode(&format!("{what}.onnx"), model)?;
        return Ok(Staged { path, _keep: (Some(stage), None) });
    }
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = TempOutput::encode(&output.with_file_name(format!("{name}.{what}")), model)?;
    Ok(Staged { path: tmp.path().to_path_buf(), _keep: (None, Some(tmp)) })
}

/// How many frames online validation streams per stream: two clips' worth, so that the buffers
/// carry state across more than one clip.
fn online_frames(config: &Config) -> usize {
    2 * config.segments
}

/// Checks an online graph frame by frame against the offline past-only rewrite of the same model,
/// with T = the [`online_frames`] streamed.
fn validate_online(
    prepared: &Prepared,
    online: &Path,
    output: &Path,
    config: &Config,
) -> Result<validate::OnlineReport> {
    let frames = online_frames(config);
    let offline = Config {
        online: false,
        direction: crate::config::Direction::Past,
        segments: frames,
        validate: false,
        ..config.clone()
    };
    let mut reference = rewrite_model(load(&prepared.input)?, &prepared.input, &offline, false)
        .context("building the offline reference")?;
    if reference.plan.sites.len() != prepared.plan.sites.len() {
        return Err(Error::Validation(format!(
            "the offline reference has {} shift sites, the online graph {}",
            reference.plan.sites.len(),
            prepared.plan.sites.len()
        ))
        .into());
    }
    let staged =
        stage_model(&mut reference.model, reference.external_data, &prepared.input, output, "offline-reference")?;
    drop(reference);
    let path = staged.path.clone();
    Ok(validate::validate_online(
        online,
        prepared.graph(),
        prepared.buffers.len(),
        &path,
        &prepared.input,
        frames,
        config.input_shape.as_deref(),
    )?)
}

/// The 2D model validation times the rewrite against, where it is not the input file.
fn original_2d(prepared: &Prepared, output: &Path) -> Result<Option<Staged>> {
    let Some(freed) = &prepared.freed_2d else { return Ok(None) };
    let mut model = freed.clone();
    stage_model(&mut model, prepared.external_data, &prepared.input, output, "2d-reference").map(Some)
}

/// Writes the rewritten model to `output`, validating it first unless the config says not to.
pub fn finish(prepared: &Prepared, output: &Path, config: &Config) -> Result<Option<Validated>> {
    finish_within(prepared, output, config, external::PROTOBUF_LIMIT)
}

/// [`finish`] for a model file of at most `limit` bytes (a test sets a small one).
fn finish_within(prepared: &Prepared, output: &Path, config: &Config, limit: usize) -> Result<Option<Validated>> {
    if same_file(&prepared.input, output) {
        return Err(Error::Config(format!(
            "output {} is the input file; write to another path (the input is never modified)",
            output.display()
        ))
        .into());
    }
    let parent = folder_of(output);
    if !parent.is_dir() {
        let what = if parent.exists() { "is not a folder" } else { "does not exist" };
        return Err(Error::Config(format!("output folder {} {what}", parent.display())).into());
    }
    let validated = |path: &Path| -> Result<Option<Validated>> {
        Ok(match (prepared.validate, config.online) {
            (false, _) => None,
            (true, false) => Some(Validated::Offline(validate::validate(
                path,
                &original_2d(prepared, output)?.as_ref().map_or(prepared.input.clone(), |s| s.path.clone()),
                prepared.graph(),
                config.segments,
                config.input_shape.as_deref(),
            )?)),
            (true, true) => Some(Validated::Online(validate_online(prepared, path, output, config)?)),
        })
    };
    let too_big = prepared.model.encoded_len() > limit;
    if !too_big && (!prepared.external_data || config.external_data == ExternalData::Refer) {
        check_refer(prepared, parent)?;
        let tmp = TempOutput::encode(output, &prepared.model)?;
        let report = validated(tmp.path())?;
        tmp.persist().with_context(|| format!("writing {}", output.display()))?;
        return Ok(report);
    }
    if config.external_data == ExternalData::Refer {
        return Err(Error::Config(format!(
            "the rewritten model is {} bytes, over protobuf's 2 GiB limit: leave out --external-data refer so that \
             its tensors go into a data file beside the output",
            prepared.model.encoded_len()
        ))
        .into());
    }
    // The tensors go into OUTPUT.data, beside the output; the input's own data files are never
    // written, even when the output sits beside them.
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut model = prepared.model.clone();
    // Weights the stream form partitioned follow the input's: into the data file.
    let move_inline = |t: &TensorProto| too_big || prepared.partitioned.contains(t.name());
    let data = external::plan_data_file(&mut model, folder_of(&prepared.input), &format!("{name}.data"), &move_inline)?;
    let data_path = parent.join(&data.name);
    if let Some(src) = external::sources(&data).into_iter().find(|s| same_file(s, &data_path)) {
        return Err(Error::Config(format!(
            "the output's data file {} would overwrite the input's data file {}: choose another output name",
            data_path.display(),
            src.display()
        ))
        .into());
    }
    if model.encoded_len() > limit {
        return Err(Error::Config(format!(
            "the rewritten model is {} bytes without its tensors' data, over protobuf's 2 GiB limit",
            model.encoded_len()
        ))
        .into());
    }
    let mut staging = Staging::new(parent, "output")?;
    staging.write_data(&data)?;
    let staged = staging.encode(&name, &model)?;
    let report = validated(&staged)?;
    staging.persist().with_context(|| format!("writing {}", output.display()))?;
    Ok(report)
}

/// The data file [`finish`] wrote beside `output` for a model whose tensors go into one.
pub fn data_file_written(prepared: &Prepared, output: &Path, config: &Config) -> Option<PathBuf> {
    let name = output.file_name()?.to_string_lossy().into_owned();
    let data = output.with_file_name(format!("{name}.data"));
    let wrote = (prepared.external_data && config.external_data == ExternalData::Write)
        || prepared.model.encoded_len() > external::PROTOBUF_LIMIT;
    (wrote && data.is_file()).then_some(data)
}

/// Writes the text dump of the rewritten model (see [`crate::dump`]).
pub fn write_dump(prepared: &Prepared, path: &Path) -> Result<()> {
    TempOutput::text(path, &crate::dump::dump(&prepared.model))?.persist()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{node, value_info};

    #[test]
    fn a_tensor_only_tract_knows_is_channels_last_where_a_layer_norm_or_matmul_says_so() {
        // Swin's residual stream, [N, H, W, C]: read by LayerNormalization over its last axis, or
        // written by a MatMul. A convolution's input, or a tensor with no such neighbour, is NCHW.
        let mut ln = node("LayerNormalization", "ln", &["tokens", "g", "b"], &["normed"]);
        ln.attribute.push(crate::emit::int_attr("axis", -1));
        let mut ln_c = node("LayerNormalization", "ln_c", &["chw", "g", "b"], &["chw_normed"]);
        ln_c.attribute.push(crate::emit::int_attr("axis", 1));
        let graph = GraphProto {
            input: ["x", "tokens", "w", "w2", "g", "b"].iter().map(|n| value_info(n, &[-1, 8, 4, 4])).collect(),
            node: vec![
                node("Relu", "r", &["x"], &["plain"]),
                node("Conv", "c", &["plain", "w"], &["conv"]),
                ln,
                node("MatMul", "mm", &["normed", "w2"], &["mixed"]),
                node("Relu", "r2", &["mixed"], &["chw"]),
                ln_c,
                node("Relu", "r3", &["tokens"], &["loose"]),
            ],
            ..Default::default()
        };
        let df = Dataflow::build(&graph).unwrap();
        let axis = |t: &str| filled_channel_axis(&graph, &df, t, 4);
        assert_eq!(axis("tokens"), Some(3));
        assert_eq!(axis("mixed"), Some(3));
        assert_eq!(axis("plain"), Some(1));
        assert_eq!(axis("chw"), Some(1), "a LayerNormalization over the channels of NCHW");
        assert_eq!(axis("loose"), Some(1));
        assert_eq!(filled_channel_axis(&graph, &df, "loose", 3), None);
    }

    #[test]
    fn a_result_over_the_size_limit_gets_its_tensors_in_a_data_file() {
        // resnet_basic is 0.7 MB inline; with a limit of 64 KiB its weights must move out.
        let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/resnet_basic.onnx");
        let config = Config::default();
        let prepared = prepare(&input, &config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (inline, split) = (dir.path().join("inline.onnx"), dir.path().join("split.onnx"));
        finish(&prepared, &inline, &config).unwrap();
        let report = finish_within(&prepared, &split, &config, 64 * 1024).unwrap();
        assert!(report.is_some(), "validated");
        let size = std::fs::metadata(&split).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes");
        assert!(dir.path().join("split.onnx.data").is_file());
        let x = crate::tensor::FloatArray::random(&[16, 3, 32, 32], 1);
        assert_eq!(validate::run(&inline, std::slice::from_ref(&x)).unwrap(), validate::run(&split, &[x]).unwrap());
        // Even without its tensors a model can be too large: then it says so.
        let err = finish_within(&prepared, &dir.path().join("tiny.onnx"), &config, 1000).unwrap_err();
        assert!(format!("{err:#}").contains("without its tensors' data, over protobuf's 2 GiB limit"), "{err:#}");
        assert!(!dir.path().join("tiny.onnx").exists() && !dir.path().join("tiny.onnx.data").exists());
    }
}
