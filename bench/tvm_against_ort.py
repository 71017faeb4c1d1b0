#!/usr/bin/env python3
"""Does TVM load and run a model, and give onnxruntime's output? For any ONNX file with one float
input: TVM's Relax ONNX frontend, an untuned build for `llvm`, run on seeded noise of the input's
declared shape (a symbolic dim taken as 16: two clips of 8 frames), against onnxruntime on the same
input; one line per model with the largest difference and the output's scale.

    python bench/tvm_against_ort.py fixtures/models/eca_net.onnx /tmp/eca_tract.onnx ...

Used for the volume forms of ECA-ResNets (bench/RESULTS-eca.md); bench/fixture_sweep.py --tvm runs
the committed fixtures' default, online and inplace rewrites, bench/runtime_matrix.py full-size
exports at several opsets.
"""
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import tvm
from tvm import relax
from tvm.relax.frontend import onnx as rx_onnx


def main():
    warnings.simplefilter("ignore")
    for path in sys.argv[1:]:
        m = onnx.load(path)
        name = m.graph.input[0].name
        dims = [d.dim_value or 16 for d in m.graph.input[0].type.tensor_type.shape.dim]
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        want = s.run(None, {name: x})[0]
        mod = rx_onnx.from_onnx(m, shape_dict={name: dims}, keep_params_in_input=False)
        vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
        out = vm["main"](tvm.runtime.tensor(x))
        got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
        print(f"{path}: TVM against onnxruntime max abs diff {float(np.abs(got - want).max()):.1e}, "
              f"scale {float(np.abs(want).max()):.2g}", flush=True)


if __name__ == "__main__":
    main()
