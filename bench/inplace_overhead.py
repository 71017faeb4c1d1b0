#!/usr/bin/env python3
"""What `--mode inplace` costs against the default residual placement: ResNet-50 (224x224, T=8,
bench/overhead.py's models in --work), offline per clip and online per frame, in onnxruntime
(default session options), OpenVINO f32 (online also with the buffers as states) and tract, paired
interleaved rounds with bench/overhead.py's harness (a null row for the harness's noise; each row a
ratio to the 2D model in the same rounds).

Rows: `residual` (the default rewrite), `inplace` (`--mode inplace`), `inplace batch` (`--mode
inplace --shift-form batch`: no site splits its convolutions, the form every inplace site took online
before the stream form took inplace placement), `inplace tract` (`--mode inplace --shift-form
tract`, tract's own forms), and any `--variant NAME=PATH` (offline) or `--online-variant NAME=PATH`.
Each inplace row is first checked in onnxruntime against PyTorch's TSM with inplace placement
(bench/verify_full.py's make_tsm; online: streamed frame by frame against the past-only offline
network): max |diff| <= 1e-4 * max(1, max |ref|). Also prints onnxruntime's standalone Adds and
Relus (bench/overhead.py's ort_fusion).

    python bench/inplace_overhead.py TSM_BIN [--rounds 21] [--frames 10] [--runtime ort ...]
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import overhead as oh  # noqa: E402
import verify_full as vf  # noqa: E402

ARCH = "resnet50"


def rewrite(tool, src, dst, flags):
    if not os.path.exists(dst):
        subprocess.run([tool, src, "-o", dst, "--no-validate"] + flags, check=True, capture_output=True)
    return dst


def references(x):
    model = vf.build(ARCH)
    with torch.no_grad():
        clip = vf.make_tsm(model, "inplace", "bidirectional", oh.FOLD_DIV)[0](torch.from_numpy(x)).numpy()
        past = vf.make_tsm(model, "inplace", "past", oh.FOLD_DIV)[0](torch.from_numpy(x[:oh.T])).numpy()
    return clip, past


def named(v):
    name, _, path = v.partition("=")
    return name, path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tool")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--runtime", action="append", choices=["ort", "openvino", "tract"])
    ap.add_argument("--mode", choices=["offline", "online", "both"], default="both")
    ap.add_argument("--variant", action="append", default=[], help="NAME=PATH, an offline inplace model")
    ap.add_argument("--online-variant", action="append", default=[], help="NAME=PATH, an online inplace model")
    ap.add_argument("--work", default="/tmp/h-bench")
    args = ap.parse_args()
    runtimes = args.runtime or ["ort", "openvino", "tract"]
    modes = ["offline", "online"] if args.mode == "both" else [args.mode]

    p = oh.build(ARCH, args.work)
    d = os.path.dirname(p["plain"])
    offline = {"residual": p["tsm"],
               "inplace": rewrite(args.tool, p["plain"], os.path.join(d, "inplace.onnx"), ["--mode", "inplace"]),
               "inplace batch": rewrite(args.tool, p["plain"], os.path.join(d, "inplace_batch.onnx"),
                                        ["--mode", "inplace", "--shift-form", "batch"]),
               "inplace tract": rewrite(args.tool, p["plain"], os.path.join(d, "inplace_tract.onnx"),
                                        ["--mode", "inplace", "--shift-form", "tract"])}
    offline.update(named(v) for v in args.variant)
    online = {"residual": p["online"],
              "inplace": rewrite(args.tool, p["plain"], os.path.join(d, "online_inplace.onnx"),
                                 ["--online", "--mode", "inplace"]),
              "inplace batch": rewrite(args.tool, p["plain"], os.path.join(d, "online_inplace_batch.onnx"),
                                       ["--online", "--mode", "inplace", "--shift-form", "batch"]),
              "inplace tract": rewrite(args.tool, p["plain"], os.path.join(d, "online_inplace_tract.onnx"),
                                       ["--online", "--mode", "inplace", "--shift-form", "tract"])}
    online.update(named(v) for v in args.online_variant)

    x = np.load(p["ref"])["x"]
    clip_ref, past_ref = references(x)
    frames = x[:oh.T].reshape(oh.T, 1, *x.shape[1:])
    bad = []
    for name, path in offline.items():
        if name != "residual":
            e, t = oh.check_offline(path, clip_ref, x)
            oh.log(f"  exact? offline {name:<16} max|diff| {e:.2e} (tol {t:.2e}) {'ok' if e <= t else 'FAIL'}")
            bad += [name] if e > t else []
    for name, path in online.items():
        if name != "residual":
            e, t = oh.check_online(path, past_ref.reshape(oh.T, 1, -1), frames)
            oh.log(f"  exact? online  {name:<16} max|diff| {e:.2e} (tol {t:.2e}) {'ok' if e <= t else 'FAIL'}")
            bad += [name] if e > t else []
    if bad:
        sys.exit(f"not exact: {bad}")
    for name, path in {**{f"offline {k}": v for k, v in offline.items()}, "2d": p["plain"]}.items():
        f = oh.ort_fusion(path, d)
        oh.log(f"  onnxruntime, {name}: {f['Add']} standalone Add, {f['Relu']} Relu, {f['ReorderInput']} reorders in")

    rows = []
    for mode in modes:
        models = {"2d": p["plain"], "null": p["null"]}
        models.update(offline if mode == "offline" else online)
        if mode == "online":
            models.update({f"{k}{oh.STATE}": v for k, v in online.items()})
        models["__ref"] = p["ref"]
        for rt in runtimes:
            summ, ms = oh.bench(ARCH, rt, mode, models, args.rounds, args.frames)
            for n, s in summ.items():
                if n.endswith(oh.STATE) and rt != "openvino":
                    continue
                rows.append((mode, rt, n, s, ms))
                oh.log(f"  {mode:<7} {rt:<8} {n:<34} {oh.fmt(s)}")
    print("\n| mode | runtime | row | vs 2D: median [IQR] (min-max) | 2D ms |")
    print("|---|---|---|---|---|")
    for mode, rt, n, s, ms in rows:
        print(f"| {mode} | {rt} | {n} | {oh.fmt(s)} | {ms:.1f} |")


if __name__ == "__main__":
    main()
