#!/usr/bin/env python3
"""Open H and W at full size (stop 32): torchvision ResNet-50 and MobileNetV2 exported with dynamic
batch, height and width (opset 17, or OPSET), the default offline rewrite (--no-validate), run at
112x112 in onnxruntime against PyTorch's TSM and in TVM (Relax, llvm) against onnxruntime.

    python bench/open_hw_tvm.py TSM_BIN [OPSET]
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import verify_full as vf  # noqa: E402
import tvm  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.relax.frontend import onnx as rx_onnx  # noqa: E402

tool = sys.argv[1]
opset = int(sys.argv[2]) if len(sys.argv) > 2 else 17
for arch in ("resnet50", "mobilenet_v2"):
    m = vf.build(arch)
    src, dst = f"/tmp/dyn-{arch}.onnx", f"/tmp/dyn-{arch}-tsm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(2, 3, 112, 112),), src, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch", 2: "h", 3: "w"}, "logits": {0: "batch"}})
    r = subprocess.run([tool, src, "-o", dst, "--no-validate"], capture_output=True, text=True)
    print(arch, [l for l in r.stderr.splitlines() if "form" in l or "error" in l])
    x = vf.make_input(arch, 112)
    ref = vf.torch_run(vf.make_tsm(m, "residual", "bidirectional", 8)[0], x)
    s = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
    y = s.run(None, {"input": x})[0]
    print(arch, "ORT vs PyTorch TSM", float(np.abs(y - ref).max()), "tol", 1e-4 * max(1, float(np.abs(ref).max())))
    mod = rx_onnx.from_onnx(onnx.load(dst), shape_dict={"input": list(x.shape)}, keep_params_in_input=False)
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    print(arch, f"opset {opset}", "TVM vs ORT", float(np.abs(got - y).max()))
