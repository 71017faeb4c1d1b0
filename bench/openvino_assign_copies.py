#!/usr/bin/env python3
"""What the copies tsm_rewrite.openvino_stateful puts before some states' Assign save in OpenVINO.

An Assign shares its state's memory with the node that writes the buffer, unless that node writes in
place into another tensor's memory: a convolution into which OpenVINO fused a residual sum. There
the Assign copies the buffer every frame (OpenVINO's Memory::load, with a reorder). The helper puts
an exact copy, Maximum(x, x), before such an Assign (copy_in_place_sums, on by default). This script
compares, per frame, on models bench/overhead.py built (/tmp/h-bench/{arch}/plain.onnx, null.onnx,
online.onnx):

- which Assigns copy, read from OpenVINO's runtime model (the node that writes each state's buffer
  and the kernel it runs), with and without the copies;
- OpenVINO's own profile (PERF_COUNT, median over --profile-runs): the Assigns' time and the copies';
- end to end: bench/overhead.py's paired rounds (the order rotates), the 2D model, its null copy, the states without
  the copies and with them, the median ratio to the 2D model with its quartiles and range;
- that both forms give the same output bit for bit over a few frames.

    python bench/openvino_assign_copies.py --arch resnet50 --rounds 41
    python bench/openvino_assign_copies.py --arch resnet50 --precision default --rounds 21

Appends a section to --out (default bench/RESULTS-openvino-assign-copies.md).
"""
import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np
import openvino as ov

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from overhead import fmt, measure, ov_config, ov_read, summarize  # noqa: E402  (also puts the repo's python/ on the path)
from tsm_rewrite import openvino_stateful  # noqa: E402


def layer_type(node):
    rt = node.get_rt_info()
    return str(rt["layerType"].astype(str)) if "layerType" in rt else node.get_type_name()


def assign_writers(compiled):
    """For each state's Assign (MemoryOutput in the runtime model): the node that writes its buffer
    and that node's kernel."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        if layer_type(op) != "MemoryOutput":
            continue
        parent = op.input_value(0).get_node()
        kernel = str(parent.get_rt_info()["primitiveType"].astype(str))
        rows.append((layer_type(parent), kernel, parent.get_friendly_name()))
    return rows


def profile(compiled, frame, runs):
    """Median per-frame time of the Assigns and of the copies (ms), from OpenVINO's own profile."""
    req = compiled.create_infer_request()
    req.set_input_tensor(0, ov.Tensor(frame))
    assigns, copies = [], []
    for _ in range(3 + runs):
        req.infer()
        a = c = 0.0
        for p in req.profiling_info:
            if p.status != p.Status.EXECUTED:
                continue
            ms = p.real_time.total_seconds() * 1e3
            if p.node_type == "Assign":
                a += ms
            elif "copy_for_state" in p.node_name:
                c += ms
        assigns.append(a)
        copies.append(c)
    return statistics.median(assigns[3:]), statistics.median(copies[3:])


def outputs(compiled, frames):
    req = compiled.create_infer_request()
    out = []
    for f in frames:
        req.set_input_tensor(0, ov.Tensor(f))
        req.infer()
        out.append(req.get_output_tensor(0).data.copy())
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--work", default="/tmp/h-bench")
    ap.add_argument("--precision", choices=["f32", "default"], default="f32",
                    help="f32 pins OpenVINO's inference precision (exact); default leaves it (bf16 on AVX512-BF16)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--frames", type=int, default=10, help="frames per model per round")
    ap.add_argument("--profile-runs", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-openvino-assign-copies.md"), help="'-' for none")
    args = ap.parse_args()

    w = os.path.join(args.work, args.arch)
    core = ov.Core()
    config = ov_config("f32" if args.precision == "f32" else None)
    online = os.path.join(w, "online.onnx")
    models = {
        "2d": ov_read(core, os.path.join(w, "plain.onnx"), 1),
        "null": ov_read(core, os.path.join(w, "null.onnx"), 1),
        "states, no copies": openvino_stateful(online, core=core, copy_in_place_sums=False),
        "states (the helper)": openvino_stateful(online, core=core),
    }
    shape = tuple(models["2d"].inputs[0].get_partial_shape().to_shape())
    frame = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    compiled = {n: core.compile_model(m, "CPU", config) for n, m in models.items()}
    lines = [f"\n## {args.arch}, per frame, OpenVINO {ov.get_version()}, precision {args.precision}, "
             f"{args.rounds} rounds x {args.frames} frames ({time.strftime('%Y-%m-%d %H:%M')})\n"]

    frames = [np.random.default_rng(1 + t).standard_normal(shape, dtype=np.float32) for t in range(6)]
    a, b = (outputs(compiled[n], frames) for n in ("states, no copies", "states (the helper)"))
    same = np.array_equal(a.view(np.uint32), b.view(np.uint32))
    lines.append(f"Outputs over {len(frames)} frames, with and without the copies: "
                 f"{'identical bit for bit' if same else f'differ by up to {float(np.abs(a - b).max()):.3g}'}.\n")

    for n in ("states, no copies", "states (the helper)"):
        writers = assign_writers(compiled[n])
        by = collections.Counter(f"{t} ({k})" for t, k, _ in writers)
        prof = core.compile_model(models[n], "CPU", {**config, "PERF_COUNT": "YES"})
        assign_ms, copy_ms = profile(prof, frame, args.profile_runs)
        lines.append(f"- {n}: {len(writers)} states; their buffers written by "
                     + ", ".join(f"{c} {k}" for k, c in sorted(by.items()))
                     + f"; profile per frame: Assigns {assign_ms:.3f} ms, copies {copy_ms:.3f} ms")
        for t, k, name in writers:
            if t == "Convolution":
                lines.append(f"  - written in place by a convolution: {name}")

    def run(cm):
        r = cm.create_infer_request()
        r.set_input_tensor(0, ov.Tensor(frame))
        return r.infer

    ratios, times = measure({n: run(cm) for n, cm in compiled.items()}, args.rounds, warmup=3,
                            reps=args.frames, log_=None)
    lines.append("\n| model | ms per frame (median) | ratio to 2D: median [quartiles] (min-max) |\n|---|---|---|")
    for n in times:
        cell = fmt(summarize(ratios[n])) if n in ratios else "1"
        lines.append(f"| {n} | {statistics.median(times[n]) * 1e3:.2f} | {cell} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
