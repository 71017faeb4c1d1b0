#!/usr/bin/env python3
"""Every committed fixture x 16 flag sets: does the output load, run and match everywhere it should?

For each fixture in fixtures/models/ (ResNets, MobileNetV2, ConvNeXt-like, SE, pre-activation,
Keras and Paddle exports, float16 with and without float32 I/O, int8 QDQ, batch-1, dynamic H/W,
dynamo) and each flag set below, the tool runs twice: as users run it (validation in tract on) and
with `--no-validate`. The `--no-validate` output is then run on the fixture's own input (online
graphs: one frame of 2 streams, seeded random buffers in their declared types) in onnxruntime with
graph optimizations off, the reference arithmetic (its outputs must be finite), and compared with
it, every output:
- onnxruntime as users run it (optimizations on: QLinearConv fusions round a QDQ model their way);
- OpenVINO (f32) compiled as read, the batch (and any H and W the model leaves open) dynamic, which
  is what `core.compile_model(path)` does, and again reshaped to the feed's static shapes;
- tract (its Python bindings, each input's fact the shape fed, value_info kept; skipped, and said
  so, for a fixture whose 2D model tract does not run, the float16 ones);
- with `--tvm`, TVM (the Relax ONNX frontend, built for `llvm`), for the default, `--online` and
  both `--mode inplace` rewrites.
Prints every failure: a validation that fails where the rewrite was written, an output that
onnx.checker (full check) refuses, a runtime that cannot load or run the output, a non-finite output, a mismatch; refusals the tool explains (a flag that
does not apply to the model) are counted, not failures. PyTorch is not the reference here (the
tests and bench/runtime_matrix.py compare with PyTorch). Defects found this way: float16 online
buffers and the QDQ temporal pool (stop 32, when the sweep only ran the outputs), a model with open
H and W that TVM could not convert (stop 33, the first value checks, TVM only); OpenVINO's int8
consensus and `batch*8` left in the value_info of a QDQ temporal pool, which tract refuses (stop
34, every runtime compared).

With `--quantize`, every float32 fixture also goes through onnxruntime's `quantize_static` (QDQ
format, int8 weights per channel from opset 13 and per tensor before, uint8 activations, calibrated
on its input_0.pb; skipped, and said so, where onnxruntime cannot quantize it) into a temporary
QDQ model that is swept like the committed ones: QDQ forms of every architecture in the set (a
ResNet v1's strided 1x1 reading the shifted tensor, SE, ConvNeXt-like, Keras, Paddle), not only the
three committed QDQ fixtures.

Tolerance, every runtime: 1e-4 of the output's scale (5e-3 for float16) plus, for a QDQ model,
twice the larger of the fixture's own 2D model's distance from the reference in that runtime, on
the same input, and the output's quantization step (of the DequantizeLinear that writes it, through
Slices and Reshapes, and through a consensus's reduction, as a mean of values each within k steps
is). Runtimes round quantized values their own way: OpenVINO's 2D resnet_basic_qdq is two steps
(0.027) off, and onnxruntime's own optimized graph one step on the 2D model and two on its `--mode
inplace` rewrite, where tract and TVM agree with the reference exactly. An online buffer, an
activation inside the network fed random buffers upstream, is held to 4 steps of its own
quantization, or twice the runtime's distance at that tensor on the 2D model (run again with the
buffers' tensors as outputs) where that is more: rounding ties flip with a runtime's order of accumulation and the
flips compound with depth (quantize_static's resnet_deep: tract 2 steps off and OpenVINO 3 at
layer2's buffers, where the logits are one step off, as on the 2D model; rep_net's MobileOne sums,
each of many quantized terms: OpenVINO 9-10 steps off on the 2D model at the fifth block).

    python bench/fixture_sweep.py TSM_BIN [--tvm] [--quantize] [--only SUBSTRING]   # fixtures whose name has it
    python bench/fixture_sweep.py TSM_BIN [--tvm] --model a.onnx [--model b.onnx ...]  # exports of your own

With `--model`, the given exports are swept instead of the fixtures, on two clips of seeded random
frames at their declared size (e.g. bench/verify_modern.py's exports in /tmp/tsm-modern/).
"""
import glob
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import openvino as ov
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtimes import openvino_run, ort_run, ort_session, tract_run, tvm_run  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
FLAGS = [[], ["--online"], ["--mode", "inplace"], ["--online", "--mode", "inplace"], ["--direction", "past"],
         ["--fold-div", "4"], ["--every", "2"], ["--shift-form", "batch"], ["--shift-form", "clip"],
         ["--shift-form", "tract"], ["--online", "--shift-form", "batch"], ["--online", "--shift-form", "tract"],
         ["--consensus", "avg"], ["--temporal-pool"], ["--group-order", "paddle"], ["--segments", "4"]]
TYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(double)": np.float64}


def model_input(path):
    """For a model given with --model: two clips of seeded random frames at its declared size."""
    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [16] + [d.dim_value for d in dims[1:]]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


_tvm_2d = {}
# The tool's validation error where tract cannot load the 2D model either.
TRACT_LIMITED = "tract cannot run the input model either"


def tvm_fails_2d(model, x):
    """TVM's first error line on the 2D model itself, or None where it converts and runs it."""
    if model not in _tvm_2d:
        try:
            first = ort_session(model).get_inputs()[0]
            tvm_run(model, feeds([(first.name, first.shape, first.type)], x))
            _tvm_2d[model] = None
        except Exception as e:  # noqa: BLE001
            _tvm_2d[model] = (str(e).strip().splitlines() or [type(e).__name__])[-1][:120]
    return _tvm_2d[model]


def fixture_input(name):
    """The fixture's input_0.pb (fp16, dynamo and pre-processed variants share their float model's)."""
    for d in (name, name.replace("_fp16io", ""), name.replace("_fp16", ""), name.replace("_dynamo", ""),
              name.replace("_pre", "")):
        p = os.path.join(ROOT, "data", d, "input_0.pb")
        if os.path.exists(p):
            return numpy_helper.to_array(onnx.load_tensor(p))
    raise FileNotFoundError(name)


# Failures that are a runtime's, not the rewrite's, each with where it is told: reported as known.
KNOWN = {
    ("resnet_v1", "--temporal-pool", "tract"):
        "tract's declutter cannot pull the strided 1x1 convolution's Downsample over the pool's Reshape "
        "once the pooled tensor's value_info is read (\"Invalid axis\"; tract runs it with value_info "
        "ignored, as the tool's validation does; README, Deployment formats)",
}
# Any offline rewrite (the batch declared in clips, `batch*8`) of a model whose value_info declares
# every tensor, as quantize_static's output does: {fixture: (runtime, why)}.
KNOWN_OFFLINE = {
    "resnet_v1_qdq_sweep": (
        "tract", "tract's declutter fails on the ResNet v1 2D model itself, float or QDQ, once its value_info "
                 "declares the batch `batch*8` and the input's fact is concrete (with `batch` it runs; tract "
                 "runs the rewrite with value_info ignored, as the tool's validation does; README, Deployment "
                 "formats)"),
}


def quantized(model, x, work):
    """A QDQ copy of the float32 fixture `model` (None if onnxruntime cannot quantize it), calibrated
    on x in batches of 4 frames (or the model's fixed batch)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    name = os.path.basename(model)[:-5]
    dst = os.path.join(work, f"{name}_qdq_sweep.onnx")
    first = onnx.load(model, load_external_data=False).graph.input[0]
    step = first.type.tensor_type.shape.dim[0].dim_value or 4  # a fixed batch (batch-1 exports) or 4

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{first.name: x[i:i + step]} for i in range(0, len(x), step)])

        def get_next(self):
            return next(self.items, None)

    # Per-channel DequantizeLinear (its axis) needs opset 13; quantize_static writes it anyway.
    opset = max(o.version for o in onnx.load(model, load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
    try:
        quantize_static(model, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=opset >= 13,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        ort_session(dst)
    except Exception as e:  # noqa: BLE001
        print(f"not quantized: {name}: {str(e)[:200]}", flush=True)
        return None
    return dst


def feeds(inputs, x):
    """inputs: [(name, shape, onnx type)], the data input first; buffers seeded random values."""
    (name, shape, typ), *rest = inputs
    step = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else x.shape[0]
    f = {name: x[:step].astype(TYPES[typ])}
    rng = np.random.default_rng(7)
    for n, s, t in rest:
        f[n] = rng.standard_normal([step] + list(s[1:])).astype(TYPES[t])
    return f


def finite(values):
    return all(np.isfinite(np.asarray(v, np.float32)).all() for v in values)


def distance(got, want):
    return float(np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32)).max())


def tolerance(name, ref, own_distance, step, buffer):
    """own_distance: the runtime's distance on the 2D model, at the logits, or for an online
    buffer at the tensor the buffer is a slice of."""
    scale = max(1.0, float(np.abs(np.asarray(ref, np.float32)).max()))
    quantized = max(2 * own_distance, (4 if buffer else 2) * step) if "qdq" in name else 0.0
    return (5e-3 if "fp16" in name else 1e-4) * scale + quantized


# Nodes an output's quantization step carries through: they move values, or (the consensus's
# float copy Max(x, x), its ReduceMean or ReduceMax) keep each result within the largest distance
# of the values they read.
MOVES = {"Slice", "Reshape", "Identity", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Max", "ReduceMean",
         "ReduceMax"}


def output_steps(path):
    """{output: (the scale of the DequantizeLinear that writes it, through nodes that only move
    values (an online buffer is a Slice of one) or reduce them (a consensus), for a scalar scale,
    else 0; that DequantizeLinear's output, else None)}."""
    m = onnx.load(path, load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    steps = {}
    for o in m.graph.output:
        n = producer.get(o.name)
        while n is not None and n.op_type in MOVES:
            n = producer.get(n.input[0])
        steps[o.name] = (0.0, None)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in inits:
            scale = numpy_helper.to_array(inits[n.input[1]])
            if scale.size == 1:
                steps[o.name] = (float(scale.reshape(-1)[0]), n.output[0])
    return steps


def plain_distances(core, model, x, with_tvm, work, tensors=()):
    """How far each runtime is from the reference (onnxruntime, optimizations off) on the fixture's
    own 2D model: the rounding of a QDQ model the rewrite cannot be held to better than. {runtime:
    distance at the outputs}; with `tensors` (an online rewrite's buffers are slices of them), the
    2D model runs with those as outputs too, as the online graph has them, and `(runtime, tensor)`
    gives the distance there. Only those: an output changes what a runtime fuses (OpenVINO, with
    every quantized activation an output, computes rep_net's quantized copy as the reference does;
    with its five block outputs, it is 9-10 steps off at the fifth, its int8 sums of MobileOne's
    many quantized terms rounded its own way)."""
    path = model
    if tensors:
        m = onnx.load(model, load_external_data=False)
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
        path = os.path.join(work, "exposed_2d.onnx")
        onnx.save(m, path)
    s = ort_session(path, optimize=False)
    first = s.get_inputs()[0]
    f = feeds([(first.name, first.shape, first.type)], x)  # a fixed batch (batch-1 exports) takes its own
    names = [o.name for o in s.get_outputs()]
    want = s.run(None, f)
    crashes = any(n.op_type == "GroupNormalization" for n in onnx.load(path, load_external_data=False).graph.node)
    got = {} if crashes else {f"OpenVINO {how}": openvino_run(path, f, how == "static", core) for how in ("dynamic", "static")}
    got["onnxruntime"] = ort_run(path, f)
    try:
        got["tract"] = tract_run(path, f)
    except Exception:  # noqa: BLE001
        pass  # the sweep says so, and runs none of its rewrites in tract
    if with_tvm:
        got["TVM"] = tvm_run(path, f)
    own = {}
    for rt, outs in got.items():
        own[rt] = max(distance(g, w) for n, g, w in zip(names, outs, want) if n not in tensors)
        own.update({(rt, n): distance(g, w) for n, g, w in zip(names, outs, want) if n in tensors})
    return own


def main():
    # TVM renames every input whose name has a dot (our buffers' do), once per model.
    warnings.filterwarnings("ignore", message="Renaming name")
    tool = sys.argv[1]
    with_tvm = "--tvm" in sys.argv[2:]
    core = ov.Core()
    counts = {"rewrites": 0, "refused": 0, "failures": 0, "known": 0, "compared": 0}
    worst = {}
    work = tempfile.mkdtemp(prefix="sweep-")
    models = [(m, os.path.basename(m)[:-5]) for m in sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx")))]
    if "--quantize" in sys.argv[2:]:
        floats = [(m, n) for m, n in models if not any(k in n for k in ("qdq", "fp16"))]
        models += [(q, f"{n}_qdq_sweep") for m, n in floats
                   if (q := quantized(m, fixture_input(n), work)) is not None]
    if "--only" in sys.argv[2:]:
        only = sys.argv[sys.argv.index("--only") + 1]
        models = [(m, n) for m, n in models if only in n]
    given = [sys.argv[k + 1] for k, a in enumerate(sys.argv[:-1]) if a == "--model"]
    if given:  # models of your own (full-size exports) instead of the fixtures
        models = [(m, os.path.basename(m)[:-5]) for m in given]
    for model, name in models:
        x = model_input(model) if given else fixture_input(name.replace("_qdq_sweep", ""))
        own = plain_distances(core, model, x, with_tvm, work) if "qdq" in name else {}
        own_at = {}  # buffer tensors -> plain_distances with them as outputs
        # OpenVINO 2026.4 crashes the process (a segfault) compiling a GroupNormalization in f32,
        # the 2D model's too (the dynamo exporter writes one per GroupNorm from opset 21).
        ov_crashes = any(n.op_type == "GroupNormalization" for n in onnx.load(model, load_external_data=False).graph.node)
        try:
            first = ort_session(model).get_inputs()[0]
            tract_run(model, feeds([(first.name, first.shape, first.type)], x))
            tract_runs_2d = None
        except Exception as e:  # noqa: BLE001
            tract_runs_2d = str(e).strip().splitlines()[0][:200]
            print(f"tract does not run {name} itself ({tract_runs_2d}): its rewrites are not run in tract", flush=True)
        for flags in FLAGS:
            online = "--online" in flags
            what = f"{name} {' '.join(flags) or '(default)'}"
            # Validation (and online buffers) need the frame size the model leaves open.
            extra = ["--input-shape", "3,32,32"] if name.startswith("resnet_dynamic_hw") else []
            out = os.path.join(work, f"{name}_tsm.onnx")  # never the model's own path (a quantized copy is in work)

            def fail(msg):
                runtime = msg.split(":")[0]
                known = KNOWN.get((name, " ".join(flags), runtime))
                if runtime == "validation" and TRACT_LIMITED in msg:
                    known = "tract cannot load the 2D model either: the tool says so"
                if runtime == "TVM" and tvm_fails_2d(model, x):
                    known = f"TVM cannot convert the 2D model either ({tvm_fails_2d(model, x)})"
                if runtime.startswith("OpenVINO") and ov_crashes:
                    known = "OpenVINO 2026.4 crashes compiling a GroupNormalization in f32, the 2D model too: not run"
                if not known and not online and KNOWN_OFFLINE.get(name, ("",))[0] == runtime:
                    known = KNOWN_OFFLINE[name][1]
                counts["known" if known else "failures"] += 1
                print(f"{'KNOWN' if known else 'FAIL'} {what}: {msg}" + (f" ({known})" if known else ""), flush=True)

            def compare(runtime, got, want, names):
                counts["compared"] += 1
                for n, g, w in zip(names, got, want):
                    step, tensor = steps.get(n, (0.0, None))
                    buffer = n.endswith("buffer_out")
                    own_d = own_buffers.get((runtime, tensor), 0.0) if buffer else own.get(runtime, 0.0)
                    d, tol = distance(g, w), tolerance(name, w, own_d, step, buffer)
                    worst[runtime] = max(worst.get(runtime, (0.0, "")), (d / tol, f"{what}, {n}"))
                    if not d <= tol:
                        fail(f"{runtime}: output {n} max |diff| from the reference {d:.2e} > {tol:.2e}")

            validated = subprocess.run([tool, model, "-o", out] + flags + extra, capture_output=True, text=True)
            written = subprocess.run([tool, model, "-o", out, "--no-validate"] + flags + extra,
                                     capture_output=True, text=True)
            if written.returncode:
                counts["refused"] += 1
                print(f"refused {what}: {(written.stderr.strip().splitlines() or ['(no message)'])[-1][:200]}", flush=True)
                continue
            counts["rewrites"] += 1
            # What onnx.checker refuses, some runtime will too (a repeated initializer, stop 41:
            # onnxruntime and TVM took it with a warning).
            try:
                onnx.checker.check_model(out, full_check=True)
            except Exception as e:  # noqa: BLE001
                fail(f"onnx.checker: {str(e).splitlines()[0][:300]}")
            if validated.returncode:
                line = validated.stderr.strip().splitlines()[-1]
                msg = line[:300]
                if TRACT_LIMITED in line and TRACT_LIMITED not in msg:
                    msg += " ... " + TRACT_LIMITED
                fail("validation: " + msg)
            xx = x[:2] if online else x
            steps = output_steps(out)
            buffer_tensors = tuple(sorted({t for n, (_, t) in steps.items() if n.endswith("buffer_out") and t}))
            if "qdq" in name and buffer_tensors and buffer_tensors not in own_at:
                own_at[buffer_tensors] = plain_distances(core, model, x, with_tvm, work, buffer_tensors)
            own_buffers = own_at.get(buffer_tensors, {})
            try:
                s = ort_session(out, optimize=False)
                inputs = [(i.name, i.shape, i.type) for i in s.get_inputs()]
                names = [o.name for o in s.get_outputs()]
                f = feeds(inputs, xx)
                want = s.run(None, f)
                if not finite(want):
                    fail("onnxruntime: non-finite output")
                compare("onnxruntime", ort_run(out, f), want, names)
            except Exception as e:  # noqa: BLE001
                fail(f"onnxruntime: {str(e)[:300]}")
                continue
            for how in ("dynamic", "static"):
                if ov_crashes:
                    fail(f"OpenVINO {how}: not run")
                    continue
                try:
                    compare(f"OpenVINO {how}", openvino_run(out, f, how == "static", core), want, names)
                except Exception as e:  # noqa: BLE001
                    fail(f"OpenVINO {how}: {str(e)[:300]}")
            if tract_runs_2d is None:
                counts["tract"] = counts.get("tract", 0) + 1
                try:
                    compare("tract", tract_run(out, f), want, names)
                except Exception as e:  # noqa: BLE001
                    fail(f"tract: {(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}")
            if with_tvm and flags in FLAGS[:4]:
                counts["tvm"] = counts.get("tvm", 0) + 1
                try:
                    compare("TVM", tvm_run(out, f), want, names)
                except Exception as e:  # noqa: BLE001
                    fail(f"TVM: {(str(e).strip().splitlines() or [type(e).__name__])[-1][:300]}")
    print(f"{len(models)} models x {len(FLAGS)} flag sets: "
          f"{counts['rewrites']} rewrites ({counts.get('tract', 0)} also in tract, {counts.get('tvm', 0)} in TVM), "
          f"{counts['refused']} refused with a reason, "
          f"{counts['failures']} failures, {counts['known']} known (a runtime's, said where)")
    print("largest distance from the reference, as a fraction of its tolerance: "
          + "; ".join(f"{rt} {v:.2f} ({at})" for rt, (v, at) in sorted(worst.items())))


if __name__ == "__main__":
    main()
