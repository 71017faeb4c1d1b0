#!/usr/bin/env python3
"""An offline rewrite and an online one, run in OpenVINO f32, tract and TVM against onnxruntime's
outputs on the same input: for architectures bench/runtime_matrix.py cannot build a PyTorch
reference for (it builds torchvision's and timm's `layer1..4` ResNets). Check onnxruntime against
PyTorch first (bench/verify_modern.py); this says the other runtimes agree with it.

    python bench/runtimes_against_ort.py --size 160 OFFLINE.onnx ONLINE.onnx [--frames 8] [--no-tvm] [--no-openvino] [--no-tract]

Offline: 2 clips of 8 frames (TVM, untuned and slow: 1 clip). Online: one stream, --frames frames
(TVM: 4), each buffer output fed back, the largest logit difference over the frames. Prints each
runtime's max |diff| and the tolerance the other checks use, 1e-4 of the output's scale.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402


def ort_run(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return lambda feeds: s.run(None, dict(zip(names, feeds)))


def ov_run(path, batch):
    import openvino as ov
    core = ov.Core()
    cm = core.compile_model(overhead.ov_read(core, path, batch), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()
    return lambda feeds: [req.infer(dict(enumerate(feeds)))[o] for o in cm.outputs]


def tract_run(path, batch, shapes):
    r, binds = overhead.tract_runnable(path, batch, shapes)
    if binds:  # as bench/runtime_matrix.py's "(sym)" cells
        print(f"(tract: the batch kept as a symbol in the facts, bound as {binds})", flush=True)
    return lambda feeds: [v.to_numpy() for v in r.run(feeds)]


def tvm_run(path, batch):
    tvm, f, _ = overhead.tvm_compile(path, batch)

    def run(feeds):
        out = f(*[tvm.runtime.tensor(x) for x in feeds])
        return [o.numpy() for o in (out if hasattr(out, "__len__") else [out])]  # one output, or an Array
    return run


def input_shapes(path):
    return [[d.dim_value for d in v.type.tensor_type.shape.dim[1:]] for v in onnx.load(path, load_external_data=False).graph.input]


def offline(path, x, runtimes):
    ref = ort_run(path)([x])[0]
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    for name, make in runtimes:
        xs = x[:overhead.T] if name == "tvm" else x
        got = make(path, xs.shape[0])([xs])[0]
        print(f"offline {name:8s} max |diff| {float(np.abs(got - ref[:xs.shape[0]]).max()):.1e} (tolerance {tol:.1e})", flush=True)


def online(path, x, frames, runtimes):
    shapes = input_shapes(path)[1:]
    ref_run = ort_run(path)
    for name, make in runtimes:
        n = min(frames, 4) if name == "tvm" else frames
        run = make(path, 1)
        b_ref = [np.zeros([1] + s, np.float32) for s in shapes]
        b = [z.copy() for z in b_ref]
        worst, scale = 0.0, 1.0
        for t in range(n):
            r = ref_run([x[t:t + 1]] + b_ref)
            g = run([x[t:t + 1]] + b)
            b_ref, b = r[1:], g[1:]
            worst, scale = max(worst, float(np.abs(g[0] - r[0]).max())), max(scale, float(np.abs(r[0]).max()))
        print(f"online  {name:8s} max |diff| {worst:.1e} over {n} frames (tolerance {1e-4 * scale:.1e})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("offline")
    ap.add_argument("online")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--no-tvm", action="store_true")
    ap.add_argument("--no-openvino", action="store_true",
                    help="leave OpenVINO out (2026.4 crashes compiling a GroupNormalization in f32, on the 2D model too)")
    ap.add_argument("--no-tract", action="store_true",
                    help="leave tract out (it cannot load BiT's or NF-ResNet's 2D model: a BatchNormalization with three outputs)")
    args = ap.parse_args()
    x = np.random.default_rng(1).standard_normal((2 * overhead.T, 3, args.size, args.size)).astype(np.float32)
    img = [3, args.size, args.size]
    runtimes = [("openvino", ov_run)] if not args.no_openvino else []
    if not args.no_tract:
        runtimes.append(("tract", lambda p, n: tract_run(p, n, [img] + input_shapes(p)[1:])))
    if not args.no_tvm:
        runtimes.append(("tvm", tvm_run))
    offline(args.offline, x, runtimes)
    online(args.online, x, args.frames, runtimes)


if __name__ == "__main__":
    main()
