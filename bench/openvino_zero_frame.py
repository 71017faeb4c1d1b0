#!/usr/bin/env python3
"""Variants of `--shift-form openvino`'s head on ResNet-50, for OpenVINO's profile (stop 50): where
its remaining cost per clip is the zero frame's Concat (a copy of every head) and the Gather over
rows of `fold` channels, can either go? Each variant pins the batch to one clip (8 frames) and
makes the Gather's index a constant (the tool builds it from nodes for any batch), so compare them
with `fixed`, which changes nothing else. Every variant is exact: onnxruntime gives the flag's
output bit for bit (checked by this script on one clip before writing).

kinds (comma-separated):
  fixed        nothing else.
  zerolast     the zero frame after the head, not before (the index follows).
  rows16       rows of 16 values, not `fold` (32-256 on ResNet-50): OpenVINO's JIT Gather takes
               rows of at most 16 values, its reference kernel longer ones.
  nocarrier    no batch carrier (an empty slice of the head, transposed and concatenated):
               a fixed batch needs none.
  runtimezero  the zero frame made at run time, `Where(Greater(f, f), f, 0)` on the head's first
               frame `f` (false everywhere, NaN included), so that no input of the Concat is a
               constant: OpenVINO's CPU plugin computes a Concat in place (its inputs written
               into its output) only then, and along axis 0 in any layout.
  rz2          the same, `Where(Greater(p, p), zeros, 0)` with `p` one pixel of the model's input,
               reading nothing of the head.
  outofrange   no zero frame at all (stop 52): the Gather reads the head's rows themselves, and a
               row outside the clip at an index past the last row. OpenVINO's Gather (opset 8)
               writes zeros for such an index, where ONNX forbids it (onnxruntime refuses the
               model), so this kind is checked in OpenVINO against the flag there, not in
               onnxruntime: an OpenVINO-only graph, to see what the Concat costs.

    python bench/openvino_zero_frame.py /tmp/h-bench/resnet50/ovflag.onnx /tmp/v_rz2.onnx rz2
    python bench/openvino_profile.py --runs 11 --out - plain.onnx /tmp/v_fixed.onnx /tmp/v_rz2.onnx

(`ovflag.onnx`: `tsm-rewrite plain.onnx -o ovflag.onnx --shift-form openvino`, plain.onnx the
ResNet-50 that bench/overhead.py exports.) Results: bench/RESULTS-openvino-zero-frame.md.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

T = NT = 8  # one clip


def variant(m, kinds):
    g = m.graph
    for vi in list(g.input[:1]) + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_value = NT
    byname = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    new_inits, remove, before = [], set(), {}
    graph_wide = []

    def const(name, arr):
        new_inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    for n in [n for n in g.node if n.name.endswith("tsm/Gather_rows")]:
        site = n.name[:-len("Gather_rows")]
        cz = byname[site + "Concat_zero_frame"]
        head = cz.input[1]
        hw = int(n.input[1].rsplit("pixels", 1)[1])
        h = w = int(round(hw ** 0.5))
        fold = int(numpy_helper.to_array(inits[byname[site + "Reshape_rows"].input[1]])[-1])
        frames = byname[site + "Reshape_frames"]
        s = int(numpy_helper.to_array(inits[frames.input[1]])[-1])
        k = s // fold
        assert k == 2, f"{site}: a head of two moved groups expected, {s} channels of fold {fold}"
        last = "zerolast" in kinds
        zero, off = (NT, 0) if last else (0, 1)
        if "outofrange" in kinds:
            # The frame just past the head: its rows are past the last row, and the indices stay
            # small (OpenVINO may take them as 32-bit).
            zero, off = NT, 0
        idx = np.zeros((NT, hw, k), np.int64)
        for f in range(NT):
            t = f % T
            sources = [f + 1 + off if t < T - 1 else zero, f - 1 + off if t > 0 else zero]
            for j, src in enumerate(sources):
                idx[f, :, j] = (src * hw + np.arange(hw)) * k + j
        idx = idx.reshape(-1)
        if "rows16" in kinds:
            e = fold // 16
            idx = (idx[:, None] * e + np.arange(e)).reshape(-1)
            byname[site + "Reshape_rows"].input[1] = const(site + "rows16_shape", np.array([-1, 16], np.int64))
        made = []
        if "rz2" in kinds:
            if not graph_wide:
                starts = const("/rz/starts", np.zeros(4, np.int64))
                ends = const("/rz/ends", np.ones(4, np.int64))
                graph_wide += [helper.make_node("Slice", ["input", starts, ends], ["/rz/pixel"], name="/rz/Slice"),
                               helper.make_node("Greater", ["/rz/pixel", "/rz/pixel"], ["/rz/never"], name="/rz/Greater")]
            zeros = const(site + "rz_zeros", np.zeros((1, s, h, w), np.float32))
            made.append(helper.make_node("Where", ["/rz/never", zeros, const(site + "rz_zero", np.float32(0))],
                                         [site + "rz_zero_frame"], name=site + "rz_Where"))
            cz.input[0] = site + "rz_zero_frame"
        if "runtimezero" in kinds:
            axes = const(site + "rz_axes", np.array([0], np.int64))
            first = [head, const(site + "rz_starts", np.array([0], np.int64)), const(site + "rz_ends", np.array([1], np.int64)), axes]
            made += [helper.make_node("Slice", first, [site + "rz_first"], name=site + "rz_Slice"),
                     helper.make_node("Greater", [site + "rz_first"] * 2, [site + "rz_never"], name=site + "rz_Greater"),
                     helper.make_node("Where", [site + "rz_never", site + "rz_first", const(site + "rz_zero", np.float32(0))],
                                      [site + "rz_zero_frame"], name=site + "rz_Where")]
            cz.input[0] = site + "rz_zero_frame"
        before[cz.name] = made
        if "outofrange" in kinds:
            byname[site + "Transpose_channels_last"].input[0] = head
            remove.add(cz.name)
        if last:
            cz.input[0], cz.input[1] = cz.input[1], cz.input[0]
        n.input[1] = const(site + "index", idx)
        if "nocarrier" in kinds:
            byname[site + "Transpose_back"].input[0] = frames.output[0]
            remove |= {site + "Concat", site + "Transpose_batch_carrier", site + "Slice_batch_carrier"}
    nodes = list(graph_wide)
    for n in g.node:
        if n.name not in remove:
            nodes += before.get(n.name, []) + [n]
    # What the constant indices left unread (the frame index's nodes) goes.
    while True:
        used = {i for n in nodes for i in n.input} | {o.name for o in g.output}
        kept = [n for n in nodes if any(o in used for o in n.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del g.node[:]
    g.node.extend(nodes)
    kept = [t for t in list(g.initializer) + new_inits if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]
    return m


def main():
    src, dst, kinds = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
    unknown = kinds - {"fixed", "zerolast", "rows16", "nocarrier", "runtimezero", "rz2", "outofrange"}
    if unknown:
        sys.exit(f"unknown kinds: {sorted(unknown)}")
    onnx.save(variant(onnx.load(src), kinds), dst)
    x = np.random.default_rng(0).standard_normal((NT, 3, 224, 224), dtype=np.float32)
    if "outofrange" in kinds:
        import openvino as ov
        core = ov.Core()
        run = [core.compile_model(p, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}) for p in (src, dst)]
        ref, out = (c(x)[0] for c in run)
        if not np.array_equal(ref, out):
            sys.exit(f"{dst}: not the flag's output in OpenVINO (max abs diff {np.abs(ref - out).max():.3g})")
        print(f"{dst}: the flag's output bit for bit in OpenVINO f32 (onnxruntime refuses its indices)")
        return
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(src, opts).run(None, {"input": x})[0]
    out = ort.InferenceSession(dst, opts).run(None, {"input": x})[0]
    if not np.array_equal(ref, out):
        sys.exit(f"{dst}: not the flag's output (max abs diff {np.abs(ref - out).max():.3g})")
    print(f"{dst}: {len(onnx.load(dst, load_external_data=False).graph.node)} nodes, the flag's output bit for bit")


if __name__ == "__main__":
    main()
