#!/usr/bin/env python3
"""int8 QDQ models (issue 9): full-size torchvision exports quantized with onnxruntime's
`quantize_static` (QDQ format), rewritten with default flags, then

- checked: the rewrite with graph optimizations off equals the QDQ model with a float TSM shift
  inserted on each branch's dequantized input (fixtures/export_deploy.py's reference form), in
  onnxruntime; and it runs in OpenVINO, against onnxruntime's output;
- fusions: onnxruntime's optimized graph of the plain and the rewritten QDQ model (QLinearConv,
  QLinearAdd, leftover DequantizeLinear/QuantizeLinear, float Conv);
- timed: one clip of T=8 frames at 224x224, the rewrite against the plain QDQ model in paired
  interleaved rounds (bench/overhead.py's `measure`), with a null row (a copy of the plain model).

    python bench/qdq.py [--model resnet18 --model resnet50 --model mobilenet_v2] [--rounds 15]
    python bench/qdq.py --model mobilenet_v2 --form clip --out bench/RESULTS-qdq-clip.md

--form FORM adds the same model rewritten with `--shift-form FORM` (checked, counted and timed as
its own row, `tsm_FORM`); the default keeps the batch form at quantized sites.

Writes bench/RESULTS-qdq.md.
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "fixtures"))
import overhead as oh  # noqa: E402
import verify_full as vf  # noqa: E402
import export_deploy as ed  # noqa: E402

ort.set_default_logger_severity(3)
BIN = os.environ.get("TSM_BIN", os.path.join(REPO, "target", "release", "tsm-rewrite"))
T = 8


def quantize(arch, work, per_channel):
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    model = vf.build(arch)
    fp = os.path.join(work, f"{arch}.onnx")
    if not os.path.exists(fp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(2, 3, 224, 224),), fp, dynamo=False, opset_version=13,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    q = os.path.join(work, f"{arch}_qdq{'_pc' if per_channel else ''}.onnx")
    calib = vf.make_input(arch, 224)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib[i:i + 4]} for i in range(0, 8, 4)])

        def get_next(self):
            return next(self.items, None)

    if not os.path.exists(q):
        quantize_static(fp, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return q, calib


def reference(q, arch, work):
    """The QDQ model with the float shift inserted before each branch's first conv, found by the
    torchvision module names (layerX.Y.conv1, features.N.conv.0.0)."""
    m = onnx.load(q)
    inferred = onnx.shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    sites = [u.path for u in vf.shift_sites(vf.build(arch))]
    for k, path in enumerate(sites):
        prefix = "/" + "/".join(path.split(".")[:-1] + [path]) + "/"
        conv = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith(prefix)
                and "downsample" not in n.name][0]
        ed.insert_float_shift(m, conv, k, shapes[conv.input[0]][1:])
    out = q.replace(".onnx", "_ref.onnx")
    onnx.save(m, out)
    return out, len(sites)


def ort_session(path, opt=True, optimized_to=None):
    so = ort.SessionOptions()
    if not opt:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized_to:
        so.optimized_model_filepath = optimized_to
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def op_counts(path, work):
    out = os.path.join(work, "opt_" + os.path.basename(path))
    ort_session(path, optimized_to=out)
    cnt = {}
    for n in onnx.load(out).graph.node:
        cnt[n.op_type] = cnt.get(n.op_type, 0) + 1
    return cnt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-channel", action="store_true")
    ap.add_argument("--work", default="/tmp/h-qdq")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-qdq.md"))
    ap.add_argument("--form", action="append", default=[], help="also rewrite with --shift-form FORM")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows, fusion_rows, checks = [], [], []
    for arch in args.model or ["resnet18", "resnet50", "mobilenet_v2"]:
        q, x = quantize(arch, args.work, args.per_channel)
        # The default rewrite first (its summary and its checks fill the table), then any --form.
        forms = {"tsm": q.replace(".onnx", "_tsm.onnx")}
        forms.update({f"tsm_{f}": q.replace(".onnx", f"_tsm_{f}.onnx") for f in args.form})
        t0 = time.time()
        for name, path in forms.items():
            flags = ["--shift-form", name.removeprefix("tsm_")] if name != "tsm" else []
            p = subprocess.run([BIN, q, "-o", path] + flags, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr)
                raise SystemExit(f"{arch}: the rewrite {' '.join(flags)} failed")
            if name == "tsm":
                summary = [l for l in p.stderr.splitlines() if "residual block(s) found" in l or l.startswith("validated")]
        tsm = forms["tsm"]
        ref, n_sites = reference(q, arch, args.work)
        clip = np.ascontiguousarray(x[:2 * T])
        want = ort_session(ref, opt=False).run(None, {"input": clip})[0]
        got = ort_session(tsm, opt=False).run(None, {"input": clip})[0]
        plain = ort_session(q, opt=False).run(None, {"input": clip})[0]
        exact = float(np.abs(got - want).max())
        effect = float(np.abs(want - plain).max())
        got_opt = ort_session(tsm).run(None, {"input": clip})[0]
        for name, path in list(forms.items())[1:]:
            other = ort_session(path, opt=False).run(None, {"input": clip})[0]
            other_opt = ort_session(path).run(None, {"input": clip})[0]
            checks.append(f"{arch} {name}: with optimizations off, max |rewrite - reference| "
                          f"{np.abs(other - want).max():.3g}; with them on, max |rewrite - default rewrite| "
                          f"{np.abs(other_opt - got_opt).max():.3g}")
            print(checks[-1], flush=True)
        ref_opt = ort_session(ref).run(None, {"input": clip})[0]
        # OpenVINO's int8 arithmetic is its own: its distance to onnxruntime on the plain QDQ model
        # is the yardstick for the rewrite's.
        plain_opt = ort_session(q).run(None, {"input": clip})[0]
        try:
            diffs = []
            for path, ort_out in ((q, plain_opt), (tsm, got_opt)):
                ov, cm = oh.ov_compile(path, 2 * T)
                diffs.append(float(np.abs(cm(clip)[cm.outputs[0]] - ort_out).max()))
            ov_diff = f"{diffs[1]:.3g} (plain {diffs[0]:.3g})"
        except Exception as e:  # noqa: BLE001
            ov_diff = f"fails: {str(e)[:200]}"
        print(f"{arch}: {' | '.join(summary)} ({time.time() - t0:.0f} s); opt off: |rewrite - reference| "
              f"{exact:.3g} (shift effect {effect:.3g}); opt on: rewrite vs reference {np.abs(got_opt - ref_opt).max():.3g}; "
              f"OpenVINO vs ORT {ov_diff}", flush=True)
        keys = ["QLinearConv", "QLinearAdd", "QLinearGlobalAveragePool", "Conv", "DequantizeLinear",
                "QuantizeLinear", "Slice", "Pad", "Where", "Concat", "Reshape"]
        c_plain = op_counts(q, args.work)
        for name, path in forms.items():
            c = op_counts(path, args.work)
            label = arch if name == "tsm" else f"{arch} ({name})"
            fusion_rows.append((label, {k: c_plain.get(k, 0) for k in keys}, {k: c.get(k, 0) for k in keys}))
        null = q.replace(".onnx", "_null.onnx")
        m = onnx.load(q)
        m.doc_string = "null copy"
        onnx.save(m, null)
        one = np.ascontiguousarray(x[:T])
        fns = {"2d": oh.ort_offline(q, one), "null": oh.ort_offline(null, one)}
        fns.update({name: oh.ort_offline(path, one) for name, path in forms.items()})
        ratios, times = oh.measure(fns, args.rounds, label=f"{arch} qdq")
        rows.append((arch, n_sites, exact, effect, ov_diff, {k: oh.summarize(v) for k, v in ratios.items()},
                     float(np.median(times["2d"])) * 1e3))
        extra = [f"{name} {oh.fmt(oh.summarize(ratios[name]))}" for name in list(forms)[1:]]
        if extra:
            print(f"{arch}: " + "; ".join(extra), flush=True)
    with open(args.out, "w") as f:
        f.write("# int8 QDQ models (bench/qdq.py)\n\n")
        f.write(f"torchvision models, seeded random weights, exported at opset 13 with a dynamic batch, "
                f"`quantize_static` QDQ ({'per-channel' if args.per_channel else 'per-tensor'} int8 weights, "
                "uint8 activations, calibrated on 8 random frames), rewritten with default flags. "
                "Exactness: onnxruntime with graph optimizations off, against the QDQ model with a float TSM "
                "shift inserted on each branch's dequantized input. Time: one clip of 8 frames at 224x224 in "
                "onnxruntime (default session options), median ratio to the plain QDQ model over paired "
                f"interleaved rounds [IQR] (min-max), {args.rounds} rounds, machine: 2 shared cores.\n\n")
        extra = [f"tsm_{form}" for form in args.form]
        f.write("| model | sites | rewrite vs reference (opt off) | shift effect | OpenVINO vs ORT | null | tsm | "
                + "".join(f"{e} | " for e in extra) + "plain QDQ ms |\n")
        f.write("|---|---|---|---|---|---|---|---|" + "---|" * len(extra) + "\n")
        for arch, n, exact, effect, ovd, s, ms in rows:
            f.write(f"| {arch} | {n} | {exact:.3g} | {effect:.3g} | {ovd} | {oh.fmt(s['null'])} | {oh.fmt(s['tsm'])} | "
                    + "".join(f"{oh.fmt(s[e])} | " for e in extra) + f"{ms:.1f} |\n")
        if checks:
            f.write("\n" + "".join(f"- {c}\n" for c in checks))
        f.write("\nonnxruntime's optimized graph, plain QDQ -> rewritten QDQ:\n\n")
        keys = list(fusion_rows[0][1])
        f.write("| model | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n")
        for arch, a, b in fusion_rows:
            f.write(f"| {arch} | " + " | ".join(f"{a[k]} -> {b[k]}" for k in keys) + " |\n")
    print(open(args.out).read())


if __name__ == "__main__":
    main()
