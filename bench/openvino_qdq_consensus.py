#!/usr/bin/env python3
"""OpenVINO reduces a dequantized `[N, T, K]` over T wrongly for every clip but the first.

Found by bench/fixture_sweep.py once it compared OpenVINO's values (stop 34): `--consensus avg` on
the three QDQ fixtures, 1.4-1.9 off onnxruntime, static or dynamic. OpenVINO's low-precision
passes move the output's DequantizeLinear down through the consensus's Reshape into the
ReduceMean, and the CPU plugin then averages the int8 tensor right for the first clip only (later
clips come out as the zero point, or other wrong values). A `Max(x, x)` before the Reshape (exact:
x for every value, NaN included) is a node those passes do not move through; the tool emits it in
the consensus of every graph that has a DequantizeLinear.

Part 1 builds the smallest graphs that show it (QuantizeLinear, DequantizeLinear, Reshape to
`[-1, T, ...]`, a reduction over axis 1) and prints OpenVINO's distance from onnxruntime for each
form. Part 2 rewrites the QDQ fixtures with `--consensus avg` and `max` and runs each in OpenVINO
as written and with the copy taken out again, against onnxruntime.

    python bench/openvino_qdq_consensus.py TSM_BIN
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def ort_run(path, feed):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def ov_run(core, path, x, static):
    m = core.read_model(path)
    if static:
        m.reshape({m.inputs[0].get_any_name(): list(x.shape)})
    return core.compile_model(m, "CPU", CONFIG)(x)[0]


def tiny(path, rest, t, op, copy, zp_type):
    """Q, DQ, [Max copy,] Reshape to [-1, t, *rest], op over axis 1, on an input [n, *rest]."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"])]
    src = "d"
    if copy:
        nodes.append(helper.make_node("Max", ["d", "d"], ["c"]))
        src = "c"
    nodes += [helper.make_node("Reshape", [src, "shape"], ["clips"]),
              helper.make_node(op, ["clips"], ["y"], axes=[1], keepdims=0)]
    inits = [numpy_helper.from_array(np.array(0.01, np.float32), "s"),
             numpy_helper.from_array(np.array(0, zp_type), "zp"),
             numpy_helper.from_array(np.array([-1, t] + rest, np.int64), "shape")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"] + rest)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def without_copy(src, dst):
    m = onnx.load(src)
    copies = [n for n in m.graph.node if n.op_type == "Max" and n.name.endswith("/consensus/Max_float")]
    for n in copies:
        for other in m.graph.node:
            other.input[:] = [n.input[0] if i == n.output[0] else i for i in other.input]
        m.graph.node.remove(n)
    onnx.save(m, dst)
    return len(copies)


def main():
    tool = sys.argv[1]
    core = ov.Core()
    work = tempfile.mkdtemp(prefix="ov-consensus-")
    print("## Part 1: the smallest graphs (3 clips; OpenVINO static, max |diff| from onnxruntime)\n")
    print("| reshaped to | T | ReduceMean uint8 | ReduceMean int8 | ReduceMax uint8 | ReduceMean uint8, Max copy first | one clip |")
    print("|---|---|---|---|---|---|---|")
    path = os.path.join(work, "tiny.onnx")
    for rest in ([10], [1000], [16, 7, 7], [3, 5]):
        for t in (8, 4):
            row = []
            for op, copy, zp, n in (("ReduceMean", False, np.uint8, 3), ("ReduceMean", False, np.int8, 3),
                                    ("ReduceMax", False, np.uint8, 3), ("ReduceMean", True, np.uint8, 3),
                                    ("ReduceMean", False, np.uint8, 1)):
                tiny(path, rest, t, op, copy, zp)
                x = np.random.default_rng(0).uniform(0 if zp == np.uint8 else -1, 2, [n * t] + rest).astype(np.float32)
                d = float(np.abs(ov_run(core, path, x, True) - ort_run(path, {"x": x})).max())
                row.append(f"{d:.3f}")
            print(f"| [-1, {t}, {', '.join(map(str, rest))}] | {t} | " + " | ".join(row) + " |")
    print("\n## Part 2: the QDQ fixtures (2 clips), max |diff| from onnxruntime, OpenVINO dynamic / static\n")
    print("| fixture | consensus | the 2D model | as written | the copy taken out |")
    print("|---|---|---|---|---|")
    for name in ("resnet_basic_qdq", "resnet_bottleneck_qdq_pc", "mobilenet_v2_qdq_pc"):
        plain = os.path.join(ROOT, "models", f"{name}.onnx")
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(ROOT, "data", name, "input_0.pb")))
        feed = {"input": x}
        own = "/".join(f"{float(np.abs(ov_run(core, plain, x, s) - ort_run(plain, feed)).max()):.3f}" for s in (False, True))
        for consensus in ("avg", "max"):
            out, bare = os.path.join(work, f"{name}_{consensus}.onnx"), os.path.join(work, f"{name}_{consensus}_bare.onnx")
            subprocess.run([tool, plain, "-o", out, "--no-validate", "--consensus", consensus], check=True,
                           capture_output=True)
            assert without_copy(out, bare) == 1, out
            cells = []
            for path in (out, bare):
                want = ort_run(path, feed)
                cells.append("/".join(f"{float(np.abs(ov_run(core, path, x, s) - want).max()):.3f}" for s in (False, True)))
            print(f"| {name} | {consensus} | {own} | {cells[0]} | {cells[1]} |")
    print(f"\nOpenVINO {ov.__version__.split('-')[0]}, onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
