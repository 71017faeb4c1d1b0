#!/usr/bin/env python3
"""OpenVINO on the QDQ rewrites with a dynamic batch (found and fixed in stop 33): each committed
QDQ fixture rewritten by TSM_BIN with the default flags (the batch form at the QDQ sites: the
quantized values moved along the batch axis, masked by a Where on frame masks computed at run
time), the same rewrite with the masks' ones made as the tool made them until stop 33
(ConstantOfShape of the input's Shape; since then from the input's values), and with constant
masks for the fixture's batch; and the 2D QDQ model. Each run in OpenVINO f32 compiled as read (the
batch dynamic) and reshaped to the input's static shape first, against onnxruntime with graph
optimizations off (the reference arithmetic of the fixtures)."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtimes import openvino_run, ort_run  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
T = 8


def constant_masks(src, dst, batch):
    """`src` with the graph's frame masks (`/tsm/frames/maskK`, a Gather of a [T, ...] table by each
    frame's index in its clip) replaced by constants for `batch` frames."""
    m = onnx.load(src)
    tables = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    masks = {n.output[0]: tables[n.input[0]] for n in m.graph.node
             if n.name.startswith("/tsm/frames/mask") and n.op_type == "Gather"}
    keep = [n for n in m.graph.node if n.output[0] not in masks]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    for name, table in masks.items():
        m.graph.initializer.append(numpy_helper.from_array(table[np.arange(batch) % T], name))
    onnx.save(m, dst)


def shape_ones(src, dst):
    """`src` with the frame masks' ones (`/tsm/frames/ones`) made from the input's Shape by
    ConstantOfShape, as the tool made them until stop 33."""
    m = onnx.load(src)
    g = m.graph
    ones = next(n for n in g.node if n.output[0] == "/tsm/frames/ones")
    made = [helper.make_node("Shape", [g.input[0].name], ["/dbg/shape"]),
            helper.make_node("Slice", ["/dbg/shape", "/dbg/first", "/dbg/first_end"], ["/dbg/frames"]),
            helper.make_node("ConstantOfShape", ["/dbg/frames"], [ones.output[0]],
                             value=numpy_helper.from_array(np.array([1], np.int64)))]
    g.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "/dbg/first"),
                          numpy_helper.from_array(np.array([1], np.int64), "/dbg/first_end")])
    nodes = [n for n in g.node if n is not ones]
    del g.node[:]
    g.node.extend(made + nodes)
    onnx.save(m, dst)


def main():
    tool = sys.argv[1]
    work = tempfile.mkdtemp()
    print("max |OpenVINO - onnxruntime (optimizations off)|, dynamic batch / static shape")
    for name in ("resnet_basic_qdq", "resnet_bottleneck_qdq_pc", "mobilenet_v2_qdq_pc"):
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(ROOT, "data", name, "input_0.pb")))
        paths = {"2D": os.path.join(ROOT, "models", f"{name}.onnx")}
        paths["default"] = os.path.join(work, f"{name}.onnx")
        subprocess.run([tool, paths["2D"], "-o", paths["default"], "--no-validate"], check=True, capture_output=True)
        paths["ones from Shape"] = os.path.join(work, f"{name}-shape.onnx")
        shape_ones(paths["default"], paths["ones from Shape"])
        paths["constant masks"] = os.path.join(work, f"{name}-masks.onnx")
        constant_masks(paths["default"], paths["constant masks"], len(x))
        cells = []
        for form, path in paths.items():
            ref = ort_run(path, {"input": x}, optimize=False)[0]
            d, s = (float(np.abs(openvino_run(path, {"input": x}, static)[0] - ref).max()) for static in (False, True))
            cells.append(f"{form} {d:.3f} / {s:.3f}")
        print(f"{name} (logits up to {np.abs(ref).max():.2f}): " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
