#!/usr/bin/env python3
"""Two checks on why the stream form costs more in tract end to end than its operators do in tract's
profile (bench/tract_profile.py), on models bench/overhead.py built (ResNet-50, one clip of 8):

- page faults: minor faults and time per run of each model; run it again with glibc told to keep
  its memory, and the faults go to zero in every model while the ratio stays:
      python bench/tract_stream_cost.py faults
      MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 python bench/tract_stream_cost.py faults
- scaling: the median ratio to the 2D model at several input sizes. A cost per node (scheduling
  between operators) would weigh more as the size falls, cache traffic less; the ratio staying put
  means the cost grows with the compute:
      ROUNDS=21 taskset -c 0 python bench/tract_stream_cost.py scaling 56 112 224

Models: plain (2D), null (its copy), tsm (the default), batch (--shift-form batch); clip only at
224 (its Reshape holds the size). Paired rounds whose order rotates."""
import os
import resource
import statistics
import sys
import time

import numpy as np
import tract

WORK = os.environ.get("WORK", "/tmp/h-bench/resnet50")


def load(name, hw):
    m = tract.onnx().load(os.path.join(WORK, f"{name}.onnx"))
    m.set_input_fact(0, f"8,3,{hw},{hw},f32")
    return m.into_model().into_runnable()


def rounds(names, hw, n):
    x = np.random.default_rng(0).standard_normal((8, 3, hw, hw), dtype=np.float32)
    runs = {k: load(k, hw) for k in names}
    for r in runs.values():
        r.run([x])
    out = {k: [] for k in names}
    for i in range(n):
        for k in names[i % len(names):] + names[:i % len(names)]:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            runs[k].run([x])
            out[k].append((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
    return out


def main():
    what, args = sys.argv[1], sys.argv[2:]
    if what == "faults":
        out = rounds(["plain", "tsm", "clip", "batch"], 224, 5)
        for k, v in out.items():
            faults = statistics.median(f for _, f in v)
            print(f"{k:6s} {statistics.median(t for t, _ in v) * 1e3:8.1f} ms per clip, "
                  f"{faults:8.0f} minor faults ({faults * resource.getpagesize() / 1e6:.0f} MB faulted in)")
    elif what == "scaling":
        for hw in map(int, args or ["56", "112", "224"]):
            names = ["plain", "null", "tsm", "batch"] + (["clip"] if hw == 224 else [])
            out = rounds(names, hw, int(os.environ.get("ROUNDS", 9 if hw < 200 else 5)))
            ratio = {k: statistics.median(t / p for (t, _), (p, _) in zip(v, out["plain"])) for k, v in out.items()}
            print(hw, " ".join(f"{k} {r:.3f}" for k, r in ratio.items()))
    else:
        sys.exit(f"unknown check {what!r}: faults or scaling")


if __name__ == "__main__":
    main()
