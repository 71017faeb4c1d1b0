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

Stop 47 added kinds (named as a third argument) to see which forms OpenVINO keeps in its blocked
layout (a Reorder beyond the two at the ports, in the operator counts, is the head leaving it and
coming back):

- frame: the tool's form since stop 43 (a zero frame joined on the batch axis, the head viewed as
  rows of f channels, one Gather, viewed back);
- pergroup / pergroup_slice / pergroup_pad: each group cut off (Split, or Slice), a zero frame
  joined (Concat, or Pad), one Gather on the batch axis each, a channel Concat;
- whole2: the whole head gathered from the next and from the previous frames, each group sliced;
- slicepad1: each group's Slice over frames and channels and a one-frame Pad (one clip only: the
  Pads' zeros are the borders), a channel Concat;
- z2where / z2where2: zero frames joined at both ends, a batch-only Slice each way, one Where on a
  channel mask (one clip) or two on (frame, channel) masks;
- slicepadwhere / slicepadwhere1: a batch-only Slice and Pad each way, then two Wheres on (frame,
  channel) masks, or one on a channel mask (one clip).

Stop 54 added three more, looking for a movement OpenVINO keeps in its layout (none does; the
volume of `--shift-form openvino`, bench/volume_prototype.py, is what does):

- tconv: the head viewed as `[N, T*2, f*H, W]` (frames and groups as channels, a free view) and
  shifted by one 1x1 convolution whose 16x16 weight is the shift;
- dil3d: the head transposed to `[N, 2f, T, H, W]`, a depthwise 3-tap convolution over T, back;
- g2where / g2where1: whole frames gathered each way on clamped indices, then Wheres (or a Where
  and a multiply) that pick each channel's direction and zero the borders.

    python bench/openvino_head_moves.py 64 56     # 2f = 64 channels at 56x56 (ResNet-50's layer1)
    python bench/openvino_head_moves.py 256 14    # layer3
    python bench/openvino_head_moves.py 64 56 frame,slicepad1,slicepadwhere,none

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
nxt = np.where(t < T - 1, np.arange(NT) + 2, 0)   # each frame's next, into Concat(zero frame, head)
prv = np.where(t > 0, np.arange(NT), 0)           # its previous, likewise

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
    elif kind == "frame":
        j = np.arange(2 * NT); tt, gg = j // 2, j % 2
        src = np.where(gg == 0, np.where(tt % T < T - 1, 2 * (tt + 1) + gg + 2, gg), np.where(tt % T > 0, 2 * (tt - 1) + gg + 2, gg))
        inits += [I("zf", np.zeros((1, C2, S, S), np.float32)), L("rows", [-1, f, S, S]), L("back", [-1, C2, S, S]), L("idx", src)]
        nodes += [h.make_node("Concat", ["zf", "head"], ["hz"], axis=0), h.make_node("Reshape", ["hz", "rows"], ["hr"]),
                  h.make_node("Gather", ["hr", "idx"], ["g"], axis=0), h.make_node("Reshape", ["g", "back"], ["moved"])]
    elif kind in ("pergroup", "pergroup_slice", "pergroup_pad"):
        inits += [I("zg", np.zeros((1, f, S, S), np.float32)), L("in", nxt), L("ip", prv), L("sizes", [f, f])]
        if kind == "pergroup":
            nodes.append(h.make_node("Split", ["head", "sizes"], ["g0", "g1"], axis=1))
        else:
            inits += [L("a1", [1]), L("s0", [0]), L("sf", [f]), L("s2f", [C2])]
            nodes += [h.make_node("Slice", ["head", "s0", "sf", "a1"], ["g0"]), h.make_node("Slice", ["head", "sf", "s2f", "a1"], ["g1"])]
        if kind == "pergroup_pad":
            inits += [L("p1", [1, 0, 0, 0, 0, 0, 0, 0])]
            nodes += [h.make_node("Pad", ["g0", "p1"], ["z0"]), h.make_node("Pad", ["g1", "p1"], ["z1"])]
        else:
            nodes += [h.make_node("Concat", ["zg", "g0"], ["z0"], axis=0), h.make_node("Concat", ["zg", "g1"], ["z1"], axis=0)]
        nodes += [h.make_node("Gather", ["z0", "in"], ["m0"], axis=0), h.make_node("Gather", ["z1", "ip"], ["m1"], axis=0),
                  h.make_node("Concat", ["m0", "m1"], ["moved"], axis=1)]
    elif kind == "whole2":
        inits += [I("zf", np.zeros((1, C2, S, S), np.float32)), L("in", nxt), L("ip", prv),
                  L("a1", [1]), L("s0", [0]), L("sf", [f]), L("s2f", [C2])]
        nodes += [h.make_node("Concat", ["zf", "head"], ["hz"], axis=0),
                  h.make_node("Gather", ["hz", "in"], ["gn"], axis=0), h.make_node("Gather", ["hz", "ip"], ["gp"], axis=0),
                  h.make_node("Slice", ["gn", "s0", "sf", "a1"], ["m0"]), h.make_node("Slice", ["gp", "sf", "s2f", "a1"], ["m1"]),
                  h.make_node("Concat", ["m0", "m1"], ["moved"], axis=1)]
    elif kind == "slicepad1":   # one clip only: borders are the Pads' zeros
        inits += [L("a01", [0, 1]), L("st_a", [1, 0]), L("en_a", [1 << 62, f]), L("st_b", [0, f]), L("en_b", [-1, C2]),
                  L("pad_next", [0, 0, 0, 0, 1, 0, 0, 0]), L("pad_prev", [1, 0, 0, 0, 0, 0, 0, 0])]
        nodes += [h.make_node("Slice", ["head", "st_a", "en_a", "a01"], ["a"]), h.make_node("Pad", ["a", "pad_next"], ["m0"]),
                  h.make_node("Slice", ["head", "st_b", "en_b", "a01"], ["b"]), h.make_node("Pad", ["b", "pad_prev"], ["m1"]),
                  h.make_node("Concat", ["m0", "m1"], ["moved"], axis=1)]

    elif kind in ("z2where", "z2where2", "slicepadwhere", "slicepadwhere1"):
        chan = np.arange(C2) < f
        cn = (chan[None, :] & (t < T - 1)[:, None]).reshape(NT, C2, 1, 1)
        cp = (~chan[None, :] & (t > 0)[:, None]).reshape(NT, C2, 1, 1)
        inits += [I("zero", np.zeros((), np.float32)), I("cn", cn), I("cp", cp), I("ch", chan.reshape(1, C2, 1, 1))]
        if kind.startswith("z2"):
            inits += [I("zf", np.zeros((1, C2, S, S), np.float32)), L("a0", [0]), L("s2", [2]), L("big", [1 << 62]), L("s0", [0]), L("snt", [NT])]
            nodes += [h.make_node("Concat", ["zf", "head", "zf"], ["z"], axis=0),
                      h.make_node("Slice", ["z", "s2", "big", "a0"], ["n"]), h.make_node("Slice", ["z", "s0", "snt", "a0"], ["p"])]
        else:
            inits += [L("a0", [0]), L("s1", [1]), L("big", [1 << 62]), L("s0", [0]), L("m1", [-1]),
                      L("pad_next", [0, 0, 0, 0, 1, 0, 0, 0]), L("pad_prev", [1, 0, 0, 0, 0, 0, 0, 0])]
            nodes += [h.make_node("Slice", ["head", "s1", "big", "a0"], ["n1"]), h.make_node("Pad", ["n1", "pad_next"], ["n"]),
                      h.make_node("Slice", ["head", "s0", "m1", "a0"], ["p0"]), h.make_node("Pad", ["p0", "pad_prev"], ["p"])]
        if kind in ("z2where", "slicepadwhere1"):   # one clip: the borders are already zero
            nodes.append(h.make_node("Where", ["ch", "n", "p"], ["moved"]))
        else:
            nodes += [h.make_node("Where", ["cp", "p", "zero"], ["pm"]), h.make_node("Where", ["cn", "n", "pm"], ["moved"])]
    elif kind == "tconv":      # frames as channels: [N, T*2, f*H, W], channel 2t+g; one 1x1 convolution
        # whose weight is the shift (row 2t+g reads 2(t+1)+g for g = 0, 2(t-1)+g for g = 1, nothing at the
        # borders): no transpose, the zeros of the borders are the missing rows.
        wt = np.zeros((2 * T, 2 * T, 1, 1), np.float32)
        for tt in range(T):
            if tt < T - 1: wt[2 * tt, 2 * (tt + 1)] = 1
            if tt > 0: wt[2 * tt + 1, 2 * (tt - 1) + 1] = 1
        inits += [I("wt", wt), L("tv", [NT // T, 2 * T, f * S, S]), L("back", [NT, C2, S, S])]
        nodes += [h.make_node("Reshape", ["head", "tv"], ["hv"]), h.make_node("Conv", ["hv", "wt"], ["mv"]),
                  h.make_node("Reshape", ["mv", "back"], ["moved"])]
    elif kind == "dil3d":      # [N, 2f, T, H, W] by a Transpose, a depthwise 3-tap Conv over T, back
        w3 = np.zeros((C2, 1, 3, 1, 1), np.float32); w3[:f, 0, 2] = 1; w3[f:, 0, 0] = 1
        inits += [I("w3", w3), L("v5", [NT // T, T, C2, S, S]), L("back", [NT, C2, S, S])]
        nodes += [h.make_node("Reshape", ["head", "v5"], ["h5"]), h.make_node("Transpose", ["h5"], ["ht"], perm=[0, 2, 1, 3, 4]),
                  h.make_node("Conv", ["ht", "w3"], ["ct"], group=C2, pads=[1, 0, 0, 1, 0, 0]),
                  h.make_node("Transpose", ["ct"], ["cb"], perm=[0, 2, 1, 3, 4]), h.make_node("Reshape", ["cb", "back"], ["moved"])]
    elif kind in ("g2where", "g2where1"):   # whole frames gathered each way (clamped), Wheres pick and zero
        chan = np.arange(C2) < f
        cn = (chan[None, :] & (t < T - 1)[:, None]).reshape(NT, C2, 1, 1)
        cp = (~chan[None, :] & (t > 0)[:, None]).reshape(NT, C2, 1, 1)
        inits += [I("cn", cn), I("cp", cp), I("ch", chan.reshape(1, C2, 1, 1)),
                  L("in", np.minimum(np.arange(NT) + 1, NT - 1)), L("ip", np.maximum(np.arange(NT) - 1, 0))]
        nodes += [h.make_node("Gather", ["head", "in"], ["gn"], axis=0), h.make_node("Gather", ["head", "ip"], ["gp"], axis=0)]
        if kind == "g2where":
            nodes += [h.make_node("Where", ["cp", "gp", "zero"], ["pm"]), h.make_node("Where", ["cn", "gn", "pm"], ["moved"])]
        else:  # one Where on the channel mask, then a multiply by a [NT, 2f, 1, 1] keep mask
            keep = (cn | cp).astype(np.float32)
            inits.append(I("keepf", keep))
            nodes += [h.make_node("Where", ["ch", "gn", "gp"], ["w"]), h.make_node("Mul", ["w", "keepf"], ["moved"])]
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
kinds = sys.argv[3].split(",") if len(sys.argv) > 3 else ("joined", "split", "slicepad", "gather", "gatherwhere", "none")
paths = [os.path.join(tempfile.gettempdir(), f"head_moves_{k}.onnx") for k in kinds]
outs = []
for k, path in zip(kinds, paths):
    onnx.save(build(k), path)
    outs.append(core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer({0: x})[0].copy())
print(f"max diff vs {kinds[0]}:", {k: float(np.abs(o - outs[0]).max()) for k, o in zip(kinds, outs)})
for k, (med, count, _, wall) in zip(kinds, profile(core, paths, online=False, precision="f32", runs=40)):
    print(f"{k:14s} {wall:7.2f} ms", {f"{a} x{count[a]}": round(v, 3) for a, v in sorted(med.items(), key=lambda z: -z[1]) if v > 0.003})
