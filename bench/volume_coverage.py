#!/usr/bin/env python3
"""How much of each export the volume forms take: every architecture below exported (torchvision or
timm, seeded random weights, opset 17, the batch symbolic, 224x224) and rewritten with
`--shift-form tract --no-validate`; one line each: the residual blocks found and the sites whose
shift became the volume's depthwise convolution (`volume: ... K of N site(s)`). A site left out
means the volume went back to 2D before it, at an operator without a rule.

    python bench/volume_coverage.py [--work /tmp/volume-coverage] [--form tract|openvino] [NAME ...]

Stop 57's run (`bench/RESULTS-computed-pads.md`) found GhostNet and ReXNet at their first site (a
channel Slice had no rule; now 16 of 16 and 11 of 11) and ECA-ResNet at its first (its attention
reads the pooled tensor through Shape and Reshape; 16 of 16 since stop 58, `bench/RESULTS-eca.md`).
Stop 59's run: ConvNeXt-T 18 of 18 with `--form tract` (none before: its LayerNorms run channels
last, `bench/RESULTS-convnext.md`); MobileViTv2 still 1 of 19 (its other sites are in attention
blocks on unfolded patches), LCNet has no residual block; every other export all of its sites.
The five timm exports added then: ConvNeXt-V2-Atto, CAFormer-S18 and InceptionNeXt-T all of their
sites, EdgeNeXt-XS 6 of 18, PoolFormerV2-S12 1 of 24 (GroupNorms of one group, by Reshapes).
"""
import argparse
import os
import re
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.environ.get("TSM_BIN", os.path.join(os.path.dirname(HERE), "target", "release", "tsm-rewrite"))
ARCHS = [("torchvision", a) for a in ["resnext50_32x4d", "mobilenet_v3_large", "mnasnet1_0", "efficientnet_v2_s",
                                      "regnet_x_400mf", "convnext_tiny"]] + \
        [("timm", a) for a in ["ecaresnet50d", "mixnet_s", "ghostnet_100", "rexnet_100", "efficientnet_lite0",
                               "resnet26t", "lcnet_100", "dla34", "res2net50_26w_4s", "mobilevitv2_050",
                               "tf_efficientnet_b0", "tf_mixnet_s"]] + \
        [("timm", a) for a in ["convnextv2_atto", "caformer_s18", "poolformerv2_s12", "inception_next_tiny",
                               "edgenext_x_small"]]


def export(lib, arch, path):
    import torch
    torch.manual_seed(0)
    if lib == "timm":
        import timm
        m = timm.create_model(arch)
    else:
        import torchvision
        m = getattr(torchvision.models, arch)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m.eval(), (torch.zeros(16, 3, 224, 224),), path, opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="only these architectures")
    ap.add_argument("--work", default="/tmp/volume-coverage")
    ap.add_argument("--form", default="tract", choices=["tract", "openvino"])
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    for lib, arch in ARCHS:
        if args.names and arch not in args.names:
            continue
        path = os.path.join(args.work, f"{arch}.onnx")
        if not os.path.exists(path):
            try:
                export(lib, arch, path)
            except Exception as e:  # noqa: BLE001
                print(f"{arch:22s} export fails: {str(e).splitlines()[0][:100]}", flush=True)
                continue
        out = os.path.join(args.work, f"{arch}_{args.form}.onnx")
        r = subprocess.run([TOOL, path, "-o", out, "--no-validate", "--shift-form", args.form],
                           capture_output=True, text=True)
        lines = r.stderr.splitlines()
        found = next((line.split(" (")[0] for line in lines if "block(s) found" in line), None)
        volume = next((re.search(r"(\d+ of \d+) site", line) for line in lines if line.startswith("volume")), None)
        what = found or (lines[-1][:100] if lines else "")
        print(f"{arch:22s} exit {r.returncode}  {what}  volume: {volume.group(1) if volume else 'none'}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
