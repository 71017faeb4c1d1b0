#!/usr/bin/env python3
"""A starting corpus for the `forms` fuzz target: each seed behind two config bytes (see
forms_config in tests/common/fuzz_case.rs), for every shift form offline and online and a few
options, so that the fuzzer starts from every form's code rather than finding its way there.
    python3 fuzz/forms_corpus.py corpus/forms"""
import glob, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
# First byte: form (0-4), online (8), inplace (16), past (32), Paddle's order (64), temporal pool
# (128). Second: consensus avg (2), every 2 (8), fold_div 4 (32).
configs = [(a, 0) for a in (0, 1, 2, 3, 4, 8, 9, 11, 12, 16, 32, 64, 128)] + [(0, 2), (0, 36), (3, 40)]
for path in sorted(glob.glob(os.path.join(HERE, "seeds", "*.onnx"))):
    model = open(path, "rb").read()
    name = os.path.basename(path).replace(".seed.onnx", "")
    for a, b in configs:
        with open(os.path.join(out, f"{name}-{a}-{b}"), "wb") as f:
            f.write(bytes([a, b]) + model)
print(len(configs), "configs x", len(glob.glob(os.path.join(HERE, "seeds", "*.onnx"))), "seeds into", out)
