#!/usr/bin/env python3
"""A one-frame online form tried for OpenVINO (stop 30, not taken): each site's tensor kept whole
and cut by a channel Split `[s, C - s]` (s the fold, or 16 where the fold is 8: then the buffer is
the head's first fold channels and the rest of the head is joined to the buffer input), the
consumer convolution split by input channel, `Conv(tail, W[:, s:], B) + Conv(shifted, W[:, :s])`.
No producer is split. At batch 1 OpenVINO can write some Splits in place; it does not here (its
layout is channels-last, where a channel Split is a strided copy, bench/RESULTS-side-conv.md).
Built from the 2D model with the buffer names and metadata of the tool's --online model, so it
drops into bench/overhead.py and bench/openvino_profile.py:

    python bench/split_view.py /tmp/h-bench/resnet50/plain.onnx /tmp/h-bench/resnet50/online.onnx /tmp/split_view.onnx
"""
import json
import os
import sys

import onnx
from onnx import helper as oh, numpy_helper as nh

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants import drop_unread_initializers, int64_init  # noqa: E402


def split_view(m, bufs):
    """Rewrites the 2D model `m` in place: every torchvision-ResNet block's conv1 reads its input
    through a channel Split; `bufs` are the tool's buffers (names and shapes)."""
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    nodes = []
    for n in g.node:
        site = None
        if n.op_type == "Conv" and n.name.endswith("/conv1/Conv") and "/layer" in n.name:
            scope = n.name[: -len("/conv1/Conv")]
            site = next(b for b in bufs if b["input"].startswith(scope + "/tsm/"))
        if site is None:
            nodes.append(n)
            continue
        w = nh.to_array(inits[n.input[1]])
        c, fold = w.shape[1], site["shape"][1]
        s = fold if fold % 16 == 0 else 16
        pre = n.name.rsplit("/", 1)[0] + "/sv"
        head, tail = pre + "/h", pre + "/t"
        nodes.append(oh.make_node("Split", [n.input[0], int64_init(g, pre + "/split", [s, c - s])], [head, tail],
                                  name=pre + "/Split", axis=1))
        if s == fold:
            shifted = site["input"]
            nodes.append(oh.make_node("Identity", [head], [site["output"]], name=pre + "/out"))
        else:
            zero, f, end, axis = (int64_init(g, pre + k, [v]) for k, v in (("/c0", 0), ("/c1", fold), ("/c2", s), ("/ax", 1)))
            nodes.append(oh.make_node("Slice", [head, zero, f, axis], [site["output"]], name=pre + "/bufslice"))
            nodes.append(oh.make_node("Slice", [head, f, end, axis], [pre + "/keep"], name=pre + "/keepslice"))
            shifted = pre + "/shifted"
            nodes.append(oh.make_node("Concat", [site["input"], pre + "/keep"], [shifted], name=pre + "/Concat", axis=1))
        g.initializer.extend([nh.from_array(w[:, :s].copy(), pre + "/w_head"), nh.from_array(w[:, s:].copy(), pre + "/w_tail")])
        from_tail = oh.make_node("Conv", [tail, pre + "/w_tail"] + list(n.input[2:]), [pre + "/from_tail"], name=pre + "/tail_conv")
        from_shifted = oh.make_node("Conv", [shifted, pre + "/w_head"], [pre + "/from_shifted"], name=pre + "/head_conv")
        for conv in (from_tail, from_shifted):
            conv.attribute.extend(n.attribute)
        nodes += [from_tail, from_shifted,
                  oh.make_node("Add", [pre + "/from_tail", pre + "/from_shifted"], [n.output[0]], name=pre + "/sum")]
    del g.node[:]
    g.node.extend(nodes)
    drop_unread_initializers(g)
    # one frame per run, the buffers as inputs and outputs in the online model's order
    for v in list(g.input) + list(g.output):
        v.type.tensor_type.shape.dim[0].dim_value = 1
    for b in bufs:
        g.input.append(oh.make_tensor_value_info(b["input"], onnx.TensorProto.FLOAT, [1] + b["shape"][1:]))
        g.output.append(oh.make_tensor_value_info(b["output"], onnx.TensorProto.FLOAT, [1] + b["shape"][1:]))


def main():
    plain, online, out = sys.argv[1:4]
    m = onnx.load(plain)
    on = onnx.load(online, load_external_data=False)
    split_view(m, json.loads({p.key: p.value for p in on.metadata_props}["tsm-rewrite.buffers"]))
    del m.metadata_props[:]
    m.metadata_props.extend(on.metadata_props)
    onnx.checker.check_model(m)
    onnx.save(m, out)


if __name__ == "__main__":
    main()
