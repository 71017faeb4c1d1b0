"""The Python API on the committed fixtures: rewrite() and its report, errors, Stream against the
PyTorch streaming reference, and the command on the venv's PATH."""

import json
import os
import shutil
import subprocess
import sysconfig

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import tsm_rewrite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "fixtures", "models")
DATA = os.path.join(ROOT, "fixtures", "data")


def tensor(*parts):
    t = onnx.TensorProto()
    with open(os.path.join(DATA, *parts), "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def reference(path, x):
    """The first output of `path` on `x` in onnxruntime with graph optimizations off: the reference
    arithmetic (no fusion rounds a QDQ model its own way)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def openvino_f32(model, x):
    """The first output of `model` (a path, compiled as read, or an openvino.Model) on `x` in
    OpenVINO's CPU plugin with its precision pinned to f32."""
    import openvino as ov
    return ov.Core().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU",
                                   {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]


@pytest.mark.parametrize("form", ["stream", "tract"])
def test_rewrite_returns_the_report_and_the_model_matches_pytorch(tmp_path, form):
    out = tmp_path / "tsm.onnx"
    report = tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic.onnx"), out, shift_form=form)
    assert report["config"]["shift_form"] == form
    # --shift-form tract runs every frame along one volume, each shift a depthwise convolution over
    # the frames (the JSON report's `volume`), in onnxruntime too.
    shifts = sum(n.name.endswith("/Conv_time") for n in onnx.load(str(out)).graph.node)
    assert shifts == (8 if form == "tract" else 0)
    assert all(b["volume"] == (form == "tract") for b in report["blocks"])
    assert report["schema_version"] == tsm_rewrite.SCHEMA_VERSION
    assert report["shifted"] == 8 and all(b["shifted"] for b in report["blocks"])
    assert report["blocks"][0]["add"] == "/layer1/layer1.0/Add"
    assert report["blocks"][0]["fold"] == 1 and report["blocks"][0]["channels"] == 8
    assert report["validation"]["kind"] == "offline" and report["validation"]["clips"] == 2
    assert report["files"] == [str(out)]
    x = tensor("resnet_basic", "input_0.pb")
    want = tensor("resnet_basic", "residual-bidirectional-fd8", "output_0.pb")
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("name,form", [("resnet_bottleneck", "stream"), ("mobilenet_v2", "stream"),
                                       ("resnet_basic", "batch"), ("resnet_basic", "clip")])
def test_onnx_shape_inference_keeps_the_batch_symbol_on_every_residual_add(tmp_path, name, form):
    # ONNX's shape inference names each dimension it cannot infer `unk__N`; saved into the model (as
    # onnxsim and many users do), onnxruntime reads those names and cannot prove a residual Add's
    # inputs equal in shape: it leaves the Add and its Relu outside the convolution. The tool's
    # empty slices of x, first in the Concats whose other inputs lose the batch, keep the symbol.
    out = tmp_path / "tsm.onnx"
    report = tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), out, shift_form=form, validate=False)
    m = onnx.shape_inference.infer_shapes(onnx.load(str(out)))
    batch = m.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    dims = {v.name: v.type.tensor_type.shape.dim for v in m.graph.value_info}
    adds = [n for n in m.graph.node if n.op_type == "Add" and all(len(dims.get(i, [])) == 4 for i in n.input)]
    # every block's residual Add at least (the stream form splits some in two)
    checked = {n.name.removesuffix("/head").removesuffix("/tail") for n in adds}
    assert batch == "batch*8" and {b["add"] for b in report["blocks"]} <= checked
    for n in adds:
        for t in [*n.input, *n.output]:
            assert dims[t][0].dim_param == batch, f"{n.name}: {t} has batch {dims[t][0]}, not {batch}"


def test_flags_are_keywords(tmp_path):
    report = tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic.onnx"), None, dry_run=True,
                                 fold_div=4, mode="inplace", direction="past", every=2)
    assert report["config"]["mode"] == "inplace" and report["config"]["direction"] == "past"
    assert report["validation"] is None and report["files"] == []
    # every 2: each stage's first block, whose input has the previous stage's channels
    assert [b["fold"] for b in report["blocks"] if b["shifted"]] == [2, 2, 4, 8]
    assert sum(1 for b in report["blocks"] if b["not_shifted"]) == 4


def test_errors_carry_the_message_and_exit_code(tmp_path):
    with pytest.raises(tsm_rewrite.RewriteError) as e:
        tsm_rewrite.rewrite(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    assert e.value.returncode == 2 and "missing.onnx" in e.value.message
    with pytest.raises(tsm_rewrite.RewriteError) as e:
        tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic.onnx"), tmp_path / "o.onnx", online=True,
                            consensus="avg")
    assert e.value.returncode == 2 and "--online" in e.value.message
    assert not (tmp_path / "o.onnx").exists()


# The stream form takes 5 of resnet_bottleneck's six sites; none of resnet_basic's (between 3x3
# convolutions) nor of mobilenet_v2's (folds not whole blocks of 16). --shift-form tract takes none,
# and rejoins the three identity blocks' residual Adds (after 1x1 convolutions).
@pytest.mark.parametrize("name,sites,form,streamed,rejoined", [("resnet_basic", 8, "stream", 0, 0),
                                                               ("mobilenet_v2", 4, "stream", 0, 0),
                                                               ("resnet_bottleneck", 6, "stream", 5, 0),
                                                               ("resnet_bottleneck", 6, "tract", 0, 3)])
def test_stream_equals_the_pytorch_streaming_reference(tmp_path, name, sites, form, streamed, rejoined):
    out = tmp_path / "online.onnx"
    report = tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), out, online=True, shift_form=form)
    assert len(report["buffers"]) == sites and report["validation"]["kind"] == "online"
    assert report["config"]["shift_form"] == form
    assert sum(1 for b in report["blocks"] if b.get("stream_split")) == streamed
    assert sum(1 for b in report["blocks"] if b.get("rejoined")) == rejoined
    x = tensor(name, "input_0.pb")
    # PyTorch's streaming TSM (fixtures/export.py), equal to the offline past-only network frame by
    # frame: [frames, streams, 10]
    want = tensor(name, "online-residual-fd8", "output_0.pb")
    stream = tsm_rewrite.Stream(out, streams=2)
    tol = 1e-4 * max(1.0, np.abs(want).max())
    for rerun in range(2):
        returned = []
        for t in range(16):
            frame = np.stack([x[t], x[15 - t]])  # stream 0 forwards, stream 1 backwards
            got = stream.step(frame)["logits"]
            assert np.abs(got - want[t]).max() <= tol, (rerun, t)
            returned.append((got, got.copy()))
        # Each step's arrays are the caller's: no later step writes over them.
        assert all(np.array_equal(a, kept) for a, kept in returned)
        stream.reset()


# resnet_bottleneck's layer3.0 writes its head's residual sum into the downsample's memory, which
# the next site's buffer then is: the one site of the two models that gets a copy before its Assign.
@pytest.mark.parametrize("name, sinks, copies", [("resnet_basic", 8, 0), ("resnet_bottleneck", 6, 1)])
def test_openvino_states_equal_the_pytorch_streaming_reference(tmp_path, name, sinks, copies):
    import openvino as ov
    out = tmp_path / "online.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), out, online=True)
    model = tsm_rewrite.openvino_stateful(out, streams=2)
    assert len(model.inputs) == 1 and len(model.outputs) == 1 and len(model.get_sinks()) == sinks
    made = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name().endswith("/copy_for_state")]
    assert len(made) == copies, made
    plain = tsm_rewrite.openvino_stateful(out, streams=2, copy_in_place_sums=False)
    # f32: on a CPU with bf16, OpenVINO would otherwise compute in bf16
    core = ov.Core()
    requests = [core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
                for m in (model, plain)]
    x = tensor(name, "input_0.pb")
    want = tensor(name, "online-residual-fd8", "output_0.pb")
    tol = 1e-4 * max(1.0, np.abs(want).max())
    for rerun in range(2):
        for request in requests:
            request.reset_state()
        for t in range(16):
            got, without = (r.infer([np.stack([x[t], x[15 - t]])])[0] for r in requests)
            assert np.abs(got - want[t]).max() <= tol, (rerun, t)
            assert np.array_equal(got, without), (rerun, t)  # the copies change no bit


@pytest.fixture(scope="module")
def openvino_states_program(tmp_path_factory):
    """examples/openvino_states.cpp built as its header says, against the headers and library that
    the openvino wheel carries; skipped where there is no g++."""
    import openvino
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build examples/openvino_states.cpp")
    ov = os.path.dirname(openvino.__file__)
    found = os.listdir(os.path.join(ov, "libs")) if os.path.isdir(os.path.join(ov, "libs")) else []
    libs = sorted(f for f in found if f.startswith("libopenvino.so."))
    if not libs or not os.path.isdir(os.path.join(ov, "include")):
        pytest.skip(f"the openvino wheel at {ov} carries no C++ headers or libopenvino.so")
    exe = tmp_path_factory.mktemp("cpp") / "openvino_states"
    cmd = ["g++", "-std=c++17", "-O1", os.path.join(ROOT, "examples", "openvino_states.cpp"),
           "-I", os.path.join(ov, "include"), os.path.join(ov, "libs", libs[0]), f"-Wl,-rpath,{ov}/libs", "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return exe


@pytest.mark.parametrize("name, copies", [("resnet_basic", 0), ("resnet_bottleneck", 1)])
def test_the_cpp_openvino_states_example_equals_the_pytorch_streaming_reference(tmp_path, openvino_states_program,
                                                                               name, copies):
    out = tmp_path / "online.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), out, online=True)
    x = tensor(name, "input_0.pb")
    want = tensor(name, "online-residual-fd8", "output_0.pb")[:, 0]  # stream 0: the clip forwards
    x.astype(np.float32).tofile(tmp_path / "frames.f32")
    # With the 2D model as a third argument it also times both, frame by frame.
    run = subprocess.run([str(openvino_states_program), str(out), str(tmp_path / "frames.f32"),
                          os.path.join(MODELS, f"{name}.onnx")], capture_output=True, text=True, check=True)
    assert f"buffers as states, {copies} copied before their Assign" in run.stderr
    assert f"{len(x)} frames, " in run.stderr and " ms per frame (median), 2D model " in run.stderr, run.stderr
    got = np.array([[float(v) for v in line.split(":")[1].split()] for line in run.stdout.splitlines()])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    # Bad input: an offline model, and frames that are not whole.
    offline = tmp_path / "tsm.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), offline, validate=False)
    bad = subprocess.run([str(openvino_states_program), str(offline), str(tmp_path / "frames.f32")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "no 'tsm-rewrite.buffers' metadata" in bad.stderr
    (tmp_path / "part.f32").write_bytes(x[:1].astype(np.float32).tobytes()[:-4])
    bad = subprocess.run([str(openvino_states_program), str(out), str(tmp_path / "part.f32")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not whole frames" in bad.stderr


def test_the_cpp_openvino_states_example_reads_any_buffer_name(tmp_path, openvino_states_program):
    """Tensor names are any text: the metadata's JSON escapes a quote, a backslash and, as
    Python's json writes them, every character beyond ASCII (one of them a surrogate pair)."""
    out = tmp_path / "online.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic.onnx"), out, online=True)
    m = onnx.load(out)
    meta = {p.key: p for p in m.metadata_props}["tsm-rewrite.buffers"]
    buffers = json.loads(meta.value)
    renamed = {}
    for k, b in enumerate(buffers):
        for side in ("input", "output"):
            renamed[b[side]] = b[side] = f'{b[side]} "{k}" \\ \u00e9\U0001f600'
    for value in list(m.graph.input) + list(m.graph.output):
        value.name = renamed.get(value.name, value.name)
    for node in m.graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    meta.value = json.dumps(buffers)
    assert "\\ud83d\\ude00" in meta.value and '\\"' in meta.value
    onnx.save(m, tmp_path / "renamed.onnx")
    x = tensor("resnet_basic", "input_0.pb")
    want = tensor("resnet_basic", "online-residual-fd8", "output_0.pb")[:, 0]
    x.astype(np.float32).tofile(tmp_path / "frames.f32")
    run = subprocess.run([str(openvino_states_program), str(tmp_path / "renamed.onnx"), str(tmp_path / "frames.f32")],
                         capture_output=True, text=True, check=True)
    assert f"{len(buffers)} buffers as states" in run.stderr, run.stderr
    got = np.array([[float(v) for v in line.split(":")[1].split()] for line in run.stdout.splitlines()])
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_openvino_stateful_refuses_an_offline_model(tmp_path):
    out = tmp_path / "tsm.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic.onnx"), out)
    with pytest.raises(ValueError, match="tsm-rewrite.buffers"):
        tsm_rewrite.openvino_stateful(out)


def test_the_command_is_on_the_path():
    # The environment's scripts folder is what an activated venv puts on PATH.
    exe = shutil.which("tsm-rewrite", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    assert exe is not None and os.path.samefile(exe, tsm_rewrite.find_binary())
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.startswith("tsm-rewrite ")


@pytest.mark.parametrize("form", ["stream", "tract"])
@pytest.mark.parametrize("name", ["resnet_basic_qdq", "resnet_bottleneck_qdq_pc", "mobilenet_v2_qdq_pc"])
def test_openvino_runs_qdq_rewrites_with_the_batch_dynamic(tmp_path, name, form):
    # OpenVINO compiled a QDQ rewrite with its batch dynamic wrongly while the frame masks' ones
    # came from ConstantOfShape of the input's Shape (resnet_basic_qdq 0.81 off; the 2D model
    # 0.027), and `--shift-form tract`'s scatter positions from an Expand to it: the rewrite must
    # be no further from onnxruntime's reference arithmetic than the 2D model is, compiled as read.
    out = tmp_path / "tsm.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, f"{name}.onnx"), out, validate=False, shift_form=form)
    x = tensor(name, "input_0.pb")
    diffs = [float(np.abs(openvino_f32(path, x) - reference(path, x)).max())
             for path in (os.path.join(MODELS, f"{name}.onnx"), out)]
    assert diffs[1] <= max(2 * diffs[0], 1e-3), f"{name}: OpenVINO off by {diffs[1]} (2D model {diffs[0]})"


@pytest.mark.parametrize("consensus", ["avg", "max"])
@pytest.mark.parametrize("name", ["resnet_basic_qdq", "resnet_bottleneck_qdq_pc", "mobilenet_v2_qdq_pc"])
def test_openvino_reduces_every_clip_of_a_qdq_consensus(tmp_path, name, consensus):
    # OpenVINO 2026.4 averaged an int8 [N, T, K] wrongly for every clip but the first when its
    # low-precision passes moved the output's DequantizeLinear into the ReduceMean (resnet_basic_qdq
    # 1.9 off, mobilenet_v2_qdq_pc 1.4); the consensus now reduces a float copy. Reference: the
    # per-frame rewrite in onnxruntime, reduced over T here.
    import openvino as ov
    x = tensor(name, "input_0.pb")
    plain = os.path.join(MODELS, f"{name}.onnx")
    own = float(np.abs(openvino_f32(plain, x) - reference(plain, x)).max())
    frames, clips = tmp_path / "frames.onnx", tmp_path / "clips.onnx"
    tsm_rewrite.rewrite(plain, frames, validate=False)
    tsm_rewrite.rewrite(plain, clips, validate=False, consensus=consensus)
    per_frame = reference(frames, x)
    per_frame = per_frame.reshape(-1, 8, per_frame.shape[-1])
    want = per_frame.mean(1) if consensus == "avg" else per_frame.max(1)
    for static in (False, True):
        model = ov.Core().read_model(str(clips))
        if static:
            model.reshape({model.inputs[0].get_any_name(): list(x.shape)})
        got = openvino_f32(model, x)
        diff = float(np.abs(got - want).max())
        assert diff <= max(2 * own, 1e-3), f"{name} {consensus} static={static}: off by {diff} (2D model {own})"


def test_openvino_runs_a_float_site_of_a_qdq_model_with_a_dynamic_batch(tmp_path):
    # Before opset 12 (no Max of integers) the temporal pool, and so the shift of the pooled
    # tensor, run on floats in a QDQ model. With that site on a clip view, OpenVINO 2026.4 compiled
    # with the batch dynamic quantized the output of the convolution reading it wrongly (logits 0.175
    # off, 6.5 times the 2D model's own 0.027); such sites take the batch form now. resnet_basic_qdq
    # reads the same at opset 11, so it is declared that here.
    x = tensor("resnet_basic_qdq", "input_0.pb")
    m = onnx.load(os.path.join(MODELS, "resnet_basic_qdq.onnx"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 11
    plain, out = tmp_path / "opset11.onnx", tmp_path / "tsm.onnx"
    onnx.save(m, plain)
    tsm_rewrite.rewrite(plain, out, temporal_pool=True, validate=False)
    own = float(np.abs(openvino_f32(plain, x) - reference(plain, x)).max())
    diff = float(np.abs(openvino_f32(out, x) - reference(out, x)).max())
    assert diff <= max(2 * own, 1e-3), f"OpenVINO off by {diff} (2D model {own})"


def test_temporal_pool_keeps_a_qdq_model_quantized(tmp_path):
    # With --temporal-pool the pool runs on the quantized tensor and the shift of the pooled tensor
    # keeps its QDQ form, so onnxruntime fuses every convolution into QLinearConv as in the 2D model
    # (resnet_basic_qdq: 20 of 20; with a float pool two stayed float Convs).
    out = tmp_path / "tsm.onnx"
    tsm_rewrite.rewrite(os.path.join(MODELS, "resnet_basic_qdq.onnx"), out, temporal_pool=True, validate=False)
    counts = []
    for path in (os.path.join(MODELS, "resnet_basic_qdq.onnx"), str(out)):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
        counts.append((ops.count("QLinearConv"), ops.count("Conv")))
    assert counts[1] == counts[0] and counts[0][1] == 0, counts
