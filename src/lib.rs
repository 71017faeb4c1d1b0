//! tsm-rewrite: turn a 2D residual CNN in ONNX into a TSM (Temporal Shift Module) video model by graph
//! surgery alone.
//!
//! The library reads like the pipeline it runs:
//! [`load`] → [`graph`] (dataflow + [`shapes`]) → [`blocks`] (find residual joins) → [`plan`] (which
//! tensors get a shift) → [`emit`] (the shift subgraphs, as a patch) → [`clip_batch`] (the batch
//! declared in clips) → [`write`] → [`validate`].
//! [`rewrite::run`] strings the stages together; `main.rs` only parses flags and prints.

pub mod batch_stats;
pub mod blocks;
pub mod clip_batch;
pub mod config;
pub mod dump;
pub mod emit;
pub mod error;
pub mod external;
pub mod fields;
pub mod graph;
pub mod load;
pub mod plan;
pub mod report;
pub mod rewrite;
pub mod shapes;
pub mod symbolic_batch;
pub mod tensor;
pub mod validate;
pub mod values;
pub mod widen;
pub mod write;

/// The ONNX protobuf types, generated from `proto/onnx.proto` by `build.rs`.
#[allow(clippy::all, missing_docs)]
pub mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use config::{Config, Consensus, Direction, GroupOrder, Mode, ShiftForm};
pub use error::Error;
