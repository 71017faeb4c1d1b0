#!/usr/bin/env python3
"""A micro-benchmark of the stream form's head movement in OpenVINO CPU, f32, static shapes (issue 8):
a 1x1 convolution makes a head of 2f channels for one clip of 8 frames, the head moves one frame
each way (channels [0, f) from the next frame, [f, 2f) from the previous one, zeros at the clip's
borders), and a 1x1 convolution reads it. Five ways of moving it, all exact and checked equal, and a floor:

- joined: the tool's form until stop 42 (two Slices over frames and channels, two Pads on the batch axis, a
  channel Concat, one Where on a [N*T, 2f, 1, 1] mask);
- split: the whole head split on the batch axis (Split with constant sizes, which OpenVINO could
  run in place on its outermost axis) and joined to a zero frame by a Concat on the batch axis, once
  for each direction, then two Wheres that pick each channel's direction and zero the borders;
- slicepad: the same with a Slice and a Pad on the batch axis alone (whole frames, no strided copy);
- gather: the head viewed as rows of f channels ([N*T*2, f, H, W], row 2t+g: group g of frame t), a
  zero row appended by a Pad, one Gather on axis 0 whose index names each row's source (the zero
  row at the borders);
- gatherwhere: the same Gather on indices clamped to the row itself at the borders, then a Where on
  a [N*T*2, 1, 1, 1] mask (the forms bench/variants.py row-gather* built on ResNet-50 from these);
- none: no movement at all, the two convolutions alone (the floor; not exact, so its difference
  is printed but not checked).

    python bench/openvino_head_moves.py 64 56     # 2f = 64 channels at 56x56 (ResNet-50's layer1)
    python bench/openvino_head_moves.py 256 14    # layer3

Prints each model's median time over 40 interleaved inferences and its operators' median times (ms),
as bench/openvino_profile.py's `profile` measures them.
"""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as TP
import openvino as ov

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openvino_profile import profile  # noqa: E402

C2, S, NT, T = int(sys.argv[1]), int(sys.argv[2]), 8, 8   # head channels 2f, spatial
f = C2 // 2
rng = np.random.default_rng(0)
W1 = rng.standard_normal((C2, 64, 1, 1)).astype(np.float32) * 0.1
W2 = rng.standard_normal((64, C2, 1, 1)).astype(np.float32) * 0.1
def I(name, a): return nh.from_array(np.asarray(a), name)
def L(name, v): return I(name, np.array(v, dtype=np.int64))
t = np.arange(NT) % T
# Per (frame, channel): the channels that take the next frame, kept where there is one; those that
# take the previous frame, likewise. The joined form keeps either.
ca = np.zeros((NT, C2, 1, 1), bool); ca[:, :f] = (t < T - 1)[:, None, None, None]
cb = np.zeros((NT, C2, 1, 1), bool); cb[:, f:] = (t > 0)[:, None, None, None]

def build(kind):
    inits = [I("w1", W1), I("w2", W2), I("zero", np.zeros((), np.float32))]
    nodes = [h.make_node("Conv", ["x", "w1"], ["head"])]
    if kind == "joined":
        inits += [L("ax01", [0, 1]), L("st_a", [1, 0]), L("en_a", [1 << 62, f]), L("st_b", [0, f]), L("en_b", [-1, C2]),
                  L("pad_next", [0, 0, 0, 0, 1, 0, 0, 0]), L("pad_prev", [1, 0, 0, 0, 0, 0, 0, 0])]
        inits.append(I("keep", ca | cb))
        nodes += [h.make_node("Slice", ["head", "st_a", "en_a", "ax01"], ["a"]), h.make_node("Pad", ["a", "pad_next"], ["ap"]),
                  h.make_node("Slice", ["head", "st_b", "en_b", "ax01"], ["b"]), h.make_node("Pad", ["b", "pad_prev"], ["bp"]),
                  h.make_node("Concat", ["ap", "bp"], ["j"], axis=1), h.make_node("Where", ["keep", "j", "zero"], ["moved"])]
    elif kind in ("gather", "gatherwhere"):
        # The head viewed as [N*T*2, f, H, W] (row 2t+g: group g of frame t), one Gather on axis 0.
        j = np.arange(2 * NT); tt, gg = j // 2, j % 2
        ok = np.where(gg == 0, tt % T < T - 1, tt % T > 0)
        src = np.where(gg == 0, j + 2, j - 2)
        inits += [L("gv", [2 * NT, f, S, S]), L("back", [NT, C2, S, S])]
        nodes.append(h.make_node("Reshape", ["head", "gv"], ["hv"]))
        if kind == "gather":   # a zero row appended, the borders index it
            inits += [L("padrow", [0, 0, 0, 0, 1, 0, 0, 0]), L("idx", np.where(ok, src, 2 * NT))]
            nodes += [h.make_node("Pad", ["hv", "padrow"], ["hz"]), h.make_node("Gather", ["hz", "idx"], ["mv"], axis=0)]
        else:                  # clamped indices, then a Where on a [2NT, 1, 1, 1] mask
            inits += [L("idx", np.where(ok, src, j)), I("okm", ok.reshape(-1, 1, 1, 1))]
            nodes += [h.make_node("Gather", ["hv", "idx"], ["g"], axis=0), h.make_node("Where", ["okm", "g", "zero"], ["mv"])]
        nodes.append(h.make_node("Reshape", ["mv", "back"], ["moved"]))
    elif kind == "none":       # no movement: the floor
        nodes.append(h.make_node("Identity", ["head"], ["moved"]))
    else:
        inits += [I("ca", ca), I("cb", cb), I("zframe", np.zeros((1, C2, S, S), np.float32))]
        if kind == "split":
            inits += [L("sp_next", [1, NT - 1]), L("sp_prev", [NT - 1, 1])]
            nodes += [h.make_node("Split", ["head", "sp_next"], ["n0", "n1"], axis=0),
                      h.make_node("Concat", ["n1", "zframe"], ["nxt"], axis=0),
                      h.make_node("Split", ["head", "sp_prev"], ["p0", "p1"], axis=0),
                      h.make_node("Concat", ["zframe", "p0"], ["prv"], axis=0)]
        else:  # batch-only Slice + Pad
            inits += [L("ax0", [0]), L("s1", [1]), L("big", [1 << 62]), L("s0", [0]), L("m1", [-1]),
                      L("pad_next", [0, 0, 0, 0, 1, 0, 0, 0]), L("pad_prev", [1, 0, 0, 0, 0, 0, 0, 0])]
            nodes += [h.make_node("Slice", ["head", "s1", "big", "ax0"], ["n1"]), h.make_node("Pad", ["n1", "pad_next"], ["nxt"]),
                      h.make_node("Slice", ["head", "s0", "m1", "ax0"], ["p0"]), h.make_node("Pad", ["p0", "pad_prev"], ["prv"])]
        nodes += [h.make_node("Where", ["cb", "prv", "zero"], ["pm"]), h.make_node("Where", ["ca", "nxt", "pm"], ["moved"])]
    nodes += [h.make_node("Conv", ["moved", "w2"], ["y"])]
    g = h.make_graph(nodes, kind, [h.make_tensor_value_info("x", TP.FLOAT, [NT, 64, S, S])],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])

core = ov.Core()
x = rng.standard_normal((NT, 64, S, S)).astype(np.float32)
kinds = ("joined", "split", "slicepad", "gather", "gatherwhere", "none")
paths = [os.path.join(tempfile.gettempdir(), f"head_moves_{k}.onnx") for k in kinds]
outs = []
for k, path in zip(kinds, paths):
    onnx.save(build(k), path)
    outs.append(core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer({0: x})[0].copy())
print("max diff vs joined:", {k: float(np.abs(o - outs[0]).max()) for k, o in zip(kinds, outs)})
for k, (med, _, _, wall) in zip(kinds, profile(core, paths, online=False, precision="f32", runs=40)):
    print(f"{k:9s} {wall:7.2f} ms", {a: round(v, 3) for a, v in sorted(med.items(), key=lambda z: -z[1]) if v > 0.003})
