//! What the user sees on stderr: the table of blocks and shifts, what was skipped and why, and what
//! validation checked. Plain text, deterministic (no timings except in the validation line).

use crate::blocks::Shortcut;
use crate::config::{Config, Direction, Mode};
use crate::rewrite::Prepared;
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
    let mut out = format!("{}: opset {}, {} nodes\n", p.input.display(), p.opset, p.input_nodes);
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
    let dir = match config.direction {
        Direction::Bidirectional => format!("bidirectional, {} order", config.group_order.name()),
        Direction::Past => "past".into(),
    };
    let _ = writeln!(
        out,
        "{} residual block(s) found, {} shifted ({}, {dir}, T={}, fold_div={}{})",
        p.findings.blocks.len(),
        p.plan.sites.len(),
        match config.mode {
            Mode::Residual => "residual: branch input only",
            Mode::Inplace => "inplace: block input",
        },
        config.segments,
        config.fold_div,
        if config.every > 1 { format!(", every {}", config.every) } else { String::new() }
    );
    for (name, why) in &p.plan.not_shifted {
        let _ = writeln!(out, "not shifted: {name}: {why}");
    }
    for s in &p.findings.skipped {
        let _ = writeln!(out, "skipped: {}: {}", s.node, s.reason);
    }
    out
}

/// One line on what validation ran and found.
pub fn validation(r: &validate::Report) -> String {
    let shapes =
        |v: &[(String, Vec<usize>)]| v.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "validated in tract: {} clip(s), {} -> {}, all values finite; {:.1} ms per clip\n",
        r.clips,
        shapes(&r.inputs),
        shapes(&r.outputs),
        r.per_clip.as_secs_f64() * 1000.0
    )
}
