"""Checkpoint export (``python -m tsm_rewrite.export``): checkpoints with the key layouts of the
paper's code (mit-han-lab/temporal-shift-module) and of mmaction2, built here from seeded weights
by PyTorch TSM models assembled as each project assembles them, exported, rewritten, and run in
onnxruntime against the PyTorch model.

The PyTorch models mirror the projects' module code (not imported: neither project is a
dependency): the paper's ``TSN`` (``base_model`` = torchvision ResNet, ``new_fc``, saved under
DataParallel) with ``ops/temporal_shift.py``'s ``make_temporal_shift`` (``TemporalShift`` holds
the wrapped module as ``net``: each block's ``conv1`` for ``blockres``, every other block's with
``layer3`` of 23 blocks or more, the whole block for ``block``) and ``make_temporal_pool``; and
mmaction2's ``Recognizer2D`` with ``ResNetTSM`` (mmcv ``ConvModule``: ``conv``/``bn``; ``blockres``
wraps ``convN.conv``, ``block`` the block) and ``TSMHead.fc_cls``. The shift itself is
``fixtures/export.py``'s ``TemporalShift`` (channels [0, fold) take frame t+1, [fold, 2*fold)
frame t-1, zeros outside the clip), the temporal pool ``fixtures/export_deploy.py``'s ``TemporalPool``.

Needs torch, torchvision and onnx (the ``torch`` extra). CI's venv has none of them: this module
is then skipped (``pytest.importorskip``), and ``test_api.py`` runs alone.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from torch import nn  # noqa: E402

from tsm_rewrite import export as tsm_export  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HW = 64
# for `python -m tsm_rewrite.export` in a subprocess: this package first on the path
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python")] + (
    [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
CLIPS = 2


def _load_fixtures():
    """fixtures/export_deploy.py (the paper's TemporalPool) and through it fixtures/export.py (the
    shift reference), keeping this process's torch thread count."""
    threads = torch.get_num_threads()
    path = os.path.join(ROOT, "fixtures", "export_deploy.py")
    spec = importlib.util.spec_from_file_location("fixtures_export_deploy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(threads)
    mod.ex.self_test_shift()
    return mod, mod.ex


deploy, ref = _load_fixtures()


class Shift(nn.Module):
    """Both projects' TemporalShift: shift the input, then run the wrapped module, held as ``net``.
    ``enabled = False`` gives the plain 2D network with the same weights."""

    enabled = True

    def __init__(self, net, n_segment, fold_div):
        super().__init__()
        self.net = net
        self.shift = ref.TemporalShift(n_segment, fold_div, "bidirectional", "tsm")

    def forward(self, x):
        return self.net(self.shift(x) if Shift.enabled else x)


def make_temporal_shift(net, conv1_of, n_segment, fold_div, place, temporal_pool=False):
    """make_temporal_shift of both projects, on a module with layer1..layer4. ``conv1_of(block)``
    is the (parent, name) of the conv wrapped in blockres: (block, 'conv1') in the paper,
    (block.conv1, 'conv') in mmaction2."""
    segments = [n_segment] + [n_segment // 2 if temporal_pool else n_segment] * 3
    n_round = 2 if place == "blockres" and len(net.layer3) >= 23 else 1
    for s in range(4):
        blocks = list(getattr(net, f"layer{s + 1}").children())
        for i, b in enumerate(blocks):
            if place == "block":
                blocks[i] = Shift(b, segments[s], fold_div)
            elif i % n_round == 0:
                parent, name = conv1_of(b)
                setattr(parent, name, Shift(getattr(parent, name), segments[s], fold_div))
        setattr(net, f"layer{s + 1}", nn.Sequential(*blocks))
    if temporal_pool:
        net.layer2 = deploy.TemporalPool(net.layer2, n_segment)


# -------------------------------------------------------------- the paper's TSN

class TSN(nn.Module):
    """ops/models.py TSN with dropout > 0: base_model's fc is a Dropout, the classifier new_fc."""

    def __init__(self, arch, num_class, n_segment, fold_div, place, temporal_pool=False):
        super().__init__()
        self.base_model = getattr(torchvision.models, arch)(weights=None)
        make_temporal_shift(self.base_model, lambda b: (b, "conv1"), n_segment, fold_div, place, temporal_pool)
        self.base_model.avgpool = nn.AdaptiveAvgPool2d(1)
        feature_dim = self.base_model.fc.in_features
        self.base_model.fc = nn.Dropout(p=0.8)
        self.new_fc = nn.Linear(feature_dim, num_class)

    def forward(self, x):  # per-frame logits (before the segment consensus)
        return self.new_fc(self.base_model(x))


# -------------------------------------------------------------- mmaction2

class ConvModule(nn.Module):
    """mmcv ConvModule with a BN: conv -> bn -> activate (bias off: 'auto' with a norm)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class MMBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 3, stride, 1)
        self.conv2 = ConvModule(planes, planes, 3, 1, 1, act=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class MMBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):  # style='pytorch': stride on conv2
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 1)
        self.conv2 = ConvModule(planes, planes, 3, stride, 1)
        self.conv3 = ConvModule(planes, planes * 4, 1, act=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNetTSM(nn.Module):
    """mmaction/models/backbones/resnet.py ResNet + resnet_tsm.py make_temporal_shift."""

    def __init__(self, depth, num_segments, shift_div, shift_place, temporal_pool=False):
        super().__init__()
        kind, stages = tsm_export.ARCHS[f"resnet{depth}"]
        block = MMBottleneck if kind == "bottleneck" else MMBasicBlock
        self.conv1 = ConvModule(3, 64, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, n in enumerate(stages):
            planes, stride = 64 * 2 ** i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = ConvModule(inplanes, planes * block.expansion, 1, stride, act=False)
            layers = [block(inplanes, planes, stride, downsample)]
            inplanes = planes * block.expansion
            layers += [block(inplanes, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.feat_dim = inplanes
        make_temporal_shift(self, lambda b: (b.conv1, "conv"), num_segments, shift_div, shift_place, temporal_pool)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TSMHead(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=0.5)
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x):  # per-frame scores (before the consensus)
        return self.fc_cls(self.dropout(torch.flatten(self.avg_pool(x), 1)))


class Recognizer2D(nn.Module):
    def __init__(self, depth, num_classes, num_segments, shift_div, shift_place):
        super().__init__()
        self.backbone = ResNetTSM(depth, num_segments, shift_div, shift_place)
        self.cls_head = TSMHead(num_classes, self.backbone.feat_dim)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


# -------------------------------------------------------------- helpers

@torch.no_grad()
def seeded(model, seed, x):
    """Seeded weights, BN affine and running stats randomized (num_batches_tracked set), the
    classifier scaled so the plain logits have std ~1."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() > 1:
            p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
            m.running_mean.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(1234)
        elif isinstance(m, nn.Linear):
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    model.eval()
    Shift.enabled = False
    s = float(model(x).std())
    Shift.enabled = True
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    fc.weight.div_(2.0 ** round(np.log2(s)))
    fc.bias.div_(2.0 ** round(np.log2(s)))
    return model


@torch.no_grad()
def outputs(model, x):
    """(TSM output, plain 2D output with the same weights)"""
    y = model(x).numpy()
    Shift.enabled = False
    try:
        y2d = model(x).numpy()
    finally:
        Shift.enabled = True
    return y, y2d


def clip_input(segments, seed, hw=HW):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(CLIPS * segments, 3, hw, hw, generator=g)


def check(onnx_path, x, y, y2d):
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    tol = 1e-4 * max(1.0, float(np.abs(y).max()))
    diff = float(np.abs(got - y).max())
    assert diff <= tol, f"max |onnx - pytorch TSM| = {diff:.3g} > {tol:.3g}"
    # not blind: the shift moves the output far more than the tolerance
    assert float(np.abs(y - y2d).max()) > 100 * tol


def paper_checkpoint(tmp_path, arch, segments, fold_div, place, num_classes=10, seed=0, temporal_pool=False,
                     name_segments=None, hw=HW):
    tsn = TSN(arch, num_classes, segments, fold_div, place, temporal_pool)
    x = clip_input(segments, seed + 1, hw)
    seeded(tsn, seed, x)
    model = nn.DataParallel(tsn)  # main.py trains under DataParallel: keys start with module.
    name = (f"TSM_kinetics_RGB_{arch}_shift{fold_div}_{place}{'_tpool' if temporal_pool else ''}"
            f"_avg_segment{name_segments or segments}_e50.pth")
    path = tmp_path / name
    torch.save({"epoch": 50, "arch": arch, "state_dict": model.state_dict(), "best_prec1": 71.2}, path)
    return path, x, *outputs(tsn, x)


CONFIG_BASE = """\
# _base_/models/tsm_r{depth}.py
model = dict(
    type='Recognizer2D',
    backbone=dict(
        type='ResNetTSM',
        pretrained='torchvision://resnet{depth}',
        depth={depth},
        norm_eval=False,
        shift_div={shift_div}),
    cls_head=dict(type='TSMHead', num_classes={num_classes}, in_channels=512, is_shift=True))
"""

CONFIG = """\
_base_ = ['../_base_/models/tsm_r{depth}.py']
segments = {segments}
model = dict(backbone=dict(num_segments=segments, shift_place='{place}'), cls_head=dict(num_segments=segments))
train_dataloader = dict(batch_size=8)
"""


def mmaction_checkpoint(tmp_path, depth, segments, fold_div, place, num_classes=10, seed=0, hw=HW):
    model = Recognizer2D(depth, num_classes, segments, fold_div, place)
    x = clip_input(segments, seed + 1, hw)
    seeded(model, seed, x)
    path = tmp_path / f"tsm_r{depth}_1x1x{segments}_{place}.pth"
    torch.save({"meta": {"epoch": 50, "mmaction_version": "1.2.0"}, "state_dict": model.state_dict()}, path)
    (tmp_path / "_base_" / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "_base_" / "models" / f"tsm_r{depth}.py").write_text(
        CONFIG_BASE.format(depth=depth, shift_div=fold_div, num_classes=num_classes))
    (tmp_path / "configs").mkdir(exist_ok=True)
    config = tmp_path / "configs" / f"tsm_r{depth}_{place}_{segments}.py"
    config.write_text(CONFIG.format(depth=depth, segments=segments, place=place))
    return path, config, x, *outputs(model, x)


def flag(report, name):
    f = report["export"]["flags"][name]
    return f["value"], f["source"]


# -------------------------------------------------------------- tests

CASES = [(place, segments) for place in ("blockres", "block") for segments in (8, 16)]


@pytest.mark.parametrize("place,segments", CASES)
def test_paper_checkpoint(tmp_path, place, segments):
    fold_div = 8 if segments == 8 else 4
    ckpt, x, y, y2d = paper_checkpoint(tmp_path, "resnet18", segments, fold_div, place, seed=segments)
    out = tmp_path / "tsm.onnx"
    report = tsm_export.export_checkpoint(ckpt, out, input_size=HW, validate=segments == 8, log=lambda s: None)
    assert report["export"]["layout"] == "paper" and report["export"]["num_classes"] == 10
    assert flag(report, "segments") == (segments, f"file name {ckpt.name}")
    assert flag(report, "fold_div")[0] == fold_div
    assert flag(report, "mode")[0] == tsm_export.MODES[place]
    assert report["config"]["mode"] == tsm_export.MODES[place] and report["config"]["segments"] == segments
    assert report["shifted"] == 8 and (report["validation"] or {"clips": 2})["clips"] == 2
    check(out, x, y, y2d)


@pytest.mark.parametrize("place,segments", CASES)
def test_mmaction2_checkpoint(tmp_path, place, segments):
    fold_div = 8 if segments == 16 else 4
    ckpt, config, x, y, y2d = mmaction_checkpoint(tmp_path, 18, segments, fold_div, place, seed=100 + segments)
    out = tmp_path / "tsm.onnx"
    report = tsm_export.export_checkpoint(ckpt, out, mmaction_config=config, input_size=HW, validate=segments == 8,
                                          log=lambda s: None)
    assert report["export"]["layout"] == "mmaction2"
    assert flag(report, "segments") == (segments, f"mmaction2 config {config.name}")
    assert flag(report, "fold_div")[0] == fold_div  # from the _base_ file
    assert flag(report, "mode")[0] == tsm_export.MODES[place]
    assert report["shifted"] == 8
    check(out, x, y, y2d)


def test_resnet50_paper_blockres_command_line_segments(tmp_path):
    """An 8-frame evaluation of a checkpoint named segment16 (as the paper's test_models.py
    --test_segments does): the command line wins."""
    ckpt, x, y, y2d = paper_checkpoint(tmp_path, "resnet50", 8, 8, "blockres", num_classes=7, seed=5,
                                       name_segments=16, hw=32)
    out = tmp_path / "tsm.onnx"
    p = subprocess.run([sys.executable, "-m", "tsm_rewrite.export", str(ckpt), "--arch", "resnet50", "-o", str(out),
                        "--segments", "8", "--input-size", "32", "--no-validate"],
                       capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    assert "segments      8         (command line)" in p.stderr
    assert f"fold_div      8         (file name {ckpt.name})" in p.stderr
    assert "mode          residual  (file name" in p.stderr
    assert "16 of 16 residual block(s) shifted" in p.stderr
    check(out, x, y, y2d)


def test_resnet50_mmaction2_block(tmp_path):
    ckpt, config, x, y, y2d = mmaction_checkpoint(tmp_path, 50, 8, 8, "block", num_classes=5, seed=7, hw=32)
    out = tmp_path / "tsm.onnx"
    report = tsm_export.export_checkpoint(ckpt, out, arch="resnet50", mmaction_config=config, input_size=32,
                                          validate=False, log=lambda s: None)
    assert flag(report, "mode") == ("inplace", f"mmaction2 config {config.name}") and report["shifted"] == 16
    check(out, x, y, y2d)


def test_paper_temporal_pool(tmp_path):
    ckpt, x, y, y2d = paper_checkpoint(tmp_path, "resnet18", 8, 8, "blockres", seed=11, temporal_pool=True)
    out = tmp_path / "tsm.onnx"
    report = tsm_export.export_checkpoint(ckpt, out, input_size=HW, log=lambda s: None)
    assert flag(report, "temporal_pool")[0] is True and report["config"]["temporal_pool"]
    assert y.shape == (CLIPS * 4, 10)  # 4 frames per clip after the pool
    check(out, x, y, y2d)


def test_resnet101_blockres_shifts_every_other_block():
    """Both projects shift every other block of each stage when layer3 has 23 blocks or more."""
    for sd, layout in ((nn.DataParallel(TSN("resnet101", 10, 8, 8, "blockres")).state_dict(), "paper"),
                       (Recognizer2D(101, 10, 8, 8, "blockres").state_dict(), "mmaction2")):
        assert tsm_export.detect_layout(list(sd))[0] == layout
        mapped, unknown, found = tsm_export.map_keys(sd, *tsm_export.detect_layout(list(sd)))
        assert not unknown and tsm_export.arch_of_keys(list(mapped)) == "resnet101"
        assert tsm_export.placement(found, "resnet101") == ("blockres", 2)
        assert "layer3.22.conv1.weight" in mapped and "layer3.2.conv1.weight" in mapped


def test_unknown_and_missing_keys_are_listed(tmp_path):
    tsn = TSN("resnet18", 10, 8, 8, "blockres")
    sd = nn.DataParallel(tsn).state_dict()
    sd["module.base_model.layer1.0.bn1.wieght"] = sd.pop("module.base_model.layer1.0.bn1.weight")
    del sd["module.base_model.layer4.1.conv2.weight"]
    sd["module.consensus.extra"] = torch.zeros(1)
    ckpt = tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth"
    torch.save({"state_dict": sd}, ckpt)
    with pytest.raises(tsm_export.ExportError) as e:
        tsm_export.export_checkpoint(ckpt, tmp_path / "o.onnx", log=lambda s: None)
    msg = str(e.value)
    assert "unknown keys (2): " in msg
    assert "module.base_model.layer1.0.bn1.wieght" in msg and "module.consensus.extra" in msg
    assert "missing keys (2, torchvision names): " in msg
    assert "layer1.0.bn1.weight" in msg and "layer4.1.conv2.weight" in msg
    assert not (tmp_path / "o.onnx").exists()

    # the command: exit 2, the same lists on stderr
    p = subprocess.run([sys.executable, "-m", "tsm_rewrite.export", str(ckpt), "--arch", "resnet18",
                        "-o", str(tmp_path / "o.onnx")], capture_output=True, text=True, env=ENV)
    assert p.returncode == 2 and "module.base_model.layer1.0.bn1.wieght" in p.stderr
    assert "layer4.1.conv2.weight" in p.stderr


def test_mmaction2_keys_in_torchvision_naming_are_unknown(tmp_path):
    """A backbone key that is not ConvModule-named (here torchvision's bn1) is not silently taken."""
    model = Recognizer2D(18, 10, 8, 8, "blockres")
    sd = model.state_dict()
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        sd[f"backbone.bn1.{p}"] = sd.pop(f"backbone.conv1.bn.{p}")
    ckpt = tmp_path / "tsm.pth"
    torch.save({"state_dict": sd}, ckpt)
    with pytest.raises(tsm_export.ExportError) as e:
        tsm_export.export_checkpoint(ckpt, tmp_path / "o.onnx", arch="resnet18", log=lambda s: None)
    msg = str(e.value)
    assert "backbone.bn1.weight" in msg and "missing keys" in msg and "bn1.running_var" in msg


def test_name_that_contradicts_the_keys_is_refused(tmp_path):
    tsn = TSN("resnet18", 10, 8, 8, "block")
    ckpt = tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth"
    torch.save({"state_dict": nn.DataParallel(tsn).state_dict()}, ckpt)
    with pytest.raises(tsm_export.ExportError, match="mode=residual, the checkpoint's keys say inplace"):
        tsm_export.export_checkpoint(ckpt, tmp_path / "o.onnx", log=lambda s: None)


def test_paper_classifier_without_dropout_and_store_folder(tmp_path):
    """dropout 0: TSN keeps base_model.fc (no new_fc); both at once is an unknown key. main.py saves
    {root_model}/{store_name}/ckpt.pth.tar: the flags come from the folder's name."""
    sd = nn.DataParallel(TSN("resnet18", 10, 8, 8, "block")).state_dict()
    plain = {k.replace("module.new_fc.", "module.base_model.fc."): v for k, v in sd.items()}
    mapped, unknown, _ = tsm_export.map_keys(plain, "paper", "module.")
    assert not unknown and mapped["fc.weight"][0] == "module.base_model.fc.weight"
    both = dict(sd, **{"module.base_model.fc.weight": sd["module.new_fc.weight"]})
    assert tsm_export.map_keys(both, "paper", "module.")[1] == ["module.base_model.fc.weight"]
    store = "TSM_something_RGB_resnet101_shift4_block_tpool_avg_segment16_e45"
    named = tsm_export.flags_from_name(os.path.join(str(tmp_path), store, "ckpt.best.pth.tar"))
    assert named == {"name": store, "arch": "resnet101", "segments": 16, "temporal_pool": True,
                     "non_local": False, "fold_div": 4, "place": "block"}
    nl = "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth"
    assert tsm_export.flags_from_name(nl)["non_local"]
