#!/usr/bin/env python3
"""Does the tool treat one network alike in every form users hand it?

    TSM_BIN=target/release/tsm-rewrite /work/venv/bin/python bench/cross_format.py [--out FILE] [MODEL ...]

For each timm model (seeded random weights, norms randomized and logits scaled as
bench/verify_modern.py does), the float32 export with a dynamic batch (TorchScript, opset 17) is
the base, and five copies of it are what users also bring:
  fp16io    onnxconverter-common's float16 conversion, inputs and outputs kept float32
  fp16      the same, inputs and outputs float16 too
  inferred  the base after onnx.shape_inference.infer_shapes (value_info for every tensor, with
            `unk__N` names where onnx cannot tell a dim; what onnxsim and many pipelines leave)
  b1        a re-export of the same weights with a fixed batch of 1 (no dynamic_axes)
  qdq       onnxruntime's quant_pre_process, then quantize_static (QDQ, uint8 activations, int8
            per-channel weights; calibrated on 4 seeded batches)
Each copy must get the base's plan: the same sites (join, channels, fold, shortcut) in
`--dry-run`, default, `--online` and `--mode inplace`. Then the default offline rewrite of the
copy, run in onnxruntime on a seeded [16, 3, H, W] input, is compared to the base's rewrite on
the same input (the base's rewrites of these families were checked against PyTorch TSM by
bench/verify_modern.py): the copy passes within twice its own 2D model's distance to the base's 2D
model, plus 1e-4 of the output's scale. "effect/tol" is the shift's own effect on the base (its
rewrite against its 2D model) over that tolerance: how far outside it a missing site would land.
The tool is also run once per copy with its own tract validation (exit code recorded).
Exports go to /tmp/tsm-cross/; nothing is written into the repo but the results file.
"""

import argparse
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_modern as vm  # noqa: E402

import timm  # noqa: E402

BIN = os.environ.get("TSM_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "tsm-rewrite"))
WORK = "/tmp/tsm-cross"
KINDS = ["fp16io", "fp16", "inferred", "b1", "qdq"]
FLAGS = [[], ["--online"], ["--mode", "inplace"]]
DEFAULT_MODELS = [
    "resnet50", "resnet18d", "ecaresnet26t", "skresnet18", "dla34", "mobilenetv2_100", "ghostnet_100",
    "rexnet_100", "edgenext_xx_small", "efficientvit_b0", "mobilevit_xxs", "botnet26t_256", "lambda_resnet26t",
    "caformer_s18", "efficientformer_l1",
]
ROW = re.compile(r"^\s+\d+\s+(\S+)\s+\S+\s+(\d+)\s+(\d+)\s+(\S+(?: \(\d+\))?)")


def export(model, h, path, batch1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {} if batch1 else dict(dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        torch.onnx.export(model, (torch.zeros(1 if batch1 else 4, 3, h, h),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], **kw)


def derive(kind, base, path, x):
    if kind in ("fp16io", "fp16"):
        from onnxconverter_common import float16
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = float16.convert_float_to_float16(onnx.load(base), keep_io_types=(kind == "fp16io"))
        onnx.save(m, path)
    elif kind == "inferred":
        onnx.save(onnx.shape_inference.infer_shapes(onnx.load(base)), path)
    elif kind == "qdq":
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"input": x[k * 4:(k + 1) * 4]} for k in range(4)])

            def get_next(self):
                return next(self.it, None)

        pre = path + ".pre.onnx"
        quant_pre_process(base, pre, skip_symbolic_shape=True)
        quantize_static(pre, path, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        os.remove(pre)


def plan(path, flags):
    p = subprocess.run([BIN, path, "--dry-run", *flags], capture_output=True, text=True, timeout=900)
    rows = [m.groups() for m in map(ROW.match, (p.stdout + p.stderr).splitlines()) if m]
    return p.returncode, sorted(rows)


def float_shift(qdq, out, T=8):
    """The QDQ copy with a plain float TSM shift (bidirectional, zeros outside the clip) written in
    by hand before each consumer the tool's plan names: the quantized domain's reference (the
    tool moves quantized values instead, which equals this bit for bit with optimizations off)."""
    from onnx import helper, numpy_helper
    dry = subprocess.run([BIN, qdq, "--dry-run"], capture_output=True, text=True)
    text = dry.stdout + dry.stderr
    m = onnx.load(qdq)
    g = m.graph
    rows = [r.split() for r in text.splitlines() if re.match(r"^\s+\d+\s+/", r)]
    # A site's layout from its tensor's inferred dims: [N, H, W, C] where only the last is C (the
    # stage-0 sums of EdgeNeXt's QDQ copy, whose Transposes onnxruntime moved out of the blocks).
    inferred = onnx.shape_inference.infer_shapes(m).graph.value_info
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred}
    const = lambda n, v: g.initializer.append(numpy_helper.from_array(np.array(v, dtype=np.int64), n))
    for k, r in enumerate(rows):
        t, c, fold, into = r[2], int(r[3]), int(r[4]), " ".join(r[6 + (r[5] == "projection"):]).split(", ")
        d = dims.get(t, [])
        last = len(d) == 4 and d[3] == c and d[1] != c
        ax = "ax4" if last else "ax2"  # the channel axis of the [-1, T, ...] view
        p = f"/ref{k}/"
        const(p + "clip", [-1, T])
        for name, v in [("s0", [0]), ("s1", [1]), ("f", [fold]), ("f2", [2 * fold]), ("big", [2 ** 62]),
                        ("m1", [-1]), ("ax1", [1]), ("ax2", [2]), ("ax4", [4])]:
            const(p + name, v)
        sl = lambda o, x, st, en, ax: helper.make_node("Slice", [x, p + st, p + en, p + ax], [p + o])
        nodes = [
            helper.make_node("Shape", [t], [p + "shape"]),
            helper.make_node("Shape", [t], [p + "frame"], start=1),
            helper.make_node("Concat", [p + "clip", p + "frame"], [p + "view"], axis=0),
            helper.make_node("Reshape", [t, p + "view"], [p + "v"]),
            # channels [0, fold) from t + 1, [fold, 2 fold) from t - 1, zeros outside the clip
            sl("a_in", p + "v", "s0", "f", ax), sl("a", p + "a_in", "s1", "big", "ax1"),
            sl("edge_a", p + "a_in", "s0", "s1", "ax1"),
            sl("b_in", p + "v", "f", "f2", ax), sl("b", p + "b_in", "s0", "m1", "ax1"),
            sl("edge_b", p + "b_in", "s0", "s1", "ax1"),
            # zeros of an edge frame's shape (the data here is finite)
            helper.make_node("Sub", [p + "edge_a", p + "edge_a"], [p + "za"]),
            helper.make_node("Sub", [p + "edge_b", p + "edge_b"], [p + "zb"]),
            helper.make_node("Concat", [p + "a", p + "za"], [p + "sa"], axis=1),
            helper.make_node("Concat", [p + "zb", p + "b"], [p + "sb"], axis=1),
            sl("rest", p + "v", "f2", "big", ax),
            helper.make_node("Concat", [p + "sa", p + "sb", p + "rest"], [p + "s"], axis=4 if last else 2),
            helper.make_node("Reshape", [p + "s", p + "shape"], [p + "out"]),
        ]
        for n in g.node:
            if n.name in into:
                for i, name in enumerate(n.input):
                    if name == t:
                        n.input[i] = p + "out"
        at = next(i for i, n in enumerate(g.node) if t in n.output) + 1
        for n in reversed(nodes):
            g.node.insert(at, n)
    onnx.save(m, out)


def run(path, x, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = x.astype(np.float16) if inp.type == "tensor(float16)" else x
    if inp.shape[0] == 1:  # the batch-1 export's own 2D model: one image at a time
        return np.concatenate([sess.run(None, {inp.name: feed[k:k + 1]})[0] for k in range(len(x))]).astype(np.float32)
    return sess.run(None, {inp.name: feed})[0].astype(np.float32)


def rewrite(src, dst, extra=()):
    p = subprocess.run([BIN, src, "-o", dst, *extra], capture_output=True, text=True, timeout=1800)
    return p.returncode, (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]


def check(name):
    os.makedirs(WORK, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    cfg = model.pretrained_cfg
    h = cfg["input_size"][1] if cfg.get("fixed_input_size") else 128
    with torch.no_grad():
        # Layer scales timm initializes near zero (EdgeNeXt's and EfficientFormer's gamma at 1e-6
        # and 1e-5) would hide every branch, and so the shift, below the tolerance.
        g = torch.Generator().manual_seed(2)
        for pname, p in model.named_parameters():
            if ("gamma" in pname or "scale" in pname) and float(p.abs().max()) < 1e-3:
                p.copy_(torch.rand(p.shape, generator=g) * 0.7 + 0.3)
        vm.randomize(model, 0, h)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(16, 3, h, h, generator=g).numpy()
        vm.normalize_logits(model, x)
    base = f"{WORK}/{name}.onnx"
    export(model, h, base, batch1=False)
    base_plans = [plan(base, f) for f in FLAGS]
    base_tsm = f"{WORK}/{name}.tsm.onnx"
    rc, _ = rewrite(base, base_tsm, ["--no-validate"])
    ref_2d, ref_tsm = run(base, x), (run(base_tsm, x) if rc == 0 else None)
    rows = []
    for kind in KINDS:
        path = f"{WORK}/{name}.{kind}.onnx"
        try:
            if kind == "b1":
                export(model, h, path, batch1=True)
            else:
                derive(kind, base, path, x)
        except Exception as e:  # a copy the converter cannot make is no finding about the tool
            rows.append((name, kind, f"not made: {str(e).splitlines()[0][:80]}", "", "", "", "", "", ""))
            continue
        plans = [plan(path, f) for f in FLAGS]
        same = ["same" if p == b else f"DIFF (exit {b[0]}->{p[0]}, sites {len(b[1])}->{len(p[1])})"
                for p, b in zip(plans, base_plans)]
        vrc, vlast = rewrite(path, f"{WORK}/{name}.{kind}.validated.onnx")
        diff = tol = effect = ""
        out = f"{WORK}/{name}.{kind}.tsm.onnx"
        try:
            diff, tol, effect, verdict = compare(name, kind, path, out, x, ref_2d, ref_tsm)
        except Exception as e:  # a rewrite that does not run is a finding
            verdict = f"FAIL: {str(e).splitlines()[0][:120]}"
        rows.append((name, kind, len(base_plans[0][1]), " / ".join(same),
                     f"{vrc}" + ("" if vrc == 0 else f" ({vlast[0][:90]})"), diff, tol, effect, verdict))
        print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def compare(name, kind, path, out, x, ref_2d, ref_tsm):
    """The copy's default rewrite against its reference: diff, tolerance, effect/tol, verdict."""
    rc, last = rewrite(path, out, ["--no-validate"])
    if rc != 0:
        return "", "", "", f"FAIL: exit {rc} ({last[0][:100]})"
    if kind == "qdq":
        # Against float quantization's own error (a random-weight network's QDQ copy is as far
        # from the float model as the shift's effect) the base says nothing: the reference is
        # the QDQ copy with a float shift at the same sites, run without optimizations.
        ref = f"{WORK}/{name}.qdq.reference.onnx"
        float_shift(path, ref)
        y_ref, y_2d = run(ref, x, optimize=False), run(path, x, optimize=False)
        d = float(np.abs(run(out, x, optimize=False) - y_ref).max())
        t = 1e-6 * max(1.0, float(np.abs(y_ref).max()))
        e = float(np.abs(y_ref - y_2d).max())
        return f"{d:.1e}", f"{t:.1e} (float shift)", f"{e / t:.0f}", "ok" if d <= t else "FAIL"
    if ref_tsm is None:
        return "", "", "", "base not rewritten"
    try:
        y_2d = run(path, x)
    except Exception as e:  # the converter's output, not the tool's
        return "", "", "", f"not compared: onnxruntime cannot run the copy's own 2D model ({str(e).splitlines()[0][-90:]})"
    d2d = float(np.abs(y_2d - ref_2d).max())
    d = float(np.abs(run(out, x) - ref_tsm).max())
    t = 2 * d2d + 1e-4 * max(1.0, float(np.abs(ref_tsm).max()))
    e = float(np.abs(ref_tsm - ref_2d).max())
    return f"{d:.1e}", f"{t:.1e}", f"{e / t:.0f}", "ok" if d <= t else "FAIL"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "RESULTS-cross-format.md"))
    a = ap.parse_args()
    rows = []
    for name in a.models:
        rows += check(name)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    with open(a.out, "w") as f:
        f.write("# One network in the forms users bring it (bench/cross_format.py)\n\n")
        f.write(f"Tool at {commit} (plus the working tree). `{' '.join(sys.argv[1:]) or '(default models)'}`.\n")
        f.write("Plans: default / `--online` / `--mode inplace` against the float32 base's. Validated: the tool's exit "
                "code with its own tract validation. diff: the copy's default rewrite against the base's, in onnxruntime.\n\n")
        f.write("| model | copy | base sites | plans | validated (exit) | diff | tolerance | effect/tol | |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write("| " + " | ".join(map(str, r)) + " |\n")
        bad = [r for r in rows if "DIFF" in str(r[3]) or str(r[-1]).startswith("FAIL")]
        f.write(f"\n{len(rows)} copies, {len(bad)} with a different plan or outside the tolerance.\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
