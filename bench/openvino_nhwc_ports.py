#!/usr/bin/env python3
"""Online per frame in OpenVINO f32, the buffers as tensors laid out channels-last by OpenVINO's
own PrePostProcessor (the model's layout NCHW, the tensors' NHWC), against the same model with
planar tensors (bench/overhead.py's ov_online) and with the buffers as states
(tsm_rewrite.openvino_stateful), in paired rounds against the 2D model (bench/overhead.py's
measure, three loads per model, 10 frames per model per round).

Why: OpenVINO computes the convolutions channels-last; a planar buffer costs a reorder at each of
the online model's 32 ports (bench/RESULTS-openvino-boundary.md). Declared channels-last in the
graph (Transposes at the ports, bench/variants.py nhwc-buffers) the reorders mostly became
relabels but every other runtime ran the Transposes; the PrePostProcessor asks OpenVINO alone.

    PYTHONPATH=python python bench/openvino_nhwc_ports.py plain.onnx online.onnx [ROUNDS]

First checks the channels-last model frame by frame (6 frames, buffers fed back) against the
planar one: the logits must be equal.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead as oh  # noqa: E402


def compiled(path, channels_last):
    import openvino as ov
    from openvino.preprocess import PrePostProcessor
    core = ov.Core()
    m = oh.ov_read(core, path, 1)
    if channels_last:
        ppp = PrePostProcessor(m)
        for port, side in [(i, ppp.input) for i in m.inputs[1:]] + [(o, ppp.output) for o in m.outputs[1:]]:
            side(port.get_any_name()).tensor().set_layout(ov.Layout("NHWC"))
            side(port.get_any_name()).model().set_layout(ov.Layout("NCHW"))
        m = ppp.build()
    return ov, core.compile_model(m, "CPU", oh.ov_config("f32"))


def stream(path, channels_last, frames):
    """The logits of each frame, the buffers fed back."""
    _, cm = compiled(path, channels_last)
    req = cm.create_infer_request()
    bufs = [np.zeros(list(i.get_shape()), np.float32) for i in cm.inputs[1:]]
    out = []
    for f in frames:
        res = req.infer([f] + bufs)
        out.append(res[cm.outputs[0]].copy())
        bufs = [res[o].copy() for o in cm.outputs[1:]]
    return out


def main():
    plain, online = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 21
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(6)]
    a, b = stream(online, False, frames), stream(online, True, frames)
    diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    print(f"channels-last ports against planar, 6 frames: max abs diff {diff:.1e}")
    frame = frames[0]

    def nhwc():
        ov, cm = compiled(online, True)
        return oh.ov_pingpong(ov, cm, frame, ov.Type.f32)

    fns = {
        "2d": [oh.ov_offline(plain, frame) for _ in range(3)],
        "null": [oh.ov_offline(plain, frame) for _ in range(3)],
        "planar tensors": [oh.ov_online(online, frame) for _ in range(3)],
        "channels-last tensors": [nhwc() for _ in range(3)],
        "states": [oh.ov_online_state(online, frame) for _ in range(3)],
    }
    ratios, times = oh.measure(fns, rounds, reps=10, log_=None)
    print(f"{online}: 2D {np.median(times['2d']) * 1e3:.1f} ms per frame, {rounds} rounds, 3 loads per model")
    for n, v in ratios.items():
        print(f"  {n:22s} {oh.fmt(oh.summarize(v))}")


if __name__ == "__main__":
    main()
