#!/usr/bin/env python3
"""Where in the network tract spends the shift's cost: tract's own per-node profile (`profile_json`)
summed by residual block (the `/layerK/layerK.J/` prefix torchvision's export gives node names;
"stem" for the first convolution, its Relu and the max pool), for several models profiled in turn,
round after round, in an order that rotates (one model after another, each profiled in one go, shows
a bias of several percent for whichever goes first on this machine).

    python bench/tract_blocks.py --batch 8 plain.onnx tsm.onnx clip.onnx        # offline, one clip
    python bench/tract_blocks.py --batch 1 plain.onnx online.onnx               # online, one frame
    python bench/tract_blocks.py --batch 1 --by op plain.onnx online.onnx       # by tract operator
    python bench/tract_blocks.py --batch 1 --block layer2.0 plain.onnx online.onnx  # its nodes

Every symbolic dimension of every input is set to --batch (the frames of one clip offline, one
frame online, whose buffers are then one stream's); inputs are seeded random. Prints per block the
median over --runs of its summed operator times (ms) and the median of its per-round ratio to the
first model's same block. `--by op` sums by tract's operator instead, with how many nodes ran it
in brackets; `--block NAME` lists the nodes of one block. Op times only: the scheduling between
nodes is not in them. Used for bench/RESULTS-widening-readers.md.
"""
import argparse
import collections
import json
import re
import statistics

import numpy as np
import onnx
import tract


def block(name):
    m = re.match(r"/(layer\d)/(layer\d\.\d+)/", name or "")
    if m:
        return m.group(2)
    if name and any(name.startswith(p) for p in ("/conv1/", "/bn1/", "/relu/", "/maxpool/")):
        return "stem"
    return "other"


def load(path, batch):
    g = onnx.load(path, load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    shapes = [[batch if d.dim_param or not d.dim_value else d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in g.input if i.name not in inits]
    m = tract.onnx().load(path)
    for k, s in enumerate(shapes):
        m.set_input_fact(k, ",".join(map(str, s)) + ",f32")
    r = m.into_model().into_runnable()
    rng = np.random.default_rng(0)
    feeds = [rng.random(s, dtype=np.float32) for s in shapes]
    r.run(feeds)
    return r, feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--by", choices=["block", "op"], default="block")
    ap.add_argument("--block", help="list the nodes of this block (e.g. layer2.0) instead")
    args = ap.parse_args()
    runnables = {p: load(p, args.batch) for p in args.models}
    per = {p: [] for p in args.models}
    count = {p: collections.Counter() for p in args.models}
    for i in range(args.runs):
        k = i % len(args.models)
        for p in args.models[k:] + args.models[:k]:
            r, feeds = runnables[p]
            times, nodes = collections.Counter(), collections.Counter()
            for n in json.loads(r.profile_json(feeds))["nodes"]:
                name = n.get("node_name")
                if args.block:
                    if block(name) != args.block:
                        continue
                    key = name
                else:
                    key = (n.get("op_name") or "?") if args.by == "op" else block(name)
                times[key] += 1000 * (n.get("secs_per_iter") or 0)
                nodes[key] += 1
            per[p].append(times)
            count[p] = nodes
    base = per[args.models[0]]
    keys = sorted(set().union(*(t.keys() for p in args.models for t in per[p])), key=lambda k: (k != "stem", k))
    names = [p.rsplit("/", 1)[-1] for p in args.models]
    print(f"batch {args.batch}; median over {args.runs} interleaved profiles (ms), and of the ratio to {names[0]}")
    print("| block | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in keys + ["**total**"]:
        def val(t):
            return sum(t.values()) if k == "**total**" else t.get(k, 0.0)
        cells = []
        for p in args.models:
            med = statistics.median(val(t) for t in per[p])
            # A node the first model does not have (a split's second product) has no ratio.
            ratios = [val(t) / val(b) for t, b in zip(per[p], base) if val(b) > 0]
            ratio = f"x{statistics.median(ratios):.3f}" if ratios else "-"
            n = f" [{count[p][k]}]" if args.by == "op" and k != "**total**" else ""
            cells.append(f"{med:.2f} ({ratio}){n}")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
