//! Streams frames through an online TSM graph (`tsm-rewrite --online`) in tract, the way a camera
//! loop would: one frame per stream per run, each buffer output fed back into its buffer input,
//! buffers starting as zeros. Prints per-frame latency percentiles, and with `--compare` the same
//! for the original 2D model, so the cost of the buffers can be read off directly.
//!
//!     cargo run --release --example stream -- online.onnx [--frames 200] [--streams 1] [--compare 2d.onnx]
//!
//! The buffers are found the way any runtime wrapper can find them without parsing the graph: the
//! model's `tsm-rewrite.buffers` metadata lists them in order with their shapes, and they are the
//! last inputs and the last outputs of the graph, in that same order.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

struct Args {
    model: PathBuf,
    frames: usize,
    streams: usize,
    compare: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let (mut frames, mut streams, mut compare) = (200, 1, None);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} takes a value"));
        match a.as_str() {
            "--frames" => frames = value("--frames")?.parse().context("--frames takes a number")?,
            "--streams" => streams = value("--streams")?.parse().context("--streams takes a number")?,
            "--compare" => compare = Some(PathBuf::from(value("--compare")?)),
            "-h" | "--help" => {
                println!("usage: stream ONLINE.onnx [--frames N] [--streams S] [--compare ORIGINAL_2D.onnx]");
                std::process::exit(0);
            }
            other if model.is_none() && !other.starts_with('-') => model = Some(PathBuf::from(other)),
            other => bail!("unexpected argument '{other}' (see --help)"),
        }
    }
    let model = model.context("give the online model to stream (see --help)")?;
    if frames == 0 || streams == 0 {
        bail!("--frames and --streams must be at least 1");
    }
    Ok(Args { model, frames, streams, compare })
}

/// The buffer shapes from the model's metadata, with the batch dim set to the number of streams.
fn buffer_shapes(path: &Path, streams: usize) -> Result<Vec<Vec<usize>>> {
    let proto = tract_onnx::onnx().proto_model_for_path(path)?;
    let meta = proto.metadata_props.iter().find(|p| p.key == "tsm-rewrite.buffers").with_context(|| {
        format!("{} has no tsm-rewrite.buffers metadata: is it from tsm-rewrite --online?", path.display())
    })?;
    let buffers: Vec<serde_json::Value> = serde_json::from_str(&meta.value).context("reading tsm-rewrite.buffers")?;
    buffers
        .iter()
        .map(|b| {
            let dims = b["shape"].as_array().context("a buffer without a shape")?;
            let mut shape = vec![streams];
            for d in &dims[1..] {
                shape.push(d.as_u64().context("a buffer dim that is not a number")? as usize);
            }
            Ok(shape)
        })
        .collect()
}

/// Loads `path` for the given input shapes (the frame's first), optimized and planned.
fn load(path: &Path, shapes: &[Vec<usize>]) -> Result<Arc<TypedRunnableModel>> {
    let mut model = tract_onnx::onnx().model_for_path(path).with_context(|| format!("loading {}", path.display()))?;
    for (i, s) in shapes.iter().enumerate() {
        model.set_input_fact(i, f32::fact(s).into())?;
    }
    model.into_optimized()?.into_runnable()
}

/// The frame input's `[C, H, W]`, as the model declares it.
fn frame_dims(path: &Path) -> Result<Vec<usize>> {
    let model = tract_onnx::onnx().model_for_path(path)?;
    let fact = model.input_fact(0)?;
    let dims: Option<Vec<usize>> =
        fact.shape.dims().skip(1).map(|d| d.concretize().and_then(|d| d.as_i64()).map(|d| d as usize)).collect();
    dims.filter(|d| d.len() == 3).context("the frame input must be [N, C, H, W] with fixed C, H, W")
}

/// A deterministic pseudo-random frame (an xorshift generator; the values do not matter here).
fn frame(shape: &[usize], seed: &mut u64) -> Tensor {
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_shape(shape, &data).expect("shape and data agree")
}

fn percentiles(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:>8}: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} frames)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        times.len()
    );
    times[(times.len() - 1) / 2]
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let mut frame_shape = vec![args.streams];
    frame_shape.extend(frame_dims(&args.model)?);
    let buffers = buffer_shapes(&args.model, args.streams)?;
    let mut shapes = vec![frame_shape.clone()];
    shapes.extend(buffers.iter().cloned());
    // The 2D model is loaded first: measured with an identical copy of the 2D model in the online
    // slot, loading it second made it look 1-2% slower.
    let plain = args.compare.as_deref().map(|p| load(p, std::slice::from_ref(&frame_shape))).transpose()?;
    let online = load(&args.model, &shapes)?;
    println!(
        "{}: {} stream(s) of {:?} frames, {} buffers ({:.1} KiB per stream)",
        args.model.display(),
        args.streams,
        &frame_shape[1..],
        buffers.len(),
        buffers.iter().map(|s| s.iter().product::<usize>()).sum::<usize>() as f64 * 4.0 / 1024.0 / args.streams as f64
    );

    // With --compare, each frame also goes through the 2D model right after the online graph, so
    // that both see the same machine state (clock, cache, other load) and the ratio is fair.
    let mut state: TVec<TValue> =
        buffers.iter().map(|s| Tensor::zero::<f32>(s).map(TValue::from)).collect::<TractResult<_>>()?;
    let warmup = 5.min(args.frames - 1);
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let (mut times, mut times_2d) = (Vec::with_capacity(args.frames), Vec::with_capacity(args.frames));
    for t in 0..args.frames + warmup {
        let input = frame(&frame_shape, &mut seed);
        let run_2d = |times_2d: &mut Vec<Duration>| -> Result<()> {
            if let Some(plain) = &plain {
                let start = Instant::now();
                plain.run(tvec![input.clone().into()])?;
                if t >= warmup {
                    times_2d.push(start.elapsed());
                }
            }
            Ok(())
        };
        // Alternate which model goes first, so that neither always finds the caches the other left.
        if t % 2 == 1 {
            run_2d(&mut times_2d)?;
        }
        let mut inputs: TVec<TValue> = tvec![input.clone().into()];
        inputs.extend(state.drain(..));
        let start = Instant::now();
        let mut outputs = online.run(inputs)?;
        let elapsed = start.elapsed();
        // The model's own outputs come first; the buffer outputs, fed back, are the last ones.
        state = outputs.drain(outputs.len() - buffers.len()..).collect();
        if t >= warmup {
            times.push(elapsed);
        }
        if t % 2 == 0 {
            run_2d(&mut times_2d)?;
        }
    }
    let p50 = percentiles("online", times);
    if plain.is_some() {
        let p50_2d = percentiles("2D", times_2d);
        println!("online / 2D at p50: {:.3}", p50.as_secs_f64() / p50_2d.as_secs_f64());
    }
    Ok(())
}
