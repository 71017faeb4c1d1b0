#!/usr/bin/env python3
"""Where tract spends its time on each form: tract's own per-node profile (`profile_json`) of a
model, summed by operator, for models that bench/overhead.py built (one clip of 8 frames at 224).

    python bench/tract_profile.py                       # resnet50: plain, tsm (stream), batch
    python bench/tract_profile.py --runs 5 a.onnx b.onnx
    python bench/tract_profile.py --clips 2 --nodes DepthWiseConv --out - plain.onnx tract.onnx

Prints and writes bench/RESULTS-tract-profile.md: per model the sum of the operators' times (the
median over --runs profiles), and its biggest operators, tract's transposes (MoveAxis) split by
role. tract runs a 1x1 convolution on a batch of frames as one matrix product over all frames: it
moves the channel axis of the input in front of the batch (`move_k_in0`) and the output's back
behind it (`restore_out`); a convolution whose input is a channel Concat it runs as one product per
part (`concat-einsum`), each with its own `restore_out`.

`--clips N` profiles N clips of 8 frames a run (a symbolic batch pinned to 8N); the models take
turns within each run, so that a change in the machine's load falls on all of them. `--nodes OP`
adds each node of operator OP, with its median time, per model (where a form's cost sits).
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


def runnable(path, x):
    m = tract.onnx().load(path)
    m.set_input_fact(0, ",".join(map(str, x.shape)) + ",f32")
    r = m.into_model().into_runnable()
    r.run([x])
    return r


def summed(nodes):
    agg, count = collections.Counter(), collections.Counter()
    for n in nodes:
        op = n.get("op_name") or "?"
        if op == "MoveAxis":
            op = "MoveAxis: " + role(n.get("node_name") or "")
        agg[op] += n.get("secs_per_iter") or 0
        count[op] += 1
    return agg, count


def profiles(paths, x, runs):
    """Each model's node lists, one per run; the models take turns within a run."""
    rs = [runnable(p, x) for p in paths]
    per_model = [[] for _ in paths]
    for _ in range(runs):
        for r, out in zip(rs, per_model):
            out.append(json.loads(r.profile_json([x]))["nodes"])
    return per_model


def by_operator(per_run):
    sums = [summed(nodes) for nodes in per_run]
    ops = set().union(*(a for a, _ in sums))
    return {op: statistics.median(a[op] for a, _ in sums) for op in ops}, sums[0][1]


def by_node(per_run, op):
    times = collections.defaultdict(list)
    for nodes in per_run:
        for n in nodes:
            if n.get("op_name") == op:
                times[n.get("node_name") or "?"].append(n.get("secs_per_iter") or 0)
    return sorted(((name, statistics.median(t)) for name, t in times.items()), key=lambda nt: -nt[1])


def main():
    ap = argparse.ArgumentParser()
    w = "/tmp/h-bench/resnet50"
    ap.add_argument("models", nargs="*", default=[f"{w}/plain.onnx", f"{w}/tsm.onnx", f"{w}/batch.onnx"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-tract-profile.md"), help="- to print only")
    ap.add_argument("--clips", type=int, default=1, help="clips of 8 frames a run")
    ap.add_argument("--nodes", metavar="OP", help="also list each node of this operator (e.g. DepthWiseConv)")
    args = ap.parse_args()
    x = np.random.RandomState(0).randn(8 * args.clips, 3, 224, 224).astype(np.float32)
    per_model = profiles(args.models, x, args.runs)
    res = [(p, *by_operator(per_run)) for p, per_run in zip(args.models, per_model)]
    lines = ["# tract's profile by operator (bench/tract_profile.py)", "",
             f"{args.clips} clip(s) of 8 frames at 224x224; the median over {args.runs} profiles (the models taking "
             "turns) of each operator's summed time (ms), and how many nodes of it the optimized model has. Op times "
             "only: the scheduling between nodes is not in them.", "",
             "| operator | " + " | ".join(os.path.basename(p) for p, _, _ in res) + " |",
             "|---|" + "---|" * len(res)]
    ops = sorted(set().union(*(m for _, m, _ in res)), key=lambda o: -max(m.get(o, 0) for _, m, _ in res))
    for op in ops[:18]:
        lines.append(f"| {op} | " + " | ".join(f"{m.get(op, 0) * 1e3:.1f} (x{c.get(op, 0)})" for _, m, c in res) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(m.values()) * 1e3:.0f}**" for _, m, _ in res) + " |")
    if args.nodes:
        for p, per_run in zip(args.models, per_model):
            lines += ["", f"{args.nodes} nodes of {os.path.basename(p)} (ms):", ""]
            lines += [f"    {t * 1e3:7.2f}  {name}" for name, t in by_node(per_run, args.nodes)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
