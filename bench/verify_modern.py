#!/usr/bin/env python3
"""Check tsm-rewrite on real modern torchvision / timm architectures.

    /work/venv/bin/python bench/verify_modern.py [MODEL ...]

For each model (seeded random weights, randomized BN stats / LayerNorm affine / layer
scale, eval mode, classifier rescaled so logits have std ~1):
  1. export to ONNX (TorchScript exporter, opset 17, dynamic batch) into /tmp/tsm-modern/ (with
     --dynamo: the dynamo exporter at opset 18, into /tmp/tsm-modern-dynamo/; --dynamo-opset N at
     opset N, into /tmp/tsm-modern-dynamo-opsetN/: from 21 it writes a GroupNorm as the
     GroupNormalization operator)
  2. `tsm-rewrite --dry-run`: blocks found must equal the PyTorch residual blocks
     (and the per-block channel counts must match); skipped reasons are summarized
  3. `tsm-rewrite -o OUT` with tract validation: exit code / stderr recorded
  4. per config, `tsm-rewrite --no-validate`, run in onnxruntime on a seeded
     [16, 3, H, W] input, compare to the PyTorch TSM reference
     (pass: max|diff| <= 1e-4 * max(1, max|ref|), or twice the 2D model's own onnxruntime-vs-PyTorch
     distance where that is more (ConvMixer-768/32's: 9.5e-4); the output must differ from plain)
  5. onnx.checker.check_model(full_check=True) on every written model
  6. per online config, `tsm-rewrite --online` with its tract validation (which checks the online
     model against the tool's own offline past-only rewrite), then onnxruntime streams the clips'
     frames (one stream per clip, zero buffers from the `tsm-rewrite.buffers` metadata, each
     buffer output fed back), compared frame by frame to the PyTorch streaming reference
     (`fixtures/export.py: OnlineShift` at the same sites, fresh buffers); same pass rule
Writes bench/RESULTS-modern.md (and /tmp/tsm-modern/results.json).
Nothing is written into the repo except RESULTS-modern.md.
"""

import copy
import json
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision
from torchvision.models.convnext import CNBlock
from torchvision.models.efficientnet import FusedMBConv, MBConv
from torchvision.models.regnet import ResBottleneckBlock
from torchvision.models.mnasnet import _InvertedResidual as MnasInvertedResidual
from torchvision.models.maxvit import MBConv as MaxVitMBConv
from torchvision.models.mobilenetv3 import InvertedResidual as MobileNetV3InvertedResidual

try:
    import timm
    from timm.models import _efficientnet_blocks as timm_eff
    from timm.models import convnext as timm_convnext
    from timm.models import regnet as timm_regnet
    from timm.models import resnet as timm_resnet
    from timm.models import resnetv2 as timm_resnetv2
    from timm.models import byobnet as timm_byob
    from timm.models import cspnet as timm_csp
    from timm.models import ghostnet as timm_ghost
    from timm.models import res2net as timm_res2net
    from timm.models import resnest as timm_resnest
    from timm.models import sknet as timm_sknet
    from timm.models import xception_aligned as timm_xception
    from timm.models import rexnet as timm_rexnet
    from timm.models import inception_next as timm_inext
    from timm.models import starnet as timm_starnet
    from timm.models import efficientvit_mit as timm_effvit
    from timm.models import tresnet as timm_tresnet
    from timm.models import metaformer as timm_metaformer
    from timm.models import fastvit as timm_fastvit
    from timm.models import convmixer as timm_convmixer
    from timm.models import edgenext as timm_edgenext
    from timm.models import efficientformer as timm_effformer
    from timm.models import hgnet as timm_hgnet
    from timm.models import repghost as timm_repghost
    from timm.models import repvit as timm_repvit
    from timm.models import nfnet as timm_nfnet
    from timm.models import fasternet as timm_fasternet
    from timm.models import mambaout as timm_mambaout
    import importlib
    # timm.models' attribute of that name is the model's builder, which hides the module
    timm_irv2 = importlib.import_module("timm.models.inception_resnet_v2")
    from timm.layers.grn import GlobalResponseNorm as TimmGRN
except ImportError:  # timm optional
    timm = None

try:  # Hugging Face transformers' CNNs (what optimum exports), optional
    import transformers
    from transformers.models.bit import modeling_bit as hf_bit
    from transformers.models.convnext import modeling_convnext as hf_convnext
    from transformers.models.efficientnet import modeling_efficientnet as hf_efficientnet
    from transformers.models.mobilenet_v2 import modeling_mobilenet_v2 as hf_mobilenet_v2
    from transformers.models.regnet import modeling_regnet as hf_regnet
    from transformers.models.resnet import modeling_resnet as hf_resnet
except ImportError:
    transformers = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("TSM_BIN", os.path.join(REPO, "target", "release", "tsm-rewrite"))
WORK = "/tmp/tsm-modern"
DYNAMO = False  # --dynamo: the dynamo exporter at opset 18 instead of TorchScript at 17
DYNAMO_OPSET = 18  # --dynamo-opset N
RESULTS_MD = os.path.join(HERE, "RESULTS-modern.md")

T = 8
N_CLIPS = 2
REL_TOL = 1e-4
# Twice the 2D model's own onnxruntime-vs-PyTorch distance, set per model: a deep, wide model's float
# rounding (ConvMixer-768/32: 9.5e-4 on logits of 4) is no tighter after the rewrite.
PLAIN_FLOOR = 0.0
MIN_EFFECT = 1e-3  # TSM output must move some logit by more than this (logit std ~1)

CONFIGS = [  # (mode, direction, fold_div, group order, segments)
    ("residual", "bidirectional", 8, "tsm", 8),
    ("inplace", "past", 4, "tsm", 8),
    ("residual", "past", 4, "tsm", 8),
    ("inplace", "bidirectional", 8, "tsm", 8),
    ("residual", "bidirectional", 4, "paddle", 8),
    ("residual", "bidirectional", 8, "tsm", 4),
]


ONLINE_CONFIGS = [("residual", 8), ("inplace", 4)]  # (mode, fold_div)
# The tool's validation error where tract cannot load the 2D model either (transformers' BiT: its
# weight standardization is a BatchNormalization with three outputs, which tract refuses).
TRACT_LIMITED = "tract cannot run the input model either"
META_KEY = "tsm-rewrite.buffers"


def cfg_name(mode, direction, fd, order, segs):
    name = f"{mode}-{'paddle' if order == 'paddle' else direction}-fd{fd}"
    return name + (f"-T{segs}" if segs != T else "")

torch.set_num_threads(1)


# --------------------------------------------------------------------------
# Reference shift: the fixtures' PyTorch implementation (fixtures/export.py)
# --------------------------------------------------------------------------

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from export import OnlineShift, ShiftThen, export_onnx_dynamo, temporal_shift  # noqa: E402


class TemporalShift(nn.Module):
    def __init__(self, fold_div, direction, order="tsm", segments=T):
        super().__init__()
        self.fold_div, self.direction, self.order, self.segments = fold_div, direction, order, segments

    def forward(self, x):
        return temporal_shift(x, self.segments, self.fold_div, self.direction, self.order)


# --------------------------------------------------------------------------
# Residual sites: (module path, attribute holding the first module of the residual branch)
# In every case below the block's forward reads `shortcut = x` (or uses `input`) and
# feeds x unchanged into that attribute first, so wrapping it shifts exactly the
# residual branch's input and nothing else.
# --------------------------------------------------------------------------

def branch_attr(m):
    """Attribute to wrap for residual-mode shift, or None if m is not a residual block."""
    if isinstance(m, (MBConv, FusedMBConv)):
        return "block" if m.use_res_connect else None
    if isinstance(m, CNBlock):
        return "block"
    if isinstance(m, ResBottleneckBlock):
        return "f"
    if isinstance(m, MnasInvertedResidual):
        return "layers" if m.apply_residual else None
    if isinstance(m, MobileNetV3InvertedResidual):
        return "block" if m.use_res_connect else None
    if isinstance(m, MaxVitMBConv):
        return "layers"  # proj(x) + layers(x); its attention layers' joins are on window partitions
    if timm is not None:
        if isinstance(m, timm_eff.InvertedResidual):
            if not m.has_skip:
                return None
            return "conv_s2d" if m.conv_s2d is not None else "conv_pw"
        if isinstance(m, timm_eff.DepthwiseSeparableConv):
            if not m.has_skip:
                return None
            return "conv_s2d" if m.conv_s2d is not None else "conv_dw"
        if isinstance(m, timm_regnet.Bottleneck):
            return "conv1" if m.downsample is not None else None
        if isinstance(m, timm_convnext.ConvNeXtBlock):
            return "conv_dw"
        if isinstance(m, (timm_resnet.BasicBlock, timm_resnet.Bottleneck)):
            return "conv1"
        if isinstance(m, (timm_resnetv2.PreActBasic, timm_resnetv2.PreActBottleneck)):
            # as transformers' BiT below: the projection reads norm1's output
            return "conv1" if m.downsample is not None else "norm1"
        if isinstance(m, timm_resnetv2.Bottleneck):
            return "conv1"
        # each reads `shortcut = x` and feeds x unchanged into the attribute returned
        if isinstance(m, (timm_res2net.Bottle2neck, timm_resnest.ResNestBottleneck,
                          timm_sknet.SelectiveKernelBasic, timm_sknet.SelectiveKernelBottleneck,
                          timm_csp.BottleneckBlock, timm_csp.DarkBlock)):
            return "conv1"
        if isinstance(m, (timm_byob.BottleneckBlock, timm_byob.SelfAttnBlock)):
            return "conv1_1x1" if m.shortcut is not None else None
        if isinstance(m, timm_byob.BasicBlock):
            return "conv1_kxk" if m.shortcut is not None else None
        if isinstance(m, timm_eff.ConvBnAct):
            return "conv" if m.has_skip else None  # EfficientNetV2-RW's 3x3 blocks with a skip
        if isinstance(m, timm_eff.MobileAttention):
            # MobileNetV4-hybrid's attention blocks (with a conditional positional encoding, a
            # second join before them, they would need both wrapped: none in these models)
            assert m.conv_cpe_dw is None
            return "norm" if m.has_skip else None
        if isinstance(m, timm_eff.EdgeResidual):
            return "conv_exp" if m.has_skip else None  # its fused MBConvs
        if isinstance(m, timm_ghost.GhostBottleneckV3):
            return "ghost1"  # in training form: its ghost modules' re-parameterizable sums inside
        if isinstance(m, timm_ghost.GhostBottleneck):
            return "ghost1"
        if isinstance(m, timm_xception.XceptionModule):
            return None if m.no_skip else "stack"
        if isinstance(m, timm_rexnet.LinearBottleneck):
            # the join adds the shortcut to the branch output's first channels only
            if not m.use_shortcut:
                return None
            return "conv_exp" if m.conv_exp is not None else "conv_dw"
        if isinstance(m, timm_eff.UniversalInvertedResidual):
            return "dw_start" if m.has_skip else None
        if isinstance(m, timm_inext.MetaNeXtBlock):
            return "token_mixer"
        if isinstance(m, (timm_tresnet.BasicBlock, timm_tresnet.Bottleneck)):
            return "conv1"
        if isinstance(m, timm_metaformer.MetaFormerBlock):
            # two residual joins: res_scale1(x) + ...(norm1(x)), then res_scale2(x) + ...(norm2(x))
            return ("norm1", "norm2")
        if isinstance(m, timm_starnet.Block):
            return "dwconv"
        if isinstance(m, timm_effvit.ResidualBlock):
            # main(pre_norm(x)) + shortcut(x); pre_norm is an Identity where there is none
            return "pre_norm" if m.shortcut is not None else None
        # training-time re-parameterizable blocks: one join of an identity BN and convolutions of
        # x, all of them the branch (a list: one join, several modules to wrap); none without
        # the identity (a sum of convolutions)
        if isinstance(m, timm_byob.RepVggBlock):
            return ["conv_1x1", "conv_kxk"] if m.identity is not None else None
        if isinstance(m, (timm_byob.MobileOneBlock, timm_fastvit.MobileOneBlock)):
            kxk = [f"conv_kxk.{i}" for i in range(len(m.conv_kxk or ()))]
            convs = (["conv_scale"] if m.conv_scale is not None else []) + kxk
            return convs if m.identity is not None and convs else None
        if isinstance(m, timm_fastvit.RepMixer):
            # x + scale * (mixer(x) - norm(x)); the MobileOne blocks inside are its branch
            return ["mixer", "norm"]
        if isinstance(m, timm_fastvit.RepMixerBlock):
            return "mlp"  # after token_mixer: x + scale * mlp(x)
        if isinstance(m, timm_fastvit.AttentionBlock):
            return ("norm", "mlp")  # x + ls1(attention(norm(x))), then x + ls2(mlp(x))
        if isinstance(m, timm_fastvit.RepConditionalPosEnc):
            return "pos_enc"  # pos_enc(x) + x
        # stop 40: FasterNet's partial convolution then MLP; MambaOut's gated CNN blocks, whose
        # joins add channels-last tensors (the shift then on the last axis: LAST_AXIS)
        if isinstance(m, timm_fasternet.MLPBlock):
            return "spatial_mixing"
        if isinstance(m, timm_mambaout.GatedConvBlock):
            return "norm"
        # Inception-ResNet-v2: towers read x, their Concat a 1x1 convolution, `out * scale + x`,
        # then a ReLU (so the towers are wrapped, not the block)
        if isinstance(m, timm_irv2.Block35):
            return ["branch0", "branch1", "branch2"]
        if isinstance(m, (timm_irv2.Block17, timm_irv2.Block8)):
            return ["branch0", "branch1"]
        if isinstance(m, timm_nfnet.NormFreeBlock):
            # act1(x) * beta feeds the branch (and a projection, which then forks after it)
            return "conv1" if m.downsample is not None else "act1"
        # stop 38, more families. "*": the branch reads x through tensor ops, not one module; the
        # identity is added last, so the reference is block(shift(x)) - shift(x) + x (BranchShift)
        if isinstance(m, timm_convmixer.Residual):
            return "fn"
        if isinstance(m, timm_edgenext.ConvBlock):
            assert not m.shortcut_after_dw
            return "conv_dw"
        if isinstance(m, timm_edgenext.SplitTransposeBlock):
            return "*"  # x.chunk, Res2Net-style convs, XCA on tokens, the MLP; then shortcut + x
        if isinstance(m, timm_effformer.MetaBlock2d):
            return ("token_mixer", "mlp")  # x + ls1(pool(x) - x), then x + ls2(mlp(x))
        if isinstance(m, timm_hgnet.HighPerfGpuBlock):
            return "*" if m.residual else None  # x feeds the first layer and the Concat
        if isinstance(m, timm_repghost.RepGhostBottleneck):
            return "ghost1"
        if isinstance(m, timm_repvit.RepVggDw):
            return ["conv", "conv1"]  # bn(conv(x) + conv1(x) + x)
        if isinstance(m, timm_repvit.RepViTBlock):
            return "channel_mixer"  # identity + channel_mixer(x), x the SE's output
        if isinstance(m, timm_repvit.RepVitDownsample):
            return "ffn"  # ffn(x) + x, x the channel downsample's output
        if getattr(m, "has_skip", False):
            raise TypeError(f"unhandled timm residual block type {type(m).__name__}")
    if transformers is not None:
        # each reads `residual = x` first and feeds x unchanged into the attribute returned
        if isinstance(m, (hf_resnet.ResNetBasicLayer, hf_resnet.ResNetBottleNeckLayer,
                          hf_regnet.RegNetXLayer, hf_regnet.RegNetYLayer)):
            return "layer"
        if isinstance(m, hf_convnext.ConvNextLayer):
            return "dwconv"
        if isinstance(m, hf_mobilenet_v2.MobileNetV2InvertedResidual):
            return "expand_1x1" if m.use_residual else None
        if isinstance(m, hf_efficientnet.EfficientNetBlock):
            if not m.projection.apply_dropout:  # the block's residual Add sits behind this flag
                return None
            return "expansion" if m.expand else "depthwise_conv"
        if isinstance(m, hf_bit.BitPreActivationBottleneckLayer):
            # the branch forks after the block's own norm1 (GroupNorm, ReLU) where the
            # projection reads that too; else at x itself, before norm1
            return "conv1" if m.downsample is not None else "norm1"
        if isinstance(m, hf_bit.BitBottleneckLayer):
            return "conv1"
    return None


def residual_sites(model):
    """(module path, attributes) per residual join, in module order: a block with two joins
    (MetaFormer's: branch_attr gives a tuple) gives two; a join whose branch starts with several
    modules (RepVGG's: a list) one with them all. Joins inside a RepMixer's branch are its own."""
    inner = [name + "." for name, m in model.named_modules()
             if timm is not None and isinstance(m, timm_fastvit.RepMixer)]
    out = []
    for name, m in model.named_modules():
        if any(name.startswith(p) for p in inner):
            continue
        attr = branch_attr(m)
        if isinstance(attr, str):
            out.append((name, (attr,)))
        elif isinstance(attr, list):
            out.append((name, tuple(attr)))
        elif attr:
            out += [(name, (a,)) for a in attr]
    return out


# Blocks whose input is channels-last `[N, H, W, C]`: the reference shifts its last axis.
LAST_AXIS = {"GatedConvBlock"}


class LastAxis(nn.Module):
    """A shift (offline or online) of the last axis of `[N, H, W, C]` frames."""

    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return self.shift(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class BranchShift(nn.Module):
    """A block `branch(x) + x` (the identity added last) with its branch reading shift(x): the
    block run on shift(x), its shifted identity taken back out and x put in."""

    def __init__(self, block, shift):
        super().__init__()
        self.block, self.shift = block, shift

    def forward(self, x):
        xs = self.shift(x)
        return self.block(xs) - xs + x


# Blocks of two joins around a bare identity, `x + f1(x)` then `x + f2(x)`: each join's branch as
# a chain of the block's attributes (EfficientFormer's MetaBlock2d, FastViT's AttentionBlock).
TWO_JOINS = {
    "MetaBlock2d": (("token_mixer", "ls1", "drop_path1"), ("mlp", "ls2", "drop_path2")),
    "AttentionBlock": (("norm", "token_mixer", "layer_scale_1", "drop_path1"), ("mlp", "layer_scale_2", "drop_path2")),
}


class TwoJoinsInplace(nn.Module):
    """A TWO_JOINS block with each join's input shifted for both its paths where `shifts` has one
    (join 0 and 1)."""

    def __init__(self, block):
        super().__init__()
        self.block, self.shifts = block, nn.ModuleDict()

    def forward(self, x):
        for k, chain in enumerate(TWO_JOINS[type(self.block).__name__]):
            if str(k) in self.shifts:
                x = self.shifts[str(k)](x)
            y = x
            for attr in chain:
                y = getattr(self.block, attr)(y)
            x = x + y
        return x


# Blocks whose join's input is a submodule's output rather than the block's: inplace shifts that output.
INPLACE_AFTER = {"RepMixerBlock": "token_mixer", "RepViTBlock": "se", "RepVitDownsample": "channel_downsample"}


class ThenShift(nn.Module):
    """module, then shift its output: FastViT's second join reads the token mixer's output."""

    def __init__(self, module, shift):
        super().__init__()
        self.module, self.shift = module, shift

    def forward(self, x):
        return self.shift(self.module(x))


# Where a block has two joins, inplace cannot wrap the block: each join's shortcut and branch
# reads are wrapped instead (the same shift of the same tensor, so the same as shifting it once).
INPLACE_PARTNERS = {"norm1": "res_scale1", "norm2": "res_scale2"}


def set_submodule(model, path, new):
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, new)


def make_tsm(model, mode, direction, fold_div, order="tsm", segments=T, override=None, online=False):
    """override: {site index: "none" | "inplace" | "residual"} (mutations for the sensitivity check);
    online: the streaming network (OnlineShift, fresh buffers: one frame per stream per call)"""
    tsm = copy.deepcopy(model)

    def new_shift():  # one per wrapped module: an OnlineShift keeps the frame it last saw
        return OnlineShift(fold_div) if online else TemporalShift(fold_div, direction, order, segments)

    # inner modules first, so that wrapping a block never hides a site inside it
    for i, (path, attrs) in reversed(list(enumerate(residual_sites(tsm)))):
        block = tsm.get_submodule(path)
        m = (override or {}).get(i, mode)
        shift = (lambda: LastAxis(new_shift())) if type(block).__name__ in LAST_AXIS else new_shift
        if m == "none":
            continue
        if m == "residual" and attrs == ("*",):
            set_submodule(tsm, path, BranchShift(block, shift()))
        elif m == "residual":
            inner = block.block if isinstance(block, TwoJoinsInplace) else block
            for attr in attrs:
                set_submodule(inner, attr, ShiftThen(shift(), inner.get_submodule(attr)))
        elif m == "inplace" and (isinstance(block, TwoJoinsInplace) or type(block).__name__ in TWO_JOINS):
            if not isinstance(block, TwoJoinsInplace):
                block = TwoJoinsInplace(block)
                set_submodule(tsm, path, block)
            joins = TWO_JOINS[type(block.block).__name__]
            block.shifts[str([j[0] for j in joins].index(attrs[0]))] = shift()
        elif m == "inplace" and timm is not None and isinstance(block, timm_metaformer.MetaFormerBlock):
            attr = attrs[0]
            partner = INPLACE_PARTNERS[attr]
            setattr(block, attr, ShiftThen(shift(), getattr(block, attr)))
            setattr(block, partner, ShiftThen(shift(), getattr(block, partner)))
        elif m == "inplace" and type(block).__name__ in INPLACE_AFTER:
            name = INPLACE_AFTER[type(block).__name__]
            setattr(block, name, ThenShift(getattr(block, name), shift()))
        elif m == "inplace":
            set_submodule(tsm, path, ShiftThen(shift(), block))
        else:
            raise ValueError(mode)
    return tsm.eval()


@torch.no_grad()
def site_channels(model, x):
    """Channels of each residual block's input, in execution order."""
    seen = []
    hooks = []
    for path, _ in residual_sites(model):
        m = model.get_submodule(path)
        if type(m).__name__ in INPLACE_AFTER:  # the join reads that submodule's output
            hooks.append(getattr(m, INPLACE_AFTER[type(m).__name__]).register_forward_hook(
                lambda mod, inp, out, path=path: seen.append((path, int(out.shape[1])))))
            continue
        axis = -1 if type(m).__name__ in LAST_AXIS else 1
        hooks.append(m.register_forward_pre_hook(
            lambda mod, inp, path=path, axis=axis: seen.append((path, int(inp[0].shape[axis])))))
    model(torch.from_numpy(x[:T]))
    for h in hooks:
        h.remove()
    return seen


# --------------------------------------------------------------------------
# Models and weights
# --------------------------------------------------------------------------

def models():
    """name -> (builder, H)"""
    tv = torchvision.models
    out = {
        "tv_efficientnet_b0": (lambda: tv.efficientnet_b0(weights=None), 224),
        "tv_regnet_y_400mf": (lambda: tv.regnet_y_400mf(weights=None), 224),
        "tv_convnext_tiny": (lambda: tv.convnext_tiny(weights=None), 128),
        "tv_efficientnet_v2_s": (lambda: tv.efficientnet_v2_s(weights=None), 128),  # FusedMBConv
    }
    if timm is not None:
        tm = lambda n: (lambda: timm.create_model(n, pretrained=False))
        out.update({
            "timm_efficientnet_b0": (tm("efficientnet_b0"), 224),
            "timm_regnety_002": (tm("regnety_002"), 224),
            "timm_convnext_atto": (tm("convnext_atto"), 160),
            "timm_seresnet18": (tm("seresnet18"), 160),
            # extras: avg-pool projection shortcut (AvgPool -> Conv -> BN), and
            # MobileNetV3 (HardSwish, HardSigmoid SE, DepthwiseSeparableConv with skip)
            "timm_resnet18d": (tm("resnet18d"), 160),
            "timm_mobilenetv3_large_100": (tm("mobilenetv3_large_100"), 160),
            # timm's own ResNet-50 (its module names, act layers), and a Bottleneck ResNet-D:
            # layer1's shortcut is a 1x1 conv widening 64 to 256 at stride 1 (that site keeps
            # its own form), the later ones AvgPool -> Conv reading the split tensor
            "timm_resnet50": (tm("resnet50"), 160),
            "timm_resnet26d": (tm("resnet26d"), 160),
            # pre-activation ResNetV2: with BatchNorm, and BiT's (GroupNorm, weight-standardized
            # convolutions, a ConstantPad2d stem; tract cannot load it)
            "timm_resnetv2_50": (tm("resnetv2_50"), 160),
            "timm_resnetv2_50x1_bit": (tm("resnetv2_50x1_bit"), 160),
        })
    if transformers is not None:
        c = transformers
        out.update({
            "hf_resnet50": (hf(c.ResNetForImageClassification, c.ResNetConfig()), 160),
            "hf_resnet18": (hf(c.ResNetForImageClassification, c.ResNetConfig(
                layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])), 160),
            "hf_convnext_tiny": (hf(c.ConvNextForImageClassification, c.ConvNextConfig()), 128),
            # tf_padding (the default): each strided convolution pads by a Pad of its own
            "hf_mobilenet_v2": (hf(c.MobileNetV2ForImageClassification, c.MobileNetV2Config()), 224),
            "hf_regnet_y": (hf(c.RegNetForImageClassification, c.RegNetConfig(
                hidden_sizes=[48, 104, 208, 440], depths=[1, 3, 6, 6], groups_width=8)), 160),
            "hf_efficientnet_b0": (hf(c.EfficientNetForImageClassification, c.EfficientNetConfig(
                width_coefficient=1.0, depth_coefficient=1.0, image_size=224, hidden_dim=1280)), 224),
            # pre-activation, GroupNorm, weight-standardized convolutions (the BiT / ViT-hybrid backbone)
            "hf_bit": (hf(c.BitForImageClassification, c.BitConfig()), 160),
        })
    if timm is not None:  # after the others, whose seeds (their position) stay
        out.update({
            # stop 37: more of timm's residual families. GroupNorm in the projections (resnet50_gn)
            # and in a pre-activation ResNet-D (resnetv2_50d_gn); Res2Net's split-and-add inside
            # the branch; ResNeSt's split attention; SKNet's selective kernels; byobnet (ResNeXt-TS,
            # GC-ResNet, RegNetZ); CSP stages (the block input a Split output); Xception's
            # separable stacks; GhostNet
            "timm_resnet50_gn": (tm("resnet50_gn"), 160),
            "timm_resnetv2_50d_gn": (tm("resnetv2_50d_gn"), 160),
            "timm_res2net50_26w_4s": (tm("res2net50_26w_4s"), 160),
            "timm_resnest14d": (tm("resnest14d"), 160),
            "timm_skresnet18": (tm("skresnet18"), 160),
            "timm_resnext26ts": (tm("resnext26ts"), 160),
            "timm_gcresnet33ts": (tm("gcresnet33ts"), 160),
            "timm_regnetz_b16": (tm("regnetz_b16"), 160),
            "timm_cspresnet50": (tm("cspresnet50"), 160),
            "timm_cs3darknet_s": (tm("cs3darknet_s"), 160),
            "timm_xception41": (tm("xception41"), 160),
            "timm_ghostnet_100": (tm("ghostnet_100"), 160),
            "timm_efficientnet_b0_gn": (tm("efficientnet_b0_gn"), 160),
            # ReXNet's partial residual (the shortcut added to the branch output's first channels),
            # MobileNetV4's universal inverted residuals, torchvision's MnasNet
            "timm_rexnet_100": (tm("rexnet_100"), 160),
            "timm_mobilenetv4_conv_small": (tm("mobilenetv4_conv_small"), 160),
            "tv_mnasnet1_0": (lambda: torchvision.models.mnasnet1_0(weights=None), 160),
            # InceptionNeXt's MetaNeXt blocks, StarNet, EfficientViT (MIT): its LiteMLA attention
            # runs on NCHW through 1x1 convolutions, in residual blocks like its MBConvs
            "timm_inception_next_tiny": (tm("inception_next_tiny"), 128),
            "timm_starnet_s1": (tm("starnet_s1"), 160),
            "timm_efficientvit_b0": (tm("efficientvit_b0"), 160),
            # HRNet (timm's ResNet blocks in parallel branches, the fuse Adds no residual joins),
            # TResNet (space-to-depth stem, anti-aliased downsampling). (DLA is not here: its trees
            # pass a block its projected shortcut, which wrapping the block cannot shift inplace.)
            "timm_hrnet_w18_small": (tm("hrnet_w18_small"), 128),
            # MetaFormer blocks, two residual joins each: PoolFormer (GroupNorm with one group,
            # pooling as the token mixer) and ConvFormer (separable convolutions)
            "timm_poolformer_s12": (tm("poolformer_s12"), 128),
            "timm_convformer_s18": (tm("convformer_s18"), 128),
            # self-attention inside the bottleneck (byobnet's SelfAttnBlock): BoTNet's MHSA with
            # relative positions (a fixed 256 input), LambdaNet's lambda layers
            "timm_botnet26t_256": (tm("botnet26t_256"), 256),
            "timm_lambda_resnet26t": (tm("lambda_resnet26t"), 128),
            "timm_tresnet_m": (tm("tresnet_m"), 128),
            # stop 38: training-time re-parameterizable blocks, as timm builds them (before
            # reparameterize_model): RepVGG (identity BN + 1x1 + 3x3), MobileOne (identity BN, a 1x1
            # scale branch, 4 kxk branches in S0, 1 in S1), FastViT (MobileOne blocks, RepMixer)
            "timm_repvgg_a0": (tm("repvgg_a0"), 128),
            "timm_mobileone_s0": (tm("mobileone_s0"), 128),
            "timm_mobileone_s1": (tm("mobileone_s1"), 128),
            "timm_fastvit_t8": (tm("fastvit_t8"), 128),
            # stop 38: ConvMixer; EdgeNeXt (channels-last MLPs between permutes, XCA on tokens inside
            # its split-transpose blocks); EfficientFormer-L1 (pooling MetaFormer blocks, its last
            # attention blocks on tokens); GhostNetV2 (DFC attention); HGNetV2 (the block input in
            # the aggregation's Concat); RepGhostNet; RepViT (RepVGG-style depthwise token mixers)
            "timm_convmixer_768_32": (tm("convmixer_768_32"), 64),
            "timm_edgenext_xx_small": (layer_scaled(tm("edgenext_xx_small")), 128),
            "timm_efficientformer_l1": (layer_scaled(tm("efficientformer_l1")), 224),
            "timm_ghostnetv2_100": (tm("ghostnetv2_100"), 160),
            "timm_hgnetv2_b0": (tm("hgnetv2_b0"), 160),
            "timm_repghostnet_050": (tm("repghostnet_050"), 160),
            "timm_repvit_m1": (tm("repvit_m1"), 160),
            # torchvision's MobileNetV3 (its own InvertedResidual) and MaxViT (MBConv blocks between
            # window and grid attention, whose joins add channels-last partitions)
            "tv_mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), 160),
            "tv_maxvit_t": (lambda: torchvision.models.maxvit_t(weights=None), 224),
            # FastViT with attention (two joins around a bare identity; conditional positional
            # encodings), and a normalizer-free ResNet (scaled weight-standardized convolutions,
            # which tract cannot load: checked in onnxruntime)
            "timm_fastvit_sa12": (tm("fastvit_sa12"), 128),
            "timm_nf_resnet26": (layer_scaled(tm("nf_resnet26"), "gain"), 128),
            # stop 40: ConvNeXt-V2 (a residual sum inside each block's MLP, its global response
            # norm, which is no block of its own; in Tiny channels-last), FasterNet, MambaOut (channels-last joins)
            "timm_convnextv2_atto": (tm("convnextv2_atto"), 128),
            "timm_fasternet_t0": (tm("fasternet_t0"), 128),
            "timm_mambaout_femto": (tm("mambaout_femto"), 128),
            "timm_convnextv2_tiny": (tm("convnextv2_tiny"), 64),  # its MLP and GRN channels-last
            "timm_inception_resnet_v2": (tm("inception_resnet_v2"), 128),
            "timm_efficientnetv2_rw_t": (tm("efficientnetv2_rw_t"), 128),
            "timm_ghostnetv3_100": (tm("ghostnetv3_100"), 128),
            "timm_mobilenetv4_hybrid_medium": (tm("mobilenetv4_hybrid_medium"), 128),
        })
    return out


def layer_scaled(builder, prefix="gamma"):
    """Layer scales (timm.layers' LayerScale2d, EdgeNeXt's gammas) start at 1e-5 or 1e-6, and the
    gain of NF-ResNet's last convolution in a block at 0, which hides each branch and its shift:
    seeded values in [0.3, 1) instead, for every parameter named `prefix`* (only in the models
    built so: the others keep their weights)."""
    def build():
        model = builder()
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.rpartition(".")[2].startswith(prefix):
                    p.copy_(torch.rand(p.shape, generator=g) * 0.7 + 0.3)
        return model
    return build


class HFLogits(nn.Module):
    """A transformers image classifier as a tensor-to-logits module (its forward returns an output
    object)."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        return self.m(pixel_values=x).logits


def hf(cls, config):
    config.num_labels = 1000
    return lambda: HFLogits(cls(config))


@torch.no_grad()
def randomize(model, seed, h):
    """Randomize norms.  BN running stats are first calibrated on a seeded random batch
    (BN modules alone in train mode, cumulative average) and then perturbed: with purely
    random running stats the input-dependent signal dies out within a few blocks
    (torchvision's fan_out init of depthwise convs ignores groups), and every shift effect
    would vanish below float noise."""
    g = torch.Generator().manual_seed(seed)

    def u(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.weight.copy_(u(c, 0.5, 1.5))
            m.bias.copy_(u(c, -0.3, 0.3))
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            m.weight.copy_(u(m.weight.shape, 0.5, 1.5))
            if m.bias is not None:  # ConvFormer's LayerNorms have none
                m.bias.copy_(u(m.bias.shape, -0.3, 0.3))
        elif isinstance(m, nn.GroupNorm) and m.weight is not None:
            m.weight.copy_(u(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(u(m.bias.shape, -0.3, 0.3))
        elif getattr(m, "layer_scale_parameter", None) is not None:  # transformers' ConvNext
            m.layer_scale_parameter.copy_(u(m.layer_scale_parameter.shape, 0.3, 1.0))
        elif isinstance(m, CNBlock):
            # default layer scale 1e-6 would make every branch (and its shift) invisible
            m.layer_scale.copy_(u(m.layer_scale.shape, 0.3, 1.0))
        elif timm is not None and isinstance(m, timm_convnext.ConvNeXtBlock) and m.gamma is not None:
            m.gamma.copy_(u(m.gamma.shape, 0.3, 1.0))
        elif timm is not None and isinstance(m, timm_inext.MetaNeXtBlock) and m.gamma is not None:
            m.gamma.copy_(u(m.gamma.shape, 0.3, 1.0))  # 1e-6 by default, as ConvNeXt's
        elif timm is not None and isinstance(m, timm_metaformer.Scale):
            m.scale.copy_(u(m.scale.shape, 0.3, 1.0))  # PoolFormer's layer scale: 1e-5
        elif timm is not None and isinstance(m, timm_fastvit.LayerScale2d):
            m.gamma.copy_(u(m.gamma.shape, 0.3, 1.0))  # FastViT's: 1e-5
        elif timm is not None and isinstance(m, TimmGRN):
            # ConvNeXt-V2's global response norm starts as an identity (zeros), which would hide
            # a shift of its inner sum's branch
            m.weight.copy_(u(m.weight.shape, 0.3, 1.0))
            m.bias.copy_(u(m.bias.shape, -0.3, 0.3))
    if bns:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        calib = torch.randn(N_CLIPS * T, 3, h, h, generator=g)
        model(calib)
        model.eval()
        for m in bns:
            m.momentum = 0.1
            c = m.num_features
            std = m.running_var.sqrt()
            m.running_mean.add_(u(c, -0.3, 0.3) * std)
            m.running_var.mul_(u(c, 0.5, 2.0))


@torch.no_grad()
def torch_run(model, x):
    return model(torch.from_numpy(x)).numpy()


@torch.no_grad()
def normalize_logits(model, x):
    # The classifier: the last Linear, or the last convolution where the head is one (timm's ResNetV2).
    fc = ([m for m in model.modules() if isinstance(m, nn.Linear)]
          or [m for m in model.modules() if isinstance(m, nn.Conv2d)])[-1]
    s = float(torch_run(model, x).std())
    s = float(np.float32(2.0 ** np.round(np.log2(s))))  # power of two: exact rescale
    fc.weight.div_(s)
    if fc.bias is not None:
        fc.bias.div_(s)


def export_onnx(model, h, path):
    if DYNAMO:
        export_onnx_dynamo(model, torch.zeros(4, 3, h, h), path, DYNAMO_OPSET)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(4, 3, h, h),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_run(path, x):
    sess = ort_session(path)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# --------------------------------------------------------------------------
# tsm-rewrite
# --------------------------------------------------------------------------

def run_tool(args, timeout=900):
    t0 = time.time()
    p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_plan(text):
    m = re.search(r"(\d+) residual block\(s\) found", text)
    found = int(m.group(1)) if m else None
    rows = []
    for line in text.splitlines():
        r = ROW.match(line)
        if r:
            rows.append(dict(idx=int(r.group(1)), add=r.group(2), tensor=r.group(3),
                             c=int(r.group(4)), fold=int(r.group(5)), rest=r.group(6).strip()))
    skipped = [l.strip() for l in text.splitlines() if "skipped" in l]
    return found, rows, skipped


def skip_summary(skipped):
    """reason -> count; the reason is the text after the Add's name."""
    out = {}
    for l in skipped:
        body = l.split("skipped:", 1)[-1].strip()
        # drop the leading node name
        parts = body.split(None, 1)
        reason = parts[1] if len(parts) > 1 else body
        reason = re.sub(r"'[^']*'", "'<tensor>'", reason)  # normalize node/tensor names
        reason = re.sub(r"\b\d+\b", "#", reason)
        out[reason] = out.get(reason, 0) + 1
    return out


def checker(path):
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        return "ok"
    except Exception as e:  # noqa: BLE001
        return f"FAIL: {type(e).__name__}: {str(e)[:300]}"


def verify(idx, name, builder, h):
    rep = dict(name=name, h=h)
    t_start = time.time()
    seed = 2000 + idx
    torch.manual_seed(seed)
    model = builder()
    randomize(model, seed + 1, h)
    model.eval()
    rng = np.random.default_rng(seed + 2)
    x = rng.standard_normal((N_CLIPS * T, 3, h, h)).astype(np.float32)
    normalize_logits(model, x)

    sites = site_channels(model, x)
    rep["expected_blocks"] = len(sites)
    rep["expected_channels"] = [c for _, c in sites]
    rep["site_paths"] = [p for p, _ in sites]

    path = os.path.join(WORK, f"{name}.onnx")
    export_onnx(model, h, path)
    g = onnx.load(path)
    rep["nodes"] = len(g.graph.node)
    rep["adds"] = sum(n.op_type == "Add" for n in g.graph.node)

    plain = torch_run(model, x)
    rep["plain_absmax"] = float(np.abs(plain).max())
    rep["plain_ort_diff"] = float(np.abs(ort_run(path, x) - plain).max())
    global PLAIN_FLOOR
    PLAIN_FLOOR = 2 * rep["plain_ort_diff"]

    # 1. dry run
    rc, out, err, _ = run_tool([path, "--dry-run"])
    found, rows, skipped = parse_plan(out + err)
    rep["dry_rc"] = rc
    rep["found"] = found
    rep["found_channels"] = [r["c"] for r in rows]
    rep["plan_rows"] = rows
    rep["skipped"] = skipped
    rep["skip_summary"] = skip_summary(skipped)
    rep["dry_output"] = (out + err)[-20000:]
    with open(os.path.join(WORK, f"{name}.dryrun.txt"), "w") as f:
        f.write(out + err)
    rep["blocks_ok"] = (rc == 0 and found == len(sites)
                        and sorted(rep["found_channels"]) == sorted(rep["expected_channels"]))
    rep["channels_in_order"] = rep["found_channels"] == rep["expected_channels"]

    # 2. default rewrite with tract validation
    out_path = os.path.join(WORK, f"{name}.tsm.onnx")
    if os.path.exists(out_path):
        os.remove(out_path)
    rc, out, err, dt = run_tool([path, "-o", out_path])
    rep["validate_rc"] = rc
    rep["validate_secs"] = round(dt, 1)
    rep["validate_line"] = next((l.strip() for l in err.splitlines() if "validated" in l), "")
    rep["validate_stderr_tail"] = "\n".join(err.strip().splitlines()[-8:]) if rc != 0 else ""
    rep["validate_checker"] = checker(out_path) if os.path.exists(out_path) else "no output"

    # 3. configs
    rep["configs"] = []
    for mode, direction, fd, order, segs in CONFIGS:
        cname = cfg_name(mode, direction, fd, order, segs)
        c = dict(config=cname)
        cpath = os.path.join(WORK, f"{name}.{cname}.onnx")
        if os.path.exists(cpath):
            os.remove(cpath)
        rc, out, err, _ = run_tool([path, "-o", cpath, "--no-validate", "--mode", mode,
                                    "--direction", direction, "--fold-div", str(fd),
                                    "--group-order", order, "--segments", str(segs)])
        c["rc"] = rc
        if rc != 0:
            c["error"] = err.strip()[-1500:]
            c["pass"] = False
            rep["configs"].append(c)
            continue
        ref = torch_run(make_tsm(model, mode, direction, fd, order, segs), x)
        try:
            got = ort_run(cpath, x)
        except Exception as e:  # noqa: BLE001
            c["error"] = f"onnxruntime: {type(e).__name__}: {str(e)[:1000]}"
            c["pass"] = False
            rep["configs"].append(c)
            continue
        diff = float(np.abs(got - ref).max())
        tol = max(REL_TOL * max(1.0, float(np.abs(ref).max())), PLAIN_FLOOR)
        c["diff"], c["tol"] = diff, tol
        c["ref_vs_plain"] = float(np.abs(ref - plain).max())
        c["out_vs_plain"] = float(np.abs(got - plain).max())
        c["checker"] = checker(cpath)
        c["pass"] = bool(diff <= tol and c["out_vs_plain"] > MIN_EFFECT and c["checker"] == "ok")
        rep["configs"].append(c)
        print(f"  {name} {cname}: diff {diff:.2e} (tol {tol:.1e}) vs plain {c['out_vs_plain']:.3f} "
              f"checker {c['checker'][:40]} -> {'PASS' if c['pass'] else 'FAIL'}", flush=True)

    # 4. online: the tool's own validation, then a stream in onnxruntime against PyTorch's.
    rep["online"] = [verify_online(name, path, model, x, mode, fd) for mode, fd in ONLINE_CONFIGS]

    # 5. sensitivity: would one misplaced shift be caught?  For the first config, drop the
    # shift of one site (or put it in inplace position) in the reference and measure how far
    # that moves the output, relative to the pass tolerance.
    if rep["configs"] and "diff" in rep["configs"][0]:
        mode, direction, fd, order, segs = CONFIGS[0]
        ref = torch_run(make_tsm(model, mode, direction, fd, order, segs), x)
        tol = rep["configs"][0]["tol"]
        sens = []
        for i in range(len(sites)):
            d_none = float(np.abs(torch_run(make_tsm(model, mode, direction, fd, order, segs,
                                                     {i: "none"}), x) - ref).max())
            d_inpl = float(np.abs(torch_run(make_tsm(model, mode, direction, fd, order, segs,
                                                     {i: "inplace"}), x) - ref).max())
            sens.append((sites[i][0], d_none / tol, d_inpl / tol))
        rep["sensitivity"] = sens
        w_none = min(sens, key=lambda s: s[1])
        w_inpl = min(sens, key=lambda s: s[2])
        print(f"  sensitivity (x tol): weakest omitted site {w_none[0]} {w_none[1]:.0f}, "
              f"weakest residual->inplace site {w_inpl[0]} {w_inpl[2]:.0f}", flush=True)
    rep["secs"] = round(time.time() - t_start, 1)
    return rep


@torch.no_grad()
def verify_online(name, path, model, x, mode, fd):
    """`--online` with the tool's validation (rerun with --no-validate if that fails, so the
    stream is still checked), then the clips' frames streamed in onnxruntime, one stream per
    clip, against the PyTorch streaming network on the same frames."""
    cname = f"online-{mode}-fd{fd}"
    c = dict(config=cname)
    opath = os.path.join(WORK, f"{name}.{cname}.onnx")
    args = [path, "-o", opath, "--online", "--mode", mode, "--fold-div", str(fd)]
    rc, _, err, dt = run_tool(args)
    c["validate_rc"], c["validate_secs"] = rc, round(dt, 1)
    c["validate_line"] = next((l.strip() for l in err.splitlines() if "validated" in l), "")
    c["tract_limited"] = rc != 0 and TRACT_LIMITED in err
    if rc != 0:
        c["validate_error"] = err.strip()[-1500:]
        rc, _, err, _ = run_tool(args + ["--no-validate"])
        if rc != 0:
            c["pass"], c["error"] = False, err.strip()[-1500:]
            return c
    meta = {p.key: p.value for p in onnx.load(opath, load_external_data=False).metadata_props}
    bufs = json.loads(meta[META_KEY])
    frames = x.reshape(N_CLIPS, T, *x.shape[1:]).transpose(1, 0, 2, 3, 4)  # [T, streams, 3, H, W]
    sess = ort_session(opath)
    state = {b["input"]: np.zeros([N_CLIPS] + [int(d) for d in b["shape"][1:]], np.float32) for b in bufs}
    net = make_tsm(model, mode, "past", fd, online=True)
    c["diff"] = c["tol"] = c["out_vs_plain"] = 0.0
    for f in frames:
        feed = {"input": np.ascontiguousarray(f), **state}
        got, *outs = sess.run(["logits"] + [b["output"] for b in bufs], feed)
        state = {b["input"]: o for b, o in zip(bufs, outs)}
        ref = torch_run(net, np.ascontiguousarray(f))
        c["diff"] = max(c["diff"], float(np.abs(got - ref).max()))
        c["tol"] = max(c["tol"], REL_TOL * max(1.0, float(np.abs(ref).max())), PLAIN_FLOOR)
        c["out_vs_plain"] = max(c["out_vs_plain"], float(np.abs(got - torch_run(model, np.ascontiguousarray(f))).max()))
    c["buffers"] = len(bufs)
    c["checker"] = checker(opath)
    c["pass"] = bool(c["diff"] <= c["tol"] and c["out_vs_plain"] > MIN_EFFECT and c["checker"] == "ok"
                      and (c["validate_rc"] == 0 or c["tract_limited"]))
    print(f"  {name} {cname}: {len(bufs)} buffers, validate rc {c['validate_rc']}; diff {c['diff']:.2e} "
          f"(tol {c['tol']:.1e}) vs plain {c['out_vs_plain']:.3f} -> {'PASS' if c['pass'] else 'FAIL'}", flush=True)
    return c


def online_cell(c):
    if "diff" not in c:
        return f"FAIL: {c.get('error', '')[:80]}"
    v = "" if c["validate_rc"] == 0 else f", tract validation FAILED (rc {c['validate_rc']})"
    if c.get("tract_limited"):
        v = ", tract cannot load the 2D model: no tract validation"
    return f"{'PASS' if c['pass'] else 'FAIL'} {c['diff']:.1e} (Δplain {c['out_vs_plain']:.2f}){v}"


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def sens_cell(r):
    s = r.get("sensitivity")
    if not s:
        return "n/a"
    return f"{min(x[1] for x in s):.0f}x / {min(x[2] for x in s):.0f}x"


def write_md(reports, out_path):
    L = ["# tsm-rewrite on modern torchvision / timm / transformers architectures", "",
         "Generated by `bench/verify_modern.py` (seeded random weights, randomized BN stats / LN affine / "
         "layer scale, eval mode, logits rescaled to std ~1; "
         + (f"dynamo exporter, opset {DYNAMO_OPSET}" if DYNAMO else "TorchScript exporter, opset 17") + ", dynamic batch; "
         f"input [{N_CLIPS * T}, 3, H, H], T={T}). Pass: max|ORT - PyTorch TSM reference| <= "
         f"{REL_TOL:g} * max(1, max|ref|) (or twice the 2D model's own ORT-vs-PyTorch distance, where more), "
         f"output differs from plain by > {MIN_EFFECT:g}, "
         "and `onnx.checker.check_model(full_check=True)` ok.", "",
         "BN running stats are calibrated on a seeded random batch, then perturbed (mean += U(-0.3,0.3)*std, "
         "var *= U(0.5,2)); with purely random stats the input-dependent signal dies within a few blocks "
         "and shift effects fall below float noise (torchvision EfficientNet-B0: 3e-5).", "",
         "Sensitivity: for the first config, the PyTorch reference with ONE site's shift omitted / moved to "
         "inplace position; the smallest resulting output change over all sites, in units of the pass "
         "tolerance (`omitted / residual->inplace`). Values >> 1 mean a single missed or misplaced block "
         "would fail the check.", "",
         "Online columns: `tsm-rewrite --online --mode M --fold-div F` with its tract validation (the online "
         "model streamed against the tool's own offline past-only rewrite; a failure is marked in the cell), "
         f"then onnxruntime streams the clips' {T} frames, one stream per clip, from zero buffers (the "
         "`tsm-rewrite.buffers` metadata), each buffer output fed back, against the PyTorch streaming network "
         "(`fixtures/export.py: OnlineShift` at the same sites, fresh buffers) frame by frame; same pass rule "
         "(largest difference and tolerance over the frames).", "",
         "Where tract cannot load the 2D model (transformers' BiT: its weight standardization is a "
         "BatchNormalization with three outputs) the tool's validation says so and fails, so nothing is "
         "validated in tract: the tract validation column reads n/a, and every configuration is written "
         "with `--no-validate` and checked in onnxruntime against PyTorch as the others are.", "",
         f"tool: `{BIN}`", "",
         "| model | H | nodes | blocks expected | blocks found | channels match | tract validation | "
         + " | ".join(cfg_name(*c) for c in CONFIGS) + " | "
         + " | ".join(f"online-{m}-fd{fd}" for m, fd in ONLINE_CONFIGS) + " | checker | sensitivity | time |",
         "|" + " --- |" * (10 + len(CONFIGS) + len(ONLINE_CONFIGS))]
    for r in reports:
        if "exception" in r:
            L.append(f"| {r['name']} | | | | | | EXCEPTION: {r['exception'][:200]} |"
                     + " |" * (len(CONFIGS) + len(ONLINE_CONFIGS) + 2))
            continue
        val = ("ok" if r["validate_rc"] == 0 and r["validate_line"] else f"FAIL (rc {r['validate_rc']})")
        if r["validate_rc"] != 0 and TRACT_LIMITED in r["validate_stderr_tail"]:
            val = "n/a: tract cannot load the 2D model"
        cells = []
        for c in r["configs"]:
            if "diff" in c:
                cells.append(f"{'PASS' if c['pass'] else 'FAIL'} {c['diff']:.1e} (Δplain {c['out_vs_plain']:.2f})")
            else:
                cells.append(f"FAIL: {c.get('error', '')[:80]}")
        cells += [online_cell(c) for c in r.get("online", [])]
        # Where tract cannot load the 2D model the validated output is not written: the configurations'
        # outputs (written with --no-validate) are still checked.
        chk = [] if val.startswith("n/a") else [r["validate_checker"]]
        chk += [c.get("checker", "n/a") for c in r["configs"] + r.get("online", [])]
        chk_s = "ok" if all(s == "ok" for s in chk) else "FAIL"
        L.append(f"| {r['name']} | {r['h']} | {r['nodes']} | {r['expected_blocks']} | {r['found']} | "
                 f"{'yes' if r['blocks_ok'] else 'NO'}{'' if r['channels_in_order'] else ' (order differs)'} | "
                 f"{val} | " + " | ".join(cells) + f" | {chk_s} | {sens_cell(r)} | {r['secs']:.0f}s |")
    L.append("")
    for r in reports:
        if "exception" in r:
            continue
        L += [f"## {r['name']}", "",
              f"- blocks: expected {r['expected_blocks']}, found {r['found']}; plain ORT vs torch "
              f"{r['plain_ort_diff']:.1e}; |plain| max {r['plain_absmax']:.2f}",
              f"- expected channels: {r['expected_channels']}",
              f"- found channels:    {r['found_channels']}",
              f"- tract validation: rc {r['validate_rc']}, {r['validate_secs']}s: "
              f"`{r['validate_line'] or r['validate_stderr_tail']}`",
              "- skipped Adds: " + (", ".join(f"{k} x{v}" for k, v in r["skip_summary"].items()) or "none")]
        for c in r["configs"]:
            if "diff" in c:
                L.append(f"- {c['config']}: diff {c['diff']:.2e} (tol {c['tol']:.1e}), ref vs plain "
                         f"{c['ref_vs_plain']:.3f}, out vs plain {c['out_vs_plain']:.3f}, checker {c['checker']}"
                         f" -> {'PASS' if c['pass'] else 'FAIL'}")
            else:
                L.append(f"- {c['config']}: FAIL rc {c['rc']}: `{c.get('error', '')[:300]}`")
        for c in r.get("online", []):
            if "diff" in c:
                L.append(f"- {c['config']}: {c['buffers']} buffers; tract validation rc {c['validate_rc']}, "
                         f"{c['validate_secs']}s: `{c['validate_line'] or c.get('validate_error', '')[-300:]}`; "
                         f"streamed in onnxruntime, {T} frames x {N_CLIPS} streams: diff {c['diff']:.2e} "
                         f"(tol {c['tol']:.1e}), out vs plain {c['out_vs_plain']:.3f}, checker {c['checker']}"
                         f" -> {'PASS' if c['pass'] else 'FAIL'}")
            else:
                L.append(f"- {c['config']}: FAIL: `{c.get('error', '')[:300]}`")
        L.append("")
    with open(out_path, "w") as f:
        f.write("\n".join(L))


def main():
    global DYNAMO, DYNAMO_OPSET, WORK
    if not os.path.exists(BIN):
        sys.exit(f"missing {BIN}: cd {REPO} && cargo build --release")
    import argparse
    ap = argparse.ArgumentParser(description="tsm-rewrite on modern torchvision / timm / transformers CNNs")
    ap.add_argument("models", nargs="*", help="run only these (default: all)")
    ap.add_argument("--out", default=RESULTS_MD, help=f"the results table (default {RESULTS_MD})")
    ap.add_argument("--dynamo", action="store_true",
                    help=f"export with the dynamo exporter at opset 18 (into {WORK}-dynamo)")
    ap.add_argument("--dynamo-opset", type=int, metavar="N",
                    help=f"the dynamo exporter at opset N (into {WORK}-dynamo-opsetN)")
    args = ap.parse_args()
    if args.dynamo_opset:
        DYNAMO, DYNAMO_OPSET, WORK = True, args.dynamo_opset, f"{WORK}-dynamo-opset{args.dynamo_opset}"
    elif args.dynamo:
        DYNAMO, WORK = True, WORK + "-dynamo"
    os.makedirs(WORK, exist_ok=True)
    only = set(args.models)
    reports = []
    for idx, (name, (builder, h)) in enumerate(models().items()):
        if only and name not in only:
            continue
        print(f"== {name} (H={h})", flush=True)
        try:
            r = verify(idx, name, builder, h)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            r = dict(name=name, exception=f"{type(e).__name__}: {e}")
        reports.append(r)
        if "exception" not in r:
            print(f"  blocks expected {r['expected_blocks']} found {r['found']} "
                  f"(channels {'ok' if r['blocks_ok'] else 'MISMATCH'}); validate rc {r['validate_rc']} "
                  f"{r['validate_line']}; {r['secs']}s", flush=True)
        with open(os.path.join(WORK, "results.json"), "w") as f:
            json.dump(reports, f, indent=1)
    write_md(reports, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
