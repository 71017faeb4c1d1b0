#!/usr/bin/env python3
"""The clip view against the batch form at sites the stream form does not take (issue 8): models
with no stream site, offline, in onnxruntime, OpenVINO (f32) and tract.

    python bench/unaligned_sites.py --rounds 21 mobilenet_v2 mobilenet_v3_large efficientnet_b0 timm:convnext_atto

torchvision models by name, timm ones as timm:<name>; seeded random weights with their norms
randomized and BN statistics calibrated as bench/verify_full.py does; exported at opset 17 with a
dynamic batch (bench/overhead.py's export), one clip of 8 frames at 224 per run. Rows, each a ratio
to the 2D model in the same paired, interleaved rounds (bench/overhead.py's measure): null (a copy
of the 2D model), batch (`--shift-form batch`), clip (`--shift-form clip`) and default (no flag;
the clip view at every site where the stream form does not apply). Before timing, the three
rewrites are checked against each other in onnxruntime (the batch form is the one the test suite
checks against PyTorch's TSM) and against the 2D model (the shift must change the output).
Models and rewrites go to --work (/tmp/h-unaligned); the table is appended to --out.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import overhead as oh  # noqa: E402
import verify_full as vf  # noqa: E402
import export as ref  # noqa: E402  (fixtures/export.py: randomize_norms)

RUNTIMES = [("onnxruntime", oh.ort_offline), ("OpenVINO f32", oh.ov_offline), ("tract", oh.tract_offline)]


def make(arch, work):
    path = os.path.join(work, arch.replace(":", "_") + ".onnx")
    if os.path.exists(path):
        return path
    torch.manual_seed(7)
    if arch.startswith("timm:"):
        import timm
        model = timm.create_model(arch[5:], pretrained=False, num_classes=1000)
    else:
        model = getattr(torchvision.models, arch)(weights=None)
    ref.randomize_norms(model, 8)
    model.eval()
    vf.calibrate_bn(model, np.random.default_rng(9).standard_normal((4, 3, 224, 224)).astype(np.float32), 10)
    oh.export(model, path)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="+")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--work", default="/tmp/h-unaligned")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-clip-carrier.md"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    x = np.random.default_rng(0).standard_normal((oh.T, 3, oh.HW, oh.HW)).astype(np.float32)
    lines = [f"## Sites the stream form does not take: `bench/unaligned_sites.py --rounds {args.rounds} "
             f"{' '.join(args.archs)}`", "",
             "Each cell: median ratio to the 2D model [interquartile range] (min-max) over the rounds; one clip of 8 "
             "frames at 224.", ""]
    for arch in args.archs:
        plain = make(arch, args.work)
        stem = plain[:-5]
        forms = {"2d": plain}
        m = onnx.load(plain)
        m.metadata_props.add(key="null", value="copy")
        onnx.save(m, stem + ".null.onnx")
        forms["null"] = stem + ".null.onnx"
        for name, flags in [("batch", ["--shift-form", "batch"]), ("clip", ["--shift-form", "clip"]), ("default", [])]:
            out = f"{stem}.{name}.onnx"
            p = subprocess.run([oh.BIN, plain, "-o", out, "--no-validate"] + flags, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{arch} {name}: {p.stderr.strip()}")
            forms[name] = out
        y = {k: ort.InferenceSession(v).run(None, {"input": x})[0] for k, v in forms.items()}
        tol = 1e-4 * max(1.0, float(np.abs(y["batch"]).max()))
        diffs = {k: float(np.abs(y[k] - y["batch"]).max()) for k in ("clip", "default")}
        moved = float(np.abs(y["batch"] - y["2d"]).max())
        print(f"{arch}: against the batch form {diffs} (tol {tol:.1e}); the shift moves the output by {moved:.2e}", flush=True)
        if max(diffs.values()) > tol or moved == 0.0:
            sys.exit(f"{arch}: the forms disagree or the shift does nothing")
        lines += [f"### {arch} (max |diff| against the batch form: clip {diffs['clip']:.1e}, default "
                  f"{diffs['default']:.1e}; tolerance {tol:.1e})", "",
                  "| row | " + " | ".join(f"{rt}" for rt, _ in RUNTIMES) + " |", "|---|" + "---|" * len(RUNTIMES)]
        cells = {k: [] for k in forms if k != "2d"}
        for rt, fn in RUNTIMES:
            fns = {k: fn(v, x) for k, v in forms.items()}
            ratios, times = oh.measure(fns, args.rounds, log_=lambda *a: None)
            for k, v in ratios.items():
                cells[k].append(oh.fmt(oh.summarize(v)))
            print(f"  {arch} {rt}: 2D {np.median(times['2d']) * 1e3:.1f} ms; " +
                  ", ".join(f"{k} {np.median(v):.3f}" for k, v in ratios.items()), flush=True)
        lines += [f"| {k} | " + " | ".join(v) + " |" for k, v in cells.items()] + [""]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
