"""A trained TSM checkpoint to a TSM model in ONNX.

    python -m tsm_rewrite.export TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth -o tsm.onnx
    python -m tsm_rewrite.export tsm_r50.pth --mmaction-config tsm_r50_config.py -o tsm.onnx

Loads the checkpoint's weights into torchvision's ResNet (the 2D backbone: the shift has no
weights), exports it to ONNX with a dynamic batch, then runs ``tsm_rewrite.rewrite`` with the
flags the checkpoint was trained with. Two key layouts are read:

- the paper's code (mit-han-lab/temporal-shift-module): ``TSN`` keeps the torchvision ResNet as
  ``base_model`` (saved under DataParallel, so ``module.base_model.``); ``make_temporal_shift``
  wraps each block's ``conv1`` (``blockres``: ``layer1.0.conv1.net.weight``) or each whole block
  (``block``: ``layer1.0.net.conv1.weight``) in a ``TemporalShift`` whose child is ``net``; with
  ResNet-101/152 (``layer3`` of 23 blocks or more) ``blockres`` wraps every other block of each
  stage. With dropout the classifier is ``new_fc`` (``base_model.fc`` becomes a Dropout), without
  it ``base_model.fc``. ``make_temporal_pool`` wraps ``layer2`` (``layer2.net.``).
- mmaction2 (``ResNetTSM``, ``Recognizer2D``): ``backbone.`` then mmcv's ConvModule naming
  (``conv1.conv``/``conv1.bn`` for the stem, ``layerX.Y.convN.conv``/``.bn``,
  ``downsample.conv``/``downsample.bn``); ``blockres`` wraps the ConvModule's conv
  (``layer1.0.conv1.conv.net.weight``), ``block`` the whole block (``layer1.0.net.conv1.conv.weight``);
  the classifier is ``cls_head.fc_cls``.

Every key must map to exactly one torchvision key and every torchvision key must be given: the
rest is an error that lists them. Needs torch, torchvision and onnx (``pip install
'tsm-rewrite[torch]'``); they are imported only when a checkpoint is exported.
"""

import argparse
import ast
import json
import os
import re
import sys
import tempfile

from . import RewriteError, rewrite

__all__ = ["export_checkpoint", "ExportError", "ARCHS"]

#: torchvision ResNets: (block kind, blocks per stage)
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
MODES = {"blockres": "residual", "block": "inplace"}

# The paper's store name (main.py):
# TSM_{dataset}_{modality}_{arch}[_shift{div}_{place}][_tpool]_{consensus}_segment{T}_e{epochs}[...]
PAPER_NAME = re.compile(
    r"TSM_(?P<dataset>[^_]+)_(?P<modality>[^_]+)_(?P<arch>[A-Za-z0-9]+)"
    r"(?:_shift(?P<div>\d+)_(?P<place>blockres|block))?(?P<tpool>_tpool)?"
    r"_(?P<consensus>[a-z]+)_segment(?P<segments>\d+)_e\d+(?P<rest>[^/\\]*)")


class ExportError(Exception):
    """The checkpoint cannot be exported as asked (bad keys, unknown layout, conflicting flags)."""


def _torch():
    try:
        import onnx  # noqa: F401  (the exporter needs it; checked here for one clear message)
        import torch
        import torchvision
    except ImportError as e:
        raise ExportError(f"python -m tsm_rewrite.export needs torch, torchvision and onnx ({e}); "
                          "install them with: pip install 'tsm-rewrite[torch]'") from None
    return torch, torchvision


# --------------------------------------------------------------------------
# Key layouts
# --------------------------------------------------------------------------

BLOCK = r"layer[1-4]\.\d+"
# (pattern, replacement, what a match tells), tried in order; a key may pass several
WRAPPERS = {
    "paper": [
        (r"^layer2\.net\.", "layer2.", "tpool"),
        (rf"^({BLOCK})\.net\.", r"\1.", "block"),
        (rf"^({BLOCK})\.conv1\.net\.", r"\1.conv1.", "blockres"),
    ],
    "mmaction2": [
        (r"^layer2\.net\.", "layer2.", "tpool"),
        (rf"^({BLOCK})\.net\.", r"\1.", "block"),
        (rf"^({BLOCK})\.conv1\.conv\.net\.", r"\1.conv1.conv.", "blockres"),
    ],
}
# mmcv ConvModule -> torchvision, for mmaction2's backbone keys
CONV_MODULES = [
    (r"^conv1\.conv\.", "conv1."),
    (r"^conv1\.bn\.", "bn1."),
    (rf"^({BLOCK})\.conv(\d)\.conv\.", r"\1.conv\2."),
    (rf"^({BLOCK})\.conv(\d)\.bn\.", r"\1.bn\2."),
    (rf"^({BLOCK})\.downsample\.conv\.", r"\1.downsample.0."),
    (rf"^({BLOCK})\.downsample\.bn\.", r"\1.downsample.1."),
]


def _state_dict(obj):
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        return obj
    keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise ExportError("no state dict in the checkpoint (expected a 'state_dict' entry or a dict of tensors; "
                      f"found {keys})")


def detect_layout(keys):
    """'paper' or 'mmaction2', and the prefix before the model's own keys."""
    if any(k.startswith("backbone.") for k in keys):
        return "mmaction2", ""
    for prefix in ("module.", ""):
        if any(k.startswith(prefix + "base_model.") for k in keys):
            return "paper", prefix
    raise ExportError("unknown checkpoint layout: no 'module.base_model.' / 'base_model.' keys (the paper's "
                      "TSN) and no 'backbone.' keys (mmaction2); first keys: " + ", ".join(sorted(keys)[:8]))


def _unwrap(key, layout, found):
    """Removes the shift / pool wrappers from a backbone key, noting them in ``found``."""
    for pattern, repl, what in WRAPPERS[layout]:
        new = re.sub(pattern, repl, key)
        if new != key:
            if what == "tpool":
                found["tpool"] = True
            else:
                block = re.match(BLOCK, new).group(0)
                found["blocks"].setdefault(block, set()).add(what)
            key = new
    if ".net." in key:
        return None
    return key


def map_keys(sd, layout, prefix):
    """Maps checkpoint keys to torchvision ResNet keys. Returns (mapped {tv_key: (ckpt_key, tensor)},
    unknown [ckpt_key], found wrappers)."""
    found = {"tpool": False, "blocks": {}}
    mapped, unknown = {}, []
    for key, value in sd.items():
        tv = None
        if layout == "paper":
            rest = key[len(prefix):] if key.startswith(prefix) else None
            if rest is None:
                pass
            elif rest.startswith("new_fc."):
                tv = "fc." + rest[len("new_fc."):]
            elif rest.startswith("base_model."):
                tv = _unwrap(rest[len("base_model."):], layout, found)
        else:
            if key.startswith("cls_head.fc_cls."):
                tv = "fc." + key[len("cls_head.fc_cls."):]
            elif key.startswith("backbone."):
                bk = _unwrap(key[len("backbone."):], layout, found)
                if bk is not None:
                    for pattern, repl in CONV_MODULES:
                        if re.match(pattern, bk):
                            tv = re.sub(pattern, repl, bk)
                            break
        if tv is None or tv in mapped:
            unknown.append(key)
        else:
            mapped[tv] = (key, value)
    return mapped, unknown, found


def arch_of_keys(tv_keys):
    """The torchvision ResNet whose blocks the keys name, or None."""
    counts = [0, 0, 0, 0]
    for k in tv_keys:
        m = re.match(r"layer([1-4])\.(\d+)\.", k)
        if m:
            counts[int(m.group(1)) - 1] = max(counts[int(m.group(1)) - 1], int(m.group(2)) + 1)
    kind = "bottleneck" if any(".conv3." in k for k in tv_keys) else "basic"
    for name, (k, blocks) in ARCHS.items():
        if k == kind and tuple(counts) == blocks:
            return name
    return None


def placement(found, arch):
    """(shift_place, every) from the wrappers found, checked against what the project's code wraps."""
    kinds = set().union(*found["blocks"].values()) if found["blocks"] else set()
    if not kinds:
        return None, 1
    if len(kinds) > 1:
        raise ExportError("the checkpoint mixes shift placements: " + ", ".join(
            f"{b}: {'/'.join(sorted(w))}" for b, w in sorted(found["blocks"].items())))
    place = kinds.pop()
    blocks = ARCHS[arch][1]
    every = 2 if place == "blockres" and blocks[2] >= 23 else 1
    expect = {f"layer{s + 1}.{i}" for s, n in enumerate(blocks) for i in range(0, n, every)}
    got = set(found["blocks"])
    if got != expect:
        raise ExportError(f"'{place}' shift wrappers on blocks that differ from the projects' {arch} "
                          f"(every {every} block(s) of each stage): extra {sorted(got - expect) or 'none'}, "
                          f"absent {sorted(expect - got) or 'none'}")
    return place, every


# --------------------------------------------------------------------------
# Training flags: the paper's file names, mmaction2 configs
# --------------------------------------------------------------------------

def flags_from_name(path):
    """The paper's store name in the file name or a parent folder (main.py saves
    ``{root_model}/{store_name}/ckpt.pth.tar``). A dict of what it says, or None."""
    for part in reversed(os.path.abspath(path).split(os.sep)):
        m = PAPER_NAME.search(part)
        if m:
            g = m.groupdict()
            out = {"name": part, "arch": g["arch"], "segments": int(g["segments"]),
                   "temporal_pool": bool(g["tpool"]), "non_local": "_nl" in (g["rest"] or "").split(".")[0]}
            if g["div"]:
                out.update(fold_div=int(g["div"]), place=g["place"])
            return out
    return None


def _literal(node, names):
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value, names) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Dict):
        return {_literal(k, names): _literal(v, names) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, names) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _Unknown(ast.unparse(node) if hasattr(ast, "unparse") else "?")


class _Unknown:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"<{self.text}>"


def _merge(base, new):
    if isinstance(new, dict) and new.get("_delete_"):
        return {k: v for k, v in new.items() if k != "_delete_"}
    if isinstance(base, dict) and isinstance(new, dict):
        out = dict(base)
        for k, v in new.items():
            out[k] = _merge(base.get(k), v)
        return out
    return new


def read_mmaction_config(path, _seen=None):
    """The ``model`` dict of an mmaction2 (mmengine) config file, read without running it: module-level
    assignments of literals and ``dict(...)`` calls, ``_base_`` files merged first as mmengine does."""
    _seen = _seen or set()
    path = os.path.abspath(path)
    if path in _seen:
        raise ExportError(f"{path}: _base_ files include each other")
    _seen.add(path)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = _literal(stmt.value, names)
    model = {}
    bases = names.get("_base_", [])
    for base in [bases] if isinstance(bases, str) else bases:
        if not isinstance(base, str):
            continue
        base_path = os.path.join(os.path.dirname(path), base)
        if os.path.isfile(base_path):
            model = _merge(model, read_mmaction_config(base_path, _seen))
        else:
            print(f"note: {path}: _base_ file {base} not found; its settings are not read", file=sys.stderr)
    return _merge(model, names.get("model", {})) if isinstance(names.get("model", {}), dict) else model


# ResNetTSM's defaults (mmaction/models/backbones/resnet_tsm.py)
RESNET_TSM_DEFAULTS = {"num_segments": 8, "shift_div": 8, "shift_place": "blockres", "temporal_pool": False,
                       "is_shift": True}


def flags_from_mmaction_config(path):
    model = read_mmaction_config(path)
    backbone = model.get("backbone") if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or backbone.get("type") != "ResNetTSM":
        raise ExportError(f"{path}: no model=dict(backbone=dict(type='ResNetTSM', ...)) in the config or its "
                          f"_base_ files (found backbone {backbone!r})")
    out = {}
    for key, default in RESNET_TSM_DEFAULTS.items():
        value = backbone.get(key, default)
        if isinstance(value, _Unknown):
            raise ExportError(f"{path}: backbone {key}={value.text} is not a literal; "
                              "give the flag on the command line")
        out[key] = (value, "mmaction2 config" if key in backbone else "ResNetTSM default")
    v = backbone.get("non_local")
    if v and (not isinstance(v, (list, tuple)) or any(any(s) if isinstance(s, (list, tuple)) else s for s in v)):
        raise ExportError(f"{path}: non-local blocks (non_local={v!r}) have weights tsm-rewrite cannot add")
    if backbone.get("style", "pytorch") != "pytorch":
        raise ExportError(f"{path}: style={backbone['style']!r}: only 'pytorch' style ResNets (stride on the 3x3 conv, "
                          "as torchvision's) can be loaded")
    if "depth" in backbone and not isinstance(backbone["depth"], _Unknown):
        out["arch"] = (f"resnet{backbone['depth']}", "mmaction2 config")
    return out


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

def load_checkpoint(path, unsafe_load=False):
    torch, _ = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_load)
    except Exception as e:
        if unsafe_load:
            raise
        raise ExportError(f"{path}: torch.load(weights_only=True) failed ({type(e).__name__}: {str(e).strip()[:300]}); "
                          "if you trust this file, pass --unsafe-load (a full unpickle runs the file's code)") from None
    return obj


def build_model(arch, mapped, unknown, layout):
    """torchvision's ``arch`` with the checkpoint's classes and input channels, loaded strictly."""
    torch, torchvision = _torch()
    fc = mapped.get("fc.weight")
    if fc is None:
        name = {"paper": "module.base_model.fc.weight or module.new_fc.weight", "mmaction2": "cls_head.fc_cls.weight"}
        raise ExportError(f"no classifier in the checkpoint ({name[layout]})" + (
            f"; keys not understood: {', '.join(unknown)}" if unknown else ""))
    num_classes = fc[1].shape[0]
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    stem = mapped.get("conv1.weight")
    if stem is not None and stem[1].shape[1] != model.conv1.in_channels:  # Flow / RGBDiff input
        c = model.conv1
        model.conv1 = torch.nn.Conv2d(stem[1].shape[1], c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
    want = model.state_dict()
    missing = [k for k in want if k not in mapped and not k.endswith("num_batches_tracked")]
    unknown = unknown + [mapped[k][0] for k in mapped if k not in want]
    bad_shape = [f"{mapped[k][0]} {tuple(mapped[k][1].shape)} (torchvision {k} {tuple(want[k].shape)})"
                 for k in mapped if k in want and tuple(mapped[k][1].shape) != tuple(want[k].shape)]
    if missing or unknown or bad_shape:
        lines = [f"the checkpoint does not fit torchvision's {arch}:"]
        if unknown:
            lines.append(f"  unknown keys ({len(unknown)}): " + ", ".join(unknown))
        if missing:
            lines.append(f"  missing keys ({len(missing)}, torchvision names): " + ", ".join(missing))
        if bad_shape:
            lines.append(f"  shape mismatches ({len(bad_shape)}): " + ", ".join(bad_shape))
        guess = arch_of_keys(list(mapped))
        if guess and guess != arch:
            lines.append(f"  (the keys look like {guess})")
        raise ExportError("\n".join(lines))
    state = {k: v for k, (_, v) in mapped.items()}
    for k in want:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = want[k]  # unused in eval; older checkpoints lack it
    model.load_state_dict(state, strict=True)
    return model.eval(), num_classes, stem[1].shape[1] if stem is not None else 3


def export_onnx(model, path, in_channels, size, opset):
    torch, _ = _torch()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        with torch.no_grad():
            torch.onnx.export(model, (torch.zeros(2, in_channels, size, size),), path, opset_version=opset,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kw)


def _resolve(cli, sources):
    """cli: {flag: value or None}; sources: [{flag: (value, source)}] in decreasing precedence after
    the command line. Returns {flag: (value, source)} for the flags some source gives."""
    out = {}
    for flag, value in cli.items():
        if value is not None:
            out[flag] = (value, "command line")
            continue
        for given in sources:
            if given.get(flag, (None,))[0] is not None:
                out[flag] = given[flag]
                break
    return out


def export_checkpoint(checkpoint, output, *, arch=None, segments=None, fold_div=None, mode=None, every=None,
                      temporal_pool=None, mmaction_config=None, consensus=None, input_size=224, opset=17,
                      validate=True, unsafe_load=False, log=print):
    """Exports a TSM checkpoint (the paper's or mmaction2's) to a TSM model at ``output``. Flags left
    ``None`` come from the checkpoint (its file name, its config, its keys). Returns the rewrite's
    report with an ``export`` entry: the layout, arch, classes and each flag with its source."""
    obj = load_checkpoint(checkpoint, unsafe_load)
    sd = _state_dict(obj)
    layout, prefix = detect_layout(list(sd))
    mapped, unknown, found = map_keys(sd, layout, prefix)
    tv_keys = list(mapped)

    named = flags_from_name(checkpoint) if layout == "paper" else None
    config = flags_from_mmaction_config(mmaction_config) if mmaction_config else {}
    if layout == "paper" and mmaction_config:
        raise ExportError("--mmaction-config given, but the checkpoint has the paper's key layout (module.base_model.)")
    if named and named["non_local"]:
        raise ExportError(f"{named['name']}: a non-local TSM ('_nl'): its non-local blocks have weights "
                          "tsm-rewrite cannot add")

    # arch: command line, then what the run recorded, then the keys
    src_arch = []
    if named:
        src_arch.append({"arch": (named["arch"], f"file name {named['name']}")})
    if isinstance(obj, dict) and isinstance(obj.get("arch"), str):
        src_arch.append({"arch": (obj["arch"], "checkpoint 'arch' entry")})
    if "arch" in config:
        src_arch.append({"arch": config["arch"]})
    src_arch.append({"arch": (arch_of_keys(tv_keys), "checkpoint keys")})
    resolved = _resolve({"arch": arch}, src_arch)
    if "arch" not in resolved:
        raise ExportError("cannot tell the architecture from the checkpoint; pass --arch " + "|".join(ARCHS))
    arch_name, arch_src = resolved["arch"]
    if arch_name not in ARCHS:
        raise ExportError(f"--arch {arch_name}: only torchvision ResNets are supported ({', '.join(ARCHS)})")

    model, num_classes, in_channels = build_model(arch_name, mapped, unknown, layout)
    place, key_every = placement(found, arch_name)
    from_keys = {"mode": MODES.get(place), "every": key_every if place else None,
                 "temporal_pool": found["tpool"] if place or found["tpool"] else None}
    trained = {}  # {flag: (value, source)} from the file name or the config
    if named:
        src = f"file name {named['name']}"
        trained = {"segments": (named["segments"], src), "fold_div": (named.get("fold_div"), src),
                   "mode": (MODES.get(named.get("place")), src), "temporal_pool": (named["temporal_pool"], src)}
    elif config:
        if not config["is_shift"][0]:
            raise ExportError(f"{mmaction_config}: is_shift=False: the model has no temporal shift")
        if config["shift_place"][0] not in MODES:
            raise ExportError(f"{mmaction_config}: shift_place={config['shift_place'][0]!r} "
                              "(block or blockres expected)")
        name = os.path.basename(mmaction_config)
        for flag, key in (("segments", "num_segments"), ("fold_div", "shift_div"), ("mode", "shift_place"),
                          ("temporal_pool", "temporal_pool")):
            value, src = config[key]
            trained[flag] = (MODES[value] if flag == "mode" else value,
                             f"{src} {name}" if src == "mmaction2 config" else src)
    for flag in ("mode", "temporal_pool"):  # the file name or config must agree with the weights' structure
        value, src = trained.get(flag, (None, None))
        if value is not None and from_keys[flag] is not None and value != from_keys[flag]:
            raise ExportError(f"{src} says {flag}={value}, the checkpoint's keys say {from_keys[flag]} "
                              "(shift wrappers .net at the block or its conv1, layer2.net for the temporal pool)")

    cli = {"segments": segments, "fold_div": fold_div, "mode": mode, "every": every, "temporal_pool": temporal_pool}
    flags = _resolve(cli, [trained, {k: (v, "checkpoint keys") for k, v in from_keys.items()}])
    if "mode" not in flags:
        raise ExportError("the checkpoint has no temporal shift wrappers ('.net' in its blocks: a TSN / plain 2D "
                          "model?) and its name or config does not say how it was shifted; pass --mode (and "
                          "--segments, --fold-div) to add shifts anyway")
    defaults = {"segments": 8, "fold_div": 8, "every": 1, "temporal_pool": False}
    for flag, value in defaults.items():
        flags.setdefault(flag, (value, "default"))
    if flags["mode"][0] != from_keys["mode"] and from_keys["mode"] is not None:
        log(f"warning: --mode {flags['mode'][0]}, but the checkpoint was trained with {from_keys['mode']} "
            "(its shift wrappers); the model will not compute what was trained")

    log(f"{checkpoint}: {layout} layout, {arch_name} ({arch_src}), {num_classes} classes, "
        f"{len(mapped)} tensors loaded")
    for flag in ("segments", "fold_div", "mode", "every", "temporal_pool"):
        log(f"  {flag:<14}{str(flags[flag][0]):<10}({flags[flag][1]})")

    with tempfile.TemporaryDirectory(prefix="tsm-export-") as tmp:
        plain = os.path.join(tmp, f"{arch_name}.onnx")
        export_onnx(model, plain, in_channels, input_size, opset)
        report = rewrite(plain, output, segments=flags["segments"][0], fold_div=flags["fold_div"][0],
                         mode=flags["mode"][0], every=flags["every"][0], temporal_pool=flags["temporal_pool"][0],
                         consensus=consensus, validate=validate)
    report["export"] = {"checkpoint": os.fspath(checkpoint), "layout": layout, "arch": arch_name,
                        "num_classes": num_classes, "in_channels": in_channels, "input_size": input_size,
                        "opset": opset, "flags": {k: {"value": v, "source": s} for k, (v, s) in flags.items()}}
    return report


def summary(report):
    lines = [f"{report['shifted']} of {len(report['blocks'])} residual block(s) shifted"]
    v = report.get("validation")
    if v:
        ratio = v.get("ratio_to_2d")
        lines.append(f"validated in tract: {v.get('clips')} clip(s)"
                     + (f", {ratio:.2f}x the 2D model's time" if ratio else ""))
    else:
        lines.append("not validated (--no-validate)")
    lines.append("wrote " + ", ".join(report.get("files", [])))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m tsm_rewrite.export",
        description="Export a TSM checkpoint (the paper's code or mmaction2) to a TSM model in ONNX: the weights "
                    "go into torchvision's ResNet, which is exported with a dynamic batch and rewritten by "
                    "tsm-rewrite with the flags the checkpoint was trained with (flags given here win).")
    ap.add_argument("checkpoint")
    ap.add_argument("-o", "--output", required=True, help="the TSM model to write")
    ap.add_argument("--arch", choices=sorted(ARCHS), help="default: from the file name, the checkpoint or its keys")
    ap.add_argument("--segments", type=int, help="frames per clip (T)")
    ap.add_argument("--fold-div", type=int)
    ap.add_argument("--mode", choices=["residual", "inplace"], help="residual = blockres, inplace = block")
    ap.add_argument("--every", type=int,
                    help="shift every K-th block of each stage (default: from the keys; 2 for ResNet-101/152 blockres)")
    ap.add_argument("--temporal-pool", action="store_true", default=None,
                    help="the paper's temporal pool (default: from the checkpoint)")
    ap.add_argument("--consensus", choices=["avg", "max"], help="one output row per clip (default: per frame)")
    ap.add_argument("--mmaction-config", help="the mmaction2 config the checkpoint was trained with")
    ap.add_argument("--input-size", type=int, default=224, help="H = W of the export (default 224)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-validate", action="store_true", help="skip tsm-rewrite's validation in tract")
    ap.add_argument("--unsafe-load", action="store_true",
                    help="torch.load with weights_only=False (runs the pickle's code; only for files you trust)")
    ap.add_argument("--report", help="also write the JSON report to FILE (- for stdout)")
    a = ap.parse_args(argv)
    try:
        report = export_checkpoint(a.checkpoint, a.output, arch=a.arch, segments=a.segments, fold_div=a.fold_div,
                                   mode=a.mode, every=a.every, temporal_pool=a.temporal_pool,
                                   mmaction_config=a.mmaction_config, consensus=a.consensus,
                                   input_size=a.input_size, opset=a.opset, validate=not a.no_validate,
                                   unsafe_load=a.unsafe_load, log=lambda s: print(s, file=sys.stderr))
    except (ExportError, RewriteError) as e:
        print(f"tsm_rewrite.export: error: {e}", file=sys.stderr)
        return 2
    print(summary(report), file=sys.stderr)
    if a.report:
        text = json.dumps({k: v for k, v in report.items() if k != "log"}, indent=1)
        if a.report == "-":
            print(text)
        else:
            with open(a.report, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
