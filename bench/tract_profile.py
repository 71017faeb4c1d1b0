#!/usr/bin/env python3
"""Where tract spends its time on each form: tract's own per-node profile (`profile_json`) of a
model, summed by operator, for models that bench/overhead.py built (one clip of 8 frames at 224).

    python bench/tract_profile.py                       # resnet50: plain, tsm (stream), batch
    python bench/tract_profile.py --runs 5 a.onnx b.onnx

Prints and writes bench/RESULTS-tract-profile.md: per model the sum of the operators' times (the
median over --runs profiles), and its biggest operators, tract's transposes (MoveAxis) split by
role. tract runs a 1x1 convolution on a batch of frames as one matrix product over all frames: it
moves the channel axis of the input in front of the batch (`move_k_in0`) and the output's back
behind it (`restore_out`); a convolution whose input is a channel Concat it runs as one product per
part (`concat-einsum`), each with its own `restore_out`.
"""
import argparse
import collections
import json
import os
import statistics

import numpy as np
import tract

HERE = os.path.dirname(os.path.abspath(__file__))


def role(node_name):
    """What a MoveAxis node does, from the name tract gives it."""
    kind = "input (move_k_in0)" if node_name.endswith("move_k_in0") else \
        "output (restore_out)" if node_name.endswith("restore_out") else "other"
    return kind + (", a part of a split Concat" if "concat-einsum" in node_name else "")


def profile(path, x, runs):
    m = tract.onnx().load(path)
    m.set_input_fact(0, ",".join(map(str, x.shape)) + ",f32")
    r = m.into_model().into_runnable()
    r.run([x])
    per_run = []
    for _ in range(runs):
        agg, count = collections.Counter(), collections.Counter()
        for n in json.loads(r.profile_json([x]))["nodes"]:
            op = n.get("op_name") or "?"
            if op == "MoveAxis":
                op = "MoveAxis: " + role(n.get("node_name") or "")
            agg[op] += n.get("secs_per_iter") or 0
            count[op] += 1
        per_run.append((agg, count))
    ops = set().union(*(a for a, _ in per_run))
    med = {op: statistics.median(a[op] for a, _ in per_run) for op in ops}
    return med, per_run[0][1]


def main():
    ap = argparse.ArgumentParser()
    w = "/tmp/h-bench/resnet50"
    ap.add_argument("models", nargs="*", default=[f"{w}/plain.onnx", f"{w}/tsm.onnx", f"{w}/batch.onnx"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-tract-profile.md"))
    args = ap.parse_args()
    x = np.random.RandomState(0).randn(8, 3, 224, 224).astype(np.float32)
    res = [(p, *profile(p, x, args.runs)) for p in args.models]
    lines = ["# tract's profile by operator (bench/tract_profile.py)", "",
             f"One clip of 8 frames at 224x224; the median over {args.runs} profiles of each operator's summed "
             "time (ms), and how many nodes of it the optimized model has. Op times only: the scheduling between "
             "nodes is not in them.", "",
             "| operator | " + " | ".join(os.path.basename(p) for p, _, _ in res) + " |",
             "|---|" + "---|" * len(res)]
    ops = sorted(set().union(*(m for _, m, _ in res)), key=lambda o: -max(m.get(o, 0) for _, m, _ in res))
    for op in ops[:18]:
        lines.append(f"| {op} | " + " | ".join(f"{m.get(op, 0) * 1e3:.1f} (x{c.get(op, 0)})" for _, m, c in res) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(m.values()) * 1e3:.0f}**" for _, m, _ in res) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
