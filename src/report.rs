//! What the user sees on stderr: the table of blocks and shifts, what was skipped and why, and what
//! validation checked. Plain text, deterministic (no timings except in the validation line). And
//! the same as JSON (`--report`), for programs: [`json`].

use crate::blocks::Shortcut;
use crate::config::{Config, Direction, Mode};
use crate::rewrite::{Prepared, Validated};
use crate::validate;
use std::fmt::Write;

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    out
}

/// The plan: one row per shift site, then the counts and every Add that was skipped.
pub fn plan(p: &Prepared, config: &Config) -> String {
    let mut out: String = p.warnings.iter().map(|w| format!("warning: {w}\n")).collect();
    let _ = writeln!(out, "{}: opset {}, {} nodes", p.input.display(), p.opset, p.input_nodes);
    if !p.batch_changes.is_empty() {
        let _ = writeln!(out, "exported with a fixed batch of 1; made symbolic, so that it takes clips:");
        for c in &p.batch_changes {
            let _ = writeln!(out, "  {c}");
        }
    }
    for c in &p.clip_batch {
        let _ = writeln!(out, "batch declared in clips of {} frames: {c}", config.segments);
    }
    if !p.plan.sites.is_empty() {
        let mut rows =
            vec![["#", "block (Add)", "shifted tensor", "C", "fold", "shortcut", "into"].map(String::from).to_vec()];
        for (k, s) in p.plan.sites.iter().enumerate() {
            let block = &p.findings.blocks[s.block];
            rows.push(vec![
                (k + 1).to_string(),
                s.block_name.clone(),
                s.tensor.clone(),
                s.channels.to_string(),
                s.fold.to_string(),
                match block.shortcut {
                    Shortcut::Identity => "identity".into(),
                    Shortcut::Projection(n) => format!("projection ({n})"),
                },
                s.into.join(", "),
            ]);
        }
        out += &table(&rows);
    }
    let dir = match (config.online, config.direction) {
        (true, _) => "online: past frame from a buffer".into(),
        (false, Direction::Bidirectional) => format!("bidirectional, {} order", config.group_order.name()),
        (false, Direction::Past) => "past".into(),
    };
    let segments = if config.online { String::new() } else { format!("T={}, ", config.segments) };
    let _ = writeln!(
        out,
        "{} residual block(s) found, {} shifted ({}, {dir}, {segments}fold_div={}{})",
        p.findings.blocks.len(),
        p.plan.sites.len(),
        match config.mode {
            Mode::Residual => "residual: branch input only",
            Mode::Inplace => "inplace: block input",
        },
        config.fold_div,
        if config.every > 1 { format!(", every {}", config.every) } else { String::new() }
    );
    if let Some(pool) = &p.plan.pool {
        let later = p.plan.sites.iter().filter(|s| s.segments < pool.segments).count();
        let _ = writeln!(
            out,
            "temporal pool: max over time (kernel 3, stride 2, padding 1) on '{}' before {}; the {later} later site(s) \
             and the outputs see {} frames per clip",
            pool.tensor,
            pool.block_name,
            pool.segments / 2
        );
    }
    let streamed = p.plan.sites.iter().filter(|s| s.stream.is_some()).count();
    if streamed > 0 {
        // Where the others go: emit::takes_batch_form offline, emit::online online.
        let others = if streamed == p.plan.sites.len() {
            String::new()
        } else if config.online {
            "; the other sites join their buffer by a channel Concat".to_string()
        } else {
            let batch = p
                .plan
                .sites
                .iter()
                .filter(|s| s.stream.is_none() && crate::emit::takes_batch_form(s, config, p.opset))
                .count();
            let mut o = "; the other sites shift on a clip view".to_string();
            if batch > 0 {
                o += &format!(
                    " ({batch} along the batch axis: a strided 1x1 convolution reads them, the model is QDQ, or the \
                     model leaves their height or width open)"
                );
            }
            o
        };
        let _ = writeln!(
            out,
            "stream form at {streamed} of {} site(s): the convolutions before and after are split after the shifted \
             channels (at a multiple of 16), so only those move (weights partitioned, not added){others}",
            p.plan.sites.len()
        );
    }
    let rejoined = p.plan.sites.iter().filter(|s| !s.rejoined.is_empty()).count();
    if rejoined > 0 {
        let _ = writeln!(
            out,
            "rejoined at {rejoined} of {} site(s): the residual Add reads the block input joined back from the \
             site's two slices, so tract keeps the Add out of the 1x1 convolution before it (it runs that fused product slowly \
             at one stream)",
            p.plan.sites.len()
        );
    }
    // Why each other site stays out of it, grouped by reason in site order (numbered as in the table).
    let mut refused: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, site) in p.plan.sites.iter().enumerate() {
        let Some(why) = site.stream_refused.as_deref() else { continue };
        match refused.iter_mut().find(|(w, _)| *w == why) {
            Some((_, sites)) => sites.push(i + 1),
            None => refused.push((why, vec![i + 1])),
        }
    }
    for (why, sites) in refused {
        let sites: Vec<String> = sites.iter().map(|i| i.to_string()).collect();
        let _ = writeln!(out, "  not in the stream form, site(s) {}: {why}", sites.join(", "));
    }
    // The scatter form's ScatterND is named after its site (emit::scatter); the input's own are not.
    let names: std::collections::HashSet<&str> = p.graph().node.iter().map(|n| n.name()).collect();
    let scattered = p.plan.sites.iter().filter(|s| names.contains(format!("{}/ScatterND", s.prefix).as_str())).count();
    if scattered > 0 {
        let _ = writeln!(
            out,
            "scatter form at {scattered} of {} site(s): the shifted channels are moved on their own clip view and \
             written back into the tensor by a ScatterND, so the channels that stay are copied once",
            p.plan.sites.len()
        );
    }
    let named = |suffix: &str| p.graph().node.iter().filter(|n| n.name().ends_with(suffix)).count();
    let lifted = named(crate::emit::volume::SHIFT_NODE);
    if lifted > 0 && config.shift_form == crate::config::ShiftForm::Tract {
        let on_frames = match named(crate::emit::volume::FRAMES_NODE) {
            0 => String::new(),
            k => format!(
                "; {k} depthwise convolution(s) run on the frames in 2D, having fewer outputs inside the input \
                 than frames (tract's depthwise loop would run along the frames)"
            ),
        };
        let _ = writeln!(
            out,
            "volume: the network runs on all the frames as one volume [1, C, N*T, H, W] (2D convolutions and pools \
             as 3D ones of depth 1), and {lifted} of {} site(s) shift by a depthwise convolution over the frames, \
             masked at the clips' borders (tract's form, faster there than the 2D model, as in the timing below; \
             onnxruntime runs 3D convolutions slower than 2D ones){on_frames}",
            p.plan.sites.len()
        );
    } else if lifted > 0 {
        let _ = writeln!(
            out,
            "volume: the network runs on each clip as [N, C, T, H, W] (2D convolutions and pools as 3D ones of depth \
             1), and {lifted} of {} site(s) shift by a depthwise convolution over T (OpenVINO's form: onnxruntime runs \
             3D convolutions slower than 2D ones, and tract too with more than one clip a run, as in the timing \
             below: time it in OpenVINO; `--shift-form tract` lays the clips along one depth for tract)",
            p.plan.sites.len()
        );
    }
    let quantized = p.plan.sites.iter().filter(|s| s.quant.is_some()).count();
    if quantized > 0 {
        let _ = writeln!(
            out,
            "QDQ: {quantized} site(s) shift the quantized tensor (frames outside the clip get its zero point, a real \
             zero) and dequantize it again, so each consumer still reads a DequantizeLinear"
        );
    }
    if !p.buffers.is_empty() {
        let _ = writeln!(out, "buffers (each '.../buffer_in' input takes the previous frame's '.../buffer_out' output; zeros at the start):");
        let mut rows = vec![["#", "buffer input", "shape"].map(String::from).to_vec()];
        for (k, b) in p.buffers.iter().enumerate() {
            rows.push(vec![(k + 1).to_string(), b.input.clone(), format!("[{}]", b.shape_text().join(", "))]);
        }
        out += &table(&rows);
    }
    for (name, why) in &p.plan.not_shifted {
        let _ = writeln!(out, "not shifted: {name}: {why}");
    }
    for s in &p.findings.skipped {
        let _ = writeln!(out, "skipped: {}: {}", s.node, s.reason);
    }
    out
}

fn shapes(v: &[(String, Vec<usize>)]) -> String {
    v.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", ")
}

/// What validation ran and found.
pub fn validated(v: &Validated) -> String {
    match v {
        Validated::Offline(r) => validation(r),
        Validated::Online(r) => online_validation(r),
    }
}

/// One line on online validation: the buffer loop against the offline reference, and the latency.
pub fn online_validation(r: &validate::OnlineReport) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let mut note = r.float32.as_ref().map_or(String::new(), |why| float32_note(why));
    if r.norms_written_out {
        note += NORMS_NOTE;
    }
    if let Some(why) = &r.unoptimized {
        note += &unoptimized_note(why, r.unoptimized_2d, r.unoptimized_rewrite);
    }
    note + &format!(
        "validated in tract: {} stream(s) x {} frames with the buffers fed back, equal to the offline past-only rewrite \
         (max abs diff {:.1e}), all values finite; {:.2} ms per frame online vs {:.2} ms for the 2D model ({:.2}x)\n",
        r.streams,
        r.frames,
        r.max_diff,
        ms(r.per_frame),
        ms(r.per_frame_2d),
        ms(r.per_frame) / ms(r.per_frame_2d).max(1e-9)
    )
}

fn unoptimized_note(why: &str, input: bool, rewrite: bool) -> String {
    let which = match (input, rewrite) {
        (true, true) => "on this model and on the input model alike",
        (false, _) => "on this model but not on the input model",
        (true, false) => "on the input model but not on this one",
    };
    format!(
        "note: tract's optimizer fails {which} ({why}); a limitation of tract: validated and timed the models as \
         tract types them, unoptimized (the models are valid; other runtimes run them)\n"
    )
}

fn float32_note(why: &str) -> String {
    format!(
        "note: validated this float16 model as the same graphs computed in float32 (float16 values widened exactly, \
         Casts to float16 made float32), and its time is theirs: {why}\n"
    )
}

const NORMS_NOTE: &str = "note: tract cannot load a BatchNormalization in training mode (a weight standardization, \
     as timm's StdConv2d exports it): validated copies of the models with each written as the ops it computes \
     (ReduceMean, Sub, Mul, Sqrt, Div), and their time is theirs\n";

/// One line on what validation ran and found.
pub fn validation(r: &validate::Report) -> String {
    let mut out = String::new();
    if let Some(why) = &r.float32 {
        out += &float32_note(why);
    }
    if r.norms_written_out {
        out += NORMS_NOTE;
    }
    if let Some(why) = &r.unoptimized {
        out += &unoptimized_note(why, r.unoptimized_2d, r.unoptimized_rewrite);
    }
    out + &format!(
        "validated in tract: {} clip(s), {} -> {}, all values finite; {:.1} ms per clip vs {:.1} ms for the 2D model \
         ({:.2}x)\n",
        r.clips,
        shapes(&r.inputs),
        shapes(&r.outputs),
        r.per_clip.as_secs_f64() * 1000.0,
        r.per_clip_2d.as_secs_f64() * 1000.0,
        r.per_clip.as_secs_f64() / r.per_clip_2d.as_secs_f64().max(1e-12)
    )
}

/// The version of the JSON report's layout; bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn named_shapes(v: &[(String, Vec<usize>)]) -> serde_json::Value {
    v.iter().map(|(n, s)| serde_json::json!({"name": n, "shape": s})).collect()
}

/// The JSON report (`--report`): the model, the flags, every block with its shift (or why not),
/// every skipped Add, the temporal pool, the online buffers, what validation measured, and the
/// files written. `validated` is `None` when validation did not run; `files` is empty for a dry run.
pub fn json(
    p: &Prepared,
    config: &Config,
    validated: Option<&Validated>,
    files: &[std::path::PathBuf],
) -> serde_json::Value {
    use serde_json::{json, Value};
    let volume: Vec<&str> =
        p.graph().node.iter().map(|n| n.name()).filter(|n| n.ends_with(crate::emit::volume::SHIFT_NODE)).collect();
    let blocks: Vec<Value> = p
        .findings
        .blocks
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let site = p.plan.sites.iter().find(|s| s.block == k);
            let not_shifted = p.plan.not_shifted.iter().find(|(n, _)| *n == b.name).map(|(_, why)| why.clone());
            json!({
                "add": b.name,
                "stage": b.stage,
                "index_in_stage": b.index_in_stage,
                "channels": b.channels,
                "shortcut": match b.shortcut { Shortcut::Identity => "identity", Shortcut::Projection(_) => "projection" },
                "shortcut_nodes": match b.shortcut { Shortcut::Identity => 0, Shortcut::Projection(n) => n },
                "shifted": site.is_some(),
                "tensor": site.map(|s| s.tensor.clone()),
                "fold": site.map(|s| s.fold),
                "segments": site.map(|s| s.segments),
                "into": site.map(|s| s.into.clone()),
                "quantized": site.map(|s| s.quant.is_some()),
                "stream_split": site.and_then(|s| s.stream.as_ref().map(|st| st.split)),
                "stream_refused": site.and_then(|s| s.stream_refused.clone()),
                "rejoined": site.map(|s| !s.rejoined.is_empty()),
                "volume": site.map(|s| volume.iter().any(|n| n.starts_with(&format!("{}/", s.prefix)))),
                "not_shifted": not_shifted,
            })
        })
        .collect();
    let validation = validated.map(|v| match v {
        Validated::Offline(r) => json!({
            "kind": "offline",
            "clips": r.clips,
            "inputs": named_shapes(&r.inputs),
            "outputs": named_shapes(&r.outputs),
            "ms_per_clip": ms(r.per_clip),
            "ms_per_clip_2d": ms(r.per_clip_2d),
            "ratio_to_2d": r.per_clip.as_secs_f64() / r.per_clip_2d.as_secs_f64().max(1e-12),
            "float32_copy_because": r.float32,
            "training_norms_written_out": r.norms_written_out,
            "unoptimized_because": r.unoptimized,
            "unoptimized_2d": r.unoptimized_2d,
            "unoptimized_rewrite": r.unoptimized_rewrite,
        }),
        Validated::Online(r) => json!({
            "kind": "online",
            "streams": r.streams,
            "frames": r.frames,
            "inputs": named_shapes(&r.inputs),
            "outputs": named_shapes(&r.outputs),
            "max_abs_diff": r.max_diff,
            "ms_per_frame": ms(r.per_frame),
            "ms_per_frame_2d": ms(r.per_frame_2d),
            "ratio_to_2d": r.per_frame.as_secs_f64() / r.per_frame_2d.as_secs_f64().max(1e-12),
            "float32_copy_because": r.float32,
            "training_norms_written_out": r.norms_written_out,
            "unoptimized_because": r.unoptimized,
            "unoptimized_2d": r.unoptimized_2d,
            "unoptimized_rewrite": r.unoptimized_rewrite,
        }),
    });
    json!({
        "schema_version": SCHEMA_VERSION,
        "tool": format!("tsm-rewrite {}", env!("CARGO_PKG_VERSION")),
        "input": p.input.display().to_string(),
        "opset": p.opset,
        "nodes": p.input_nodes,
        "flags": config.flags(),
        "config": {
            "segments": config.segments,
            "fold_div": config.fold_div,
            "mode": config.mode.name(),
            "direction": config.direction.name(),
            "group_order": config.group_order.name(),
            "every": config.every,
            "shift_form": config.shift_form.name(),
            "online": config.online,
            "consensus": config.consensus.map(|c| c.name()),
            "temporal_pool": config.temporal_pool,
            "skip_unknown": config.skip_unknown,
            "input_shape": config.input_shape,
            "validate": config.validate,
        },
        "warnings": p.warnings,
        "batch_changes": p.batch_changes,
        "clip_batch": p.clip_batch,
        "blocks": blocks,
        "shifted": p.plan.sites.len(),
        "skipped": p.findings.skipped.iter().map(|s| json!({"node": s.node, "reason": s.reason})).collect::<Vec<_>>(),
        "temporal_pool": p.plan.pool.as_ref().map(|pool| json!({
            "before": pool.block_name,
            "tensor": pool.tensor,
            "segments_after": pool.segments / 2,
        })),
        "buffers": p.buffers.iter().map(|b| json!({
            "input": b.input,
            "output": b.output,
            "shape": b.shape_text().into_iter().map(|d| d.parse::<i64>().map_or(Value::String(d), Value::from)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "validation": validation,
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
    })
}
