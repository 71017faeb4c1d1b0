#!/usr/bin/env python3
"""What it costs OpenVINO to take an online model's buffers in and out, alone: a model made of
ResNet-50's 16 online buffers (the shapes of tsm-rewrite --online's buffer inputs at 224x224), each
only through a Relu, timed per inference with the buffers as f32 tensors, as bf16 tensors, and as
states, under OpenVINO's default precision (bf16 on CPUs with AVX512-BF16 or AMX) and pinned to f32,
each called two ways: `infer()`, which in OpenVINO's Python binding copies every output into a new
numpy array after the inference, and `infer(share_outputs=True)`, which returns views and copies
nothing (what bench/overhead.py calls since stop 44). Rounds alternate the configurations; medians
over the rounds.

Until stop 44 this script timed `infer()` only and read its 1-3 ms as OpenVINO's cost at its
ports. That time was the binding's copies of the 16 buffer outputs (2.8 MB), and it swung between
runs with where glibc put each new 400 KB array: fresh pages from mmap (a page fault per 4 KB,
each frame) until a larger block freed in the process raised glibc's mmap threshold, then reused
heap (a process that has loaded and freed a model's weights is in that state).

    python bench/openvino_buffer_io.py [rounds]
"""
import os
import statistics
import sys
import tempfile
import time

import onnx
import openvino as ov
from onnx import TensorProto, helper
from openvino._offline_transformations import apply_make_stateful_transformation
from openvino.preprocess import PrePostProcessor

SHAPES = [(32, 56, 56)] * 3 + [(64, 28, 28)] * 4 + [(128, 14, 14)] * 6 + [(256, 7, 7)] * 3


def buffers_model(path):
    ins = [helper.make_tensor_value_info(f"b{k}", TensorProto.FLOAT, [1, *s]) for k, s in enumerate(SHAPES)]
    outs = [helper.make_tensor_value_info(f"o{k}", TensorProto.FLOAT, [1, *s]) for k, s in enumerate(SHAPES)]
    nodes = [helper.make_node("Relu", [f"b{k}"], [f"o{k}"]) for k in range(len(SHAPES))]
    onnx.save(helper.make_model(helper.make_graph(nodes, "buffers", ins, outs),
                                opset_imports=[helper.make_opsetid("", 13)]), path)


def runner(core, path, mode, config, call):
    m = core.read_model(path)
    typ = ov.Type.f32
    if mode == "bf16 tensors":
        typ = ov.Type.bf16
        ppp = PrePostProcessor(m)
        for i in range(len(SHAPES)):
            ppp.input(i).tensor().set_element_type(typ)
            ppp.output(i).tensor().set_element_type(typ)
        m = ppp.build()
    elif mode == "states":
        apply_make_stateful_transformation(m, {f"b{k}": f"o{k}" for k in range(len(SHAPES))})
    cm = core.compile_model(m, "CPU", config)
    r = cm.create_infer_request()
    for port, setter in [(p, r.set_tensor) for p in list(cm.inputs) + list(cm.outputs)]:
        t = ov.Tensor(typ, port.get_shape())
        t.data.fill(0.5)  # not whatever the allocation held (denormals, NaN)
        setter(port, t)
    if call == "infer()":
        return r.infer
    return lambda: r.infer(share_outputs=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    core = ov.Core()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "buffers.onnx")
        buffers_model(path)
        runs = {(p, mode, call): runner(core, path, mode, {"INFERENCE_PRECISION_HINT": p} if p else {}, call)
                for p in [None, "f32"] for mode in ["f32 tensors", "bf16 tensors", "states"]
                for call in ["infer()", "share_outputs"]}
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            for _ in range(20):  # also lets the previous model's worker threads stop spinning
                run()
            t = time.perf_counter()
            for _ in range(200):
                run()
            times[k].append((time.perf_counter() - t) / 200 * 1e3)
    for (p, mode, call), v in times.items():
        print(f"precision {p or 'default':7s} buffers as {mode:12s} {call:13s} {statistics.median(v):6.3f} ms "
              f"[{min(v):.3f}-{max(v):.3f}]")


if __name__ == "__main__":
    main()
