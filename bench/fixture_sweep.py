#!/usr/bin/env python3
"""Every committed fixture x 16 flag sets: does the output load and run everywhere it should?

For each fixture in fixtures/models/ (ResNets, MobileNetV2, ConvNeXt-like, SE, pre-activation,
Keras and Paddle exports, float16 with and without float32 I/O, int8 QDQ, batch-1, dynamic H/W,
dynamo) and each flag set below, the tool runs twice: as users run it (validation in tract on) and
with `--no-validate`. The `--no-validate` output is then loaded and run in onnxruntime and
OpenVINO (f32) on the fixture's own input (online graphs: one frame of 2 streams, zero buffers in
their declared types) and must give finite outputs. Prints every failure: a validation that fails
where the rewrite was written, a runtime that cannot load or run the output, a non-finite output;
refusals the tool explains (a flag that does not apply to the model) are counted, not failures.
Checks that the outputs load and run, not their values (the tests and bench/runtime_matrix.py do
that); stop 32's sweep found two defects this way (float16 online buffers, QDQ temporal pool).

With `--tvm`, the default, `--online` and both `--mode inplace` rewrites also go through TVM (the
Relax ONNX frontend, built for `llvm`), compared with onnxruntime's output (1e-4 of its scale;
5e-3 for float16, plus 0.05 for QDQ rounding). That found a third defect
(a model with open H and W, whose clip view reshaped to a computed shape TVM cannot convert).

    python bench/fixture_sweep.py TSM_BIN [--tvm]
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
FLAGS = [[], ["--online"], ["--mode", "inplace"], ["--online", "--mode", "inplace"], ["--direction", "past"],
         ["--fold-div", "4"], ["--every", "2"], ["--shift-form", "batch"], ["--shift-form", "clip"],
         ["--shift-form", "tract"], ["--online", "--shift-form", "batch"], ["--online", "--shift-form", "tract"],
         ["--consensus", "avg"], ["--temporal-pool"], ["--group-order", "paddle"], ["--segments", "4"]]
TYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(double)": np.float64}


def fixture_input(name):
    """The fixture's input_0.pb (fp16 and dynamo variants share their float model's)."""
    for d in (name, name.replace("_fp16io", ""), name.replace("_fp16", ""), name.replace("_dynamo", "")):
        p = os.path.join(ROOT, "data", d, "input_0.pb")
        if os.path.exists(p):
            return numpy_helper.to_array(onnx.load_tensor(p))
    raise FileNotFoundError(name)


def feeds(inputs, x):
    """inputs: [(name, shape, onnx type)], the data input first; buffers as zeros."""
    (name, shape, typ), *rest = inputs
    step = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else x.shape[0]
    f = {name: x[:step].astype(TYPES[typ])}
    for n, s, t in rest:
        f[n] = np.zeros([step] + list(s[1:]), TYPES[t])
    return f


def finite(values):
    return all(np.isfinite(np.asarray(v, np.float32)).all() for v in values)


def tvm_run(path, feed, order):
    import tvm
    from tvm import relax
    from tvm.relax.frontend import onnx as rx_onnx
    mod = rx_onnx.from_onnx(onnx.load(path), shape_dict={k: list(v.shape) for k, v in feed.items()},
                            keep_params_in_input=False)
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(feed[n])) for n in order])
    return (out.numpy() if hasattr(out, "numpy") else out[0].numpy()).astype(np.float32)


def main():
    tool = sys.argv[1]
    with_tvm = "--tvm" in sys.argv[2:]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    core = ov.Core()
    counts = {"rewrites": 0, "refused": 0, "failures": 0}
    work = tempfile.mkdtemp(prefix="sweep-")
    for model in sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx"))):
        name = os.path.basename(model)[:-5]
        x = fixture_input(name)
        for flags in FLAGS:
            online = "--online" in flags
            what = f"{name} {' '.join(flags) or '(default)'}"
            # Validation (and online buffers) need the frame size the model leaves open.
            extra = ["--input-shape", "3,32,32"] if name == "resnet_dynamic_hw" else []
            out = os.path.join(work, f"{name}.onnx")

            def fail(msg):
                counts["failures"] += 1
                print(f"FAIL {what}: {msg}", flush=True)

            validated = subprocess.run([tool, model, "-o", out] + flags + extra, capture_output=True, text=True)
            written = subprocess.run([tool, model, "-o", out, "--no-validate"] + flags + extra,
                                     capture_output=True, text=True)
            if written.returncode:
                counts["refused"] += 1
                continue
            counts["rewrites"] += 1
            if validated.returncode:
                fail("validation: " + validated.stderr.strip().splitlines()[-1][:300])
            xx = x[:2] if online else x
            try:
                s = ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
                inputs = [(i.name, i.shape, i.type) for i in s.get_inputs()]
                f = feeds(inputs, xx)
                want = s.run(None, f)
                if not finite(want):
                    fail("onnxruntime: non-finite output")
            except Exception as e:  # noqa: BLE001
                fail(f"onnxruntime: {str(e)[:300]}")
                continue
            try:
                m = core.read_model(out)
                m.reshape({i.get_any_name(): list(f[i.get_any_name()].shape) for i in m.inputs})
                cm = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                if not finite(cm.create_infer_request().infer(f).values()):
                    fail("OpenVINO: non-finite output")
            except Exception as e:  # noqa: BLE001
                fail(f"OpenVINO: {str(e)[:300]}")
            if with_tvm and flags in FLAGS[:4]:
                counts["tvm"] = counts.get("tvm", 0) + 1
                ref = np.asarray(want[0], np.float32)
                tol = (5e-3 if "fp16" in name else 1e-4) * max(1.0, float(np.abs(ref).max())) + (0.05 if "qdq" in name else 0)
                try:
                    d = float(np.abs(tvm_run(out, f, [n for n, _, _ in inputs]) - ref).max())
                    if not d <= tol:
                        fail(f"TVM: max |diff| from onnxruntime {d:.2e} > {tol:.2e}")
                except Exception as e:  # noqa: BLE001
                    fail(f"TVM: {(str(e).strip().splitlines() or [type(e).__name__])[-1][:300]}")
    print(f"{len(glob.glob(os.path.join(ROOT, 'models', '*.onnx')))} fixtures x {len(FLAGS)} flag sets: "
          f"{counts['rewrites']} rewrites ({counts.get('tvm', 0)} also in TVM), {counts['refused']} refused with a reason, "
          f"{counts['failures']} failures")


if __name__ == "__main__":
    main()
