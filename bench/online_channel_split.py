#!/usr/bin/env python3
"""An online form not built into the tool, timed before building it (issue 8, stop 51): the block
input computed whole, as in the 2D model, and split at each site by a channel Split [f, C-f]; the
first part is the buffer output, the rest feeds the consumer convolution split by input channel,
`Conv(buffer_in, W[:, :f]) + Conv(rest, W[:, f:], B)`. No producer is split (52 1x1 convolutions
against the stream form's 76), and no convolution that reads the block input whole (a stage's
downsample) has to be. The hope: at one frame the Split's dimensions before the channel axis are
all 1, where OpenVINO can make a Split a view of its input.

Built from the 2D model itself (a torchvision ResNet export: the sites are the `/layerK/.../conv1/Conv`
nodes, the shift past-only with fold C/8), with the same `tsm-rewrite.buffers` metadata the tool
writes, so bench/ harnesses and `tsm_rewrite.openvino_stateful` run it as they run the tool's
online models. It equals the tool's `--online` output frame by frame within rounding (checked
against it in onnxruntime by `--check ONLINE.onnx`).

    python bench/online_channel_split.py plain.onnx online_chsplit.onnx --check online.onnx
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference


def build(m):
    g = m.graph
    at_one = onnx.ModelProto()
    at_one.CopyFrom(m)
    at_one.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    inferred = shape_inference.infer_shapes(at_one).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.value_info) + list(inferred.input)}
    inits = {i.name: i for i in g.initializer}
    nodes, bufs = [], []
    for n in g.node:
        if not (n.op_type == "Conv" and n.name.startswith("/layer") and n.name.endswith("/conv1/Conv")):
            nodes.append(n)
            continue
        x, wname, bname = n.input
        w = numpy_helper.to_array(inits[wname])
        c = w.shape[1]
        f = c // 8
        _, _, h, wd = shapes[x]
        p = n.name[: -len("/conv1/Conv")] + "/tsm"
        bi, bo = p + "/buffer_in", p + "/buffer_out"
        g.initializer.extend([numpy_helper.from_array(np.array([f, c - f], np.int64), p + "/sizes"),
                              numpy_helper.from_array(w[:, :f].copy(), p + "/w_buffer"),
                              numpy_helper.from_array(w[:, f:].copy(), p + "/w_rest")])
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        nodes += [helper.make_node("Split", [x, p + "/sizes"], [p + "/head", p + "/rest"], axis=1, name=p + "/Split"),
                  helper.make_node("Identity", [p + "/head"], [bo], name=p + "/buffer"),
                  helper.make_node("Conv", [bi, p + "/w_buffer"], [p + "/from_buffer"], name=p + "/Conv_buffer", **attrs),
                  helper.make_node("Conv", [p + "/rest", p + "/w_rest", bname], [p + "/from_rest"], name=p + "/Conv_rest", **attrs),
                  helper.make_node("Add", [p + "/from_buffer", p + "/from_rest"], list(n.output), name=p + "/sum")]
        shape = ["batch", f, h, wd]
        g.input.append(helper.make_tensor_value_info(bi, TensorProto.FLOAT, shape))
        g.output.append(helper.make_tensor_value_info(bo, TensorProto.FLOAT, shape))
        bufs.append({"input": bi, "output": bo, "shape": shape})
    del g.node[:]
    g.node.extend(nodes)
    m.metadata_props.append(onnx.StringStringEntryProto(key="tsm-rewrite.buffers", value=json.dumps(bufs)))
    return len(bufs)


def stream(path, frames):
    """The logits of each frame, the buffers fed back (onnxruntime)."""
    import onnxruntime as ort
    m = onnx.load(path, load_external_data=False)
    bufs = json.loads({p.key: p.value for p in m.metadata_props}["tsm-rewrite.buffers"])
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    state = {b["input"]: np.zeros([1] + b["shape"][1:], np.float32) for b in bufs}
    logits = []
    for fr in frames:
        out = dict(zip(names, s.run(None, {s.get_inputs()[0].name: fr, **state})))
        logits.append(out[names[0]])
        state = {b["input"]: out[b["output"]] for b in bufs}
    return np.stack(logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plain")
    ap.add_argument("output")
    ap.add_argument("--check", metavar="ONLINE", help="the tool's --online output of the same model, to compare against")
    args = ap.parse_args()
    m = onnx.load(args.plain)
    n = build(m)
    onnx.checker.check_model(m)
    onnx.save(m, args.output)
    print(f"{n} sites, wrote {args.output}")
    if args.check:
        rng = np.random.default_rng(1)
        c, h, w = (d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])
        frames = [rng.standard_normal((1, c, h, w), dtype=np.float32) for _ in range(4)]
        got, want = stream(args.output, frames), stream(args.check, frames)
        err = np.abs(got - want).max() / np.abs(want).max()
        print(f"against {args.check}, 4 frames: max error {err:.2e} of the logits' scale")
        if err > 1e-4:
            raise SystemExit("not the same model")


if __name__ == "__main__":
    main()
