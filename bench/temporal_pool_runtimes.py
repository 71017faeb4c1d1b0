#!/usr/bin/env python3
"""ResNet-50 with `--temporal-pool` (and with `--consensus avg` after it) in onnxruntime, OpenVINO,
tract (the batch left a symbol) and TVM, against bench/verify_deploy.py's PyTorch reference
(fixtures/export_deploy.py: make_tsm_temporal_pool); 2 clips of 8 frames at 224x224, opset 17 (or OPSET),
dynamic batch. Then the same network exported with H and W open too (`--temporal-pool` took such
a model since stop 33), rewritten once and run at 224x224 and at 160x192. Match: max |diff| <=
1e-4 * max(1, max |ref|).

    python bench/temporal_pool_runtimes.py TSM_BIN [OPSET]      # opset 17 by default
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
sys.dont_write_bytecode = True
import verify_full as vf  # noqa: E402
from export_deploy import make_tsm_temporal_pool  # noqa: E402

T = 8
WORK = "/tmp/tp"


def runtimes(path, x):
    import onnxruntime as ort
    import openvino as ov
    import tract
    import tvm
    from tvm import relax
    from tvm.relax.frontend import onnx as rx_onnx
    got = {"onnxruntime": ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]}
    got["OpenVINO"] = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]
    got["tract (batch symbolic)"] = tract.onnx().load(path).into_model().into_runnable().run([x])[0].to_numpy()
    mod = rx_onnx.from_onnx(onnx.load(path), shape_dict={"input": list(x.shape)}, keep_params_in_input=False)
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    got["TVM"] = (out if hasattr(out, "numpy") else out[0]).numpy()
    return got


def main():
    tool = sys.argv[1]
    opset = int(sys.argv[2]) if len(sys.argv) > 2 else 17
    os.makedirs(WORK, exist_ok=True)
    r50 = vf.build("resnet50")
    x = vf.make_input("resnet50", 224)
    src = os.path.join(WORK, "resnet50.onnx")
    torch.onnx.export(r50, (torch.from_numpy(x),), src, dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    tp = make_tsm_temporal_pool(r50, vf.shift_sites)
    y = vf.torch_run(tp, x)
    for name, flags, want in (("tpool", ["--temporal-pool"], y),
                              ("tpool-avg", ["--temporal-pool", "--consensus", "avg"],
                               y.reshape(-1, T // 2, y.shape[-1]).mean(1))):
        dst = os.path.join(WORK, f"{name}.onnx")
        subprocess.run([tool, src, "-o", dst, "--no-validate"] + flags, check=True, capture_output=True)
        report(" ".join(flags), dst, x, want)
    src = os.path.join(WORK, "resnet50_open_hw.onnx")
    torch.onnx.export(r50, (torch.from_numpy(x),), src, dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}})
    dst = os.path.join(WORK, "tpool_open_hw.onnx")
    subprocess.run([tool, src, "-o", dst, "--no-validate", "--temporal-pool"], check=True, capture_output=True)
    x2 = np.random.default_rng(160192).standard_normal((2 * T, 3, 160, 192)).astype(np.float32)
    for xx in (x, x2):
        report(f"--temporal-pool, H and W open, input {list(xx.shape)}", dst, xx, vf.torch_run(tp, xx))


def report(what, path, x, want):
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    cells = [f"{k} {'ok' if np.abs(v - want).max() <= tol else 'MISMATCH'} {np.abs(v - want).max():.1e}"
             for k, v in runtimes(path, x).items()]
    print(f"opset {onnx.load(path, load_external_data=False).opset_import[0].version}, {what}: output {list(want.shape)}, tolerance {tol:.1e}: {', '.join(cells)}", flush=True)

if __name__ == "__main__":
    main()
