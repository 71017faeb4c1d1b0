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
as written and with the copy taken out again, against onnxruntime. Part 3 does the same for the
full-size QDQ models given after the tool (bench/qdq.py writes them, e.g. /tmp/h-qdq/resnet50_qdq.onnx),
on 2 clips of seeded random frames at their size, and compares with the per-frame rewrite's
frames averaged in numpy, each runtime its own.

    python bench/openvino_qdq_consensus.py TSM_BIN [FULL_SIZE_QDQ.onnx ...]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtimes import openvino_run, ort_run  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


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
                d = float(np.abs(openvino_run(path, {"x": x}, True, core)[0] - ort_run(path, {"x": x})[0]).max())
                row.append(f"{d:.3f}")
            print(f"| [-1, {t}, {', '.join(map(str, rest))}] | {t} | " + " | ".join(row) + " |")
    print("\n## Part 2: the QDQ fixtures (2 clips), max |diff| from onnxruntime, OpenVINO dynamic / static\n")
    print("| fixture | consensus | the 2D model | as written | the copy taken out |")
    print("|---|---|---|---|---|")
    for name in ("resnet_basic_qdq", "resnet_bottleneck_qdq_pc", "mobilenet_v2_qdq_pc"):
        plain = os.path.join(ROOT, "models", f"{name}.onnx")
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(ROOT, "data", name, "input_0.pb")))
        feed = {"input": x}
        own = "/".join(f"{float(np.abs(openvino_run(plain, feed, s, core)[0] - ort_run(plain, feed)[0]).max()):.3f}" for s in (False, True))
        for consensus in ("avg", "max"):
            out, bare = os.path.join(work, f"{name}_{consensus}.onnx"), os.path.join(work, f"{name}_{consensus}_bare.onnx")
            subprocess.run([tool, plain, "-o", out, "--no-validate", "--consensus", consensus], check=True,
                           capture_output=True)
            assert without_copy(out, bare) == 1, out
            cells = []
            for path in (out, bare):
                want = ort_run(path, feed)[0]
                cells.append("/".join(f"{float(np.abs(openvino_run(path, feed, s, core)[0] - want).max()):.3f}" for s in (False, True)))
            print(f"| {name} | {consensus} | {own} | {cells[0]} | {cells[1]} |")
    if sys.argv[2:]:
        print("\n## Part 3: full-size QDQ models (2 clips of 8 random frames), --consensus avg, max |diff| per clip\n")
        print("| model | OpenVINO's per-frame output averaged, against onnxruntime's | the consensus in OpenVINO against its own averaged frames: as written | the copy taken out |")
        print("|---|---|---|---|")
    for plain in sys.argv[2:]:
        m = onnx.load(plain, load_external_data=False)
        first = m.graph.input[0]
        hw = [d.dim_value for d in first.type.tensor_type.shape.dim[1:]]
        clip = {first.name: np.random.default_rng(0).standard_normal([16] + hw).astype(np.float32)}
        base = os.path.join(work, os.path.basename(plain)[:-5])
        subprocess.run([tool, plain, "-o", base + "_frames.onnx", "--no-validate"], check=True, capture_output=True)
        subprocess.run([tool, plain, "-o", base + "_avg.onnx", "--no-validate", "--consensus", "avg"], check=True,
                       capture_output=True)
        assert without_copy(base + "_avg.onnx", base + "_bare.onnx") == 1
        mean = lambda y: y.reshape(2, 8, -1).mean(1)  # noqa: E731
        ov_frames = mean(openvino_run(base + "_frames.onnx", clip, False, core)[0])
        ort_frames = mean(ort_run(base + "_frames.onnx", clip)[0])
        rows = lambda a, b: "/".join(f"{v:.3f}" for v in np.abs(a - b).reshape(2, -1).max(1))  # noqa: E731
        print(f"| {os.path.basename(plain)} | {rows(ov_frames, ort_frames)} | "
              f"{rows(openvino_run(base + '_avg.onnx', clip, False, core)[0], ov_frames)} | "
              f"{rows(openvino_run(base + '_bare.onnx', clip, False, core)[0], ov_frames)} |")
    print(f"\nOpenVINO {ov.__version__.split('-')[0]}, onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
