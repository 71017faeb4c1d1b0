#!/usr/bin/env python3
"""Where OpenVINO spends its time on each form: its own per-operator profile (PERF_COUNT), summed by
operator type and kernel, the median over --runs inferences, for models bench/overhead.py built.

    python bench/openvino_profile.py                         # resnet50 offline: plain, tsm, roundtrip
    python bench/openvino_profile.py --online                # resnet50 per frame: plain, online, online_batch
    python bench/openvino_profile.py --online --states       # the same, the buffers as OpenVINO states
    python bench/openvino_profile.py --precision bf16 --runs 21 a.onnx b.onnx
    python bench/openvino_profile.py --online --states --by-block a.onnx b.onnx   # summed by residual block

Offline runs one clip of 8 frames at 224x224, online one frame with every buffer input fed (random
values: the profile does not depend on them); the models take turns in each run. Every input and
output is an OpenVINO tensor set once, as bench/overhead.py runs them (until stop 61 each
inference took a dict of numpy inputs, whose copies were in the wall clock). Only the operators'
own times: the boundary (inputs and outputs crossing into OpenVINO, the buffers online) is in them
only as the reorders OpenVINO puts at the ports; bench/openvino_buffer_io.py times the ports
alone. Under the table, each model's inference by the wall clock (median, profiling on) and its
count of executed nodes. Appends a section to --out
(default bench/RESULTS-openvino-profile.md).
"""
import argparse
import collections
import os
import re
import statistics
import sys
import time

import numpy as np
import openvino as ov

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from overhead import ov_config, ov_read  # noqa: E402

W = "/tmp/h-bench/resnet50"


def compile_for_profile(core, path, online, precision, states=False):
    config = {**ov_config(precision), "PERF_COUNT": "YES"}
    if states and "tsm-rewrite.buffers" in onnx_metadata(path):
        from tsm_rewrite import openvino_stateful  # bench/overhead.py put python/ on the path
        model = openvino_stateful(path, streams=1, core=core)
    else:
        model = ov_read(core, path, 1 if online else 8)
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    # Set once and kept alive with the request: the inference then copies nothing in or out.
    tensors = [ov.Tensor(np.random.default_rng(i).standard_normal(tuple(p.get_shape()), dtype=np.float32))
               for i, p in enumerate(compiled.inputs)]
    tensors += [ov.Tensor(p.get_element_type(), p.get_shape()) for p in compiled.outputs]
    for port, t in zip(list(compiled.inputs) + list(compiled.outputs), tensors):
        req.set_tensor(port, t)
    for _ in range(3):
        req.infer(share_outputs=True)
    return req, tensors


def onnx_metadata(path):
    import onnx
    return {p.key for p in onnx.load(path, load_external_data=False).metadata_props}


def block(p):
    """The residual block a profiled node belongs to, by its name (`layer2/layer2.1`), or
    `states` for a state's read and write, `other` for the rest."""
    m = re.search(r"/(layer\d+/layer\d+\.\d+)/", p.node_name)
    return m.group(1) if m else "states" if p.node_type in ("ReadValue", "Assign") else "other"


def profile(core, paths, online, precision, runs, states=False, key=lambda p: f"{p.node_type} ({p.exec_type})"):
    """Per model: the median time per key (operator type and kernel, or `key(node)`), the node count
    per key, the median total. The models take turns within each run, so the machine's slow
    moments fall on all of them."""
    reqs = [compile_for_profile(core, p, online, precision, states) for p in paths]
    per_run = [[] for _ in paths]
    walls = [[] for _ in paths]
    counts = [collections.Counter() for _ in paths]
    for _ in range(runs):
        for k, (req, _) in enumerate(reqs):
            t0 = time.perf_counter()
            req.infer(share_outputs=True)
            walls[k].append((time.perf_counter() - t0) * 1e3)
            agg, count = collections.Counter(), collections.Counter()
            for p in req.profiling_info:
                if p.status != p.Status.EXECUTED:
                    continue
                agg[key(p)] += p.real_time.total_seconds() * 1e3
                count[key(p)] += 1
            per_run[k].append(agg)
            counts[k] = count
    out = []
    for k, runs_k in enumerate(per_run):
        keys = set().union(*runs_k)
        med = {key: statistics.median(a[key] for a in runs_k) for key in keys}
        out.append((med, counts[k], statistics.median(sum(a.values()) for a in runs_k), statistics.median(walls[k])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--online", action="store_true")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--states", action="store_true",
                    help="online models with their buffers as OpenVINO states (tsm_rewrite.openvino_stateful)")
    ap.add_argument("--by-block", action="store_true",
                    help="sum by residual block (from the node names), not by operator type")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-openvino-profile.md"),
                    help="'-' for none (the table is printed either way), as bench/overhead.py's")
    args = ap.parse_args()
    names = ["plain", "online", "online_batch"] if args.online else ["plain", "tsm", "roundtrip"]
    models = args.models or [f"{W}/{n}.onnx" for n in names]
    core = ov.Core()
    key = {"key": block} if args.by_block else {}
    res = [(os.path.basename(p), *r)
           for p, r in zip(models, profile(core, models, args.online, args.precision, args.runs, args.states, **key))]
    what = "one frame (online)" if args.online else "one clip of 8 frames"
    what += ", the buffers as OpenVINO states" if args.states else ""
    lines = [f"## {what}, {args.precision}, median over {args.runs} inferences", "",
             f"Each {'residual block' if args.by_block else 'operator type (kernel)'}: summed time in ms, and how "
             "many nodes ran in it.", "",
             f"| {'block' if args.by_block else 'operator (kernel)'} | " + " | ".join(n for n, *_ in res) + " |",
             "|---|" + "---|" * len(res)]
    keys = sorted(set().union(*(m for _, m, _, _, _ in res)), key=lambda k: -max(m.get(k, 0) for _, m, _, _, _ in res))
    if args.by_block:
        keys.sort()
    for k in keys if args.by_block else keys[:16]:
        lines.append(f"| {k} | " + " | ".join(f"{m.get(k, 0):.2f} (x{c.get(k, 0)})" for _, m, c, _, _ in res) + " |")
    lines.append("| **total** (median of the sums) | " + " | ".join(f"**{t:.1f}**" for _, _, _, t, _ in res) + " |")
    # The inference as the caller sees it (profiling on), for scale only: it is not the operators'
    # sum plus the rest (OpenVINO overlaps some of them; on ResNet-50 online it came out below it).
    lines.append("| inference, wall clock (median) | " + " | ".join(f"{w:.1f}" for *_, w in res) + " |")
    lines.append("| nodes | " + " | ".join(str(sum(c.values())) for _, _, c, _, _ in res) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out == "-":
        return
    new = not os.path.exists(args.out)
    with open(args.out, "a") as f:
        if new:
            f.write("# OpenVINO's profile by operator (bench/openvino_profile.py)\n\n"
                    "Models built by bench/overhead.py (ResNet-50 at 224). The operators' own times only; "
                    "the time at the graph's boundary is not in them. One run each on a shared machine.\n\n")
        f.write(text + "\n")


if __name__ == "__main__":
    main()
