#!/usr/bin/env python3
"""Full-size checks of the deployment formats (issue 9), each against PyTorch, in onnxruntime and
OpenVINO:

- batch 1: torchvision ResNet-50 exported with a fixed batch of 1 (TorchScript exporter, no
  dynamic_axes; and the dynamo exporter with static shapes), rewritten with default flags, run on
  2 clips of 8 frames at 224x224 against PyTorch's TSM;
- temporal pool + consensus: ResNet-50 (dynamic batch) with `--temporal-pool --consensus avg`
  against the paper's TemporalPool on layer2 and the mean over T/2 frames;
- float16: ResNet-18 and MobileNetV2 through onnxconverter_common (float16 I/O and keep_io_types)
  against PyTorch's float32 TSM; the float16 2D model's own distance to float32 is the yardstick.
  Offline, and `--online` streamed frame by frame (one stream, the first clip's 8 frames, buffers
  fed back in their declared type) against PyTorch's float32 past-only TSM.

OpenVINO runs with its inference precision pinned to f32 (its default on a CPU with AVX512-BF16,
this one, is bf16: 0.45 from the reference on ResNet-50, bf16's noise, not the rewrite's).

QDQ models: bench/qdq.py.

    python bench/verify_deploy.py            # writes bench/RESULTS-deploy.md
"""

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "fixtures"))
import overhead as oh  # noqa: E402
import verify_full as vf  # noqa: E402
from export_deploy import make_tsm_temporal_pool  # noqa: E402

ort.set_default_logger_severity(3)
BIN = os.environ.get("TSM_BIN", os.path.join(REPO, "target", "release", "tsm-rewrite"))
WORK = "/tmp/h-deploy"
T = 8


def tool(src, dst, *flags):
    t0 = time.time()
    p = subprocess.run([BIN, src, "-o", dst, *flags], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{src} {flags}: {p.stderr}")
    keep = [l for l in p.stderr.splitlines() if "block(s) found" in l or l.startswith(("validated", "note:", "  node", "exported"))]
    return keep, time.time() - t0


def ort_run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0].astype(np.float32)


def ov_run(path, x):
    _, cm = oh.ov_compile(path, x.shape[0], "f32")
    return np.asarray(cm(x)[cm.outputs[0]]).astype(np.float32)


def stream(run, ins, frames):
    """Frames [F, 3, H, W] one at a time through `run(feed) -> outputs`, zeros in the buffers first,
    each buffer in its declared type (`ins`: (name, shape, numpy type), the frame first)."""
    bufs = [np.zeros([1] + list(shape[1:]), typ) for _, shape, typ in ins[1:]]
    out = []
    for f in frames:
        res = run(dict(zip([n for n, _, _ in ins], [f[None].astype(ins[0][2])] + bufs)))
        out.append(np.asarray(res[0]).astype(np.float32))
        bufs = [np.asarray(b) for b in res[1:]]
    return np.concatenate(out)


def ort_stream(path, frames):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    typ = {"tensor(float16)": np.float16, "tensor(float)": np.float32}
    ins = [(i.name, i.shape, typ[i.type]) for i in s.get_inputs()]
    return stream(lambda feed: s.run(None, feed), ins, frames)


def ov_stream(path, frames):
    _, cm = oh.ov_compile(path, 1, "f32")
    typ = {"f16": np.float16, "f32": np.float32}
    ins = [(i.get_any_name(), list(i.get_partial_shape().get_min_shape()), typ[i.get_element_type().get_type_name()])
           for i in cm.inputs]
    req = cm.create_infer_request()
    return stream(lambda feed: [req.infer(feed)[o] for o in cm.outputs], ins, frames)


def export(model, path, batch1=False, dynamo=False):
    if os.path.exists(path):
        return
    x = torch.zeros(1 if batch1 else 2, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=18, external_data=False,
                              input_names=["input"], output_names=["logits"])
        else:
            kw = {} if batch1 else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"], **kw)


def row(rows, what, ref, outs, notes):
    scale = max(1.0, float(np.abs(ref).max()))
    cells = []
    for rt, y in outs:
        cells.append(f"{rt} {float(np.abs(y - ref).max()):.2e}")
    rows.append((what, " / ".join(cells), f"{scale:.2f}", notes))
    print(what, cells, notes, flush=True)


def main():
    os.makedirs(WORK, exist_ok=True)
    rows = []
    r50 = vf.build("resnet50")
    x = vf.make_input("resnet50", 224)  # 2 clips of 8 frames
    ref = vf.torch_run(vf.make_tsm(r50, "residual", "bidirectional", 8)[0], x)

    for dynamo in (False, True):
        src = os.path.join(WORK, f"resnet50_b1{'_dynamo' if dynamo else ''}.onnx")
        export(r50, src, batch1=True, dynamo=dynamo)
        dst = src.replace(".onnx", "_tsm.onnx")
        notes, secs = tool(src, dst)
        row(rows, f"ResNet-50, fixed batch 1 ({'dynamo' if dynamo else 'TorchScript'}), default flags",
            ref, [("ORT", ort_run(dst, x)), ("OpenVINO", ov_run(dst, x))], "; ".join(notes[:3]))

    src = os.path.join(WORK, "resnet50.onnx")
    export(r50, src)
    dst = os.path.join(WORK, "resnet50_tpool_avg.onnx")
    notes, _ = tool(src, dst, "--temporal-pool", "--consensus", "avg")
    y = vf.torch_run(make_tsm_temporal_pool(r50, vf.shift_sites), x)
    ref_tp = y.reshape(-1, T // 2, y.shape[-1]).mean(1)
    row(rows, "ResNet-50, --temporal-pool --consensus avg (output [2, 1000])", ref_tp,
        [("ORT", ort_run(dst, x)), ("OpenVINO", ov_run(dst, x))], "; ".join(n for n in notes if "validated" in n))

    from onnxconverter_common import float16
    for arch in ("resnet18", "mobilenet_v2"):
        m = vf.build(arch)
        xa = vf.make_input(arch, 224)
        ref_a = vf.torch_run(vf.make_tsm(m, "residual", "bidirectional", 8)[0], xa)
        ref_past = vf.torch_run(vf.make_tsm(m, "residual", "past", 8)[0], xa[:T])
        plain_a = vf.torch_run(m, xa)
        src = os.path.join(WORK, f"{arch}.onnx")
        export(m, src)
        for keep in (False, True):
            h = os.path.join(WORK, f"{arch}_fp16{'io' if keep else ''}.onnx")
            if not os.path.exists(h):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=keep), h)
            dst = h.replace(".onnx", "_tsm.onnx")
            notes, _ = tool(h, dst)
            feed = xa if keep else xa.astype(np.float16)
            noise = float(np.abs(ort_run(h, feed) - plain_a).max())
            row(rows, f"{arch} float16 ({'keep_io_types' if keep else 'float16 I/O'}) vs float32 TSM",
                ref_a, [("ORT", ort_run(dst, feed)), ("OpenVINO", ov_run(dst, feed))],
                f"float16 2D model vs float32: {noise:.2e}; " + ("tract: float32 copy (float16 Gemm)" if any("note:" in n for n in notes) else "tract: float16"))
            online = h.replace(".onnx", "_online.onnx")
            notes, _ = tool(h, online, "--online")
            row(rows, f"{arch} float16 ({'keep_io_types' if keep else 'float16 I/O'}) `--online`, per frame, vs float32 "
                "streaming TSM", ref_past, [("ORT", ort_stream(online, xa[:T])), ("OpenVINO", ov_stream(online, xa[:T]))],
                "tract: float32 copy (float16 Gemm)" if any("note:" in n for n in notes) else "tract: float16")

    with open(os.path.join(HERE, "RESULTS-deploy.md"), "w") as f:
        f.write("# Deployment formats at full size (bench/verify_deploy.py)\n\n")
        f.write("torchvision models with seeded random weights (bench/verify_full.py's build), 2 clips of 8 "
                "frames at 224x224, rewritten with the release binary; max |output - PyTorch reference| in "
                "onnxruntime and OpenVINO. QDQ models: RESULTS-qdq.md.\n\n")
        f.write("| model | max abs diff | max abs ref | notes |\n|---|---|---|---|\n")
        for r in rows:
            f.write("| " + " | ".join(r) + " |\n")
    print(open(os.path.join(HERE, "RESULTS-deploy.md")).read())


if __name__ == "__main__":
    main()
