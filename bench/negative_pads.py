#!/usr/bin/env python3
"""Does each runtime take a Pad with negative pads? (issue 8: one Pad in place of each Slice+Pad
pair of the batch-axis shift, which ONNX allows since Pad-2.)

    python bench/negative_pads.py

Builds, for opsets 9 to 21, a model that splits x [8, 32, 7, 7] into two groups and shifts them one
frame each way along the batch axis with a Pad alone (pads -1/+1 and +1/-1 on axis 0; the attribute
form before opset 11, the input form from 11), then runs it in onnxruntime, OpenVINO (f32), tract
and TVM (Relax, llvm) and compares with numpy, bit for bit. Prints one line per opset and runtime.
tract is run in a child process: its Pad panics on negative pads at run time, and the panic aborts
the interpreter.
"""
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSETS = [9, 11, 13, 17, 18, 21]
SHAPE = [8, 32, 7, 7]


def model(opset):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 7, 7])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 16, 7, 7]) for n in ("next", "prev")]
    inits, split_attrs = [], {}
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([16, 16], np.int64), "split"))
    else:
        split_attrs["split"] = [16, 16]
    nodes = [helper.make_node("Split", ["x"] + (["split"] if opset >= 13 else []), ["a", "b"], axis=1, **split_attrs)]
    pads = {"next": [-1, 0, 0, 0, 1, 0, 0, 0], "prev": [1, 0, 0, 0, -1, 0, 0, 0]}
    for src, out in (("a", "next"), ("b", "prev")):
        if opset >= 11:
            inits.append(numpy_helper.from_array(np.array(pads[out], np.int64), f"pads_{out}"))
            nodes.append(helper.make_node("Pad", [src, f"pads_{out}", "zero"], [out], mode="constant"))
        else:
            nodes.append(helper.make_node("Pad", [src], [out], mode="constant", pads=pads[out], value=0.0))
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
    m = helper.make_model(helper.make_graph(nodes, "negative_pads", [x], outs, inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=True)
    return m


def run_ort(path, x):
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def run_openvino(path, x):
    import openvino as ov
    c = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    r = c({"x": x})
    return [r[o] for o in c.outputs]


def run_tract(path, x):
    code = ("import sys, numpy as np, tract\n"
            "m = tract.onnx().load(sys.argv[1]); m.set_input_fact(0, '8,32,7,7,f32')\n"
            "r = m.into_model().into_runnable()\n"
            "x = np.load(sys.argv[2]); o = r.run([x])\n"
            "np.savez(sys.argv[3], *[t.to_numpy() for t in o])\n")
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/x.npy", x)
        p = subprocess.run([sys.executable, "-c", code, path, f"{d}/x.npy", f"{d}/y.npz"], capture_output=True, text=True)
        if p.returncode != 0:
            lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
            cause = next((ln for ln in lines if "non-negative" in ln), lines[-1] if lines else "")
            panic = next((i for i, ln in enumerate(lines) if "panicked at" in ln), None)
            if panic is not None:  # the panic's message is the line after its location
                where = lines[panic].split("/")[-1].rstrip(":")
                cause = f"panic at run time in {where}: {lines[panic + 1] if panic + 1 < len(lines) else ''}"
            raise RuntimeError(f"exit {p.returncode}: {cause[:160]}")
        y = np.load(f"{d}/y.npz")
        return [y[k] for k in sorted(y.files)]


def run_tvm(path, x):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx
    mod = from_onnx(onnx.load(path), shape_dict={"x": SHAPE})
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return [t.numpy() for t in vm["main"](tvm.runtime.tensor(x))]


def main():
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    zero = np.zeros_like(x[:1, :16])
    want = [np.concatenate([x[1:, :16], zero]), np.concatenate([zero, x[:-1, 16:]])]
    with tempfile.TemporaryDirectory() as d:
        for opset in OPSETS:
            path = f"{d}/m{opset}.onnx"
            onnx.save(model(opset), path)
            for name, run in (("onnxruntime", run_ort), ("openvino", run_openvino), ("tract", run_tract), ("tvm", run_tvm)):
                try:
                    got = run(path, x)
                    ok = all(np.array_equal(g, w) for g, w in zip(got, want))
                    verdict = "matches" if ok else "WRONG"
                except Exception as e:  # the point is which runtimes refuse, and how
                    verdict = "fails: " + " ".join(str(e).split())[:200]
                print(f"opset {opset:2d}  {name:12s} {verdict}", flush=True)


if __name__ == "__main__":
    main()
