//! Typed errors for the cases callers branch on (exit codes, tests); everything else carries
//! `anyhow` context naming the node, tensor or file at fault.

use std::path::PathBuf;

/// Errors that change what a caller does: each maps to an exit code in `main.rs`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model has no residual block to shift: nothing to do, and nothing is written.
    #[error("no residual block found in {path}: nothing to shift ({skipped} Add node(s) skipped, see above)")]
    NoResidualBlocks { path: PathBuf, skipped: usize },
    /// The flags, or the flags together with this model, cannot work.
    #[error("{0}")]
    Config(String),
    /// The input file is not a model this tool can read.
    #[error("{path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    /// The rewritten model did not pass validation in tract; no output was written.
    #[error("validation failed: {0}")]
    Validation(String),
}

impl Error {
    /// The process exit code documented in `--help` and the README.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoResidualBlocks { .. } => 1,
            _ => 2,
        }
    }
}
