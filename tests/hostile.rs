//! Bad input, end to end: every case gets a one-line message naming what is wrong and where, a
//! non-zero exit, no panic, no output or temporary file, and an untouched input. (Missing, folder,
//! empty and garbage files, zero folds, `--segments 0`, fixed batches and output = input are in
//! `cli.rs`; external data locations there too.)

mod common;

use common::*;
use prost::Message;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tsm_rewrite::onnx::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

fn basic() -> ModelProto {
    ModelProto::decode(&std::fs::read(model("resnet_basic")).unwrap()[..]).unwrap()
}

/// Runs the tool on `m` written to a temp folder; checks the failure contract and returns stderr.
fn refused(m: &[u8], extra: &[&str], message: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.onnx");
    std::fs::write(&input, m).unwrap();
    let out = dir.path().join("out.onnx");
    let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(extra);
    let o = tool(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(message), "expected '{message}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(files_in(dir.path()), ["in.onnx"], "something was left behind");
    assert_eq!(std::fs::read(&input).unwrap(), m, "the input changed");
    err
}

#[test]
fn a_model_truncated_at_any_byte_is_refused_or_still_a_model() {
    let bytes = std::fs::read(model("resnet_deep")).unwrap();
    let path = Path::new("resnet_deep.onnx");
    let mut decoded = 0;
    for len in 0..bytes.len() {
        let cut = bytes::Bytes::copy_from_slice(&bytes[..len]);
        match tsm_rewrite::load::decode(cut, path) {
            Err(e) => assert!(matches!(e, tsm_rewrite::Error::BadModel { .. }), "{len}: {e}"),
            // Cut between two top-level fields: a smaller, legal model. The rest of the pipeline
            // must still only succeed or fail cleanly on it.
            Ok(loaded) => {
                decoded += 1;
                let graph = loaded.model.graph.as_ref().unwrap();
                if let Ok(df) = tsm_rewrite::graph::Dataflow::build(graph) {
                    let shapes = tsm_rewrite::shapes::Shapes::infer(graph);
                    let found = tsm_rewrite::blocks::find(graph, &df, &shapes);
                    let _ = tsm_rewrite::plan::plan(graph, &df, &found, &shapes, &Default::default(), loaded.opset);
                }
            }
        }
    }
    // Only the cuts after the graph field decode (before and after opset_import, etc.).
    assert!(decoded < 8, "{decoded} truncated files decoded");
    // And end to end, at a few places: the header, inside the graph, inside a weight, near the end.
    for len in [1, 7, 200, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
        refused(&bytes[..len], &[], "not an ONNX model (protobuf decoding failed");
    }
}

#[test]
fn a_protobuf_that_is_not_a_model_is_refused() {
    // A TensorProto, such as the reference inputs next to the fixtures.
    let tensor = std::fs::read(data("resnet_basic").join("input_0.pb")).unwrap();
    refused(&tensor, &[], "not an ONNX model");
    // A model with no graph.
    let empty = ModelProto { ir_version: Some(8), producer_name: Some("x".into()), ..Default::default() };
    refused(&empty.encode_to_vec(), &[], "the model has no graph");
    // A graph without the default operator set.
    let mut m = basic();
    m.opset_import = vec![OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) }];
    refused(&m.encode_to_vec(), &[], "imports no default (ai.onnx) operator set");
}

#[test]
fn broken_graphs_are_refused_naming_the_node_and_tensor() {
    let mut m = basic();
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().position(|n| n.name() == "/layer1/layer1.0/conv1/Conv").unwrap();
    g.node[conv].input[0] = "nowhere".into();
    refused(&m.encode_to_vec(), &[], "node /layer1/layer1.0/conv1/Conv: input 'nowhere' is produced by no node");

    let mut m = basic();
    let g = m.graph.as_mut().unwrap();
    g.node[5].output[0] = g.node[3].output[0].clone();
    refused(
        &m.encode_to_vec(),
        &[],
        "node /layer1/layer1.0/conv2/Conv: output '/layer1/layer1.0/conv1/Conv_output_0' is already produced elsewhere \
         (duplicate tensor name)",
    );

    // Two initializers of one name (onnx.checker refuses it; onnxruntime takes the last).
    let mut m = basic();
    let g = m.graph.as_mut().unwrap();
    let first = g.initializer[0].clone();
    let name = first.name().to_string();
    g.initializer.push(first);
    refused(&m.encode_to_vec(), &[], &format!("initializer '{name}' is declared twice (duplicate tensor name)"));

    // Two graph outputs of one name.
    let mut m = basic();
    let g = m.graph.as_mut().unwrap();
    g.output.push(g.output[0].clone());
    refused(&m.encode_to_vec(), &[], "graph output 'logits' is listed twice");

    // A cycle: the stem's conv reads the last node's output.
    let mut m = basic();
    let g = m.graph.as_mut().unwrap();
    let last = g.node.last().unwrap().output[0].clone();
    g.node[0].input[0] = last.clone();
    refused(
        &m.encode_to_vec(),
        &[],
        &format!("node /conv1/Conv: input '{last}' is used before it is produced (nodes out of topological order, or a cycle)"),
    );
}

#[test]
fn unknown_operator_domains_pass_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = basic();
    m.opset_import.push(OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) });
    let g = m.graph.as_mut().unwrap();
    g.node.last_mut().unwrap().output[0] = "raw".into();
    let custom = NodeProto {
        op_type: Some("Calibrate".into()),
        domain: Some("com.example".into()),
        name: Some("/head/Calibrate".into()),
        input: vec!["raw".into()],
        output: vec!["logits".into()],
        ..Default::default()
    };
    g.node.push(custom.clone());
    let input = dir.path().join("custom.onnx");
    std::fs::write(&input, m.encode_to_vec()).unwrap();
    let out = dir.path().join("out.onnx");
    let o = tool(&[input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("warning: node /head/Calibrate: operator com.example::Calibrate is outside the default domain"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("8 residual block(s) found, 8 shifted"), "{}", stderr(&o));
    let written = ModelProto::decode(&std::fs::read(&out).unwrap()[..]).unwrap();
    assert_eq!(written.graph.unwrap().node.last().unwrap(), &custom);
    assert_eq!(written.opset_import, m.opset_import);
}

#[test]
fn fields_the_schema_does_not_know_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(model("resnet_basic")).unwrap();
    // ModelProto field 99 (varint 1), and GraphProto field 77 through a second, merged `graph`.
    bytes.extend([0x98, 0x06, 0x01, 0x3a, 0x03, 0xe8, 0x04, 0x05]);
    let input = dir.path().join("newer.onnx");
    std::fs::write(&input, &bytes).unwrap();
    let out = dir.path().join("out.onnx");
    let o = tool(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds fields this tool's ONNX schema (IR 13) does not know, which the output will not have: GraphProto field 77 (1x), ModelProto field 99 (1x)"),
        "{}",
        stderr(&o)
    );
    // Models the schema knows in full get no warning.
    let o = tool(&["fixtures/models/resnet_dynamo.onnx", "--dry-run"]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn an_output_folder_that_cannot_be_written_is_reported() {
    let m = std::fs::read(model("resnet_basic")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.onnx");
    std::fs::write(&input, &m).unwrap();
    // /proc/self exists but takes no new files, even for root.
    let o = tool(&[input.to_str().unwrap(), "-o", "/proc/self/out.onnx", "--no-validate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot create /proc/self/.out.onnx.tsm-rewrite-"), "{}", stderr(&o));
    // A file where the folder should be.
    let o = tool(&[input.to_str().unwrap(), "-o", &format!("{}/out.onnx", input.display())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("in.onnx is not a folder"), "{}", stderr(&o));
    assert_eq!(files_in(dir.path()), ["in.onnx"]);
}

/// A model that declares its frames a million pixels square: validation would have allocated 179,000
/// GiB for its input and the tool aborted (OOM, exit 134; a capacity-overflow panic at 3e9 pixels).
/// It is refused before any work, naming the input and the way on; without validation the rewrite
/// itself handles the size.
#[test]
fn an_input_too_large_to_validate_is_refused_up_front() {
    let mut m = basic();
    let dims = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap();
    let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = dims.value.as_mut() else { unreachable!() };
    for d in &mut t.shape.as_mut().unwrap().dim[2..] {
        d.value = Some(tsm_rewrite::onnx::tensor_shape_proto::dimension::Value::DimValue(8192));
    }
    let bytes = m.encode_to_vec();
    let err = refused(&bytes, &[], "validation would feed input 'input' [16, 3, 8192, 8192] (12.0 GiB");
    assert!(err.trim_end().ends_with("use --no-validate"), "{err}");
    refused(&bytes, &["--online"], "validation would feed input 'input' [32, 3, 8192, 8192]");
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), "in.onnx", &m);
    let out = dir.path().join("out.onnx");
    for extra in [&[][..], &["--online"]] {
        let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"];
        args.extend(extra);
        let o = tool(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

/// A frame declared a million pixels square (a shifted tensor of 500,000 x 500,000 pixels) is
/// refused even without validation: the OpenVINO form's index has an entry per pixel, which the
/// tool aborted allocating, and the online form's frame offsets (C x H x W) overflowed at 2^63, a
/// panic the fuzzer found.
#[test]
fn a_frame_of_absurdly_many_pixels_is_refused() {
    // resnet_wide's sites take the stream form, where the OpenVINO form aborted.
    for name in ["resnet_basic", "resnet_wide"] {
        let mut m = read_model(&model(name));
        let dims = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap();
        let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = dims.value.as_mut() else { unreachable!() };
        for d in &mut t.shape.as_mut().unwrap().dim[2..] {
            d.value = Some(tsm_rewrite::onnx::tensor_shape_proto::dimension::Value::DimValue(1_000_000));
        }
        let bytes = m.encode_to_vec();
        let openvino = ["--no-validate", "--shift-form", "openvino"];
        for extra in [&["--no-validate"][..], &openvino, &["--online", "--no-validate"]] {
            refused(&bytes, extra, "x 500000 pixels a frame, more than the 16777216 this tool shifts");
        }
    }
}

/// A fixed batch of 8e9 frames: the frame masks, constants of one entry per frame, grew the process
/// past 9 GB (even with `--no-validate`). It is refused up front offline; online (streams, no
/// per-frame constants) validation refuses its size and `--no-validate` writes it.
#[test]
fn a_fixed_batch_too_long_for_per_frame_constants_is_refused() {
    let with_batch = |b: i64| {
        let mut m = read_model(&model("resnet_dynamic_hw"));
        let dims = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap();
        let Some(tsm_rewrite::onnx::type_proto::Value::TensorType(t)) = dims.value.as_mut() else { unreachable!() };
        t.shape.as_mut().unwrap().dim[0].value =
            Some(tsm_rewrite::onnx::tensor_shape_proto::dimension::Value::DimValue(b));
        m
    };
    let m = with_batch(8_000_000_000);
    let bytes = m.encode_to_vec();
    for extra in [&[][..], &["--no-validate"]] {
        refused(&bytes, extra, "input 'input' has a fixed batch of 8000000000 frames, more than the 16384");
    }
    let online = ["--online", "--input-shape", "3,32,32"];
    refused(&bytes, &online, "validation would feed input 'input' [128000000000, 3, 32, 32]");
    let dir = tempfile::tempdir().unwrap();
    let input = write_model(dir.path(), "in.onnx", &m);
    let out = dir.path().join("out.onnx");
    let o = tool(&[&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"][..], &online].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // 2^60 streams of 16 frames: the count wrapped in usize and the run never ended.
    let bytes = with_batch(1 << 60).encode_to_vec();
    refused(&bytes, &online, "input 'input' [18446744073709551616, 3, 32, 32]");
}

/// A stem weight that declares 2^62 output channels over its 64 channels' data: the block's
/// tensor took those channels, the scatter form sized a per-channel index by them, and the tool
/// panicked allocating it (`--shift-form tract --no-validate`). A shifted tensor of more than
/// 65,536 channels is refused, naming the block and the tensor.
#[test]
fn a_tensor_declaring_absurdly_many_channels_is_refused() {
    let mut m = read_model(&model("resnet_bottleneck"));
    let w = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.dims.len() == 4).unwrap();
    w.dims[0] = 1 << 62;
    // With its data emptied, as the fuzz seeds have it: data of the wrong size is refused sooner.
    w.raw_data = None;
    let bytes = m.encode_to_vec();
    for extra in [&["--shift-form", "tract", "--no-validate"][..], &["--no-validate"], &["--online"], &[]] {
        refused(&bytes, extra, "declares 4611686018427387904 channels, more than the 65536 this tool shifts");
    }
}

/// A weight whose data is not the size its dims declare (every runtime refuses it) is refused on
/// load, naming the weight: before, the rewrite believed the dims, shifting channels that were not
/// there, and wrote the model (`--no-validate`; validation failed on it in tract).
#[test]
fn a_weight_whose_data_does_not_fit_its_dims_is_refused() {
    let original = read_model(&model("resnet_bottleneck"));
    let weight = original.graph.as_ref().unwrap().initializer.iter().find(|t| t.dims.len() == 4).unwrap();
    let (name, values) = (weight.name().to_string(), weight.dims.iter().product::<i64>());
    type Change = fn(&mut TensorProto);
    let cases: [(Change, String); 4] = [
        (|w| w.dims[0] *= 2, format!("{} values of FLOAT) but stores {} bytes of raw data", 2 * values, 4 * values)),
        (|w| w.dims[0] = 1 << 62, "but stores".to_string()),
        (|w| w.dims[1] = -3, "declares a negative dim (-3)".to_string()),
        (
            |w| {
                w.float_data = vec![0.0; 5];
                w.raw_data = None;
            },
            format!("{values} values of FLOAT) but stores 5 values"),
        ),
    ];
    for (change, message) in &cases {
        let mut m = original.clone();
        let w = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == name).unwrap();
        change(w);
        let bytes = m.encode_to_vec();
        for extra in [&["--no-validate"][..], &["--online"], &[]] {
            refused(&bytes, extra, &format!("initializer '{name}' declares"));
            refused(&bytes, extra, message);
        }
    }
}

/// Ctrl-C or SIGTERM during validation (minutes on a large model) exits 130 and leaves nothing
/// beside the output: before, the process died without drops and its hidden temporary files (the
/// rewrite, the offline reference) stayed in the user's folder.
#[test]
fn an_interrupted_run_leaves_no_temporary_file() {
    // As soon as the rewrite's temporary file appears (while it is written), and during validation.
    for (signal, after_ms) in [(libc::SIGINT, 0), (libc::SIGTERM, 0), (libc::SIGINT, 20), (libc::SIGINT, 300)] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.onnx");
        std::fs::copy(model("resnet_dynamic_hw"), &input).unwrap();
        let out = dir.path().join("out.onnx");
        // Validation at 512x512 takes seconds, the rewrite before it milliseconds.
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsm-rewrite"))
            .args([input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--input-shape", "3,512,512"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !files_in(dir.path()).iter().any(|f| f.ends_with(".tmp")) {
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it wrote its temporary file");
            assert!(start.elapsed().as_secs() < 60, "no temporary file after a minute");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "signal {signal} after {after_ms} ms: {status:?}");
        assert_eq!(files_in(dir.path()), ["in.onnx"], "signal {signal} after {after_ms} ms: something was left behind");
    }
}

/// Runs the tool with writes capped at `limit` bytes per file, as on a full disk (the write fails;
/// SIGXFSZ is ignored so that it fails with an error instead of killing the process).
fn tool_with_file_limit(args: &[&str], limit: u64) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsm-rewrite"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("the binary runs")
}

#[test]
fn a_full_disk_fails_cleanly_and_the_old_output_survives() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("tsm.onnx");
    std::fs::write(&out, b"the previous output").unwrap();
    let o = tool_with_file_limit(&["fixtures/models/resnet_basic.onnx", "-o", out.to_str().unwrap()], 64 * 1024);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("writing ") && stderr(&o).contains("File too large"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous output");
    assert_eq!(files_in(dir.path()), ["tsm.onnx"]);
}

#[test]
fn the_same_input_and_flags_give_the_same_bytes_on_any_core_count() {
    // The tool is single-threaded, and tract (validation) does not change what is written; pinning
    // the process to one core, or not, must not change a byte, offline or online.
    let dir = tempfile::tempdir().unwrap();
    for flags in [&["--mode", "inplace"][..], &["--online", "--fold-div", "4"][..]] {
        let mut outputs = vec![];
        for (k, pin) in [false, true, false].into_iter().enumerate() {
            let out = dir.path().join(format!("out{k}.onnx"));
            let mut cmd = if pin {
                let mut c = Command::new("taskset");
                c.args(["-c", "0", env!("CARGO_BIN_EXE_tsm-rewrite")]);
                c
            } else {
                Command::new(env!("CARGO_BIN_EXE_tsm-rewrite"))
            };
            let o = cmd
                .args(["fixtures/models/mobilenet_v2.onnx", "-o", out.to_str().unwrap()])
                .args(flags)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            outputs.push(std::fs::read(&out).unwrap());
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{flags:?}: outputs differ");
    }
}
