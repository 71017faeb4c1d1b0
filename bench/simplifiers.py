#!/usr/bin/env python3
"""The tool next to the ONNX simplifiers people run on exports (onnxsim, onnxslim): before it, on the
2D export it reads, and after it, on the model it writes. Does the rewrite still find every block and
match the PyTorch reference, and does a simplified output still match and keep the runtime's fusions?

    python bench/simplifiers.py [--models resnet50 mobilenet_v2] [--work /tmp/h-bench] [--out FILE]

Models: bench/overhead.py's (torchvision, seeded weights, legacy exporter, opset 17, dynamic batch;
built once into --work), and its references: one clip of T=8 frames offline, the same 8 frames
streamed online (buffers fed back), computed by PyTorch (bench/verify_full.py's make_tsm).

For each simplifier (onnx.shape_inference.infer_shapes, the shapes saved into the model, as tools
and users do; onnxruntime's symbolic shape inference (`SymbolicShapeInference.infer_shapes`,
auto_merge, as its TensorRT tooling runs it); onnxruntime's `quant_pre_process` (what its quantization
guide runs before `quantize_static`: symbolic shape inference without auto_merge, its graph
optimizations, ONNX shape inference); onnxsim.simplify; onnxslim.slim; each with its defaults, the batch
left symbolic):
- in: the 2D export simplified, then `tsm-rewrite --no-validate` offline and `--online`: blocks found
  and shifted (from the tool's summary), nodes, max |diff| against the reference in onnxruntime and
  OpenVINO (f32).
- out: the tool's offline and online outputs of the 2D export, simplified: nodes before and after,
  max |diff| in onnxruntime and OpenVINO, and in onnxruntime's optimized graph (default session
  options) the standalone Add and Relu left and the layout reorders, against the unsimplified output
  (the 2D model fuses every residual Add and Relu into its convolution: 0 left).
Match: max |diff| <= 1e-4 * max(1, max |ref|), as the other benches.
"""

import argparse
import os
import re
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import overhead  # noqa: E402  (models, references, the tool's path)


def simplify(name, model):
    if name == "infer_shapes":
        return onnx.shape_inference.infer_shapes(model)
    if name == "ort_symbolic":
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    if name == "quant_pre_process":
        from onnxruntime.quantization.shape_inference import quant_pre_process
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "in.onnx"), os.path.join(d, "out.onnx")
            onnx.save(model, src)
            quant_pre_process(src, dst)
            return onnx.load(dst)
    if name == "onnxsim":
        import onnxsim
        out, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim's own check failed")
        return out
    import onnxslim
    return onnxslim.slim(model)


def session(path, runtime):
    """run(feed: dict) -> {output name: array}; and the input names."""
    if runtime == "ort":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        return (lambda feed: dict(zip(outs, sess.run(None, feed)))), [i.name for i in sess.get_inputs()]
    import openvino as ov
    core = ov.Core()
    cm = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()

    def run(feed):
        res = req.infer(feed)
        return {o.get_any_name(): np.array(res[o]) for o in cm.outputs}
    return run, [i.get_any_name() for i in cm.inputs]


def check(path, ref, inputs, online, runtime, logits):
    """Offline: `inputs` is the clips, one run. Online: `inputs` is the frames, streamed with each
    buffer input (by the name the tool gives it, `.../tsm/buffer_in`) zeros first, then its buffer
    output (`.../tsm/buffer_out`) fed back."""
    run, names = session(path, runtime)
    if online:
        m = onnx.load(path, load_external_data=False)
        dims = {i.name: [1] + [d.dim_value for d in i.type.tensor_type.shape.dim[1:]] for i in m.graph.input}
        bufs = {n: np.zeros(dims[n], np.float32) for n in names if n.endswith("/tsm/buffer_in")}
        frame = next(n for n in names if n not in bufs)
        err = 0.0
        for f, e in zip(inputs, ref):
            res = run({frame: f, **bufs})
            bufs = {n: res[n[: -len("buffer_in")] + "buffer_out"] for n in bufs}
            err = max(err, float(np.abs(res[logits] - e).max()))
    else:
        err = float(np.abs(run({names[0]: inputs})[logits] - ref).max())
    tol = overhead.REL_TOL * max(1.0, float(np.abs(ref).max()))
    return ("ok" if err <= tol else "**MISMATCH**") + f" {err:.1e}"


def fusion_cell(path):
    """Standalone Adds / Relus / layout reorders in onnxruntime's optimized graph."""
    with tempfile.TemporaryDirectory() as d:
        c = overhead.ort_fusion(path, d)
    return f"{c['Add']} / {c['Relu']} / {c['ReorderInput'] + c['ReorderOutput']}"


def summary(text):
    """'16 of 16 shifted, stream 16' from the tool's stdout."""
    m = re.search(r"(\d+) residual block\(s\) found, (\d+) shifted", text)
    s = re.search(r"stream form at (\d+) of (\d+)", text)
    shifted = f"{m.group(2)} of {m.group(1)} shifted" if m else "no summary"
    return shifted + (f", stream form at {s.group(1)}" if s else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--work", default="/tmp/h-bench")
    ap.add_argument("--simplifiers", nargs="+",
                    default=["infer_shapes", "ort_symbolic", "quant_pre_process", "onnxsim", "onnxslim"])
    ap.add_argument("--tool", default=overhead.BIN, help="tsm-rewrite binary (default: bench/overhead.py's)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-simplifiers.md"))
    args = ap.parse_args()
    overhead.BIN = args.tool
    import onnxruntime
    import openvino
    import onnxsim
    import onnxslim
    lines = ["# The tool next to ONNX shape inference, onnxsim and onnxslim (bench/simplifiers.py)", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             f"onnxsim {onnxsim.__version__}, onnxslim {onnxslim.__version__}, onnxruntime {onnxruntime.__version__}, "
             f"OpenVINO {openvino.__version__.split('-')[0]}; the tool: `{args.tool}`.", "",
             "    " + " ".join(["python bench/simplifiers.py"] + sys.argv[1:]), ""]
    for arch in args.models:
        p = overhead.build(arch, args.work)
        r = np.load(p["ref"])
        x = r["x"]
        frames = x[:overhead.T].reshape(overhead.T, 1, *x.shape[1:])
        d = os.path.join(args.work, arch, "simplified")
        os.makedirs(d, exist_ok=True)
        lines += [f"## {arch}", "",
                  "| model | nodes | tool | onnxruntime | OpenVINO | ORT optimized: Add / Relu / reorders |",
                  "|---|---|---|---|---|---|"]

        def row(label, path, ref, inputs, online, tool_summary=""):
            m = onnx.load(path)
            meta = "kept" if any(p.key == "tsm-rewrite.buffers" for p in m.metadata_props) else "gone"
            tool_summary += f"; buffer metadata {meta}" if online else ""
            cells = [check(path, ref, inputs, online, rt, m.graph.output[0].name) for rt in ("ort", "openvino")]
            lines.append(f"| {label} | {len(m.graph.node)} | {tool_summary} | {cells[0]} | {cells[1]} | "
                         f"{fusion_cell(path)} |")
            print(lines[-1], flush=True)

        row("2D export", p["plain"], r["plain"], x, False)
        tool_out = {}
        for kind, flags, ref, inputs, online in (("offline", [], r["tsm"], x, False),
                                                  ("online", ["--online"], r["online"], frames, True)):
            tool_out[kind] = os.path.join(d, f"tool.{kind}.onnx")
            text = overhead.run_tool([p["plain"], "-o", tool_out[kind], "--no-validate"] + flags)
            row(f"tool {kind}", tool_out[kind], ref, inputs, online, summary(text))
        def failed(label, e):
            lines.append(f"| {label} | | | fails: {type(e).__name__}: {str(e).splitlines()[0][:80]} | | |")
            print(lines[-1], flush=True)

        for s in args.simplifiers:
            plain_s = os.path.join(d, f"plain.{s}.onnx")
            try:
                onnx.save(simplify(s, onnx.load(p["plain"])), plain_s)
            except Exception as e:  # noqa: BLE001 (the row says what failed)
                failed(f"2D, {s}", e)
                continue
            row(f"2D, {s}", plain_s, r["plain"], x, False)
            for kind, flags, ref, inputs, online in (("offline", [], r["tsm"], x, False),
                                                      ("online", ["--online"], r["online"], frames, True)):
                out = os.path.join(d, f"{s}-then-tool.{kind}.onnx")
                text = overhead.run_tool([plain_s, "-o", out, "--no-validate"] + flags)
                row(f"{s}, then tool {kind}", out, ref, inputs, online, summary(text))
            for kind, src, ref, inputs, online in (("offline", tool_out["offline"], r["tsm"], x, False),
                                                    ("online", tool_out["online"], r["online"], frames, True)):
                out = os.path.join(d, f"tool-then-{s}.{kind}.onnx")
                try:
                    onnx.save(simplify(s, onnx.load(src)), out)
                except Exception as e:  # noqa: BLE001
                    failed(f"tool {kind}, then {s}", e)
                    continue
                row(f"tool {kind}, then {s}", out, ref, inputs, online)
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
