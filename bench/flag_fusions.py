#!/usr/bin/env python3
"""Which tool flags cost onnxruntime a fusion: each 2D export of bench/runtime_matrix.py's scratch
dir rewritten with each flag set below (`--no-validate`), and the standalone Add (or Sum) and Relu
nodes in onnxruntime's optimized graph (default session options) against the 2D model's. The 2D
ResNets and MobileNetV2 fuse every residual Add and Relu into their convolutions (0 left); a rewrite
that leaves more pays a pass over an activation for each.

    python bench/flag_fusions.py TSM_BIN [--work /tmp/h-matrix] [--hw 112] [--opsets 13 17 18-dynamo]
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import overhead  # noqa: E402  (ort_fusion: what onnxruntime's optimizer left standalone)

FLAGS = [[], ["--online"], ["--mode", "inplace"], ["--direction", "past"], ["--fold-div", "4"], ["--every", "2"],
         ["--shift-form", "batch"], ["--shift-form", "clip"], ["--shift-form", "tract"], ["--consensus", "avg"],
         ["--temporal-pool"], ["--online", "--shift-form", "batch"], ["--online", "--shift-form", "tract"],
         ["--online", "--mode", "inplace"], ["--group-order", "paddle"]]
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "timm_seresnet18"]


def standalone(path):
    """(Adds and Sums, Relus) in onnxruntime's optimized graph."""
    with tempfile.TemporaryDirectory() as d:
        c = overhead.ort_fusion(path, d)
    return c["Add"], c["Relu"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("--work", default="/tmp/h-matrix")
    ap.add_argument("--hw", type=int, default=112)
    ap.add_argument("--opsets", nargs="+", default=["13", "17", "18-dynamo"])
    args = ap.parse_args()
    print("| model | opset | 2D: Adds / Relus | flags that leave more (Adds / Relus, or the tool's error) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "tsm.onnx")
        for model in MODELS:
            for opset in args.opsets:
                src = os.path.join(args.work, f"{model}-op{opset}-{args.hw}.onnx")
                if not os.path.exists(src):
                    continue
                base = standalone(src)
                worse = []
                for flags in FLAGS:
                    r = subprocess.run([args.tool, src, "-o", out, "--no-validate"] + flags, capture_output=True,
                                       text=True)
                    label = " ".join(flags) or "default"
                    if r.returncode != 0:
                        worse.append(f"`{label}`: refused ({r.stderr.strip().splitlines()[-1][:90]}...)")
                    elif (n := standalone(out)) != base:
                        worse.append(f"`{label}`: {n[0]} / {n[1]}")
                print(f"| {model} | {opset} | {base[0]} / {base[1]} | {'; '.join(worse) or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
