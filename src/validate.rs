//! Runs a written model in tract before it is kept: two clips of seeded random input at the model's
//! own size, optimized as a deployment would, with output shapes and finiteness checked.
//! [`run`] is also what the tests use to compare against reference outputs.

use crate::error::Error;
use crate::onnx::{GraphProto, ValueInfoProto};
use crate::shapes::{declared_dims, Dim};
use crate::tensor::FloatArray;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
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
    /// Median time of one clip through the rewritten model and through the original 2D model, run
    /// alternately on the same input.
    pub per_clip: Duration,
    pub per_clip_2d: Duration,
    /// Where tract cannot run the float16 model, nor the input model: tract's message. Then what
    /// was run is the float32 copy of both (see [`crate::widen`]).
    pub float32: Option<String>,
    /// Whether the models have BatchNormalizations in training mode (a weight standardization),
    /// which tract cannot load: then what was run are copies of both with those written as the ops
    /// they compute (see [`crate::batch_stats`]).
    pub norms_written_out: bool,
    /// Where tract's optimizer fails on the rewrite or on the input model: its message. Then both
    /// were run as tract types them, unoptimized.
    pub unoptimized: Option<String>,
    /// With `unoptimized`: whether the optimizer fails on the input model.
    pub unoptimized_2d: bool,
    /// With `unoptimized`: whether it fails on the rewrite (where it does not, only the timing
    /// needed both unoptimized).
    pub unoptimized_rewrite: bool,
}

/// Rounds of the offline timing: each runs both models once, alternating which goes first.
const TIMING_ROUNDS: usize = 3;

/// Runs the model at `path` in tract on the given inputs (one per graph input, in order); one with
/// BatchNormalizations in training mode as [`Runner::load_expanding`] loads it.
pub fn run(path: &Path, inputs: &[FloatArray]) -> Result<Vec<FloatArray>> {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape.clone()).collect();
    Runner::load_expanding(path, &shapes)?.run(inputs)
}

/// A model loaded and optimized in tract for fixed input shapes, to run many times (frame by frame).
pub struct Runner {
    plan: Arc<TypedRunnableModel>,
    /// What each input takes: float32 data is cast to it (a float16 model's).
    input_types: Vec<DatumType>,
}

/// The model at `path` in tract, its float inputs set to the given shapes, not yet analysed.
fn tract_model<'a>(path: &Path, input_shapes: impl IntoIterator<Item = &'a Vec<usize>>) -> Result<InferenceModel> {
    // value_info is only a hint, and exporters (torch's dynamo exporter) write it with the symbolic
    // batch; with the batch pinned here, tract would refuse to unify the two.
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)
        .with_context(|| format!("tract cannot load {}", path.display()))?;
    for (i, s) in input_shapes.into_iter().enumerate() {
        // Float inputs keep their declared type (float16, double); what tests and validation feed
        // is float32, cast on the way in.
        let declared = tract_onnx::tract_hir::infer::Factoid::concretize(&model.input_fact(i)?.datum_type)
            .filter(|d| d.is_float());
        model.set_input_fact(i, InferenceFact::dt_shape(declared.unwrap_or(f32::datum_type()), s))?;
    }
    Ok(model)
}

impl Runner {
    pub fn load(path: &Path, input_shapes: &[Vec<usize>]) -> Result<Runner> {
        Runner::load_with(path, input_shapes, true)
    }

    /// [`Runner::load`]; a model with BatchNormalizations in training mode (which tract cannot
    /// load) as its copy with those written as the ops they compute ([`crate::batch_stats`]), the
    /// same function.
    pub fn load_expanding(path: &Path, input_shapes: &[Vec<usize>]) -> Result<Runner> {
        let model = crate::load::load(path)?.model;
        if copies(&model).is_none_or(|how| !how.norms) {
            return Runner::load(path, input_shapes);
        }
        let how = Copies { float32: false, norms: true };
        let copy = tract_copy(&std::env::temp_dir().join("tsm-rewrite-run.onnx"), path, &model, how)?;
        Runner::load(copy.path(), input_shapes)
    }

    /// [`Runner::load`], optimized as a deployment would (`optimize`), or only typed: what runs
    /// where tract's optimizer fails on a valid graph.
    pub fn load_with(path: &Path, input_shapes: &[Vec<usize>], optimize: bool) -> Result<Runner> {
        let model = tract_model(path, input_shapes)?;
        let typed = if optimize {
            model.into_optimized().context("tract cannot analyse or optimize the model")?
        } else {
            model.into_typed().context("tract cannot analyse the model")?
        };
        Runner::planned(typed)
    }

    /// The model at `path` as a deployment that pins nothing loads it: the file as written, its
    /// inputs' declared facts (the batch a symbol) and its value_info kept, optimized. What the
    /// tests hold every offline rewrite to; validation pins the batch instead.
    pub fn load_as_written(path: &Path) -> Result<Runner> {
        let model =
            tract_onnx::onnx().model_for_path(path).with_context(|| format!("tract cannot load {}", path.display()))?;
        Runner::planned(model.into_optimized().context("tract cannot analyse or optimize the model")?)
    }

    fn planned(typed: TypedModel) -> Result<Runner> {
        let plan = typed.into_runnable().context("tract cannot plan the model")?;
        let input_types = (0..plan.model().inputs.len())
            .map(|i| Ok(plan.model().input_fact(i)?.datum_type))
            .collect::<TractResult<_>>()?;
        Ok(Runner { plan, input_types })
    }

    pub fn run(&self, inputs: &[FloatArray]) -> Result<Vec<FloatArray>> {
        let values: TVec<TValue> = inputs
            .iter()
            .zip(&self.input_types)
            .map(|(a, &dt)| {
                let t = Tensor::from_shape(&a.shape, &a.data)?;
                Ok(if t.datum_type() == dt { t } else { t.cast_to_dt(dt)?.into_owned() }.into())
            })
            .collect::<TractResult<_>>()?;
        let outputs = self.plan.run(values).context("tract failed running the model")?;
        outputs
            .iter()
            .map(|o| {
                let v = o.cast_to::<f32>()?;
                let view = v.to_plain_array_view::<f32>()?;
                Ok(FloatArray { shape: view.shape().to_vec(), data: view.iter().copied().collect() })
            })
            .collect()
    }

    fn run_timed(&self, inputs: &[FloatArray]) -> Result<(Vec<FloatArray>, Duration)> {
        let start = Instant::now();
        let out = self.run(inputs)?;
        Ok((out, start.elapsed()))
    }
}

/// The shapes tract's analysis gives the named tensors of the model at `path`, for the given input
/// shapes (`None` where it cannot tell, or the tensor is not in the model).
pub fn tensor_shapes(path: &Path, inputs: &NamedShapes, tensors: &[&str]) -> Result<Vec<Option<Vec<usize>>>> {
    let mut model = tract_model(path, inputs.iter().map(|(_, s)| s))?;
    // Partial analysis is enough: an op tract cannot type further down does not matter here.
    let _ = model.analyse(false);
    Ok(tensors
        .iter()
        .map(|t| {
            let outlet = model.find_outlet_label(t)?;
            model.outlet_fact(outlet).ok()?.shape.as_concrete_finite().ok()?.map(|d| d.to_vec())
        })
        .collect())
}

/// As [`tensor_shapes`]; where the analysis leaves a tensor untold, that of the copy validation
/// would run tells it, the same graph with the same shapes: a float16 model's float32 copy (tract
/// 0.23 types no float16 Gemm or attention: Swin-T's float16 copy), or the copy with training-mode
/// BatchNormalizations written out. Without it, such a model was refused with "channels unknown"
/// where its float32 export has its joins judged.
pub fn tensor_shapes_or_copy(path: &Path, inputs: &NamedShapes, tensors: &[&str]) -> Result<Vec<Option<Vec<usize>>>> {
    let found = tensor_shapes(path, inputs, tensors);
    if found.as_ref().is_ok_and(|f| f.iter().all(Option::is_some)) {
        return found;
    }
    let model = crate::load::load(path)?.model;
    let Some(how) = copies(&model) else { return found };
    // In the system's temporary folder (the input's may be read-only), removed when dropped.
    let copy = tract_copy(&std::env::temp_dir().join("tsm-rewrite-analysis.onnx"), path, &model, how)?;
    let wide = tensor_shapes(copy.path(), inputs, tensors)?;
    Ok(match found {
        Ok(f) => f.into_iter().zip(wide).map(|(a, b)| a.or(b)).collect(),
        Err(_) => wide,
    })
}

/// The graph inputs that are data (not initializers listed as inputs, as before IR 4).
pub fn data_inputs(graph: &GraphProto) -> Vec<&ValueInfoProto> {
    graph.input.iter().filter(|i| !graph.initializer.iter().any(|t| t.name() == i.name())).collect()
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
                vi.name()
            ))
        })?;
        let elem = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(crate::onnx::type_proto::Value::TensorType(t)) => t.elem_type(),
            _ => 0,
        };
        use crate::onnx::tensor_proto::DataType;
        if ![DataType::Float, DataType::Float16, DataType::Double].iter().any(|&d| d as i32 == elem) {
            let name = DataType::try_from(elem).map_or("unknown", |d| d.as_str_name());
            return Err(Error::Config(format!(
                "validation feeds float images, but input '{}' is {name}; use --no-validate",
                vi.name()
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
                        vi.name()
                    )))
                }
            };
        }
        shapes.push((vi.name().to_owned(), shape));
    }
    for (_, s) in &mut shapes {
        s[0] = clips * segments;
    }
    Ok((shapes, clips))
}

/// The most validation feeds into one input, in bytes of float32. A larger input is refused before
/// anything is rewritten (exit 2, `--no-validate` the way on): allocating it, or tract's tensors
/// after it, would abort the process or exhaust the machine's memory, and a model that declares its
/// height and width as a million (a fuzzed file, a typo) would otherwise crash the tool.
pub const FEED_LIMIT_BYTES: u64 = 1 << 30;

/// Refuses inputs of these shapes, with their batch made `batch` (the frames validation feeds at
/// once, a product of counts from the model and the flags, so wider than `usize`), above
/// [`FEED_LIMIT_BYTES`]; `input_shape` is the size the caller gave for open dims.
pub fn check_feed(shapes: &[(String, Vec<usize>)], batch: u128, input_shape: Option<&[usize]>) -> Result<(), Error> {
    for (name, shape) in shapes {
        let fed: Vec<u128> = std::iter::once(batch).chain(shape.iter().skip(1).map(|&d| d as u128)).collect();
        let bytes = fed.iter().try_fold(4u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
        if bytes.is_none_or(|b| b > FEED_LIMIT_BYTES) {
            let size =
                bytes.map_or("more than 16 EiB".into(), |b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64));
            let smaller = if input_shape.is_some() { ", or a smaller --input-shape" } else { "" };
            return Err(Error::Config(format!(
                "validation would feed input '{name}' {fed:?} ({size} of float32), more than the {} GiB it feeds one \
                 input: use --no-validate{smaller}",
                FEED_LIMIT_BYTES >> 30
            )));
        }
    }
    Ok(())
}

/// Why a float16 model is checked through float32 copies of the models (the same graphs): tract
/// 0.23 has no float16 kernels here and computes float16 in software (DLA-34 at 128x128 had not
/// finished after 20 minutes where its float32 copy takes 4 s), and it cannot type a float16 Gemm.
pub const FLOAT16_IN_SOFTWARE: &str =
    "tract computes float16 in software, without float16 kernels, far too slowly for a full-size model";

/// Validates the model at `path`, whose graph is `graph`, and times it against the original 2D
/// model at `original` on the same input; a float16 model through the float32 copies of both
/// ([`FLOAT16_IN_SOFTWARE`]).
pub fn validate(
    path: &Path,
    original: &Path,
    graph: &GraphProto,
    segments: usize,
    input_shape: Option<&[usize]>,
) -> Result<Report, Error> {
    let fail = |e: anyhow::Error| Error::Validation(format!("{e:#}"));
    let (shapes, clips) = input_shapes(graph, segments, input_shape)?;
    check_feed(&shapes, (clips * segments) as u128, input_shape)?;
    let rewritten = crate::load::load(path).map_err(|e| fail(e.into()))?.model;
    let Some(how) = copies(&rewritten) else {
        return validate_with(path, original, graph, segments, input_shape, true);
    };
    let original_model = crate::load::load(original).map_err(|e| fail(e.into()))?.model;
    let copy = tract_copy(path, path, &rewritten, how).map_err(fail)?;
    let copy_2d = tract_copy(path, &path.with_file_name("2d"), &original_model, how).map_err(fail)?;
    let mut report = validate_with(copy.path(), copy_2d.path(), graph, segments, input_shape, true)?;
    report.float32 = how.float32.then(|| FLOAT16_IN_SOFTWARE.into());
    report.norms_written_out = how.norms;
    Ok(report)
}

fn validate_with(
    path: &Path,
    original: &Path,
    graph: &GraphProto,
    segments: usize,
    input_shape: Option<&[usize]>,
    optimize: bool,
) -> Result<Report, Error> {
    let fail = |e: anyhow::Error| Error::Validation(format!("{e:#}"));
    let (shapes, clips) = input_shapes(graph, segments, input_shape)?;
    let inputs: Vec<FloatArray> =
        shapes.iter().enumerate().map(|(i, (_, s))| FloatArray::random(s, 0x75_6d + i as u64)).collect();
    let concrete: Vec<Vec<usize>> = shapes.iter().map(|(_, s)| s.clone()).collect();
    let runner = match Runner::load_with(path, &concrete, optimize) {
        Ok(r) => r,
        Err(e) if optimize => return fallback(e, path, original, graph, segments, input_shape, &concrete),
        Err(e) => return Err(fail(e)),
    };
    let (outputs, first) = runner.run_timed(&inputs).map_err(fail)?;
    // The 2D model takes the same clips as frames; alternating which model runs first in each
    // round keeps a drift of the machine's speed out of the ratio.
    let loading_2d = "loading the original 2D model for the timing comparison";
    let (runner, runner_2d, first, input_only) = match Runner::load_with(original, &concrete, optimize) {
        Ok(r) => (runner, r, first, None),
        // tract's optimizer fails on the input model but not on the rewrite (timm's resnet50_gn,
        // whose Reshapes the stream form splits): the rewrite's outputs stand as checked, and both
        // are timed as tract types them, so that the ratio compares like with like.
        Err(e) if optimize => {
            let Ok(typed_2d) = Runner::load_with(original, &concrete, false) else {
                return Err(fail(e.context(loading_2d)));
            };
            let typed = Runner::load_with(path, &concrete, false).map_err(fail)?;
            let first = typed.run_timed(&inputs).map_err(fail)?.1;
            (typed, typed_2d, first, Some(format!("{e:#}")))
        }
        Err(e) => return Err(fail(e.context(loading_2d))),
    };
    let (mut times, mut times_2d) = (vec![first], Vec::new());
    for round in 0..TIMING_ROUNDS {
        if round % 2 == 0 {
            times_2d.push(runner_2d.run_timed(&inputs).map_err(fail)?.1);
        }
        if round > 0 {
            times.push(runner.run_timed(&inputs).map_err(fail)?.1);
        }
        if round % 2 == 1 {
            times_2d.push(runner_2d.run_timed(&inputs).map_err(fail)?.1);
        }
    }
    let per = |t: Vec<Duration>| median(t) / clips.max(1) as u32;
    let mut report = Report {
        inputs: shapes,
        outputs: Vec::new(),
        clips,
        per_clip: per(times),
        per_clip_2d: per(times_2d),
        float32: None,
        unoptimized_2d: input_only.is_some(),
        unoptimized: input_only,
        unoptimized_rewrite: false,
        norms_written_out: false,
    };
    for (out, vi) in outputs.iter().zip(&graph.output) {
        if let Some(dims) = declared_dims(vi) {
            let fits = dims.len() == out.shape.len()
                && dims.iter().zip(&out.shape).all(|(d, &s)| d.known().is_none_or(|v| v as usize == s));
            if !fits {
                let want: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                return Err(Error::Validation(format!(
                    "output '{}' has shape {:?}, the model declares [{}]",
                    vi.name(),
                    out.shape,
                    want.join(", ")
                )));
            }
        }
        if let Some(bad) = out.data.iter().find(|v| !v.is_finite()) {
            return Err(Error::Validation(format!("output '{}' holds a non-finite value ({bad})", vi.name())));
        }
        report.outputs.push((vi.name().to_owned(), out.shape.clone()));
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

/// Where tract cannot load the rewrite at `path`, optimized:
/// - if tract cannot load the input model at `original` either, tract is at fault, not the rewrite:
///   the error says so (and that `--no-validate` skips the check);
/// - if the rewrite runs unoptimized and so does the input model (optimized or not), tract's
///   optimizer fails on a valid graph (it cannot pull a strided 1x1 convolution's Downsample over a
///   Reshape, see `tests/tract/`): both are validated unoptimized.
///
/// The report says which. Otherwise tract's error is the validation error.
fn fallback(
    e: anyhow::Error,
    path: &Path,
    original: &Path,
    graph: &GraphProto,
    segments: usize,
    input_shape: Option<&[usize]>,
    concrete: &[Vec<usize>],
) -> Result<Report, Error> {
    let fail = |e: anyhow::Error| Error::Validation(format!("{e:#}"));
    let original_runs = Runner::load(original, concrete).is_ok();
    // Where the optimizer fails on the input model too (the same Downsample pull in timm's
    // `resnet50_gn`, whose projections normalize with GroupNorm), both may still run unoptimized.
    let both_run_typed = || {
        (original_runs || Runner::load_with(original, concrete, false).is_ok())
            && Runner::load_with(path, concrete, false).is_ok()
    };
    if both_run_typed() {
        let mut report = validate_with(path, original, graph, segments, input_shape, false)?;
        report.unoptimized = Some(format!("{e:#}"));
        (report.unoptimized_2d, report.unoptimized_rewrite) = (!original_runs, true);
        return Ok(report);
    }
    if original_runs {
        return Err(fail(e));
    }
    Err(tract_limited(format!("{e:#}")))
}

/// Tract's error where it cannot load the input model either: its limitation, not the rewrite's,
/// and the way to write the rewrite anyway.
fn tract_limited(error: String) -> Error {
    Error::Validation(format!(
        "{error}; tract cannot run the input model either, so this is tract's limitation, not the \
         rewrite's: --no-validate writes the rewrite without this check (run it in your runtime)"
    ))
}

/// How validation copies the models where tract cannot run them as written: as float32 (a
/// float16 model, [`FLOAT16_IN_SOFTWARE`]), with training-mode BatchNormalizations written out
/// ([`crate::batch_stats`]), or both.
#[derive(Debug, Clone, Copy)]
struct Copies {
    float32: bool,
    norms: bool,
}

/// How validation copies `model`, if it must and may: a copy is written inline, so not where the
/// model has external data.
fn copies(model: &crate::onnx::ModelProto) -> Option<Copies> {
    let external = model.graph.as_ref().is_some_and(|g| g.initializer.iter().any(crate::external::is_external));
    let how = Copies { float32: crate::widen::has_float16(model), norms: crate::batch_stats::has_training_norm(model) };
    (!external && (how.float32 || how.norms)).then_some(how)
}

/// The copy of `model` that `how` says, staged beside `beside` under `name`'s file name plus
/// `.tract`, removed when dropped.
fn tract_copy(
    beside: &Path,
    name: &Path,
    model: &crate::onnx::ModelProto,
    how: Copies,
) -> anyhow::Result<crate::write::TempOutput> {
    let name = name.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let wide = how.float32.then(|| crate::widen::to_float32(model));
    let model = wide.as_ref().unwrap_or(model);
    let written_out = how.norms.then(|| crate::batch_stats::expand(model));
    crate::write::TempOutput::encode(
        &beside.with_file_name(format!("{name}.tract")),
        written_out.as_ref().unwrap_or(model),
    )
}

/// What online validation checked.
#[derive(Debug, Clone)]
pub struct OnlineReport {
    /// Frame inputs, then buffers.
    pub inputs: NamedShapes,
    pub outputs: NamedShapes,
    pub streams: usize,
    pub frames: usize,
    /// Largest difference from the offline past-only rewrite over every frame and output.
    pub max_diff: f32,
    /// Median time of one frame (all streams) through the online graph and the original 2D model.
    pub per_frame: Duration,
    pub per_frame_2d: Duration,
    /// As [`Report::float32`]: where tract cannot run the float16 online graph, nor the input
    /// model, tract's message; the graphs checked were then the float32 copies of all three.
    pub float32: Option<String>,
    /// As [`Report::norms_written_out`], for the three models.
    pub norms_written_out: bool,
    /// As [`Report::unoptimized`], [`Report::unoptimized_2d`] and [`Report::unoptimized_rewrite`]
    /// (the online graph or its offline reference), for the three models.
    pub unoptimized: Option<String>,
    pub unoptimized_2d: bool,
    pub unoptimized_rewrite: bool,
}

/// The frame inputs' shapes with the batch made `batch` (all frames of all streams, clip-wise).
fn clip_shapes(frame_shapes: &[Vec<usize>], batch: usize) -> Vec<Vec<usize>> {
    frame_shapes.iter().map(|s| [&[batch][..], &s[1..]].concat()).collect()
}

/// Frame `t` of every stream, from clips laid out as `[streams * frames, ...]`.
fn frame(clip: &FloatArray, streams: usize, frames: usize, t: usize) -> FloatArray {
    let row = clip.data.len() / clip.shape[0];
    let mut shape = clip.shape.clone();
    shape[0] = streams;
    let data = (0..streams).flat_map(|s| &clip.data[(s * frames + t) * row..][..row]).copied().collect();
    FloatArray { shape, data }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Streams `frames` frames of seeded random input for each stream through the online graph at
/// `online` (whose graph is `graph`, with `buffers` extra inputs and outputs), feeding the buffers
/// back from zeros, and compares every frame with the clip-wise offline past-only rewrite at
/// `reference` (T = `frames`). Times the online graph against the original 2D model at `original`.
///
/// A float16 model is checked as offline validation checks it ([`FLOAT16_IN_SOFTWARE`]): the
/// float32 copies of the online graph, the reference and the input model, the same graphs.
pub fn validate_online(
    online: &Path,
    graph: &GraphProto,
    buffers: usize,
    reference: &Path,
    original: &Path,
    frames: usize,
    input_shape: Option<&[usize]>,
) -> Result<OnlineReport, Error> {
    let fail = |e: anyhow::Error| Error::Validation(format!("{e:#}"));
    let (shapes, streams) = input_shapes(graph, 1, input_shape)?;
    check_feed(&shapes[..shapes.len() - buffers], streams as u128 * frames as u128, input_shape)?;
    let load = |p: &Path| crate::load::load(p).map(|l| l.model).map_err(|e| fail(e.into()));
    let model = load(online)?;
    if let Some(how) = copies(&model) {
        let copy = tract_copy(online, online, &model, how).map_err(fail)?;
        let copy_reference = tract_copy(online, reference, &load(reference)?, how).map_err(fail)?;
        let copy_2d = tract_copy(online, &online.with_file_name("2d"), &load(original)?, how).map_err(fail)?;
        let paths = (copy.path(), copy_reference.path(), copy_2d.path());
        let mut report = validate_online(paths.0, graph, buffers, paths.1, paths.2, frames, input_shape)?;
        report.float32 = how.float32.then(|| FLOAT16_IN_SOFTWARE.into());
        report.norms_written_out = how.norms;
        return Ok(report);
    }
    let models = (online, reference, original);
    let e = match stream_frames(models, graph, buffers, frames, input_shape, true) {
        Ok(report) => return Ok(report),
        Err(e) => e,
    };
    let message = match &e {
        Error::Validation(m) => m.clone(),
        other => other.to_string(),
    };
    let (shapes, streams) = input_shapes(graph, 1, input_shape)?;
    let all_shapes: Vec<Vec<usize>> = shapes.iter().map(|(_, s)| s.clone()).collect();
    let frame_shapes = &all_shapes[..shapes.len() - buffers];
    let clip_shapes = clip_shapes(frame_shapes, streams * frames);
    // As offline ([`fallback`]): where tract's optimizer fails on one of the three models but all
    // run as tract types them, they are checked unoptimized. (A mismatch found optimized is no such
    // failure: it stands.)
    let original_runs = Runner::load(original, frame_shapes).is_ok();
    let rewrite_fails = Runner::load(online, &all_shapes).is_err() || Runner::load(reference, &clip_shapes).is_err();
    let optimizer_fails = !original_runs || rewrite_fails;
    let typed = || {
        Runner::load_with(online, &all_shapes, false).is_ok()
            && Runner::load_with(reference, &clip_shapes, false).is_ok()
            && (original_runs || Runner::load_with(original, frame_shapes, false).is_ok())
    };
    if optimizer_fails && typed() {
        let mut report = stream_frames(models, graph, buffers, frames, input_shape, false)?;
        report.unoptimized = Some(message);
        (report.unoptimized_2d, report.unoptimized_rewrite) = (!original_runs, rewrite_fails);
        return Ok(report);
    }
    if original_runs {
        return Err(e);
    }
    Err(tract_limited(message))
}

/// [`validate_online`] on the models at (online, reference, original) as they are.
fn stream_frames(
    (online, reference, original): (&Path, &Path, &Path),
    graph: &GraphProto,
    buffers: usize,
    frames: usize,
    input_shape: Option<&[usize]>,
    optimize: bool,
) -> Result<OnlineReport, Error> {
    let fail = |e: anyhow::Error| Error::Validation(format!("{e:#}"));
    let (shapes, streams) = input_shapes(graph, 1, input_shape)?;
    let (models_in, models_out) = (shapes.len() - buffers, graph.output.len() - buffers);
    let all_shapes: Vec<Vec<usize>> = shapes.iter().map(|(_, s)| s.clone()).collect();
    let clip_shapes = clip_shapes(&all_shapes[..models_in], streams * frames);
    let clips: Vec<FloatArray> =
        clip_shapes.iter().enumerate().map(|(i, s)| FloatArray::random(s, 0x75_6d + i as u64)).collect();
    let expected = Runner::load_with(reference, &clip_shapes, optimize)
        .and_then(|r| r.run(&clips))
        .context("running the offline past-only rewrite used as the reference")
        .map_err(fail)?;
    for (o, vi) in expected.iter().zip(&graph.output) {
        if o.shape.first() != Some(&(streams * frames)) {
            return Err(Error::Validation(format!(
                "output '{}' has shape {:?} for {} frames: online validation compares batch-first outputs frame by frame",
                vi.name(),
                o.shape,
                streams * frames
            )));
        }
    }
    let frame_inputs = |t: usize| clips.iter().map(|c| frame(c, streams, frames, t)).collect::<Vec<_>>();

    let runner = Runner::load_with(online, &all_shapes, optimize).map_err(fail)?;
    let mut state: Vec<FloatArray> = all_shapes[models_in..]
        .iter()
        .map(|s| FloatArray { shape: s.clone(), data: vec![0.0; s.iter().product()] })
        .collect();
    let mut report = OnlineReport {
        inputs: shapes.clone(),
        outputs: Vec::new(),
        streams,
        frames,
        max_diff: 0.0,
        per_frame: Duration::ZERO,
        per_frame_2d: Duration::ZERO,
        float32: None,
        unoptimized: None,
        unoptimized_2d: false,
        unoptimized_rewrite: false,
        norms_written_out: false,
    };
    let runner_2d = Runner::load_with(original, &all_shapes[..models_in], optimize)
        .context("loading the original 2D model for the latency comparison")
        .map_err(fail)?;
    let (mut times, mut times_2d) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    for t in 0..frames {
        // The 2D model takes each frame beside the online one, first on every other frame: a
        // drift of the machine's speed stays out of the ratio, as offline.
        let mut inputs = frame_inputs(t);
        inputs.append(&mut state);
        if t % 2 == 1 {
            times_2d.push(runner_2d.run_timed(&inputs[..models_in]).map_err(fail)?.1);
        }
        let (mut outputs, elapsed) = runner.run_timed(&inputs).with_context(|| format!("frame {t}")).map_err(fail)?;
        times.push(elapsed);
        if t % 2 == 0 {
            times_2d.push(runner_2d.run_timed(&inputs[..models_in]).map_err(fail)?.1);
        }
        for (k, (out, vi)) in outputs.iter().zip(&graph.output).enumerate() {
            if let Some(bad) = out.data.iter().find(|v| !v.is_finite()) {
                return Err(Error::Validation(format!(
                    "frame {t}: output '{}' holds a non-finite value ({bad})",
                    vi.name()
                )));
            }
            if k >= models_out {
                let want = &all_shapes[models_in + k - models_out];
                if &out.shape != want {
                    return Err(Error::Validation(format!(
                        "buffer output '{}' has shape {:?}, its buffer input is {want:?}",
                        vi.name(),
                        out.shape
                    )));
                }
                continue;
            }
            let want = frame(&expected[k], streams, frames, t);
            let tolerance = 1e-4 * want.max_abs().max(1.0);
            let diff = if out.shape == want.shape { out.max_abs_diff(&want) } else { f32::INFINITY };
            if diff.is_nan() || diff > tolerance {
                return Err(Error::Validation(format!(
                    "frame {t}: output '{}' of the online graph differs from the offline past-only rewrite by {diff:e} \
                     (shape {:?} vs {:?}, tolerance {tolerance:e})",
                    vi.name(), out.shape, want.shape
                )));
            }
            report.max_diff = report.max_diff.max(diff);
            if t == 0 {
                report.outputs.push((vi.name().to_owned(), out.shape.clone()));
            }
        }
        if t == 0 {
            report.outputs.extend(
                outputs[models_out..]
                    .iter()
                    .zip(&graph.output[models_out..])
                    .map(|(o, vi)| (vi.name().to_owned(), o.shape.clone())),
            );
        }
        state = outputs.split_off(models_out);
    }
    if state.len() != buffers {
        return Err(Error::Validation(format!(
            "tract returned {} outputs, the model declares {}",
            models_out + state.len(),
            graph.output.len()
        )));
    }
    report.per_frame = median(times);
    report.per_frame_2d = median(times_2d);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_up_to_the_limit_and_refuses_past_it_or_on_overflow() {
        let shapes = |c, h, w| vec![("input".to_string(), vec![0, c, h, w])];
        // 16 frames of 3 x 4096 x 1365 float32 fit in 1 GiB; one more column does not.
        assert!(check_feed(&shapes(3, 4096, 1365), 16, None).is_ok());
        let e = check_feed(&shapes(3, 4096, 1366), 16, None).unwrap_err().to_string();
        assert!(e.contains("input 'input' [16, 3, 4096, 1366] (1.0 GiB of float32)"), "{e}");
        assert!(e.ends_with("use --no-validate"), "{e}");
        let e = check_feed(&shapes(3, usize::MAX / 2, 3), 16, Some(&[3, 1, 1])).unwrap_err().to_string();
        assert!(e.contains("more than 16 EiB") && e.ends_with("or a smaller --input-shape"), "{e}");
        assert!(check_feed(&shapes(3, 224, 224), 1 << 20, None).is_err(), "the batch counts");
        let e = check_feed(&shapes(3, 32, 32), 1 << 65, None).unwrap_err().to_string();
        assert!(e.contains("[36893488147419103232, 3, 32, 32] (more than 16 EiB"), "{e}");
    }
}
