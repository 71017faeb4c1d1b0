#!/usr/bin/env python3
"""`--shift-form openvino`'s volume (stop 54) and `--shift-form tract`'s (its clips along one depth,
stop 55) against the default's 2D graph: the same model must come out of both, within rounding.

    python bench/volume_check.py fixtures          # every committed fixture, onnxruntime
    python bench/volume_check.py archs [NAME ...]   # full-size exports, onnxruntime and OpenVINO f32
    python bench/volume_check.py --form tract archs # the same for --shift-form tract, tract as well
    python bench/volume_check.py --form tract --opset 13 archs timm_convnext_atto   # another opset
    python bench/volume_check.py --form tract --opset dynamo archs timm_convnext_atto  # the dynamo exporter
    python bench/volume_check.py --form tract --float16 archs timm_convnext_atto      # weights in float16

`fixtures` rewrites each `fixtures/models/*.onnx` with the default and with `--shift-form openvino`
(`--no-validate`) and runs both in onnxruntime on 16 frames of seeded noise at the model's size.
`archs` exports torchvision's ResNet-18, EfficientNet-B0, RegNet-Y-400MF and timm's SE-ResNet-50,
ResNet-50-D, ResNet-50-GN, MobileNetV3-Large and the TF ports of EfficientNet-B0 and
MobileNetV3-Large, whose "same" pads are float arithmetic on the input's Shape, and of MixNet-S,
and timm's GhostNet and ReXNet, which slice channels, ECA-ResNet-50-D, whose attention
reads its input's Shape, ConvNeXt (torchvision's and timm's Tiny, timm's Atto and V2-Atto) and ConvFormer-S18, whose
LayerNorms run channels last (seeded random weights, BatchNorm statistics randomized, opset 17, the
batch symbolic) into --work, rewrites each both ways and runs both in onnxruntime and OpenVINO f32
on two clips; then time them with bench/paired_models.py, e.g.

    python bench/paired_models.py --runtime openvino --rounds 11 /tmp/volume-archs/tv_resnet18.onnx \\
        default=/tmp/volume-archs/tv_resnet18_stream.onnx "openvino (volume)"=/tmp/volume-archs/tv_resnet18_openvino.onnx

Each row: the largest difference between the two forms' outputs, the output's scale, how many of
the sites the volume took (`volume` in the JSON report), OK when within 1e-4 of the scale (float16
models within 1e-3).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOOL = os.environ.get("TSM_BIN", os.path.join(REPO, "target", "release", "tsm-rewrite"))


def rewrite(src, dst, form):
    """Writes `dst`; returns (the sites the volume took, all sites), or an error line."""
    report = dst + ".json"
    p = subprocess.run([TOOL, src, "-o", dst, "--no-validate", "--shift-form", form, "--report", report],
                       capture_output=True, text=True)
    if p.returncode:
        return p.stderr.strip().splitlines()[-1]
    blocks = [b for b in json.load(open(report))["blocks"] if b["shifted"]]
    return sum(bool(b["volume"]) for b in blocks), len(blocks)


def feeds(session, frames, seed=0):
    out = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else frames for d in i.shape]
        shape[0] = frames
        dtype = np.float16 if "float16" in i.type else np.float32
        out[i.name] = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return out


def row(name, outs, took, fp16=False):
    ref = outs[0][1].astype(np.float32)
    scale = float(np.abs(ref).max())
    diffs = {k: float(np.abs(v.astype(np.float32) - ref).max()) for k, v in outs[1:]}
    ok = all(d <= (1e-3 if fp16 else 1e-4) * max(1.0, scale) for d in diffs.values())
    cells = ", ".join(f"{k} {d:.1e}" for k, d in diffs.items())
    print(f"{name:28s} scale {scale:.2e}  {cells}  volume {took[0]} of {took[1]} sites  {'OK' if ok else 'DIFFERS'}", flush=True)
    return ok


def fixtures(work):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    bad = 0
    for path in sorted(glob.glob(os.path.join(REPO, "fixtures", "models", "*.onnx"))):
        name = os.path.basename(path)[:-5]
        outs, took = [], None
        for form in ("stream", FORM):
            dst = os.path.join(work, f"{name}_{form}.onnx")
            r = rewrite(path, dst, form)
            if isinstance(r, str):
                outs = None
                print(f"{name:28s} {form}: {r}")
                break
            took = r
            s = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
            outs.append((f"{form}/ort", s.run(None, feeds(s, 16))[0]))
        if outs:
            bad += not row(name, outs, took, fp16="fp16" in name)
    return bad


ARCHS = {
    "tv_resnet18": ("torchvision", "resnet18"),
    "tv_efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "tv_regnet_y_400mf": ("torchvision", "regnet_y_400mf"),
    "timm_seresnet50": ("timm", "seresnet50"),
    "timm_resnet50d": ("timm", "resnet50d"),
    "timm_resnet50_gn": ("timm", "resnet50_gn"),
    "timm_mobilenetv3": ("timm", "mobilenetv3_large_100"),
    # TF-style "same" padding, computed at run time in float from the activation's Shape.
    "timm_tf_efficientnet_b0": ("timm", "tf_efficientnet_b0"),
    "timm_tf_mobilenetv3": ("timm", "tf_mobilenetv3_large_100"),
    # Mixed depthwise kernels: a channel Split, convolutions, a Concat, then a BatchNormalization
    # whose equal-valued parameters the exporter keeps once (the others Identities of it).
    "timm_tf_mixnet_s": ("timm", "tf_mixnet_s"),
    # Channel Slices: GhostNet crops each ghost module's Concat, ReXNet adds its input to the
    # first channels of a wider output.
    "timm_ghostnet": ("timm", "ghostnet_100"),
    "timm_rexnet": ("timm", "rexnet_100"),
    # ECA attention: the pooled tensor viewed through its input's Shape, a 1D convolution over
    # channels, the gate expanded back to that Shape.
    "timm_ecaresnet50d": ("timm", "ecaresnet50d"),
    # LayerNorm over channels between Transposes to channels last and back; torchvision's and
    # timm's ConvNeXt-T a Linear MLP on the channels-last tensor, ConvNeXt-Atto 1x1 convolutions.
    "tv_convnext_tiny": ("torchvision", "convnext_tiny"),
    "timm_convnext_tiny": ("timm", "convnext_tiny"),
    "timm_convnext_atto": ("timm", "convnext_atto"),
    # ConvNeXt-V2: global response norm in the channels-last MLP (an L2 norm over H and W, a mean
    # over channels).
    "timm_convnextv2_atto": ("timm", "convnextv2_atto"),
    # A MetaFormer (ConvFormer): every norm a LayerNorm2d, the first block forking from the stem
    # norm's channels-last output.
    "timm_convformer_s18": ("timm", "convformer_s18"),
    # CAFormer: ConvFormer's first two stages, attention on token sequences in the last two (no
    # blocks the tool finds there); InceptionNeXt: ConvNeXt's layout, BatchNorm, a 1x1 convolution MLP.
    "timm_caformer_s18": ("timm", "caformer_s18"),
    "timm_inception_next_tiny": ("timm", "inception_next_tiny"),
}


def export(name, path, opset=17):
    import torch
    lib, arch = ARCHS[name]
    torch.manual_seed(0)
    if lib == "timm":
        import timm
        m = timm.create_model(arch)
    else:
        import torchvision
        m = getattr(torchvision.models, arch)()
    m.eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-.1, .1)
            mod.running_var.uniform_(.5, 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.zeros(16, 3, 224, 224)
        if opset == "dynamo":
            torch.onnx.export(m, (x,), path, opset_version=18, dynamo=True, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
            return
        torch.onnx.export(m, (x,), path, opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def archs(work, names, opset=17, fp16=False):
    import onnxruntime as ort
    import openvino as ov
    core = ov.Core()
    bad = 0
    for name in names or ARCHS:
        tag = name if opset == 17 else f"{name}_{opset if opset == 'dynamo' else f'op{opset}'}"
        plain = os.path.join(work, f"{tag}.onnx")
        if not os.path.exists(plain):
            export(name, plain, opset)
        if fp16:
            # Weights and activations in float16, the input and output float32 (onnxconverter-common).
            from onnxconverter_common import float16
            import onnx
            tag += "_fp16"
            half = os.path.join(work, f"{tag}.onnx")
            if not os.path.exists(half):
                onnx.save(float16.convert_float_to_float16(onnx.load(plain), keep_io_types=True), half)
            plain = half
        outs, took = [], None
        for form in ("stream", FORM):
            dst = os.path.join(work, f"{tag}_{form}.onnx")
            r = rewrite(plain, dst, form)
            if isinstance(r, str):
                sys.exit(f"{tag} {form}: {r}")
            took = r
            s = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
            x = feeds(s, 16)
            outs.append((f"{form}/ort", s.run(None, x)[0]))
            req = core.compile_model(dst, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
            outs.append((f"{form}/openvino", req.infer(list(x.values()))[0].copy()))
            if form == "tract":
                try:
                    outs.append((f"{form}/tract", run_tract(dst, list(x.values())[0])))
                except Exception as e:  # tract's optimizer fails on ResNet-50-GN's 2D export too
                    print(f"{name}: tract cannot optimize the rewrite ({str(e).splitlines()[0]}); the 2D export: "
                          f"{'fails too' if not tract_loads(plain, list(x.values())[0]) else 'loads'}")
        bad += not row(tag, outs, took, fp16=fp16)
    return bad


def run_tract(path, x):
    """Pinned to x's shape; as written where tract cannot pin it (a dynamo export's value_info
    says `8*batch`, which tract does not solve for 16 frames, whatever the form)."""
    import tract
    m = tract.onnx().load(path)
    m.set_input_fact(0, ",".join(map(str, x.shape)) + ",f32")
    try:
        runnable = m.into_model().into_runnable()
    except tract.bindings.TractError:
        runnable = tract.onnx().load(path).into_model().into_runnable()
    return runnable.run([x])[0].to_numpy()


def tract_loads(path, x):
    try:
        run_tract(path, x)
        return True
    except Exception:
        return False


# The form checked against the default: openvino or tract (--form).
FORM = "openvino"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fixtures", "archs"])
    ap.add_argument("names", nargs="*", help="archs: only these")
    ap.add_argument("--work", default=None, help="where models go (archs: /tmp/volume-archs)")
    ap.add_argument("--form", default="openvino", choices=["openvino", "tract"])
    ap.add_argument("--opset", default="17", help="archs: the export's opset, or `dynamo` (opset 18)")
    ap.add_argument("--float16", action="store_true", help="archs: the export converted to float16 (float32 I/O)")
    args = ap.parse_args()
    global FORM
    FORM = args.form
    if args.what == "fixtures":
        with tempfile.TemporaryDirectory() as work:
            bad = fixtures(args.work or work)
    else:
        work = args.work or "/tmp/volume-archs"
        os.makedirs(work, exist_ok=True)
        opset = args.opset if args.opset == "dynamo" else int(args.opset)
        bad = archs(work, args.names, opset, args.float16)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
