#!/usr/bin/env python3
"""Two offline models with the same input and output timed side by side: one clip of 8 frames at
224x224, paired interleaved rounds (the order alternates), in onnxruntime (default session options)
and OpenVINO f32. Prints each model's median time, round by round the new model's time over the old
one's (median, interquartile range, rounds faster), and max |new - old|. For models
bench/overhead.py cannot check against its TSM reference (`--temporal-pool` changes the output's
batch). The same file twice gives the null row.

    python bench/paired_clip.py OLD.onnx NEW.onnx ROUNDS
"""
import statistics as st
import sys
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

X = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)


def ort_run(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: X})[0]


def ov_run(path):
    cm = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()
    return lambda: req.infer({0: X})[cm.outputs[0]]


def main():
    old, new, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for runtime, make in (("onnxruntime", ort_run), ("OpenVINO f32", ov_run)):
        run = {"old": make(old), "new": make(new)}
        diff = float(np.abs(run["old"]() - run["new"]()).max())
        for f in run.values():  # warm up
            f()
        times, ratios = {"old": [], "new": []}, []
        for r in range(rounds):
            for k in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
                t0 = time.perf_counter()
                run[k]()
                times[k].append(time.perf_counter() - t0)
            ratios.append(times["new"][-1] / times["old"][-1])
        q1, q3 = np.percentile(ratios, [25, 75])
        print(f"{runtime}: old {st.median(times['old']) * 1e3:.1f} ms, new {st.median(times['new']) * 1e3:.1f} ms; "
              f"new/old {st.median(ratios):.3f} [{q1:.3f}-{q3:.3f}], faster in {sum(q < 1 for q in ratios)}/{rounds}; "
              f"max |new - old| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
