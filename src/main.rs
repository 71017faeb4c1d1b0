//! The `tsm-rewrite` command: parse flags into a validated config, run the library's pipeline, print
//! the plan and what was checked on stderr, and exit with a documented code.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tsm_rewrite::config::ExternalData;
use tsm_rewrite::{report, rewrite, Config, Consensus, Direction, GroupOrder, Mode, ShiftForm};

const AFTER_HELP: &str = "\
Examples:
  tsm-rewrite resnet50.onnx -o tsm.onnx                       the paper's offline TSM (T=8, 1/8+1/8)
  tsm-rewrite resnet50.onnx -o tsm.onnx --consensus avg       one prediction per clip
  tsm-rewrite mobilenet_v2.onnx -o online.onnx --online       per frame, shift buffers in and out
  tsm-rewrite resnet50.onnx --dry-run --report -              what would be shifted, as JSON
  tsm-rewrite --completions bash > /etc/bash_completion.d/tsm-rewrite

Exit codes:
  0    the TSM model was written (and validated, unless --no-validate)
  1    no residual block was found: nothing to shift, nothing written
  2    bad input, bad flags, or failed validation: nothing written
  130  interrupted (Ctrl-C, SIGTERM): nothing written, no temporary file left";

/// Turn a 2D residual CNN in ONNX into a TSM (Temporal Shift Module) video model by graph surgery.
///
/// Finds every residual block, inserts a temporal shift of C/fold_div channels on its input, checks
/// the result by running it in tract, and writes it atomically. The model then takes clips of T
/// frames as a batch of [N*T, C, H, W]; with --online, one frame per stream at a time, with the
/// shift buffers as extra inputs and outputs.
#[derive(Parser, Debug)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    /// The 2D model to rewrite (ONNX file).
    #[arg(required_unless_present = "completions")]
    input: Option<PathBuf>,

    /// Print a completion script for this shell (bash, zsh, fish, elvish, powershell) and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    /// Where to write the TSM model (required unless --dry-run).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Frames per clip (T, 1 to 16384): the batch is read as N clips of T consecutive frames.
    #[arg(long, value_name = "T", default_value_t = 8)]
    segments: usize,

    /// Shift C/D channels per group (rounded down; a block where that is 0 is left unshifted).
    #[arg(long, value_name = "D", default_value_t = 8)]
    fold_div: usize,

    /// Where the shift goes inside each residual block.
    #[arg(long, value_enum, default_value_t = Mode::Residual)]
    mode: Mode,

    /// Which frames the shifted channels come from [default: bidirectional, or past with --online].
    #[arg(long, value_enum)]
    direction: Option<Direction>,

    /// Which bidirectional group takes the next frame (paddle: Paddle's temporal_shift order).
    #[arg(long, value_enum, default_value_t = GroupOrder::Tsm)]
    group_order: GroupOrder,

    /// Shift only every K-th residual block of each stage, counting from the stage's first block
    /// (the paper's code uses 2 for ResNet-101).
    #[arg(long, value_name = "K", default_value_t = 1)]
    every: usize,

    /// How the shift is written: the same model within rounding, each form fastest in some runtime
    /// (stream, the default: onnxruntime, OpenVINO per frame, TVM; openvino: OpenVINO per clip;
    /// tract: tract).
    ///
    /// Before opset 10 the offline shift is always the clip view. The README's "Which form for
    /// which runtime" has the measurements behind each.
    #[arg(long, value_enum, value_name = "FORM", default_value_t = ShiftForm::Stream)]
    shift_form: ShiftForm,

    /// Emit a per-frame (streaming) graph: each shift site gets a buffer input holding the previous
    /// frame's shifted channels and a buffer output with the current frame's, to feed back. Frame by
    /// frame it equals the offline --direction past model. T only sets how many frames validation
    /// streams (2*T).
    #[arg(long)]
    online: bool,

    /// Also join each clip's T frames into one output row (avg: the mean, the paper's default; max):
    /// an output of [N*T, K] becomes [N, K] under its own name, the per-frame output stays in the
    /// graph as OUTPUT/frames. Offline only.
    #[arg(long, value_enum, value_name = "HOW")]
    consensus: Option<Consensus>,

    /// The paper's temporal pool (make_temporal_pool): a max over time (kernel 3, stride 2, padding 1)
    /// at the input of the second stage, so the later stages and the outputs see T/2 frames per
    /// clip. Offline only; --segments must be even.
    #[arg(long)]
    temporal_pool: bool,

    /// Rewrite even where an Add that may be a residual join cannot be judged because the
    /// channels of its inputs are unknown (even to tract's analysis): it stays unshifted and is
    /// listed as skipped. Without this flag that is an error, so no model is ever written with
    /// some blocks silently left out.
    #[arg(long)]
    skip_unknown: bool,

    /// Per-frame C,H,W where the model leaves them symbolic (e.g. 3,224,224): for validation, and
    /// with --online also fixed in the emitted graph, since the buffers have a fixed size.
    #[arg(long, value_name = "C,H,W", value_parser = parse_shape)]
    input_shape: Option<FrameShape>,

    /// For an input whose tensors live in external data files: copy them into a data file beside
    /// the output named OUTPUT.data (write), or keep referring to the input's (refer; the output
    /// must then be written into the input's folder).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = ExternalData::Write)]
    external_data: ExternalData,

    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,

    /// Skip running the written model in tract.
    #[arg(long)]
    no_validate: bool,

    /// Also write what was found, planned, validated and written as JSON to FILE ('-': stdout);
    /// see the README for its fields.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Also write a readable text dump of the rewritten model here (for golden files in CI).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
}

/// `C,H,W` (a newtype, since clap reads a bare `Vec` as a repeated flag).
#[derive(Debug, Clone)]
struct FrameShape(Vec<usize>);

fn parse_shape(s: &str) -> Result<FrameShape, String> {
    s.split([',', 'x'])
        .map(|p| {
            p.trim().parse::<usize>().map_err(|_| format!("'{p}' is not a size; expected C,H,W such as 3,224,224"))
        })
        .collect::<Result<_, _>>()
        .map(FrameShape)
}

fn config(args: &Args) -> Config {
    Config {
        segments: args.segments,
        fold_div: args.fold_div,
        mode: args.mode,
        direction: args.direction.unwrap_or(if args.online { Direction::Past } else { Direction::Bidirectional }),
        group_order: args.group_order,
        every: args.every,
        input_shape: args.input_shape.as_ref().map(|s| s.0.clone()),
        validate: !args.no_validate,
        shift_form: args.shift_form,
        online: args.online,
        consensus: args.consensus,
        temporal_pool: args.temporal_pool,
        skip_unknown: args.skip_unknown,
        external_data: args.external_data,
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = config(args);
    if args.output.is_none() && !args.dry_run {
        return Err(tsm_rewrite::Error::Config(
            "give an output file with -o FILE, or --dry-run to only print the plan".into(),
        )
        .into());
    }
    let input = args.input.as_deref().expect("clap requires it without --completions");
    let prepared = rewrite::prepare(input, &config)?;
    eprint!("{}", report::plan(&prepared, &config));
    prepared.ensure_sites()?;
    if args.dry_run {
        if let Some(dump) = &args.dump {
            rewrite::write_dump(&prepared, dump)?;
        }
        write_report(args, &report::json(&prepared, &config, None, &[]))?;
        eprintln!("dry run: nothing written");
        return Ok(());
    }
    let output = args.output.as_deref().expect("checked above");
    let validated = rewrite::finish(&prepared, output, &config)?;
    if let Some(r) = &validated {
        eprint!("{}", report::validated(r));
    }
    // Only once the model is in place, so a failed run leaves no dump behind either.
    let mut files = vec![output.to_path_buf()];
    files.extend(rewrite::data_file_written(&prepared, output, &config));
    if let Some(dump) = &args.dump {
        rewrite::write_dump(&prepared, dump)?;
        files.push(dump.clone());
    }
    write_report(args, &report::json(&prepared, &config, validated.as_ref(), &files))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// Writes the JSON report where `--report` says: a file (atomically) or stdout for `-`.
fn write_report(args: &Args, report: &serde_json::Value) -> anyhow::Result<()> {
    let Some(path) = &args.report else { return Ok(()) };
    let text = serde_json::to_string_pretty(report)? + "\n";
    if path.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    tsm_rewrite::write::TempOutput::text(path, &text)?.persist()
}

/// The exit code of a run ended by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const INTERRUPTED: i32 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Args::command(), "tsm-rewrite", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // Ctrl-C or SIGTERM mid-run (validation can take minutes) ends the process without drops:
    // remove the temporary files first, so that nothing is left beside the output.
    let _ = ctrlc::set_handler(|| {
        tsm_rewrite::write::remove_unfinished();
        // The run goes on in the main thread meanwhile (see below); `exit` would run the C
        // library's exit handlers under it, `_exit` ends the process at once.
        // SAFETY: `_exit` takes no pointers and does not return.
        unsafe { libc::_exit(INTERRUPTED) }
    });
    let result = run(&args);
    if tsm_rewrite::write::removed_unfinished() {
        // The handler is exiting with its own code; an error here is likely its doing (a temporary
        // file removed under the run), not to be printed or exited with.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tsm-rewrite: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let code = e.downcast_ref::<tsm_rewrite::Error>().map_or(2, |t| t.exit_code());
            ExitCode::from(code)
        }
    }
}
