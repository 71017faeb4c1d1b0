"""tsm-rewrite from Python.

``rewrite()`` runs the ``tsm-rewrite`` binary this package installs and returns its JSON report
(``--report``) as Python objects; ``Stream`` runs a model written with ``online=True`` in
onnxruntime, one frame at a time, with the shift buffers fed back; ``openvino_stateful()`` turns
such a model into an OpenVINO model that keeps its buffers as states.

    import tsm_rewrite
    report = tsm_rewrite.rewrite("resnet50.onnx", "tsm.onnx")            # offline TSM
    report = tsm_rewrite.rewrite("mobilenet_v2.onnx", "online.onnx", online=True)
    stream = tsm_rewrite.Stream("online.onnx")
    for frame in frames:                                                  # [1, 3, H, W] float32
        logits = stream.step(frame)["logits"]

    request = openvino.Core().compile_model(tsm_rewrite.openvino_stateful("online.onnx"), "CPU") \
        .create_infer_request()
    for frame in frames:                                                  # reset_state(): a new video
        logits = request.infer([frame])[0]
"""

import json
import os
import subprocess
import sys
import sysconfig

from ._openvino import openvino_stateful
from ._stream import Stream

__all__ = ["rewrite", "Stream", "openvino_stateful", "RewriteError", "find_binary", "SCHEMA_VERSION"]

#: The report layout this module reads (the report's ``schema_version``).
SCHEMA_VERSION = 1


class RewriteError(Exception):
    """The tool refused or failed: ``message`` is its error (one line per cause), ``returncode``
    its exit code (1: no residual block found; 2: bad input, bad flags or failed validation), and
    ``stderr`` everything it printed."""

    def __init__(self, message, returncode, stderr):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.stderr = stderr


def find_binary():
    """The ``tsm-rewrite`` executable: the one installed with this package (in the scripts folder
    of this interpreter's environment, or the user scheme's), else the first on PATH."""
    exe = "tsm-rewrite" + (sysconfig.get_config_var("EXE") or "")
    candidates = [sysconfig.get_path("scripts")]
    user = sysconfig.get_preferred_scheme("user") if hasattr(sysconfig, "get_preferred_scheme") else None
    if user:
        candidates.append(sysconfig.get_path("scripts", scheme=user))
    candidates.append(os.path.join(os.path.dirname(sys.executable)))
    for folder in candidates:
        path = os.path.join(folder, exe)
        if os.path.isfile(path):
            return path
    from shutil import which
    found = which(exe)
    if found:
        return found
    raise FileNotFoundError(f"{exe} is not installed next to this Python nor on PATH")


def _flags(segments, fold_div, mode, direction, group_order, every, shift_form, online, consensus,
           temporal_pool, input_shape, validate, external_data):
    args = ["--segments", str(segments), "--fold-div", str(fold_div), "--mode", mode,
            "--every", str(every), "--external-data", external_data]
    if direction is not None:
        args += ["--direction", direction]
    if group_order != "tsm":
        args += ["--group-order", group_order]
    if shift_form != "stream":
        args += ["--shift-form", shift_form]
    if online:
        args.append("--online")
    if consensus is not None:
        args += ["--consensus", consensus]
    if temporal_pool:
        args.append("--temporal-pool")
    if input_shape is not None:
        args += ["--input-shape", ",".join(str(int(d)) for d in input_shape)]
    if not validate:
        args.append("--no-validate")
    return args


def rewrite(src, dst=None, *, segments=8, fold_div=8, mode="residual", direction=None, group_order="tsm",
            every=1, shift_form="stream", online=False, consensus=None, temporal_pool=False, input_shape=None,
            validate=True, external_data="write", dry_run=False):
    """Rewrites the 2D model at ``src`` into a TSM model at ``dst`` (``dst=None`` with ``dry_run=True``
    only plans). The keywords are the command's flags (``tsm-rewrite --help``). Returns the report:
    a dict with ``blocks``, ``skipped``, ``buffers``, ``validation``, ``files`` and the rest (see
    the README). Raises ``RewriteError`` when the tool refuses or fails."""
    args = [find_binary(), os.fspath(src)]
    if dst is not None:
        args += ["-o", os.fspath(dst)]
    if dry_run:
        args.append("--dry-run")
    args += _flags(segments, fold_div, mode, direction, group_order, every, shift_form, online, consensus,
                   temporal_pool, input_shape, validate, external_data)
    args += ["--report", "-"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [l for l in p.stderr.splitlines() if l.startswith(("tsm-rewrite: error:", "  caused by:"))]
        message = "\n".join(l.replace("tsm-rewrite: error: ", "", 1).strip() for l in lines) or p.stderr.strip()
        raise RewriteError(message, p.returncode, p.stderr)
    report = json.loads(p.stdout)
    if report.get("schema_version") != SCHEMA_VERSION:
        raise RewriteError(f"report schema {report.get('schema_version')}, this module reads {SCHEMA_VERSION}",
                           0, p.stderr)
    report["log"] = p.stderr
    return report
