#!/usr/bin/env python3
"""Variants of a rewritten model for form experiments (issue 8), made with onnx's Python API from the
tool's own output, so that a form can be timed before it is built into the emitter.

    python bench/variants.py nhwc-buffers online.onnx online_nhwc.onnx
    python bench/variants.py swap-slice-axes clip.onnx clip_swapped.onnx
    python bench/variants.py clip-carrier clip.onnx clip_carrier.onnx

- nhwc-buffers: an online model whose buffers cross the boundary as [N, H, W, f] (channels last),
  each with a Transpose inside the graph, and the metadata's buffer list updated to match. OpenVINO
  and onnxruntime compute the convolutions channels-last or blocked; a planar NCHW buffer costs each
  a reorder on its way in and out, which a Transpose next to the reorder might cancel.
- swap-slice-axes: every Slice over two axes with its axes (and starts and ends) in reverse order;
  the same result, but a runtime that slices one axis at a time (tract) copies in another order.
- clip-carrier: a `--shift-form clip` model whose shifted tensor, reshaped back to frames with a
  -1, is concatenated on the channel axis with an empty slice of the site's tensor: shape inference
  takes the batch symbol from the empty part, which the Reshape lost, so that onnxruntime can prove
  the block's residual Add's inputs equal in shape and fuse it into its convolution again.

All are exact: the buffers hold the same values, transposed; the slices take the same elements.
Time them with bench/overhead.py (--online-variant, --variant) or the profiles
(bench/openvino_profile.py, bench/tract_profile.py).
"""
import argparse
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper


def nhwc_buffers(m):
    g = m.graph
    meta = {p.key: p for p in m.metadata_props}["tsm-rewrite.buffers"]
    bufs = json.loads(meta.value)
    ins, outs = {b["input"] for b in bufs}, {b["output"] for b in bufs}

    def channels_last(vi, name):
        d = vi.type.tensor_type.shape.dim
        dims = [d[0].dim_param or d[0].dim_value, d[2].dim_value, d[3].dim_value, d[1].dim_value]
        return helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, dims)

    head, tail = [], []
    for k, vi in enumerate(g.input):
        if vi.name in ins:
            head.append(helper.make_node("Transpose", [vi.name + "_nhwc"], [vi.name], name=vi.name + "/to_nchw", perm=[0, 3, 1, 2]))
            g.input[k].CopyFrom(channels_last(vi, vi.name + "_nhwc"))
    for k, vi in enumerate(g.output):
        if vi.name in outs:
            tail.append(helper.make_node("Transpose", [vi.name], [vi.name + "_nhwc"], name=vi.name + "/to_nhwc", perm=[0, 2, 3, 1]))
            g.output[k].CopyFrom(channels_last(vi, vi.name + "_nhwc"))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    for b in bufs:
        s = b["shape"]
        b.update(input=b["input"] + "_nhwc", output=b["output"] + "_nhwc", shape=[s[0], s[2], s[3], s[1]])
    meta.value = json.dumps(bufs)
    return len(bufs)


def swap_slice_axes(m):
    inits = {i.name: i for i in m.graph.initializer}
    swapped = 0
    for node in m.graph.node:
        if node.op_type != "Slice" or len(node.input) < 4 or node.input[3] not in inits:
            continue
        if numpy_helper.to_array(inits[node.input[3]]).size != 2:
            continue
        for k in (1, 2, 3):  # starts, ends, axes: the tool names these per node, none is shared
            t = inits[node.input[k]]
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[::-1].copy(), t.name))
        swapped += 1
    return swapped


def clip_carrier(m):
    g = m.graph
    by_output = {o: n for n in g.node for o in n.output}
    nodes, changed = [], 0
    for n in g.node:
        nodes.append(n)
        if n.op_type != "Reshape" or not n.name.endswith("/tsm/Reshape_frames"):
            continue
        prefix = n.name[: -len("Reshape_frames")]
        x = by_output[prefix + "clip"].input[0]  # Reshape_clip's input: the site's tensor
        view, out = n.output[0] + "_view", n.output[0]
        n.output[0] = view
        consts = {k: numpy_helper.from_array(np.array(v, np.int64), prefix + "carrier_" + k)
                  for k, v in (("starts", [0]), ("ends", [0]), ("axes", [1]))}
        g.initializer.extend(consts.values())
        nodes.append(helper.make_node("Slice", [x] + [c.name for c in consts.values()], [prefix + "carrier"],
                                      name=prefix + "Slice_carrier"))
        nodes.append(helper.make_node("Concat", [view, prefix + "carrier"], [out], name=prefix + "Concat_carrier", axis=1))
        changed += 1
    del g.node[:]
    g.node.extend(nodes)
    return changed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=["nhwc-buffers", "swap-slice-axes", "clip-carrier"])
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args()
    m = onnx.load(args.input)
    n = {"nhwc-buffers": nhwc_buffers, "swap-slice-axes": swap_slice_axes, "clip-carrier": clip_carrier}[args.variant](m)
    onnx.checker.check_model(m)
    onnx.save(m, args.output)
    print(f"{args.variant}: {n} changed, wrote {args.output}")


if __name__ == "__main__":
    main()
