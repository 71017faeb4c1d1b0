#!/usr/bin/env python3
"""A model that leaves H and W open, in onnxruntime (stop 33): does the rewrite keep the 2D model's
fusions, and what does it cost per clip?

torchvision ResNet-50 (seeded weights, bench/verify_full.py) exported twice at opset 17, with open
batch, H and W and with a fixed 224x224; each rewritten by TSM_BIN with the default flags
(`--no-validate`). `undeclared` is the open rewrite with the shapes declared at the residual joins
taken out of its value_info: the tool declared them at commit 0dd71b7 only (src/frame_size.rs,
reverted after this script's runs); with any other build nothing is taken out and `declared` and
`undeclared` are the same graph, the tool's.
For each: the Adds and Relus onnxruntime leaves outside its convolutions, and max |diff| against
PyTorch's TSM on one clip. Then one clip of 8 frames at 224x224 per run, paired interleaved rounds
(the order reversed every other round), with one intra-op thread and with onnxruntime's default:
each model's time over its own 2D export's in the same round (the open models over the open 2D
export, a copy of which is the null row; the fixed rewrite over the fixed 2D export), the median
[interquartile range], and `declared` over `undeclared` round by round, next to a copy of
`undeclared` over itself (two sessions of one file differ by their memory, as the null row shows).
Appends to --out.

    python bench/open_hw_ort.py TSM_BIN [--rounds 31] [--out bench/RESULTS-open-hw.md]
"""
import argparse
import collections
import datetime
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import verify_full as vf  # noqa: E402

WORK = "/tmp/open-hw-ort"


def export(model, path, open_hw):
    axes = {"input": {0: "batch", 2: "height", 3: "width"} if open_hw else {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(8, 3, 224, 224),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes)


def undeclared(src, dst):
    """`src` without the value_info the tool declares at the joins (inputs of Add and Sum)."""
    m = onnx.load(src)
    joins = {i for n in m.graph.node if n.op_type in ("Add", "Sum") for i in n.input}
    keep = [v for v in m.graph.value_info if v.name not in joins]
    dropped = len(m.graph.value_info) - len(keep)
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep)
    onnx.save(m, dst)
    return dropped


def session(path, threads=0, optimized=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def unfused(path):
    opt = os.path.join(WORK, "optimized.onnx")
    session(path, optimized=opt)
    ops = collections.Counter(n.op_type for n in onnx.load(opt).graph.node)
    return ops["Add"], ops["Relu"]


def rounds(models, base, x, threads, n):
    sessions = {k: session(p, threads) for k, p in models.items()}
    for s in sessions.values():
        s.run(None, {"input": x})
    times = {k: [] for k in models}
    names = list(models)
    for r in range(n):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            sessions[k].run(None, {"input": x})
            times[k].append(time.perf_counter() - t0)
    return {k: (np.median(v) * 1e3, np.array(v) / np.array(times[base[k]])) for k, v in times.items()}


def cell(r):
    return f"{np.median(r):.3f} [{np.percentile(r, 25):.3f}-{np.percentile(r, 75):.3f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-open-hw.md"))
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    net = vf.build("resnet50")
    x = vf.make_input("resnet50", 224)[:8]
    ref = vf.torch_run(vf.make_tsm(net, "residual", "bidirectional", 8)[0], x)
    p = {k: os.path.join(WORK, f"{k}.onnx")
         for k in ("2d", "null", "declared", "undeclared", "undeclared_again", "2d_fixed", "fixed")}
    export(net, p["2d"], True)
    export(net, p["2d_fixed"], False)
    shutil.copy(p["2d"], p["null"])
    lines = []
    for src, dst in ((p["2d"], p["declared"]), (p["2d_fixed"], p["fixed"])):
        r = subprocess.run([args.tool, src, "-o", dst, "--no-validate"], capture_output=True, text=True, check=True)
        lines += [f"    {line}" for line in r.stderr.splitlines() if "H and W" in line]
    dropped = undeclared(p["declared"], p["undeclared"])
    shutil.copy(p["undeclared"], p["undeclared_again"])
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    out = [f"## ResNet-50, opset 17, {args.rounds} rounds ({datetime.datetime.now():%Y-%m-%d %H:%M})", "",
           f"onnxruntime {ort.__version__}; the tool printed:", ""] + lines + [
           "", f"`undeclared`: {dropped} value_info entries taken out.", "",
           "| model | Adds / Relus left unfused | max abs diff to PyTorch's TSM (tolerance " + f"{tol:.1e}) |",
           "|---|---|---|"]
    for k in ("2d", "declared", "undeclared", "2d_fixed", "fixed"):
        y = session(p[k]).run(None, {"input": x})[0]
        diff = "-" if k.startswith("2d") else f"{np.abs(y - ref).max():.1e}"
        out.append(f"| {k} | {' / '.join(map(str, unfused(p[k])))} | {diff} |")
    base = {k: "2d_fixed" if "fixed" in k else "2d" for k in p}
    out += ["", "Per clip, each model over its own 2D export in the same round: median [interquartile range]", "",
            "| model | one thread | onnxruntime's default threads |", "|---|---|---|"]
    res = [rounds(p, base, x, t, args.rounds) for t in (1, 0)]
    for k in p:
        out.append(f"| {k} | " + " | ".join(f"{r[k][0]:.0f} ms, {cell(r[k][1])}" for r in res) + " |")
    for t, r in zip(("one thread", "default threads"), res):
        for k in ("declared", "undeclared_again"):
            ratio = r[k][1] / r["undeclared"][1]
            out.append(f"\n{t}: {k} / undeclared round by round {cell(ratio)}, faster in "
                       f"{int((ratio < 1).sum())} of {len(ratio)}")
    text = "\n".join(out) + "\n"
    print(text)
    with open(args.out, "a") as f:
        if f.tell() == 0:
            f.write("# Open H and W in onnxruntime (bench/open_hw_ort.py)\n\n")
        f.write(text + "\n")


if __name__ == "__main__":
    main()
