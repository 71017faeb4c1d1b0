"""How much two loads of one model differ in speed, for as long as they live (bench/overhead.py's
--instances exists because of it).

    python bench/load_effect.py                      # ResNet-50 and MobileNetV2, onnxruntime, OpenVINO f32, tract
    python bench/load_effect.py --runtime openvino --model mobilenet_v2 --loads 6 --rounds 30

Loads one model K times in one runtime (K sessions, compiled models or tract plans of the same file,
each with its own input), then runs them in rounds: every load runs --frames inferences per round,
in an order that rotates every round. Reports each load's median time ratio to load 0 over the
rounds, with its interquartile range. If the loads were interchangeable, every ratio would sit at
1.00 with its quartiles on both sides of it; a load whose quartiles both sit above or below 1 is
persistently slower or faster than load 0: an offset that no number of rounds on one load averages
out, which a paired ratio of two models each loaded once carries as if it were the graphs' doing.

Per frame (batch 1 at 224x224): the models bench/overhead.py builds in /tmp/h-bench (run it once
first, or pass --work).
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from overhead import ov_config, ov_read, tract_load  # noqa: E402


def loads(runtime, path, x, k):
    """k zero-argument functions, each one inference of its own load of the model on x."""
    runs = []
    for _ in range(k):
        if runtime == "ort":
            import onnxruntime as ort
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x.copy()}
            runs.append(lambda s=sess, f=feed: s.run(None, f))
        elif runtime == "openvino":
            import openvino as ov
            core = ov.Core()
            req = core.compile_model(ov_read(core, path, x.shape[0]), "CPU", ov_config("f32")).create_infer_request()
            req.set_input_tensor(0, ov.Tensor(x.copy()))
            runs.append(req.infer)
        else:
            import tract
            state, t = tract_load(path, x.shape[0]).spawn_state(), tract.Tensor.from_numpy(x.copy())
            runs.append(lambda s=state, t=t: s.run([t]))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="append", choices=["ort", "openvino", "tract"])
    ap.add_argument("--model", action="append", choices=["resnet50", "mobilenet_v2"])
    ap.add_argument("--loads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--work", default="/tmp/h-bench")
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    print("| model | runtime | 2D ms (load 0) | each load's median time ratio to load 0 [interquartile range] |")
    print("|---|---|---|---|")
    for arch in args.model or ["resnet50", "mobilenet_v2"]:
        path = os.path.join(args.work, arch, "plain.onnx")
        for rt in args.runtime or ["ort", "openvino", "tract"]:
            runs = loads(rt, path, x, args.loads)
            for run in runs:
                run()
            t = np.zeros((args.rounds, len(runs)))
            for r in range(args.rounds):
                for k in [(r + i) % len(runs) for i in range(len(runs))]:
                    t0 = time.perf_counter()
                    for _ in range(args.frames):
                        runs[k]()
                    t[r, k] = (time.perf_counter() - t0) / args.frames
            q = t / t[:, [0]]
            cells = ", ".join(f"{np.median(q[:, k]):.3f} [{np.percentile(q[:, k], 25):.3f}-{np.percentile(q[:, k], 75):.3f}]"
                              for k in range(1, len(runs)))
            print(f"| {arch} | {rt} | {np.median(t[:, 0]) * 1e3:.1f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
