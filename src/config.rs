//! The validated settings of one rewrite. `main.rs` turns flags into a [`Config`]; the library trusts
//! a `Config` that passed [`Config::check`].

use crate::error::Error;

/// Where the shift goes inside a residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Shift only the residual branch's input; the shortcut sees the unshifted tensor ('blockres').
    Residual,
    /// Shift the block input for both paths ('block').
    Inplace,
}

/// Which frames the shifted channels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// One group from the next frame, one from the previous frame (the paper's offline TSM).
    Bidirectional,
    /// One group from the previous frame only (causal; what online TSM computes).
    Past,
}

/// Which of the two bidirectional groups takes the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupOrder {
    /// Channels [0, fold) take frame t+1, [fold, 2*fold) take t-1 (the paper's code, mmaction2).
    Tsm,
    /// Channels [0, fold) take frame t-1, [fold, 2*fold) take t+1 (Paddle's temporal_shift).
    Paddle,
}

/// The frame a moved group of `fold` channels takes its values from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbour {
    Next,
    Previous,
}

impl Neighbour {
    /// The group's name in emitted node names.
    pub fn name(self) -> &'static str {
        match self {
            Neighbour::Next => "next",
            Neighbour::Previous => "prev",
        }
    }
}

/// How the shift is written. Every form computes the same model (within rounding); what differs is
/// what each runtime runs fastest (README, "Which form for which runtime").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShiftForm {
    /// Only the shifted channels move: the convolutions around a site are split after them. Elsewhere
    /// the clip view offline, the batch form online. Fastest in onnxruntime, and in OpenVINO online.
    ///
    /// A site takes it where the shifted channels rounded up to a block, and the rest, are whole
    /// blocks of 16 channels and the convolutions split are all 1x1; offline its head moves by one
    /// Gather over rows (from opset 11).
    Stream,
    /// Along the batch axis, no Reshape (from opset 10).
    Batch,
    /// On a [N, T, C, H*W] clip view at every site (offline; always used before opset 10).
    Clip,
    /// Fastest in tract. Offline (from opset 11) every frame along one volume [1, C, N*T, H, W], each
    /// shift a depthwise convolution over the frames; online the batch form, the residual Adds kept
    /// out of tract's fused products.
    ///
    /// Offline: every 2D convolution a 3D one of depth 1, the shifts masked at the clips' borders
    /// (see `emit::volume`), and a depthwise convolution with more frames than outputs inside its
    /// input run on the frames in 2D: tract runs a batch of 2D frames, and a batch of volumes,
    /// slower than one volume (ResNet-50 and MobileNetV2, two clips a run: 0.72x and 0.56x of the
    /// 2D model); past an operator without a 5D form, the default's stream sites and the ScatterND
    /// form elsewhere stay 2D. Online: the batch form at every site (no convolution split), and
    /// where a block's residual Add reads the site's tensor after a 1x1 convolution, the tensor
    /// joined back from the site's two slices (`plan::Site::rejoined`): tract then keeps the Add out
    /// of that convolution's product, whose fused form it runs slowly at one stream.
    Tract,
    /// Fastest in OpenVINO per clip. Offline (from opset 11) each clip as a volume [N, C, T, H, W],
    /// each shift a depthwise convolution over T; online the default's graph.
    ///
    /// Every 2D convolution a 3D one of depth 1, which OpenVINO runs in its own layout (see
    /// `emit::volume`): OpenVINO f32 1.01x per ResNet-50 clip at stop 54, against 1.03x-1.04x in
    /// the same runs for the stream form's heads moved on a channels-last view (a Transpose to
    /// [N*T, H, W, s] around the Gather over their rows), which the sites past an operator without
    /// a 5D form keep; 1.01x-1.04x in the runs since. onnxruntime 1.37x, tract 0.75x with one clip
    /// a run but 3.6x with two.
    Openvino,
}

/// How the frames of a clip are joined into the clip's output (`--consensus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consensus {
    /// The mean over the T frames (the paper's default).
    Avg,
    /// The maximum over the T frames.
    Max,
}

impl Consensus {
    pub fn name(self) -> &'static str {
        match self {
            Consensus::Avg => "avg",
            Consensus::Max => "max",
        }
    }
}

/// Where the output's external tensors go, for an input that keeps tensors in external data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExternalData {
    /// Copy them into a data file beside the output, named after it (`OUTPUT.data`).
    Write,
    /// Refer to the input's data files as they are (the output must be in the input's folder).
    Refer,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Residual => "residual",
            Mode::Inplace => "inplace",
        }
    }
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Bidirectional => "bidirectional",
            Direction::Past => "past",
        }
    }
}

impl ShiftForm {
    pub fn name(self) -> &'static str {
        match self {
            ShiftForm::Stream => "stream",
            ShiftForm::Batch => "batch",
            ShiftForm::Clip => "clip",
            ShiftForm::Tract => "tract",
            ShiftForm::Openvino => "openvino",
        }
    }
}

impl GroupOrder {
    pub fn name(self) -> &'static str {
        match self {
            GroupOrder::Tsm => "tsm",
            GroupOrder::Paddle => "paddle",
        }
    }
}

/// Settings of one rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Frames per clip (T).
    pub segments: usize,
    /// fold = C / fold_div, rounded down.
    pub fold_div: usize,
    pub mode: Mode,
    pub direction: Direction,
    pub group_order: GroupOrder,
    /// Shift only every K-th residual block of each stage, counting from the stage's first block.
    pub every: usize,
    /// Per-frame [C, H, W] used where the model leaves them symbolic: for validation, and with
    /// `online` also pinned in the emitted graph, since the shift buffers have a fixed size.
    pub input_shape: Option<Vec<usize>>,
    /// Run the written model in tract before keeping it.
    pub validate: bool,
    pub shift_form: ShiftForm,
    /// Emit a per-frame graph with shift buffers instead of a clip graph (implies `Direction::Past`).
    pub online: bool,
    /// Offline: join each output's frames into one row per clip.
    pub consensus: Option<Consensus>,
    /// Offline: the paper's temporal pool at the second stage's input (T/2 frames after it).
    pub temporal_pool: bool,
    /// Rewrite even where an Add that may be a residual join cannot be judged for want of shapes
    /// (it stays unshifted and is listed); otherwise that is an error.
    pub skip_unknown: bool,
    pub external_data: ExternalData,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segments: 8,
            fold_div: 8,
            mode: Mode::Residual,
            direction: Direction::Bidirectional,
            group_order: GroupOrder::Tsm,
            every: 1,
            input_shape: None,
            validate: true,
            shift_form: ShiftForm::Stream,
            online: false,
            consensus: None,
            temporal_pool: false,
            skip_unknown: false,
            external_data: ExternalData::Write,
        }
    }
}

/// The most frames the tool writes constants for: a clip (`--segments`), and a fixed batch, whose
/// frame masks, row indices and scatter indices are constants of one entry per frame (times the
/// moved channels, for the scatter and clip forms' indices where the frame size is open). Tens of
/// MB at this size; at 2^20 frames those two forms took 9-11 GB and minutes, at 4e9 (a typo, a
/// fuzzed file) `--shift-form batch` grew past 9 GB, and a fixed batch of 8e9 frames did the same
/// in the default form. TSM's clips are 8 to 64 frames.
pub const MAX_FRAMES: usize = 1 << 14;

/// The most channels a shifted tensor may declare. Real CNNs stay below 8,192; the scatter and
/// batch forms write constants with one entry per moved channel (per frame, for a fixed batch), so
/// a declared count near 2^62 (a weight whose dims its data does not have) made the tool panic
/// allocating them.
pub const MAX_CHANNELS: i64 = 1 << 16;

/// The most pixels (height x width) a shifted tensor may declare: 4096 x 4096, a 16K frame after a
/// ResNet stem. The OpenVINO form writes an index of one entry per pixel, which the tool aborted
/// allocating for a frame declared a million pixels square, and the online form slices each frame
/// at offsets up to C x H x W, which a fuzzed frame dim near 2^55 made overflow.
pub const MAX_PIXELS: i64 = 1 << 24;

/// Refuses a tensor whose height and width, where known, make more than [`MAX_PIXELS`] pixels.
pub fn check_pixels(block: &str, tensor: &str, (h, w): (i64, i64)) -> Result<(), crate::error::Error> {
    if h.checked_mul(w).is_some_and(|p| p <= MAX_PIXELS) {
        return Ok(());
    }
    Err(crate::error::Error::Config(format!(
        "node {block}: tensor '{tensor}' declares {h} x {w} pixels a frame, more than the {MAX_PIXELS} this tool \
         shifts (4096 x 4096)"
    )))
}

impl Config {
    /// The groups of `fold` channels that move, in channel order (group g is channels
    /// `[g*fold, (g+1)*fold)`), each with the frame it takes: the one table every form reads.
    pub fn moved_groups(&self) -> &'static [Neighbour] {
        match (self.direction, self.group_order) {
            (Direction::Bidirectional, GroupOrder::Tsm) => &[Neighbour::Next, Neighbour::Previous],
            (Direction::Bidirectional, GroupOrder::Paddle) => &[Neighbour::Previous, Neighbour::Next],
            (Direction::Past, _) => &[Neighbour::Previous],
        }
    }

    /// Frames per clip at the model's outputs: T, or T/2 after `--temporal-pool`.
    pub fn output_segments(&self) -> usize {
        if self.temporal_pool {
            self.segments / 2
        } else {
            self.segments
        }
    }

    /// Checks what can be checked without a model.
    pub fn check(&self) -> Result<(), Error> {
        if self.segments == 0 {
            return Err(Error::Config("--segments must be at least 1".into()));
        }
        if self.segments > MAX_FRAMES {
            return Err(Error::Config(format!(
                "--segments {}: at most {MAX_FRAMES} frames a clip (the shift writes constants as long as a clip)",
                self.segments
            )));
        }
        if self.fold_div == 0 {
            return Err(Error::Config("--fold-div must be at least 1".into()));
        }
        if self.direction == Direction::Bidirectional && self.fold_div < 2 {
            return Err(Error::Config(
                "--fold-div must be at least 2 with --direction bidirectional (two groups of C/fold_div channels are shifted)"
                    .into(),
            ));
        }
        if self.online && self.direction == Direction::Bidirectional {
            return Err(Error::Config(
                "--online shifts channels from the previous frame only: the next frame is not available while streaming, \
                 so --direction bidirectional cannot be used (leave --direction out, or give --direction past)"
                    .into(),
            ));
        }
        if self.online && self.shift_form == ShiftForm::Clip {
            return Err(Error::Config(
                "--shift-form clip writes the offline shift on a clip view, which a per-frame graph does not have: \
                 --online takes --shift-form stream (the default), batch, tract or openvino"
                    .into(),
            ));
        }
        if let (true, Some(c)) = (self.online, self.consensus) {
            return Err(Error::Config(format!(
                "--consensus {} joins the T frames of each clip, but --online gives one frame at a time: average the \
                 per-frame outputs over the frames you stream instead",
                c.name()
            )));
        }
        if self.temporal_pool && self.online {
            return Err(Error::Config(
                "--temporal-pool takes the max over frames t-1, t and t+1: the next frame is not available while \
                 streaming, so it cannot be used with --online"
                    .into(),
            ));
        }
        if self.temporal_pool && (self.segments < 2 || self.segments % 2 != 0) {
            return Err(Error::Config(format!(
                "--temporal-pool halves the frames of each clip (stride 2), so --segments must be even, got {}",
                self.segments
            )));
        }
        if self.every == 0 {
            return Err(Error::Config("--every must be at least 1".into()));
        }
        if let Some(shape) = &self.input_shape {
            if shape.len() != 3 || shape.contains(&0) {
                return Err(Error::Config(format!(
                    "--input-shape takes the per-frame C,H,W with positive sizes (e.g. 3,224,224), got {shape:?}"
                )));
            }
        }
        Ok(())
    }

    /// The flags that reproduce this rewrite, recorded in the output's metadata.
    pub fn flags(&self) -> String {
        if self.online {
            // T only sets how many frames validation streams; the online graph does not depend on it.
            let form = if self.shift_form == ShiftForm::Stream {
                String::new()
            } else {
                format!(" --shift-form {}", self.shift_form.name())
            };
            return format!(
                "--online --fold-div {} --mode {} --every {}{form}",
                self.fold_div,
                self.mode.name(),
                self.every
            );
        }
        let mut s = format!(
            "--segments {} --fold-div {} --mode {} --direction {}",
            self.segments,
            self.fold_div,
            self.mode.name(),
            self.direction.name()
        );
        if self.direction == Direction::Bidirectional {
            s += &format!(" --group-order {}", self.group_order.name());
        }
        s += &format!(" --every {}", self.every);
        if self.shift_form != ShiftForm::Stream {
            s += &format!(" --shift-form {}", self.shift_form.name());
        }
        if self.temporal_pool {
            s += " --temporal-pool";
        }
        if let Some(c) = self.consensus {
            s += &format!(" --consensus {}", c.name());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_takes_the_past_only() {
        let online = Config { online: true, direction: Direction::Past, ..Config::default() };
        assert!(online.check().is_ok());
        assert_eq!(online.flags(), "--online --fold-div 8 --mode residual --every 1");
        let err = Config { direction: Direction::Bidirectional, ..online.clone() }.check().unwrap_err().to_string();
        assert!(err.contains("--direction bidirectional cannot be used"), "{err}");
        // One group of C/1 channels is allowed in the past direction, not two.
        assert!(Config { fold_div: 1, ..online.clone() }.check().is_ok());
        assert!(Config { fold_div: 1, ..Config::default() }.check().is_err());
    }

    #[test]
    fn segments_are_bounded() {
        assert!(Config { segments: MAX_FRAMES, ..Config::default() }.check().is_ok());
        let err = Config { segments: MAX_FRAMES + 1, ..Config::default() }.check().unwrap_err().to_string();
        assert_eq!(err, "--segments 16385: at most 16384 frames a clip (the shift writes constants as long as a clip)");
    }

    #[test]
    fn pixels_are_bounded_without_overflow() {
        assert!(check_pixels("b", "t", (4096, 4096)).is_ok());
        let err = check_pixels("b", "t", (4096, 4097)).unwrap_err().to_string();
        assert_eq!(err, "node b: tensor 't' declares 4096 x 4097 pixels a frame, more than the 16777216 this tool shifts (4096 x 4096)");
        // A product past i64 is refused, not wrapped.
        assert!(check_pixels("b", "t", (1 << 62, 4)).is_err());
        assert!(check_pixels("b", "t", (i64::MAX, i64::MAX)).is_err());
    }
}
