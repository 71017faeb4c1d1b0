#!/usr/bin/env python3
"""OpenVINO f32, per frame, the buffers as tensors (bench/overhead.py's ping-pong, nothing copied):
an online model whose sites are in the batch form's flattened Concat (MobileNetV2's ten), against
forms that keep each site's tensor in OpenVINO's blocked layout (stop 47). Exact forms, checked
against the tool's online model over three frames in onnxruntime first:

- cc2: the shifted tensor a channel Concat of the buffer and x's channels [f, C) (Slice), the
  buffer output a channel Slice of x (no flattening Reshape);
- padwhere: the buffer padded to C channels, then a Where on a channel mask between it and x;
- side: the consumer convolution on x with its first f input columns zeroed, plus a convolution of
  the buffer by those columns, summed (bench/variants.py side-conv; exact for finite values only).

And two diagnostics that split the tool's cost (not exact, not checked): ports, the 2D model with
the online model's buffer inputs and outputs added (each output a Relu of its input), the ports'
cost alone; noports, the online model with its buffer inputs constant zeros and no buffer
outputs, the sites' cost alone.

Each row: median time per frame, ratio to the 2D model [interquartile range], and to the tool's
online model round by round.

    python bench/openvino_online_sites.py mobilenet_v2 ports,noports,cc2,padwhere,side   # /tmp/h-bench/<arch>/ from bench/overhead.py
"""
import os
import sys
import time

import numpy as np, onnx
from onnx import helper, numpy_helper
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import variants as V
from overhead import ov_config, ov_pingpong, ov_read
import openvino as ov

arch = sys.argv[1]
W = f"/tmp/h-bench/{arch}"

def build(kind):
    m = onnx.load(f"{W}/online.onnx")
    g = m.graph
    shapes = V.inferred_dims(m)
    plan, drop = {}, set()
    by_output = {o: n for n in g.node for o in n.output}
    for p, x, buffer_in, fold in V.flattened_sites(g):
        _, c, hh, ww = shapes[x]
        s0, sf, sc, ax = (V.int64_init(g, p + "v_" + k, [v]) for k, v in (("s0", 0), ("sf", fold), ("sc", c), ("ax", 1)))
        bo = helper.make_node("Slice", [x, s0, sf, ax], [p + "buffer_out"], name=p + "v_Slice_buffer_out")
        if kind == "cc2":
            nodes = [helper.make_node("Slice", [x, sf, sc, ax], [p + "v_rest"], name=p + "v_Slice_rest"),
                     helper.make_node("Concat", [buffer_in, p + "v_rest"], [p + "shifted"], name=p + "v_Concat", axis=1)]
        elif kind == "padwhere":
            pads = V.int64_init(g, p + "v_pads", [0, 0, 0, 0, 0, c - fold, 0, 0])
            mask = np.zeros((1, c, 1, 1), bool); mask[:, :fold] = True
            g.initializer.append(numpy_helper.from_array(mask, p + "v_mask"))
            nodes = [helper.make_node("Pad", [buffer_in, pads], [p + "v_padded"], name=p + "v_Pad"),
                     helper.make_node("Where", [p + "v_mask", p + "v_padded", x], [p + "shifted"], name=p + "v_Where")]
        plan[p + "Reshape_frame"] = [bo] + nodes
        drop.add(by_output[p + "buffer_out"].name)
    V.apply_plan(g, plan, drop)
    return m

core = ov.Core()
cfg = ov_config(os.environ.get("PREC", "f32"))
paths = {"plain": f"{W}/plain.onnx", "online": f"{W}/online.onnx"}
def ports():
    m, online = onnx.load(f"{W}/plain.onnx"), onnx.load(f"{W}/online.onnx")
    for i in online.graph.input[1:]:
        o = next(x for x in online.graph.output if x.name == i.name.replace("buffer_in", "buffer_out"))
        m.graph.input.append(i)
        m.graph.output.append(o)
        m.graph.node.append(helper.make_node("Relu", [i.name], [o.name], name=i.name + "/relu"))
    return m


def noports():
    m = onnx.load(f"{W}/online.onnx")
    ins = list(m.graph.input[1:])
    del m.graph.input[1:]
    del m.graph.output[1:]
    for i in ins:
        dims = [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
        m.graph.initializer.append(numpy_helper.from_array(np.zeros(dims, np.float32), i.name))
    return m


kinds = sys.argv[2].split(",")
exact = [k for k in kinds if k not in ("ports", "noports")]
for kind in kinds:
    p = f"{W}/online_{kind}.onnx"
    if kind in ("ports", "noports"):
        m = ports() if kind == "ports" else noports()
    elif kind == "side":
        m = onnx.load(f"{W}/online.onnx"); V.side_conv(m)
    else:
        m = build(kind)
    onnx.save(m, p)
    paths[kind] = p
paths["null"] = paths["plain"]
# check: same outputs as online over 3 frames in onnxruntime
import onnxruntime as ort
def run3(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ins = s.get_inputs()
    rng = np.random.default_rng(1)
    bufs = {i.name: np.zeros([1] + [d for d in i.shape[1:]], np.float32) for i in ins[1:]}
    outs = []
    for f in range(3):
        x = rng.random([1] + list(ins[0].shape[1:]), dtype=np.float32)
        r = s.run(None, {ins[0].name: x, **bufs})
        names = [o.name for o in s.get_outputs()]
        bufs = {n.replace("buffer_out", "buffer_in"): v for n, v in zip(names[1:], r[1:])}
        outs.append(r[0])
    return np.stack(outs)
ref = run3(paths["online"])
for k in exact:
    print(k, "max diff vs online (ORT, 3 frames):", float(np.abs(run3(paths[k]) - ref).max()))
fns = {}
rng = np.random.default_rng(0)
for k, p in paths.items():
    cm = core.compile_model(ov_read(core, p, 1), "CPU", cfg)
    frame = rng.random(tuple(cm.inputs[0].get_shape()), dtype=np.float32)
    if len(cm.inputs) > 1:
        fns[k] = ov_pingpong(ov, cm, frame, ov.Type.f32)
    else:
        r = cm.create_infer_request(); r.set_tensor(cm.inputs[0], ov.Tensor(frame))
        fns[k] = (lambda r: (lambda: r.infer(share_outputs=True)))(r)
names = list(fns)
rounds = int(os.environ.get("ROUNDS", 21))
times = {k: [] for k in names}
for r in range(rounds):
    for k in names[r % len(names):] + names[:r % len(names)]:
        for _ in range(3): fns[k]()
        t = time.perf_counter()
        for _ in range(int(os.environ.get("REPS", 20))): fns[k]()
        times[k].append((time.perf_counter() - t) / int(os.environ.get("REPS", 20)))
for k in names:
    rat = np.array(times[k]) / np.array(times["plain"])
    rr = np.array(times[k]) / np.array(times["online"])
    print(f"{k:10s} {np.median(times[k])*1e3:7.3f} ms  {np.median(rat):.3f} [{np.percentile(rat,25):.3f}-{np.percentile(rat,75):.3f}]  vs online {np.median(rr):.3f}, below in {int((rr<1).sum())}/{rounds}")
