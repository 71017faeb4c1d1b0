#!/usr/bin/env python3
"""Any 2D ONNX model and rewrites of it, timed per clip side by side: paired interleaved rounds
(bench/overhead.py's `measure`: the order rotates, two loads per model), in onnxruntime (default
session options), OpenVINO f32 and tract, one clip of 8 frames at the model's own input size
(`--size`, the height and width; `--clips N` for N clips a run), or with `--online` one frame per run, 10 frames per model per
round, the rewrites' buffers fed back as bench/overhead.py feeds them. Each row is the median over the rounds of the rewrite's time over
the 2D model's in the same round, [interquartile range], (min-max); `null` is the 2D file loaded
again. For architectures bench/overhead.py does not build (it makes its own ResNet-50, MobileNetV2
and ResNet-18 and checks them against PyTorch; check these with bench/verify_modern.py).

    python bench/paired_models.py --size 224 --rounds 9 plain.onnx default=tsm.onnx batch=tsm_batch.onnx
    python bench/paired_models.py --online --size 160 --rounds 11 plain.onnx default=online.onnx
    python bench/paired_models.py --rounds 31 --against default plain.onnx default=tsm.onnx rows=tsm_rows.onnx
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import overhead  # noqa: E402

RUNTIMES = {"ort": overhead.ort_offline, "openvino": overhead.ov_offline, "tract": overhead.tract_offline}
ONLINE = {"ort": overhead.ort_online, "openvino": overhead.ov_online, "tract": overhead.tract_online}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plain")
    ap.add_argument("rewrites", nargs="+", help="name=path")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--loads", type=int, default=2)
    ap.add_argument("--runtime", action="append", choices=list(RUNTIMES))
    ap.add_argument("--online", action="store_true", help="per frame: the rewrites are --online models")
    ap.add_argument("--clips", type=int, default=1,
                    help="offline: clips of T frames per run (tract's 3D convolutions slow down with more than one)")
    ap.add_argument("--segments", type=int, default=None,
                    help="offline: frames per clip (default bench/overhead.py's T, 8); 1 times a model on single frames")
    ap.add_argument("--against", metavar="NAME",
                    help="also each other rewrite's time over this rewrite's, round by round, and in how many rounds it was below")
    args = ap.parse_args()
    overhead.HW = args.size  # tract's input fact
    t = args.segments or overhead.T
    batch = 1 if args.online else args.clips * t
    x = np.random.default_rng(0).standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
    models = {"2d": args.plain, "null": args.plain, **dict(r.split("=", 1) for r in args.rewrites)}
    what = "one frame" if args.online else f"{args.clips} clip(s) of {t} frames a run"
    print(f"{os.path.basename(args.plain)}, {what} at {args.size}, {args.rounds} rounds, {args.loads} loads per model")
    for rt in args.runtime or list(RUNTIMES):
        load = (ONLINE if args.online else RUNTIMES)[rt]
        runs = {name: [load(path, x) for _ in range(args.loads)] for name, path in models.items()}
        ratios, times = overhead.measure(runs, args.rounds, reps=10 if args.online else 1, log_=lambda *a: None)
        cells = "; ".join(f"{name} {overhead.fmt(overhead.summarize(v))}" for name, v in ratios.items())
        print(f"  {rt} (2D {np.median(times['2d']) * 1e3:.1f} ms): {cells}", flush=True)
        if args.against:
            for name in models:
                if name in ("2d", "null", args.against):
                    continue
                r = np.array(times[name]) / np.array(times[args.against])
                print(f"    {name} / {args.against}: {overhead.fmt(overhead.summarize(list(r)))}, "
                      f"below 1 in {int((r < 1).sum())} of {len(r)} rounds", flush=True)


if __name__ == "__main__":
    main()
