#!/usr/bin/env python3
"""How an --online model's buffers travel through OpenVINO, per frame, against the 2D model: as f32
tensors (what the runtime gets by default), as bf16 tensors (a PrePostProcessor sets the buffers'
element type, so nothing converts them at the boundary when OpenVINO computes in bf16), and as
OpenVINO states (tsm_rewrite.openvino_stateful). Paired rounds whose order rotates; the ratio of a
round is the mode's time per frame over the 2D model's in the same round.

    PREC=f32 python bench/openvino_online_modes.py 11 /tmp/h-bench/resnet50/plain.onnx /tmp/h-bench/resnet50/online.onnx
    python bench/openvino_online_modes.py 11 ...     # PREC unset: OpenVINO's default precision (bf16 on AVX512-BF16/AMX)

Tensors ping-pong between two infer requests (bench/overhead.py's ov_pingpong), so the harness
copies nothing. Values are not checked here (bf16 is not exact); bench/overhead.py and
python/tests check the states mode against the PyTorch reference in f32."""
import os
import sys
import time

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import ov_config, ov_pingpong, ov_read  # noqa: E402  (also puts the repo's python/ on the path)
from tsm_rewrite import openvino_stateful  # noqa: E402

core = ov.Core()
CFG = ov_config(os.environ.get("PREC"))


def frame_array(shape):
    return np.random.default_rng(0).random(tuple(shape), dtype=np.float32)


def f32_tensors(path):
    cm = core.compile_model(ov_read(core, path, 1), "CPU", CFG)
    return ov_pingpong(ov, cm, frame_array(cm.inputs[0].get_shape()), ov.Type.f32)


def bf16_tensors(path):
    m = ov_read(core, path, 1)
    ppp = PrePostProcessor(m)
    for i in range(1, len(m.inputs)):
        ppp.input(i).tensor().set_element_type(ov.Type.bf16)
    for i in range(1, len(m.outputs)):
        ppp.output(i).tensor().set_element_type(ov.Type.bf16)
    cm = core.compile_model(ppp.build(), "CPU", CFG)
    return ov_pingpong(ov, cm, frame_array(cm.inputs[0].get_shape()), ov.Type.bf16)


def states(path):
    cm = core.compile_model(openvino_stateful(path, core=core), "CPU", CFG)
    r = cm.create_infer_request()
    r.set_tensor(cm.inputs[0], ov.Tensor(frame_array(cm.inputs[0].get_shape())))
    return r.infer


def main():
    rounds, plain, online = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    fns = {"2d": f32_tensors(plain), "null": f32_tensors(plain)}
    for p in online:
        n = os.path.basename(p)
        fns[f"{n} f32 tensors"] = f32_tensors(p)
        fns[f"{n} bf16 tensors"] = bf16_tensors(p)
        fns[f"{n} states"] = states(p)
    names = list(fns)
    times = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            for _ in range(2):
                fns[k]()
            t = time.perf_counter()
            for _ in range(10):
                fns[k]()
            times[k].append((time.perf_counter() - t) / 10)
    print(f"precision: {CFG.get('INFERENCE_PRECISION_HINT', 'OpenVINO default')}; {rounds} rounds")
    for k in names:
        rat = np.array(times[k]) / np.array(times["2d"])
        print(f"{k:36s} {np.median(times[k]) * 1e3:7.2f} ms  ratio {np.median(rat):.3f} "
              f"[{np.percentile(rat, 25):.3f}-{np.percentile(rat, 75):.3f}]")


if __name__ == "__main__":
    main()
