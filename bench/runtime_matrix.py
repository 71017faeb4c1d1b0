#!/usr/bin/env python3
"""Runtime matrix (issue 8): do tsm-rewrite's outputs load and match in onnxruntime, OpenVINO,
tract and TVM, at several opsets, offline and online?

    /work/venv/bin/python bench/runtime_matrix.py [--tool PATH] [--models M ...] [--opsets O ...]
        [--hw 224] [--big-hw HW] [--runtimes ort openvino tract tvm] [--work DIR] [--threads 2]
        [--tool-flag='--shift-form tract']

Defaults: tool `$TSM_BIN` or /work/bin/tsm-rewrite; models torchvision resnet18, resnet50,
mobilenet_v2 and timm seresnet18; opsets `9 13 17 18-dynamo` (also accepted: any `N` for the
TorchScript exporter up to its maximum, `N-dynamo`, and `21`, which torch's TorchScript exporter
cannot write (its maximum is 20): `21` is the opset-20 TorchScript export converted with
`onnx.version_converter.convert_version`); all four runtimes; scratch dir /tmp/h-matrix.

For each model x opset:
  1. build the model with seeded random weights (torchvision: `bench/verify_full.py: build`;
     timm: the same recipe: `fixtures/export.py: randomize_norms`, `verify_full.calibrate_bn`,
     `normalize_logits`), export it (dynamic batch "batch", fixed HW x HW) into the scratch dir;
     `onnx.checker.check_model(full_check=True)` on it.
  2. PyTorch references: the plain 2D model on 2 clips x T=8 frames; the TSM network (residual,
     bidirectional, fold_div 8, T=8: the tool's defaults, built with `fixtures/export.py:
     TemporalShift` placed as `verify_full.make_tsm` places it) on the same clips; the streaming
     network (`fixtures/export.py: OnlineShift`, fresh buffers, as `verify_online.make_online`) on
     16 frames x 2 streams, i.e. the past-only shift with buffers carried across frames.
     `--tool-flag` values of `--mode`, `--direction`, `--fold-div`, `--every` and `--group-order`
     are followed by these references (inplace: the shift before the whole block).
  3. tool runs: offline with default flags (tract validation on; exit code and first error line
     recorded), offline `--no-validate` (the file every runtime then runs), `--online` (validation
     on; if it fails, `--online --no-validate` is written so the runtimes can still be tried);
     `onnx.checker` (full_check) on both outputs.
  4. each runtime, each in its own subprocess (a crash, a panic or a timeout stays in its cell):
     - 2D: the original export on the clips vs the plain PyTorch model. A runtime that cannot
       load the original is reported as such; its rewritten cells are then marked "(2D fails too)".
     - offline: the rewritten model on the clips [16, 3, HW, HW] vs the PyTorch TSM reference.
     - online: the online model frame by frame, 2 streams, buffers allocated from the metadata key
       `tsm-rewrite.buffers` (JSON) as zeros, each buffer output fed back into its input, vs the
       PyTorch streaming reference, every frame.
     match: max|out - ref| <= 1e-4 * max(1, max|ref|).
     Runtime settings: onnxruntime CPU, default graph optimizations; OpenVINO `CPU`,
     INFERENCE_PRECISION_HINT f32; tract python bindings, every input's fact set to the concrete
     shape fed (tract 0.23, default `into_model().into_runnable()`, value_info not ignored);
     for the 2D and offline models, tract also loads the file with its input's declared fact
     (the batch a symbol, nothing pinned) and runs the same clips (table "tract with the batch
     left symbolic");
     TVM Relax: `relax.frontend.onnx.from_onnx(model, shape_dict=<every input's concrete shape>,
     keep_params_in_input=False)`, `relax.build(mod, target="llvm")`, `relax.VirtualMachine`.
Writes bench/RESULTS-matrix.md and WORK/results-matrix.json (WORK=/tmp/h-matrix by default).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # importing verify_full / fixtures/export.py must not litter the repo

DEFAULT_BIN = os.environ.get("TSM_BIN", "/work/bin/tsm-rewrite")
DEFAULT_WORK = "/tmp/h-matrix"
RESULTS_MD = os.path.join(HERE, "RESULTS-matrix.md")
META_KEY = "tsm-rewrite.buffers"
RUNTIMES = ["ort", "openvino", "tract", "tvm"]
RT_NAMES = {"ort": "onnxruntime", "openvino": "OpenVINO", "tract": "tract", "tvm": "TVM"}
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "timm:seresnet18"]
OPSETS = ["9", "13", "17", "18-dynamo"]
T = 8
N_CLIPS = 2
FRAMES = 16
STREAMS = 2
REL_TOL = 1e-4
TIMM_SEEDS = {"seresnet18": 21, "resnet18d": 22}


def log(*a):
    print(*a, flush=True)


def first_line(msg):
    """The first informative line of an error message (TVM's carry a C++ traceback)."""
    msg = str(msg)
    if "Caused by:" in msg:  # anyhow (tract): head + deepest cause
        head = msg.strip().splitlines()[0].strip()
        causes = msg.split("Caused by:", 1)[1].split("Stack backtrace:")[0]
        cl = [l.strip() for l in causes.splitlines() if l.strip()]
        if cl:
            deep = cl[-1].split(":", 1)[1].strip() if cl[-1].split(":", 1)[0].isdigit() else cl[-1]
            return f"{head} / {deep}"[:300]
    lines = [l.strip() for l in msg.strip().splitlines() if l.strip()]
    for i, l in enumerate(lines):  # TVM: "Cannot parse attribute: \n<AttributeProto>\n." -> one line
        if "Cannot parse attribute" in l:
            return " ".join([l] + [x for x in lines[i + 1:i + 4] if x != "."])[:300]
    skip = ("Traceback", "File ", "^", "During handling", "The above exception")
    good = [l for l in lines if not l.startswith(skip) and not l.startswith("0:") and not l[:3].strip().isdigit()]
    for l in good:  # TVM: prefer the line naming the error kind
        if any(k in l for k in ("Error:", "error:", "Cannot", "not supported", "panicked")):
            return l[:300]
    return (good or lines or ["(empty message)"])[0][:300]


# ==========================================================================
# Worker: one runtime, one model, in its own process
# ==========================================================================

def graph_io(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i.name for i in m.graph.input if i.name not in inits]
    outs = [o.name for o in m.graph.output]
    meta = {p.key: p.value for p in m.metadata_props}
    return ins, outs, meta


TRACT_MODE = [None]


def n_value_info(path):
    import onnx
    return len(onnx.load(path, load_external_data=False).graph.value_info)


def symbolic_dims(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return {i.name: [d.dim_param if d.dim_param else d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in m.graph.input}


def make_runner(rt, path, shapes, ins, outs, threads, outs_all=None):
    """Load (and compile) `path` in runtime `rt`; returns run(feed: dict) -> list in `outs` order.
    shapes: input name -> concrete shape that will be fed."""
    if rt == "ort":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return lambda feed: sess.run(outs, feed)
    if rt == "openvino":
        import openvino as ov
        core = ov.Core()
        model = core.read_model(path)
        cm = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                               "INFERENCE_PRECISION_HINT": "f32"})
        req = cm.create_infer_request()
        ports = []
        for name in outs:
            p = [o for o in cm.outputs if name in o.get_names()]
            if not p:
                raise RuntimeError(f"OpenVINO: no output named {name} "
                                   f"(outputs {[sorted(o.get_names()) for o in cm.outputs][:4]}...)")
            ports.append(p[0])

        def run(feed):
            res = req.infer(feed)
            return [np.array(res[p]) for p in ports]
        return run
    if rt == "tract":
        # 1st try: every input's fact set to the concrete shape fed (the usual way). If analysis
        # fails (typically a value_info entry with the symbolic batch that cannot unify with the
        # concrete one: dynamo exports, onnx.version_converter output), 2nd try: the inputs keep
        # the model's own batch symbol, which is then bound with SetSymbols before running.
        # The cell records which way loaded (tract_mode).
        import tract
        sym = symbolic_dims(path)
        errs = []
        for mode in ("concrete", "symbolic batch + SetSymbols", "value_info stripped"):
            if mode == "symbolic batch + SetSymbols" and not any(isinstance(d, str) for n in ins for d in sym[n]):
                continue
            if mode == "value_info stripped" and not n_value_info(path):
                continue
            try:
                if mode == "value_info stripped":
                    # workaround, not the file as written: what tract's Rust API does with
                    # with_ignore_value_info(true) (the python bindings have no such switch)
                    import onnx
                    m = onnx.load(path)
                    m.graph.ClearField("value_info")
                    lpath = os.path.join(os.path.dirname(path), "_tract_novi_" + os.path.basename(path))
                    onnx.save(m, lpath)
                else:
                    lpath = path
                im = tract.onnx().load(lpath)
                names = [im.input_name(i) for i in range(im.input_count())]
                if sorted(names) != sorted(ins):
                    raise RuntimeError(f"tract inputs {names} != graph inputs {ins}")
                binds = {}
                for i, n in enumerate(names):
                    dims = []
                    for d, v in zip(sym[n], shapes[n]):
                        if mode.startswith("symbolic") and isinstance(d, str):
                            binds[d] = int(v)
                            dims.append(d)
                        else:
                            dims.append(str(v))
                    im.set_input_fact(i, ",".join(dims) + ",f32")
                model = im.into_model()
                if binds:
                    model.transform(tract.SetSymbols(binds))
                r = model.into_runnable()
            except Exception as e:  # noqa: BLE001
                errs.append(f"[{mode}] {type(e).__name__}: {e}")
                continue
            TRACT_MODE[0] = mode + (" (after " + " ;; ".join(first_line(x) for x in errs) + ")" if errs else "")
            # tract names outputs after their producing node: keep the graph's output order
            idx = [outs_all.index(o) for o in outs]

            def run(feed, r=r, names=names, idx=idx):
                res = r.run([np.ascontiguousarray(feed[n]) for n in names])
                return [res[i].to_numpy() for i in idx]
            return run
        e = RuntimeError("\n".join(errs))
        e.summary = " ;; ".join(first_line(x) for x in errs)
        raise e
    if rt == "tvm":
        import onnx
        import tvm
        from tvm import relax
        from tvm.relax.frontend import onnx as rx_onnx
        m = onnx.load(path)
        mod = rx_onnx.from_onnx(m, shape_dict={n: list(shapes[n]) for n in ins}, keep_params_in_input=False)
        ex = relax.build(mod, target="llvm")
        vm = relax.VirtualMachine(ex, tvm.cpu())
        fn = vm["main"]

        def run(feed):
            out = fn(*[tvm.runtime.tensor(np.ascontiguousarray(feed[n])) for n in ins])
            if hasattr(out, "numpy"):
                out = [out]
            return [o.numpy() for o in out]
        return run
    raise ValueError(rt)


def tract_symbolic_probe(path, x, y):
    """Whether tract loads the file as written with its input's declared fact (the batch left a
    symbol, nothing pinned: what `tract.onnx().load(path).into_model().into_runnable()` gives) and
    runs it on `x` to the output `y` the pinned load gave: 'ok MAXDIFF' or the first error line."""
    import tract
    try:
        r = tract.onnx().load(path).into_model().into_runnable()
        got = r.run([np.ascontiguousarray(x)])[0].to_numpy()
        return f"ok {float(np.abs(got - y).max()):.1e}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: " + first_line(str(e))


def worker(spec_path):
    spec = json.load(open(spec_path))
    rt, path, kind = spec["runtime"], spec["model"], spec["kind"]
    res = {"loaded": False}
    try:
        ins, outs, meta = graph_io(path)
        x = np.load(spec["input"])
        if kind == "online":
            bufs = json.loads(meta[META_KEY])
            s = x.shape[1]
            state = {b["input"]: np.zeros([s] + [int(d) for d in b["shape"][1:]], np.float32) for b in bufs}
            frame_in = [n for n in ins if n not in state]
            if len(frame_in) != 1:
                raise RuntimeError(f"online model: inputs other than buffers: {frame_in}")
            shapes = {frame_in[0]: list(x.shape[1:]), **{k: list(v.shape) for k, v in state.items()}}
            want = [outs[0]] + [b["output"] for b in bufs]
        else:
            if len(ins) != 1:
                raise RuntimeError(f"expected 1 input, got {ins}")
            shapes = {ins[0]: list(x.shape)}
            want = [outs[0]]
        t0 = time.time()
        run = make_runner(rt, path, shapes, ins, want, spec["threads"], outs)
        res.update(loaded=True, secs_load=time.time() - t0)
        if TRACT_MODE[0]:
            res["tract_mode"] = TRACT_MODE[0]
    except BaseException as e:  # noqa: BLE001 (tract panics surface as exceptions)
        res.update(stage="load", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-3000:])
        if getattr(e, "summary", None):
            res["error1"] = e.summary
        json.dump(res, open(spec["result"], "w"))
        return
    try:
        t0 = time.time()
        if kind == "online":
            ys = []
            for f in x:
                r = run({frame_in[0]: np.ascontiguousarray(f), **state})
                ys.append(r[0])
                state = {b["input"]: np.asarray(v, np.float32).reshape(state[b["input"]].shape)
                         for b, v in zip(bufs, r[1:])}
            y = np.stack(ys)
        else:
            y = run({ins[0]: x})[0]
        res["secs_run"] = time.time() - t0
        np.save(spec["output"], np.asarray(y, np.float32))
        if rt == "tract" and kind != "online":
            res["tract_symbolic"] = tract_symbolic_probe(path, x, y)
    except BaseException as e:  # noqa: BLE001
        res.update(stage="run", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-3000:])
    json.dump(res, open(spec["result"], "w"))


def run_worker(rt, model, kind, inp, ref, work, tag, threads, timeout):
    """Runs the worker in a subprocess; returns the cell dict."""
    spec = {"runtime": rt, "model": model, "kind": kind, "input": inp, "threads": threads,
            "output": os.path.join(work, f"{tag}.{rt}.out.npy"),
            "result": os.path.join(work, f"{tag}.{rt}.res.json")}
    for k in ("output", "result"):
        if os.path.exists(spec[k]):
            os.remove(spec[k])
    sp = os.path.join(work, f"{tag}.{rt}.spec.json")
    json.dump(spec, open(sp, "w"))
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    cell = {"runtime": rt, "kind": kind}
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", sp], capture_output=True,
                           text=True, timeout=timeout, env=env)
        cell["secs"] = time.time() - t0
        if not os.path.exists(spec["result"]):
            err = (p.stderr or p.stdout or "").strip()
            cell.update(status="CRASH", loaded=None,
                        error=f"worker exit {p.returncode}: " + (first_line(err.splitlines()[-1]) if err else ""),
                        trace=err[-3000:])
            return cell
    except subprocess.TimeoutExpired:
        cell.update(status="TIMEOUT", loaded=None, error=f"no result after {timeout} s", secs=time.time() - t0)
        return cell
    r = json.load(open(spec["result"]))
    cell.update(r)
    if "error" in r:
        cell["status"] = "LOAD FAIL" if r.get("stage") == "load" else "RUN FAIL"
        cell["error1"] = r.get("error1") or first_line(r["error"])
        conv = [l for l in (p.stdout or "").splitlines() if l.startswith("Error converting operator")]
        if conv:  # TVM's frontend prints the op it failed on to stdout
            cell["error1"] += f" [TVM frontend: {conv[-1].split(',')[0]}]"
        return cell
    y = np.load(spec["output"])
    y_ref = np.load(ref)
    if y.shape != y_ref.shape:
        cell.update(status="FAIL", error1=f"output shape {list(y.shape)} != reference {list(y_ref.shape)}")
        return cell
    refmax = float(np.max(np.abs(y_ref)))
    tol = REL_TOL * max(1.0, refmax)
    diff = float(np.max(np.abs(y - y_ref)))
    cell.update(diff=diff, tol=tol, refmax=refmax, status="PASS" if diff <= tol and np.isfinite(diff) else "FAIL")
    if cell["status"] == "FAIL":
        cell["error1"] = f"max diff {diff:.3g} > tol {tol:.3g}"
    for k in ("output",):
        try:
            os.remove(spec[k])
        except OSError:
            pass
    return cell


# ==========================================================================
# Models, exports, references (torch; main process only)
# ==========================================================================

class Torchy:
    """Lazy holder of the torch-side helpers (imports verify_full, fixtures/export.py)."""

    def __init__(self, threads):
        import torch
        sys.path.insert(0, HERE)
        import verify_full as vf  # noqa: E402
        self.torch, self.vf, self.ref = torch, vf, vf.ref
        torch.set_num_threads(threads)
        self.ref.self_test_shift()
        self._models = {}

    # ---- models -------------------------------------------------------
    def build(self, name):
        if name in self._models:
            return self._models[name]
        if name.startswith("timm:"):
            m = self.build_timm(name[5:])
        else:
            m = self.vf.build(name)  # torchvision, verify_full's recipe
        self._models[name] = m
        return m

    def build_timm(self, arch):
        import timm
        torch, vf, ref = self.torch, self.vf, self.ref
        seed = TIMM_SEEDS.get(arch, 30)
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, num_classes=vf.NUM_CLASSES)
        ref.randomize_norms(model, seed + 1)
        model.eval()
        calib = np.random.default_rng(seed + 3).standard_normal((4, 3, 224, 224)).astype(np.float32)
        vf.calibrate_bn(model, calib, seed + 4)
        x = np.random.default_rng(seed + 2).standard_normal((N_CLIPS * T, 3, 224, 224)).astype(np.float32)
        ref.normalize_logits(model, x)
        return model

    def sites(self, name, model):
        if not name.startswith("timm:"):
            return self.vf.shift_sites(model)
        ref = self.ref
        units = []
        for i in range(1, 5):
            for j, b in enumerate(getattr(model, f"layer{i}")):
                units.append(ref.Unit(f"layer{i}.{j}", True,
                                      "projection" if b.downsample is not None else "identity",
                                      b.conv1.in_channels))
        return ref.shift_sites(model, units)

    def shifted(self, name, model, make_shift, shift=None):
        """Deep copy of `model` with make_shift() at every site the tool shifts (`shift`: the
        `ShiftConfig` of the tool flags; residual placement before the residual branch, inplace
        before the whole block; with `--every K` only each stage's blocks 0, K, 2K, ...)."""
        import copy
        ref = self.ref
        shift = shift or ShiftConfig()
        tsm = copy.deepcopy(model)
        for u in self.sites(name, tsm):
            if u.index % shift.every != 0:
                continue
            block = tsm.get_submodule(u.path)
            if shift.mode == "inplace":
                ref.set_submodule(tsm, u.path, ref.ShiftThen(make_shift(), block))
            elif name.startswith("timm:"):  # timm BasicBlock / Bottleneck: the branch starts at conv1
                block.conv1 = ref.ShiftThen(make_shift(), block.conv1)
            else:
                ref.apply_residual_shift(block, make_shift())
        return tsm.eval()

    # ---- export -------------------------------------------------------
    def export(self, model, path, opset_spec, hw):
        """Export with a dynamic batch and fixed hw x hw; returns a note on how."""
        import warnings
        import onnx
        torch = self.torch
        note = ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if opset_spec.endswith("-dynamo"):
                opset = int(opset_spec.split("-")[0])
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(model, (torch.randn(2, 3, hw, hw),), path, dynamo=True, opset_version=opset,
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_shapes=({0: batch},), external_data=False)
                note = f"dynamo exporter, opset {opset}"
            else:
                opset = int(opset_spec.split("-")[0])
                from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as ts_max
                ex_opset = min(opset, ts_max)
                torch.onnx.export(model, (torch.zeros(2, 3, hw, hw),), path, dynamo=False,
                                  opset_version=ex_opset, input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
                note = f"TorchScript exporter, opset {ex_opset}"
                if ex_opset != opset:
                    from onnx import version_converter
                    m = onnx.load(path)
                    m2 = version_converter.convert_version(m, opset)
                    ir_before = m2.ir_version
                    min_ir = {19: 9, 20: 9, 21: 10, 22: 10, 23: 11, 24: 12}.get(opset, m2.ir_version)
                    m2.ir_version = max(m2.ir_version, min_ir)
                    onnx.save(m2, path)
                    note += (f" (its maximum) + onnx.version_converter.convert_version -> {opset}"
                             + (f", ir_version {ir_before} -> {m2.ir_version} (the converter keeps the "
                                f"old one, too low for opset {opset})" if m2.ir_version != ir_before else ""))
        m = onnx.load(path)
        ops = sorted({n.op_type for n in m.graph.node})
        opset_seen = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        return dict(note=note, opset=opset_seen, ir=m.ir_version, nodes=len(m.graph.node), ops=ops,
                    input_dims=dims, value_info=len(m.graph.value_info), size=os.path.getsize(path))

    # ---- references ---------------------------------------------------
    def references(self, name, model, hw, work, shift=None):
        """Saves inputs and references as .npy; returns their paths."""
        torch, ref = self.torch, self.ref
        shift = shift or ShiftConfig()
        seed = sum(map(ord, name))  # stable across runs (hash() is salted)
        rng = np.random.default_rng(seed * 7 + hw)
        clips = rng.standard_normal((N_CLIPS * T, 3, hw, hw)).astype(np.float32)
        frames = rng.standard_normal((FRAMES, STREAMS, 3, hw, hw)).astype(np.float32)
        key = f"{name.replace(':', '_')}-{hw}{shift.key()}"
        paths = {k: os.path.join(work, f"{key}.{k}.npy") for k in
                 ("clips", "frames", "ref_plain", "ref_offline", "ref_online", "plain_frames")}
        if all(os.path.exists(p) for p in paths.values()):
            return paths
        with torch.no_grad():
            plain = model(torch.from_numpy(clips)).numpy()
            tsm = self.shifted(name, model,
                               lambda: ref.TemporalShift(T, shift.fold_div, shift.direction, shift.order), shift)
            off = tsm(torch.from_numpy(clips)).numpy()
            del tsm
            net = self.shifted(name, model, lambda: ref.OnlineShift(shift.fold_div), shift)
            onl = ref.run_streaming(net, frames)
            del net
            pf = model(torch.from_numpy(frames.reshape(FRAMES * STREAMS, 3, hw, hw))).numpy()
            pf = pf.reshape(FRAMES, STREAMS, -1)
        for k, a in (("clips", clips), ("frames", frames), ("ref_plain", plain), ("ref_offline", off),
                     ("ref_online", onl), ("plain_frames", pf)):
            np.save(paths[k], a)
        return paths


class ShiftConfig:
    """The shift the tool flags ask for, so that the PyTorch references follow them:
    `--mode`, `--direction` (offline; online is always past-only), `--fold-div`, `--every`,
    `--group-order`.
    Other flags (`--shift-form`, ...) do not change what the output computes."""

    def __init__(self, mode="residual", direction="bidirectional", fold_div=8, every=1, order="tsm"):
        self.mode, self.direction, self.fold_div, self.every = mode, direction, fold_div, every
        self.order = order

    @classmethod
    def parse(cls, tool_flags):
        words = [w for flag in tool_flags for w in flag.replace("=", " ").split()]
        c = cls()
        for flag, value in zip(words, words[1:] + [None]):
            if flag == "--mode":
                c.mode = value
            elif flag == "--direction":
                c.direction = value
            elif flag == "--fold-div":
                c.fold_div = int(value)
            elif flag == "--every":
                c.every = int(value)
            elif flag == "--group-order":
                c.order = value
            elif flag in ("--segments", "--consensus", "--temporal-pool"):
                sys.exit(f"runtime_matrix: {flag} is not followed by the references")
        return c

    def key(self):
        """'' for the defaults (the cached references of earlier runs stay valid)."""
        if (self.mode, self.direction, self.fold_div, self.every, self.order) == \
                ("residual", "bidirectional", 8, 1, "tsm"):
            return ""
        return f"-{self.mode}-{self.direction}-fd{self.fold_div}-every{self.every}-{self.order}"


def valueless_attrs(path):
    """Attributes that carry a type but no value field (what TVM's frontend rejects with
    "Cannot parse attribute"): 'OpType.attr (TYPE) xN, ...' or 'none'."""
    import onnx
    from collections import Counter
    m = onnx.load(path, load_external_data=False)
    c = Counter()
    for n in m.graph.node:
        for a in n.attribute:
            if not [f for f, _ in a.ListFields() if f.name not in ("name", "type", "doc_string", "ref_attr_name")]:
                c[f"{n.op_type}.{a.name} ({onnx.AttributeProto.AttributeType.Name(a.type)})"] += 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"


def attr_form_ops(path):
    """Slice / Pad nodes written in their attribute form (Slice before opset 10, Pad before 11)."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    c = {}
    for n in m.graph.node:
        if n.op_type in ("Slice", "Pad") and any(a.name in ("starts", "pads") for a in n.attribute):
            c[n.op_type] = c.get(n.op_type, 0) + 1
    return ", ".join(f"{k}(attrs) x{v}" for k, v in sorted(c.items())) or "none"


def checker(path):
    import onnx
    try:
        onnx.checker.check_model(path, full_check=True)
        return "ok"
    except Exception as e:
        return f"FAIL: {type(e).__name__}: {first_line(str(e))}"


def run_tool(tool, args, timeout=3600):
    t0 = time.time()
    try:
        p = subprocess.run([tool] + args, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, time.time() - t0
    except subprocess.TimeoutExpired:
        return -1, f"timeout after {timeout} s", time.time() - t0


def tool_summary(rc, out):
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    val = [l for l in lines if l.startswith("validated")]
    if rc == 0:
        return "ok" + (f"; {val[-1]}" if val else "")
    errs = [l for l in lines if "error" in l.lower()] or lines[-1:]
    return f"rc {rc}: {errs[0][:300] if errs else ''}"


# ==========================================================================
# One case: model x opset
# ==========================================================================

def run_case(tz, name, opset_spec, hw, args):
    tag = f"{name.replace(':', '_')}-op{opset_spec}-{hw}"
    W = args.work
    case = {"model": name, "opset_spec": opset_spec, "hw": hw, "tag": tag, "cells": {}, "notes": []}
    t_case = time.time()
    src = os.path.join(W, f"{tag}.onnx")
    try:
        model = tz.build(name)
        case["export"] = tz.export(model, src, opset_spec, hw)
    except Exception as e:
        case["export_error"] = f"{type(e).__name__}: {first_line(str(e))}"
        log(f"[{tag}] export failed: {case['export_error']}")
        return case
    ex = case["export"]
    log(f"[{tag}] {ex['note']}: opset {ex['opset']} IR {ex['ir']}, {ex['nodes']} nodes, input {ex['input_dims']}")
    case["checker_src"] = checker(src)
    shift = ShiftConfig.parse(args.tool_flag)
    refs = tz.references(name, model, hw, W, shift)
    case["sites"] = len([u for u in tz.sites(name, model) if u.index % shift.every == 0])

    # tool runs
    off = os.path.join(W, f"{tag}.offline.onnx")
    onl = os.path.join(W, f"{tag}.online.onnx")
    tmpv = os.path.join(W, f"{tag}.offline-validated.onnx")
    for p in (off, onl, tmpv):
        if os.path.exists(p):
            os.remove(p)
    extra = [f for flag in args.tool_flag for f in flag.split()]
    rc, out, dt = run_tool(args.tool, [src, "-o", tmpv] + extra)
    case["tool_offline_validate"] = dict(rc=rc, summary=tool_summary(rc, out), secs=dt, out=out[-4000:])
    rc, out, dt = run_tool(args.tool, [src, "-o", off, "--no-validate"] + extra)
    case["tool_offline"] = dict(rc=rc, summary=tool_summary(rc, out), secs=dt, out=out[-4000:])
    rc, out, dt = run_tool(args.tool, [src, "-o", onl, "--online"] + extra)
    case["tool_online_validate"] = dict(rc=rc, summary=tool_summary(rc, out), secs=dt, out=out[-4000:])
    if rc != 0:
        rc2, out2, dt2 = run_tool(args.tool, [src, "-o", onl, "--online", "--no-validate"] + extra)
        case["tool_online_novalidate"] = dict(rc=rc2, summary=tool_summary(rc2, out2), secs=dt2, out=out2[-4000:])
        if rc2 == 0:
            case["notes"].append("online validation failed; the runtimes ran the `--online --no-validate` output")
    if os.path.exists(tmpv):
        os.remove(tmpv)
    case["checker_offline"] = checker(off) if os.path.exists(off) else "n/a (no output)"
    case["checker_online"] = checker(onl) if os.path.exists(onl) else "n/a (no output)"
    case["valueless"] = {k: valueless_attrs(p) for k, p in (("2D", src), ("offline", off), ("online", onl))
                         if os.path.exists(p)}
    case["attr_form"] = {k: attr_form_ops(p) for k, p in (("2D", src), ("offline", off), ("online", onl))
                         if os.path.exists(p)}
    if os.path.exists(onl):
        import onnx
        m = onnx.load(onl, load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        try:
            bufs = json.loads(meta[META_KEY])
            case["buffers"] = len(bufs)
        except Exception as e:
            case["buffers"] = f"metadata: {type(e).__name__}: {e}"
    log(f"  tool: offline+validate {case['tool_offline_validate']['summary'][:160]}")
    log(f"  tool: offline --no-validate {case['tool_offline']['summary'][:160]}; online {case['tool_online_validate']['summary'][:160]}")
    log(f"  checker: 2D {case['checker_src']}, offline {case['checker_offline']}, online {case['checker_online']}")

    jobs = [("2D", src, "plain", refs["clips"], refs["ref_plain"]),
            ("offline", off, "offline", refs["clips"], refs["ref_offline"]),
            ("online", onl, "online", refs["frames"], refs["ref_online"])]
    for kind, path, wkind, inp, r in jobs:
        for rt in args.runtimes:
            if not os.path.exists(path):
                cell = {"status": "NO MODEL", "error1": "the tool wrote no output"}
            else:
                cell = run_worker(rt, path, wkind, inp, r, W, f"{tag}.{kind}", args.threads, args.timeout)
            if kind != "2D" and cell["status"] != "PASS":
                c2 = case["cells"].get(f"2D/{rt}", {})
                if c2.get("status") != "PASS":
                    cell["orig_fails"] = True
            case["cells"][f"{kind}/{rt}"] = cell
            d = f" diff {cell['diff']:.2e}/tol {cell['tol']:.1e}" if "diff" in cell else ""
            log(f"  {kind:8s} {rt:9s} {cell['status']}{d} [{cell.get('secs', 0):.1f}s]"
                + (f": {cell.get('error1')}" if cell.get("error1") and cell["status"] != "PASS" else ""))
    # plain vs online / offline effect (the shift really changes the output)
    try:
        case["effect_offline"] = float(np.max(np.abs(np.load(refs["ref_offline"]) - np.load(refs["ref_plain"]))))
        case["effect_online"] = float(np.max(np.abs(np.load(refs["ref_online"]) - np.load(refs["plain_frames"]))))
    except Exception:
        pass
    case["secs"] = time.time() - t_case
    return case


# ==========================================================================
# Report
# ==========================================================================

def cell_text(c):
    st = c.get("status", "?")
    tm = str(c.get("tract_mode", ""))
    sym = " (sym)" if tm.startswith("symbolic") else " (no-vi)" if tm.startswith("value_info stripped") else ""
    if st == "PASS":
        return f"ok {c['diff']:.1e}{sym}"
    if st == "FAIL" and "diff" in c:
        s = f"**MISMATCH** {c['diff']:.1e} > {c['tol']:.0e}"
    elif st == "LOAD FAIL":
        s = "**LOAD FAIL**"
    elif st == "RUN FAIL":
        s = "loads, **RUN FAIL**"
    elif st == "NO MODEL":
        s = "no model (tool failed)"
    else:
        s = f"**{st}**"
    if c.get("orig_fails"):
        s += " (2D fails too)"
    return s + sym


def write_md(cases, args, total, final=False):
    L = ["# Runtime matrix: tsm-rewrite outputs in onnxruntime, OpenVINO, tract and TVM\n"]
    cmd = " ".join(["/work/venv/bin/python bench/runtime_matrix.py", "--tool", args.tool, "--models", *args.models,
                    "--opsets", *args.opsets, "--hw", str(args.hw)]
                   + (["--big-hw", str(args.big_hw)] if args.big_hw else []) + ["--runtimes", *args.runtimes]
                   + [f"--tool-flag='{f}'" for f in args.tool_flag])
    L.append(f"Generated by `bench/runtime_matrix.py` (issue 8):\n\n```\n{cmd}\n```\n")
    vers = runtime_versions()
    L.append(f"Tool: `{args.tool}` ({tool_version(args.tool)}). Runtimes: {vers}. Scratch: `{args.work}` "
             f"(models, inputs, references; JSON `{os.path.join(args.work, 'results-matrix.json')}`). "
             f"2 cores, {args.threads} thread(s) per runtime. Total {total / 60:.1f} min"
             + ("" if final else " (run in progress: partial)") + ".\n")
    L.append("Each case: seeded random weights (torchvision: `verify_full.build`; timm: the same recipe), "
             "exported with a dynamic batch at a fixed HxW; the tool's default offline rewrite (residual, "
             "bidirectional, T=8, fold_div 8) with `--no-validate`, and `--online`"
             + "".join(f", both with `{f}`" for f in args.tool_flag) + ". Each runtime runs in its "
             "own subprocess: **2D** = the original export on 2 clips x 8 frames vs the plain PyTorch model; "
             "**offline** = the rewrite on the same clips vs the PyTorch TSM reference; **online** = the online "
             "model streamed 16 frames x 2 streams with buffers from the `tsm-rewrite.buffers` metadata fed "
             "back, vs the PyTorch streaming (past-only) reference on every frame. Cell: `ok MAXDIFF` when "
             f"max|out - ref| <= {REL_TOL:g} * max(1, max|ref|); otherwise what failed (first error line "
             "below). `(2D fails too)`: that runtime also fails on the original export, so the failure is "
             "not the rewrite's. `(sym)` (tract): analysis with every input fact concrete failed (a value_info entry "
             "with the symbolic batch, see Failures) and the model loaded with the input's batch symbol kept, "
             "then bound with `SetSymbols`. `(no-vi)` (tract): both of those failed; it loaded only from a copy with "
             "`graph.value_info` cleared (a workaround the harness applies, the equivalent of tract's Rust "
             "`with_ignore_value_info(true)`, which the tool's own validation uses; not the file as written).\n")
    L.append("## Matrix\n")
    rts = args.runtimes
    L.append("| model | opset | HxW | model kind | " + " | ".join(RT_NAMES[r] for r in rts) + " |")
    L.append("| --- | --- | --- | --- | " + " | ".join("---" for _ in rts) + " |")
    for c in cases:
        if "export_error" in c:
            L.append(f"| {c['model']} | {c['opset_spec']} | {c['hw']} | export | "
                     + " | ".join("export failed" for _ in rts) + " |")
            continue
        for kind in ("2D", "offline", "online"):
            L.append(f"| {c['model']} | {c['opset_spec']} | {c['hw']} | {kind} | "
                     + " | ".join(cell_text(c["cells"][f"{kind}/{r}"]) if f"{kind}/{r}" in c["cells"] else "-"
                                  for r in rts) + " |")
    L.append("")
    n = {k: 0 for k in ("PASS", "novi", "other")}
    for c in cases:
        for cell in c.get("cells", {}).values():
            if cell.get("status") != "PASS":
                n["other"] += 1
            elif str(cell.get("tract_mode", "")).startswith("value_info"):
                n["novi"] += 1
            else:
                n["PASS"] += 1
    L.append(f"**{n['PASS']} cells pass as written, {n['novi']} pass only with the `(no-vi)` workaround, "
             f"{n['other']} fail.**\n")

    probes = [(c, k) for c in cases for k in ("2D", "offline")
              if "tract_symbolic" in c.get("cells", {}).get(f"{k}/tract", {})]
    if probes:
        L.append("## tract with the batch left symbolic\n")
        L.append("2D and offline: the file as written, its input's declared fact kept (the batch a symbol, "
                 "nothing pinned: `tract.onnx().load(path).into_model().into_runnable()`), run on the same clips: "
                 "`ok` and the largest difference from the matrix's tract output (which pins the batch first), "
                 "or the first error line.\n")
        L.append("| model | opset | model kind | tract, batch symbolic |")
        L.append("| --- | --- | --- | --- |")
        for c, k in probes:
            L.append(f"| {c['model']} | {c['opset_spec']} | {k} | {c['cells'][f'{k}/tract']['tract_symbolic']} |")
        n_ok = sum(1 for c, k in probes if c["cells"][f"{k}/tract"]["tract_symbolic"].startswith("ok"))
        L.append(f"\n**{n_ok} of {len(probes)} load with the batch symbolic.**\n")

    L.append("## Exports, tool runs and `onnx.checker` (full_check)\n")
    L.append("| model | opset | export | IR | nodes | sites (PyTorch) | checker 2D | tool offline (validation on) | "
             "tool offline --no-validate | tool --online (validation on) | checker offline | checker online | "
             "buffers | attributes without a value (2D / offline / online) | Slice/Pad in attribute form (2D / offline / online) |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in cases:
        if "export_error" in c:
            L.append(f"| {c['model']} | {c['opset_spec']} | FAILED: {c['export_error']} | | | | | | | | | | | | |")
            continue
        e = c["export"]

        def ts(k):
            v = c.get(k)
            return v["summary"].replace("|", "\\|") if v else "-"
        onl = ts("tool_online_validate")
        if "tool_online_novalidate" in c:
            onl += f"; `--no-validate`: {ts('tool_online_novalidate')}"
        L.append(f"| {c['model']} | {c['opset_spec']} | {e['note']} | {e['ir']} | {e['nodes']} | {c.get('sites')} | "
                 f"{c.get('checker_src')} | {ts('tool_offline_validate')} | {ts('tool_offline')} | {onl} | "
                 f"{c.get('checker_offline')} | {c.get('checker_online')} | {c.get('buffers', '-')} | "
                 + " / ".join(c.get("valueless", {}).get(k, "-") for k in ("2D", "offline", "online")) + " | "
                 + " / ".join(c.get("attr_form", {}).get(k, "-") for k in ("2D", "offline", "online")) + " |")
    L.append("")

    L.append("## Failures (first error line)\n")
    errs = []
    for c in cases:
        for k, cell in c.get("cells", {}).items():
            if cell.get("status") != "PASS":
                errs.append(f"- {c['model']} opset {c['opset_spec']} {k}: {cell.get('status')}"
                            + (" (2D fails too)" if cell.get("orig_fails") else "")
                            + f": `{(cell.get('error1') or cell.get('error') or '').replace('`', chr(39))}`")
        for k in ("tool_offline_validate", "tool_offline", "tool_online_validate", "tool_online_novalidate"):
            v = c.get(k)
            if v and v["rc"] != 0:
                errs.append(f"- {c['model']} opset {c['opset_spec']} {k}: `{v['summary']}`")
        for k in ("checker_src", "checker_offline", "checker_online"):
            if c.get(k, "ok") not in ("ok",) and not str(c.get(k)).startswith("n/a"):
                errs.append(f"- {c['model']} opset {c['opset_spec']} {k}: `{c[k]}`")
    L.extend(errs or ["none"])
    L.append("")
    notes = []
    for c in cases:
        for n in c.get("notes", []):
            notes.append(f"- {c['model']} opset {c['opset_spec']}: {n}")
        for k, cell in c.get("cells", {}).items():
            if str(cell.get("tract_mode", "")).startswith(("symbolic", "value_info")):
                notes.append(f"- {c['model']} opset {c['opset_spec']} {k}: tract loaded it as `{cell['tract_mode']}`")
    if notes:
        L.append("## Notes\n")
        L.extend(notes)
        L.append("")
    if getattr(args, "diagnosis", None):
        L.append("## Diagnosis\n")
        L.append(open(args.diagnosis).read().strip() + "\n")
    L.append("## Timings (s)\n")
    L.append("| case | " + " | ".join(f"{k}/{RT_NAMES[r]}" for k in ("2D", "offline", "online") for r in rts) + " |")
    L.append("| --- | " + " | ".join("---" for _ in range(3 * len(rts))) + " |")
    for c in cases:
        if "cells" in c and c["cells"]:
            L.append(f"| {c['tag']} | " + " | ".join(
                f"{c['cells'].get(f'{k}/{r}', {}).get('secs', 0):.0f}" for k in ("2D", "offline", "online")
                for r in rts) + " |")
    L.append("")
    with open(args.md, "w") as f:
        f.write("\n".join(L) + "\n")


_VERS = None


def runtime_versions():
    global _VERS
    if _VERS is None:
        code = ("import onnxruntime, openvino, tvm, onnx\n"
                "import importlib.metadata as md\n"
                "print(f'onnxruntime {onnxruntime.__version__}, OpenVINO {openvino.__version__.split(\"-\")[0]}, "
                "tract (python) {md.version(\"tract\")}, TVM {tvm.__version__}, onnx {onnx.__version__}')")
        try:
            _VERS = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   timeout=120).stdout.strip()
        except Exception as e:
            _VERS = f"(versions unavailable: {e})"
    return _VERS


def tool_version(tool):
    try:
        p = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except Exception as e:
        return f"version unknown: {e}"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", default=DEFAULT_BIN, help="tsm-rewrite binary (default $TSM_BIN or /work/bin/tsm-rewrite)")
    ap.add_argument("--models", nargs="+", default=MODELS,
                    help="torchvision names, or timm:NAME (timm ResNet family with layer1..4 blocks)")
    ap.add_argument("--opsets", nargs="+", default=OPSETS,
                    help="N (TorchScript exporter; above its maximum, that export + onnx.version_converter), "
                         "N-dynamo")
    ap.add_argument("--tool-flag", action="append", default=[], metavar="FLAGS",
                    help="flags added to every tool run, offline and online (e.g. --tool-flag='--shift-form tract')")
    ap.add_argument("--hw", type=int, default=224, help="input height = width")
    ap.add_argument("--big-hw", type=int, default=None, help="height = width for resnet50 (default: --hw)")
    ap.add_argument("--runtimes", nargs="+", default=RUNTIMES, choices=RUNTIMES)
    ap.add_argument("--work", default=DEFAULT_WORK, help="scratch dir (models, inputs, JSON)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=3600, help="per runtime x model, seconds")
    ap.add_argument("--md", default=RESULTS_MD, help="Markdown report path")
    ap.add_argument("--diagnosis", default=None, help="Markdown file appended as the Diagnosis section")
    ap.add_argument("--report-only", metavar="JSON", nargs="+", default=None,
                    help="only rewrite the Markdown from results-matrix.json files of earlier runs (cases of a "
                         "later file replace those of an earlier one with the same model/opset/HxW; the first "
                         "file's arguments are shown)")
    args = ap.parse_args()
    if args.report_only:
        ds = [json.load(open(f)) for f in args.report_only]
        for k, v in ds[0]["args"].items():
            if k not in ("diagnosis", "md", "report_only"):
                setattr(args, k, v)
        cases, total = [], 0.0
        for d in ds:
            total += d.get("total_secs") or sum(c.get("secs", 0) for c in d["cases"])
            for c in d["cases"]:
                same = [i for i, o in enumerate(cases) if o["tag"] == c["tag"]]
                if same:
                    cases[same[0]] = c
                else:
                    cases.append(c)
        write_md(cases, args, total, final=True)
        log(f"wrote {args.md}")
        return
    os.makedirs(args.work, exist_ok=True)
    if not os.path.exists(args.tool):
        sys.exit(f"no tool binary at {args.tool}")
    tz = Torchy(args.threads)
    t0 = time.time()
    cases = []
    js = os.path.join(args.work, "results-matrix.json")
    for name in args.models:
        for op in args.opsets:
            hw = args.big_hw if (args.big_hw and name == "resnet50") else args.hw
            try:
                cases.append(run_case(tz, name, op, hw, args))
            except Exception as e:
                traceback.print_exc()
                cases.append({"model": name, "opset_spec": op, "hw": hw, "tag": f"{name}-{op}",
                              "export_error": f"harness: {type(e).__name__}: {first_line(str(e))}"})
            json.dump({"args": vars(args), "cases": cases}, open(js, "w"), indent=1, default=str)
            write_md(cases, args, time.time() - t0)
    json.dump({"args": vars(args), "cases": cases, "total_secs": time.time() - t0}, open(js, "w"), indent=1,
              default=str)
    write_md(cases, args, time.time() - t0, final=True)
    log(f"total {(time.time() - t0) / 60:.1f} min; wrote {args.md} and {js}")


if __name__ == "__main__":
    main()
