#!/usr/bin/env python3
"""Inference overhead of the TSM shift (issue 8): the rewritten model against its own 2D model, per
runtime, from paired interleaved rounds in one process.

    python bench/overhead.py                          # everything, writes bench/RESULTS-overhead.md
    python bench/overhead.py --runtime ort --model resnet50 --rounds 21
    python bench/overhead.py --runtime tract --variant /tmp/x.onnx --variant /tmp/y.onnx
    python bench/overhead.py --mode online --runtime openvino

Models (built once, cached in --work, /tmp/h-bench by default): torchvision resnet50 and
mobilenet_v2 (weights=None, seeded, BN statistics calibrated as bench/verify_full.py does so the
shift has a visible effect), legacy exporter, opset 17, dynamic batch. Rows, each a ratio to the 2D
model measured in the same rounds:

- null: a byte-different copy of the 2D model (the harness's own noise and order bias);
- roundtrip: the 2D model with each site's branch input through a channel Split + Concat, an exact
  identity (each runtime's floor for touching the tensor at each site);
- tsm: `tsm-rewrite --no-validate` with default offline flags (`--online` for per frame): the
  stream form where the channel blocks align; elsewhere the clip view offline (the batch form
  before stop 18) and the batch form online;
- batch: the same with `--shift-form batch` (the form before the stream form);
- mmaction2: the PyTorch TSM written as mmaction2 does ([N, T, C, H*W] view, zeros from x - x,
  slices, Concat along T then C), exported with the same exporter;
- any --variant file (same input and output as the TSM model).

Offline: one clip of T=8 frames per run ([8, 3, 224, 224]). Online: per frame (batch 1; with
--streams N one frame of each of N streams per run, batch N) with the buffers fed back; onnxruntime through I/O binding (two bindings whose buffer OrtValues swap roles
every frame), OpenVINO through two infer requests whose tensors are set once and swap roles, tract
by feeding its output tensors back as they are (no numpy copy) into one reused state (since stop 27;
before, each run spawned a state and the buffers went through numpy). Each round runs every model once (offline) or --frames frames
(online), in an order that rotates every round; the ratio of a round is model time / 2D time of the
same round. Each model is loaded --instances times (3 by default; TVM once, its builds take
minutes) and each load runs in an equal share of the rounds, in a seeded order of its own: two
loads of one model differ in speed by up to 0.04 in onnxruntime, OpenVINO and tract for as long as
they live (bench/load_effect.py, bench/RESULTS-load-effect.md), so a row from one load carries one
draw of that offset (until stop 41 every row did). Reported: median ratio, interquartile range and
min-max over the rounds; --json also keeps every round's ratio ("rounds"), so that two rows can be
compared round by round.

Runtimes: ort = onnxruntime CPU, default session options; openvino = OpenVINO CPU with its inference
precision pinned to f32 (exact, the configuration of the issue's table); openvino-auto = OpenVINO's
own default, which on a CPU with AVX512-BF16 or AMX (this one) runs the convolutions in bf16 while
the graph's inputs and outputs stay f32, so each online buffer is converted on its way in and out;
tract; tvm = an untuned Relax build (see tvm_compile), --tvm-rounds rounds of --tvm-frames frames.
Online, OpenVINO also runs the TSM models with the buffers made states (rows "(OpenVINO states)",
ov_online_state): the model takes only the frame and keeps its buffers itself.

Every variant is checked for exactness in onnxruntime against the PyTorch TSM reference
(fixtures/export.py's temporal_shift through bench/verify_full.py's make_tsm) before timing:
max |diff| <= 1e-4 * max(1, max |ref|).
"""

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "fixtures"))
import verify_full as vf  # noqa: E402  (build, make_tsm, shift_sites, SEEDS)
import export as ref  # noqa: E402  (temporal_shift, OnlineShift, apply_residual_shift)
sys.path.insert(0, os.path.join(REPO, "python"))  # tsm_rewrite.openvino_stateful, installed or not

BIN = os.environ.get("TSM_BIN", "/work/bin/tsm-rewrite")
T = 8
FOLD_DIV = 8
HW = 224
OPSET = 17
REL_TOL = 1e-4
ARCHS = ["resnet50", "mobilenet_v2"]
RUNTIMES = ["ort", "openvino", "openvino-auto", "tract", "tvm"]
STATE = " (OpenVINO states)"  # online rows run with the buffers as OpenVINO states, OpenVINO only


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class MmactionShift(nn.Module):
    """mmaction2's TemporalShift.shift (mmaction/models/backbones/resnet_tsm.py), shift_div=8."""

    def __init__(self, num_segments=T, shift_div=FOLD_DIV):
        super().__init__()
        self.num_segments, self.shift_div = num_segments, shift_div

    def forward(self, x):
        n, c, h, w = x.size()
        x = x.view(-1, self.num_segments, c, h * w)
        fold = c // self.shift_div
        left_split = x[:, :, :fold, :]
        mid_split = x[:, :, fold:2 * fold, :]
        right_split = x[:, :, 2 * fold:, :]
        zeros = left_split - left_split
        blank = zeros[:, :1, :, :]
        left_split = left_split[:, 1:, :, :]
        left_split = torch.cat((left_split, blank), 1)
        zeros = mid_split - mid_split
        blank = zeros[:, :1, :, :]
        mid_split = mid_split[:, :-1, :, :]
        mid_split = torch.cat((blank, mid_split), 1)
        out = torch.cat((left_split, mid_split, right_split), 2)
        return out.view(n, c, h, w)


def make_mmaction(model):
    tsm = copy.deepcopy(model)
    for u in vf.shift_sites(tsm):
        ref.apply_residual_shift(tsm.get_submodule(u.path), MmactionShift())
    return tsm.eval()


def make_online_ref(model):
    tsm = copy.deepcopy(model)
    for u in vf.shift_sites(tsm):
        ref.apply_residual_shift(tsm.get_submodule(u.path), ref.OnlineShift(FOLD_DIV))
    return tsm.eval()


def export(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2 * T, 3, HW, HW),), path, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def run_tool(args):
    p = subprocess.run([BIN] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"tsm-rewrite {' '.join(args)}: {p.stderr[-2000:]}")
    return p.stderr


def clip_input(arch, clips=2):
    rng = np.random.default_rng(vf.SEEDS[arch] + 700)
    return rng.standard_normal((clips * T, 3, HW, HW)).astype(np.float32)


# --------------------------------------------------------------------------
# Sites of a rewritten model, and forms to put in their place
# --------------------------------------------------------------------------

def init_values(model):
    return {t.name: t for t in model.graph.initializer}


def offline_sites(model):
    """[(prefix, x, C, H, W, fold)] of a model written by tsm-rewrite (offline, constant H, W):
    each site's output is `<prefix>/shifted` and its input feeds `<prefix>/Slice_next` (the batch
    form, opset 10 on) or `<prefix>/Reshape_clip` (the clip view, before 10)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}
    by_name = {n.name: n for n in model.graph.node}
    sites = []
    for n in model.graph.node:
        if n.output and n.output[0].endswith("/tsm/shifted"):
            prefix = n.output[0][: -len("/shifted")]
            first = next(by_name[prefix + s] for s in ("/Slice_next", "/Slice_prev", "/Reshape_clip")
                         if prefix + s in by_name)
            x = first.input[0]
            _, c, h, w = shapes[x]
            sites.append((prefix, x, c, h, w, c // FOLD_DIV))
    return sites


def online_sites(model):
    """[(prefix, x, C, H, W, fold)] of a model written by tsm-rewrite --online."""
    inits = init_values(model)
    by_name = {n.name: n for n in model.graph.node}
    sites = []
    for n in model.graph.node:
        # The buffer output is a Slice of x's channels, or (since stop 30, the flattened sites from
        # opset 10) a Slice of the flattened frame reshaped back to [N, fold, H, W].
        if n.op_type == "Slice" and n.name.endswith("/Slice_buffer_out"):
            prefix = n.name[: -len("/Slice_buffer_out")]
            x = n.input[0]
            fold = int(numpy_helper.to_array(inits[prefix + "/buffer_out_ends"])[0])
        elif n.op_type == "Reshape" and n.name.endswith("/Reshape_buffer_out"):
            prefix = n.name[: -len("/Reshape_buffer_out")]
            x = by_name[prefix + "/Reshape_x"].input[0]
            fold = int(numpy_helper.to_array(inits[prefix + "/buffer_shape"])[1])
        else:
            continue
        _, c, h, w = numpy_helper.to_array(inits[prefix + "/frame_shape"]).tolist()
        sites.append((prefix, x, c, h, w, fold))
    return sites


class Builder:
    """Collects the nodes and initializers of one site's form, named under the site's prefix."""

    def __init__(self, prefix):
        self.prefix, self.nodes, self.inits, self.k = prefix, [], [], 0

    def name(self, what):
        return f"{self.prefix}/{what}"

    def const(self, what, values, dtype=np.int64):
        n = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), n))
        return n

    def op(self, op, inputs, out=None, n_out=1, **attrs):
        self.k += 1
        base = out or f"{op}_{self.k}"
        outs = [self.name(base)] if n_out == 1 else [self.name(f"{base}_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(f"{op}_{self.k}_{base}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def slice(self, x, starts, ends, axes, out=None):
        s = self.const(f"s{self.k + 1}_starts", starts)
        e = self.const(f"s{self.k + 1}_ends", ends)
        a = self.const(f"s{self.k + 1}_axes", axes)
        return self.op("Slice", [x, s, e, a], out)


def replace_sites(model, sites, form, value_info=False):
    """A copy of model with each site's subgraph (nodes and initializers under `<prefix>/`) replaced
    by form(builder, x, C, H, W, fold) -> output tensor; the output is renamed `<prefix>/shifted`, so
    the consumers stay wired. value_info=True also declares `<prefix>/shifted` as [batch, C, H, W]."""
    m = copy.deepcopy(model)
    g = m.graph
    batch = g.input[0].type.tensor_type.shape.dim[0]
    for prefix, x, c, h, w, fold in sites:
        pre = prefix + "/"
        idx = [i for i, n in enumerate(g.node) if n.name.startswith(pre)]
        first = idx[0]
        keep = [n for i, n in enumerate(g.node) if i not in set(idx)]
        b = Builder(prefix)
        out = form(b, x, c, h, w, fold)
        target = pre + "shifted"
        if out != target:
            if out == x:  # identity form
                b.op("Identity", [x], "shifted")
            else:
                for n in b.nodes:
                    for j, o in enumerate(n.output):
                        if o == out:
                            n.output[j] = target
        g.ClearField("node")
        g.node.extend(keep[:first] + b.nodes + keep[first:])
        others = [t for t in g.initializer if not t.name.startswith(pre)]
        g.ClearField("initializer")
        g.initializer.extend(others + b.inits)
        if value_info:
            vi = helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, [None, c, h, w])
            vi.type.tensor_type.shape.dim[0].CopyFrom(batch)
            g.value_info.append(vi)
    return m


# ---- offline forms (bidirectional, tsm order: [0,fold) <- t+1, [fold,2fold) <- t-1) ----

def form_roundtrip(b, x, c, h, w, fold):
    """Exact identity: channel Split in three + Concat."""
    parts = b.op("Split", [x, b.const("split", [fold, fold, c - 2 * fold])], "part", n_out=3, axis=1)
    return b.op("Concat", parts, "shifted", axis=1)


def load_forms():
    """bench/forms.py's OFFLINE and ONLINE form tables (name -> (doc, form))."""
    import forms
    return forms.OFFLINE, forms.ONLINE


# --------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------

def check_offline(path, expected, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    # A model with a fixed batch (whole clips) runs the clips that many frames at a time.
    step = inp.shape[0] if isinstance(inp.shape[0], int) else x.shape[0]
    y = np.concatenate([sess.run(None, {inp.name: x[i:i + step]})[0] for i in range(0, x.shape[0], step)])
    err = float(np.abs(y - expected).max())
    tol = REL_TOL * max(1.0, float(np.abs(expected).max()))
    return err, tol


def check_online(path, expected, frames):
    """Streams frames [F, 1, 3, H, W] (zeros in the buffers first); expected [F, 1, classes]."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    bufs = [np.zeros([1] + list(i.shape[1:]), np.float32) for i in ins[1:]]
    err = 0.0
    for f, e in zip(frames, expected):
        res = sess.run(None, dict(zip([i.name for i in ins], [f] + bufs)))
        bufs = res[1:]
        err = max(err, float(np.abs(res[0] - e).max()))
    return err, REL_TOL * max(1.0, float(np.abs(expected).max()))


# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------

def build(arch, work, log_=log):
    d = os.path.join(work, arch)
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, f"{k}.onnx") for k in
         ("plain", "null", "tsm", "batch", "roundtrip", "mmaction2", "online", "online_batch",
                   "online_roundtrip")}
    p["ref"] = os.path.join(d, "ref.npz")
    if all(os.path.exists(v) for v in p.values()):
        return p
    log_(f"[{arch}] building models in {d}")
    model = vf.build(arch)
    if not os.path.exists(p["plain"]):
        export(model, p["plain"])
    if not os.path.exists(p["mmaction2"]):
        export(make_mmaction(model), p["mmaction2"])
    if not os.path.exists(p["ref"]):
        x = clip_input(arch)
        with torch.no_grad():
            tsm_ref = vf.make_tsm(model, "residual", "bidirectional", FOLD_DIV)[0](torch.from_numpy(x)).numpy()
            plain_ref = model(torch.from_numpy(x)).numpy()
            frames = x[:T].reshape(T, 1, 3, HW, HW)
            onl = make_online_ref(model)
            online_ref = np.stack([onl(torch.from_numpy(f)).numpy() for f in frames])
        np.savez(p["ref"], x=x, tsm=tsm_ref, plain=plain_ref, online=online_ref)
    while not os.path.exists(BIN):
        log_(f"waiting for {BIN}")
        time.sleep(20)
    run_tool([p["plain"], "-o", p["tsm"], "--no-validate"])
    run_tool([p["plain"], "-o", p["online"], "--no-validate", "--online"])
    run_tool([p["plain"], "-o", p["batch"], "--no-validate", "--shift-form", "batch"])
    run_tool([p["plain"], "-o", p["online_batch"], "--no-validate", "--online", "--shift-form", "batch"])
    m = onnx.load(p["plain"])
    md = m.metadata_props.add()
    md.key, md.value = "overhead-null", "copy"
    onnx.save(m, p["null"])
    # The round trips are built on the batch form, whose sites the scripts can find.
    tsm = onnx.load(p["batch"])
    onnx.save(replace_sites(tsm, offline_sites(tsm), form_roundtrip), p["roundtrip"])
    onx = onnx.load(p["online_batch"])
    rt = replace_sites(onx, online_sites(onx), form_roundtrip)
    # the round trip has no buffers: drop them from the online model's inputs and outputs
    for coll in (rt.graph.input, rt.graph.output):
        keep = [v for v in coll if "/tsm/buffer_" not in v.name]
        del coll[:]
        coll.extend(keep)
    del rt.metadata_props[:]
    onnx.save(rt, p["online_roundtrip"])
    return p


def check_all(p, variants, log_=log, online_variants=()):
    r = np.load(p["ref"])
    x = r["x"]
    out = {}
    for name, path in [("null", p["null"]), ("roundtrip", p["roundtrip"])]:
        out[name] = check_offline(path, r["plain"], x)
    for name, path in [("tsm", p["tsm"]), ("batch", p["batch"]), ("mmaction2", p["mmaction2"])] + list(variants):
        out[name] = check_offline(path, r["tsm"], x)
    frames = x[:T].reshape(T, 1, 3, HW, HW)
    out["online"] = check_online(p["online"], r["online"], frames)
    out["online_batch"] = check_online(p["online_batch"], r["online"], frames)
    for name, path in online_variants:
        if not name.endswith(STATE):
            out[name] = check_online(path, r["online"], frames)
    for k, (e, t) in out.items():
        log_(f"  exact? {k:<24} max|diff| {e:.2e} (tol {t:.2e}) {'ok' if e <= t else 'FAIL'}")
    return out


# --------------------------------------------------------------------------
# Runners: each returns a zero-argument function that runs one inference on preallocated data
# --------------------------------------------------------------------------

def ort_offline(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # default options
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    feed = {name: x}
    return lambda: sess.run(outs, feed)


def ort_online(path, frame):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    xv = ort.OrtValue.ortvalue_from_numpy(frame)
    n = frame.shape[0]  # streams
    logits = [ort.OrtValue.ortvalue_from_shape_and_type([n] + list(o.shape[1:]), np.float32) for o in outs[:1]]
    nb = len(ins) - 1
    shapes = [[n] + list(i.shape[1:]) for i in ins[1:]]
    sets = [[ort.OrtValue.ortvalue_from_numpy(np.zeros(s, np.float32)) for s in shapes] for _ in range(2)]
    binds = []
    for k in range(2):
        io = sess.io_binding()
        io.bind_ortvalue_input(ins[0].name, xv)
        io.bind_ortvalue_output(outs[0].name, logits[0])
        for j in range(nb):
            io.bind_ortvalue_input(ins[1 + j].name, sets[k][j])
            io.bind_ortvalue_output(outs[1 + j].name, sets[1 - k][j])
        binds.append(io)
    state = [0]

    def run():
        sess.run_with_iobinding(binds[state[0]])
        state[0] ^= 1
    return run


def ov_read(core, path, batch):
    m = core.read_model(path)
    m.reshape({i.get_any_name(): [batch] + list(i.get_partial_shape())[1:] for i in m.inputs})
    return m


# --openvino-threads: OpenVINO's inference threads (its default: every core, here 2).
OV_THREADS = None


def ov_config(precision):
    """precision: "f32" pins OpenVINO's inference precision to f32 (exact, and what the issue's table
    used); None leaves it to OpenVINO, which runs bf16 on CPUs with AVX512-BF16 or AMX (this one)."""
    config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    if OV_THREADS:
        config["INFERENCE_NUM_THREADS"] = OV_THREADS
    return config


def ov_compile(path, batch, precision=None):
    """precision as in ov_config: OpenVINO's own default unless given (bench/qdq.py checks outputs
    with it; bench/verify_deploy.py pins f32 since stop 32: OpenVINO's default runs bf16 on this
    machine, 0.45 from the reference on ResNet-50, no check of the rewrite)."""
    import openvino as ov
    core = ov.Core()
    return ov, core.compile_model(ov_read(core, path, batch), "CPU", ov_config(precision))


def ov_offline(path, x, precision="f32"):
    ov, cm = ov_compile(path, x.shape[0], precision)
    req = cm.create_infer_request()
    req.set_input_tensor(0, ov.Tensor(x))
    return lambda: req.infer(share_outputs=True)


def ov_online(path, frame, precision="f32"):
    ov, cm = ov_compile(path, frame.shape[0], precision)
    return ov_pingpong(ov, cm, frame, ov.Type.f32)


def ov_pingpong(ov, cm, frame, typ):
    """Per frame through two infer requests whose buffer tensors (zeros of element type typ) are set
    once and swap roles: each request's buffer outputs are the other's inputs, nothing is copied.
    share_outputs: the Python binding's infer() otherwise copies every output into a new numpy
    array after each inference (until stop 44 it did here: ResNet-50's 16 buffers, 2.8 MB per
    frame, most of the 1-3 ms that bench/openvino_buffer_io.py had put on OpenVINO's ports)."""
    ins, outs = cm.inputs, cm.outputs
    xt = ov.Tensor(frame)
    logits = ov.Tensor(ov.Type.f32, outs[0].get_shape())
    sets = [[ov.Tensor(typ, i.get_shape()) for i in ins[1:]] for _ in range(2)]
    for t in sum(sets, []):
        t.data.fill(0)
    reqs = []
    for k in range(2):
        r = cm.create_infer_request()
        r.set_tensor(ins[0], xt)
        r.set_tensor(outs[0], logits)
        for j in range(len(ins) - 1):
            r.set_tensor(ins[1 + j], sets[k][j])
            r.set_tensor(outs[1 + j], sets[1 - k][j])
        reqs.append(r)
    state = [0]

    def run():
        reqs[state[0]].infer(share_outputs=True)
        state[0] ^= 1
    return run


def ov_online_state(path, frame, precision="f32"):
    """The buffers as OpenVINO states, made by the package's own tsm_rewrite.openvino_stateful (pairs
    from the model's metadata): they stay inside the runtime, in its own precision, and the request
    takes only the frame; reset_state() starts a clip (zeros)."""
    import openvino as ov
    from tsm_rewrite import openvino_stateful
    core = ov.Core()
    model = openvino_stateful(path, streams=frame.shape[0], core=core)
    req = core.compile_model(model, "CPU", ov_config(precision)).create_infer_request()
    req.set_input_tensor(0, ov.Tensor(frame))
    req.reset_state()
    return lambda: req.infer(share_outputs=True)


def tract_runnable(path, batch, shapes):
    """tract's runnable model, each input's fact `[batch] + shapes[i]`, and the symbols bound ({}
    where the batch could be pinned). A dynamo export's value_info keeps the batch symbol, which
    tract's analysis cannot unify with a pinned batch: there the inputs' facts keep the symbol and
    it is bound after analysis."""
    import tract
    try:
        m = tract.onnx().load(path)
        for i in range(m.input_count()):
            m.set_input_fact(i, ",".join(str(d) for d in [batch] + shapes[i]) + ",f32")
        return m.into_model().into_runnable(), {}
    except tract.bindings.TractError:
        import onnx
        import re
        dims = [i.type.tensor_type.shape.dim[0].dim_param for i in onnx.load(path, load_external_data=False).graph.input]
        binds = {}
        for d in filter(None, dims):
            symbol, times = re.fullmatch(r"(\w+?)(?:\*(\d+))?", d).groups()
            binds[symbol] = batch // int(times or 1)
        m = tract.onnx().load(path)
        for i in range(m.input_count()):
            m.set_input_fact(i, ",".join([dims[i] or str(batch)] + [str(d) for d in shapes[i]]) + ",f32")
        model = m.into_model()
        model.transform(tract.SetSymbols(binds))
        return model.into_runnable(), binds


def tract_load(path, batch, n_inputs_shapes=None):
    return tract_runnable(path, batch, [[3, HW, HW]] + list(n_inputs_shapes or []))[0]


def tract_offline(path, x):
    import tract
    # One state and the input converted once, as onnxruntime's and OpenVINO's runs reuse theirs.
    state, x = tract_load(path, x.shape[0]).spawn_state(), tract.Tensor.from_numpy(x)
    return lambda: state.run([x])


def tract_online(path, frame):
    """Per frame with the buffers fed back as tract's own tensors (no copy through numpy), the
    frame converted once and one state reused: tract's counterpart of I/O binding."""
    import tract
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim[1:]] for v in onnx.load(path, load_external_data=False).graph.input[1:]]
    n = frame.shape[0]  # streams
    state = tract_load(path, n, shapes).spawn_state()
    frame = tract.Tensor.from_numpy(frame)
    bufs = [[tract.Tensor.from_numpy(np.zeros([n] + s, np.float32)) for s in shapes]]

    def run():
        res = state.run([frame] + bufs[0])
        if len(res) > 1:
            bufs[0] = res[1:]
    return run


def tvm_compile(path, batch):
    """TVM Relax, no tuning: from_onnx, DecomposeOpsForInference, the default build pipeline for
    llvm with the host CPU's features. That pipeline schedules nothing (dlight's CPU rules cover GEMV
    and reductions, not convolutions), so every convolution is a naive single-threaded loop nest:
    ResNet-50 takes about 33 s per clip. The ratios say what the shift adds to that code, not to tuned
    TVM, which MetaSchedule would take hours per model to produce on this machine."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx
    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    shapes = {i.name: [batch] + [d.dim_value for d in i.type.tensor_type.shape.dim[1:]]
              for i in m.graph.input if i.name not in inits}
    mod = from_onnx(m, shape_dict=shapes, keep_params_in_input=False)
    mod = relax.transform.DecomposeOpsForInference()(mod)
    cpu = tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu()})
    vm = relax.VirtualMachine(tvm.compile(mod, target=cpu), tvm.cpu())
    return tvm, vm["main"], [shapes[i.name] for i in m.graph.input if i.name not in inits]


def tvm_offline(path, x):
    tvm, f, _ = tvm_compile(path, x.shape[0])
    xv = tvm.runtime.tensor(x)
    return lambda: f(xv)


def tvm_online(path, frame):
    tvm, f, shapes = tvm_compile(path, frame.shape[0])
    xv = tvm.runtime.tensor(frame)
    state = [[tvm.runtime.tensor(np.zeros(s, np.float32)) for s in shapes[1:]]]

    def run():
        res = f(xv, *state[0])
        if state[0]:  # outputs: logits, then the buffers in the inputs' order
            state[0] = list(res)[1:]
    return run


# runtime: (offline, online, online with the buffers as the runtime's own state, for the STATE rows)
RUNNERS = {
    "ort": (ort_offline, ort_online, None),
    "openvino": (ov_offline, ov_online, ov_online_state),
    "openvino-auto": (lambda p, x: ov_offline(p, x, None), lambda p, f: ov_online(p, f, None),
                      lambda p, f: ov_online_state(p, f, None)),
    "tract": (tract_offline, tract_online, None),
    "tvm": (tvm_offline, tvm_online, None),
}


# --------------------------------------------------------------------------
# Paired interleaved rounds
# --------------------------------------------------------------------------

def measure(fns, rounds, warmup=2, reps=1, log_=log, label=""):
    """fns: {name: run, or [run, ...]: loads of the same model} with "2d" among them. Each round
    runs every model `reps` times, in an order that rotates every round (and reverses every other
    round). A model with K loads runs each of them in K of every K rounds, in an order drawn apart
    for each model (seeded), so that neither the pairing of loads nor the position in the round
    follows the load. Returns ({name: [ratio per round]}, {name: [seconds per round]})."""
    fns = {n: f if isinstance(f, list) else [f] for n, f in fns.items()}
    names = list(fns)
    rng = np.random.default_rng(0)
    load = {n: np.concatenate([rng.permutation(len(fns[n])) for _ in range(-(-rounds // len(fns[n])))])
            for n in names}
    for _ in range(warmup):
        for n in names:
            for f in fns[n]:
                f()
    ratios = {n: [] for n in names if n != "2d"}
    times = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        if (r // len(names)) % 2:
            order = order[::-1]
        t = {}
        for n in order:
            run = fns[n][load[n][r]]
            t0 = time.perf_counter()
            for _ in range(reps):
                run()
            t[n] = (time.perf_counter() - t0) / reps
        for n in names:
            times[n].append(t[n])
            if n != "2d":
                ratios[n].append(t[n] / t["2d"])
        if log_ and (r + 1) % max(1, rounds // 4) == 0:
            log_(f"  {label} round {r + 1}/{rounds}: 2d {t['2d'] * 1e3:.1f} ms; "
                 + ", ".join(f"{n} {ratios[n][-1]:.3f}" for n in ratios))
    return ratios, times


def summarize(v):
    a = np.asarray(v)
    return {"median": float(np.median(a)), "q1": float(np.percentile(a, 25)), "q3": float(np.percentile(a, 75)),
            "min": float(a.min()), "max": float(a.max()), "n": len(a), "rounds": [float(x) for x in a]}


def fmt(s):
    return f"{s['median']:.3f} [{s['q1']:.3f}-{s['q3']:.3f}] ({s['min']:.2f}-{s['max']:.2f})"


def bench(arch, runtime, mode, models, rounds, frames, log_=log, warmup=2, streams=1, instances=1):
    """models: {name: path} (with "2d"); online, `streams` frames per run (one per stream, the
    batch); each model loaded `instances` times (see --instances); returns ({name: summary}, 2d ms)."""
    r = np.load(models["__ref"])
    offline_fn, online_fn, online_state_fn = RUNNERS[runtime]
    fns = {}
    if mode == "offline":
        x = np.ascontiguousarray(r["x"][:T])  # one clip
        for n, path in models.items():
            if n.startswith("__"):
                continue
            try:
                fns[n] = [offline_fn(path, x) for _ in range(instances)]
            except Exception as e:  # noqa: BLE001
                log_(f"  {runtime} cannot load {n}: {type(e).__name__}: {str(e)[:300]}")
        reps = 1
    else:
        frame = np.ascontiguousarray(r["x"][:streams])
        for n, path in models.items():
            if n.startswith("__"):
                continue
            fn = online_state_fn if n.endswith(STATE) else online_fn
            if fn is None:
                continue
            try:
                fns[n] = [fn(path, frame) for _ in range(instances)]
            except Exception as e:  # noqa: BLE001
                log_(f"  {runtime} cannot load {n}: {type(e).__name__}: {str(e)[:300]}")
        reps = frames
    if "2d" not in fns:
        return {}, None
    ratios, times = measure(fns, rounds, warmup=warmup, reps=reps, log_=log_, label=f"{arch} {runtime} {mode}")
    return {n: summarize(v) for n, v in ratios.items()}, float(np.median(times["2d"])) * 1e3


# --------------------------------------------------------------------------
# ORT fusion counts
# --------------------------------------------------------------------------

def ort_fusion(path, work):
    so = ort.SessionOptions()
    out = os.path.join(work, "ort_opt_" + os.path.basename(path))
    so.optimized_model_filepath = out
    so.log_severity_level = 3
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    g = onnx.load(out).graph
    cnt = {}
    # The graph-wide frame counters and row indices (/tsm/frames/...) are int64 arithmetic on a few
    # bytes, no activation: their Adds are not residual sums left unfused.
    for n in g.node:
        if not n.name.startswith("/tsm/frames/"):
            cnt[n.op_type] = cnt.get(n.op_type, 0) + 1
    fused_sum = sum(1 for n in g.node if n.op_type == "Conv" and n.domain == "com.microsoft.nchwc" and len(n.input) > 3)
    return {"ReorderInput": cnt.get("ReorderInput", 0), "ReorderOutput": cnt.get("ReorderOutput", 0),
            "Add": cnt.get("Add", 0) + cnt.get("Sum", 0), "Relu": cnt.get("Relu", 0), "conv+sum": fused_sum}


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="append", choices=RUNTIMES)
    ap.add_argument("--model", action="append", choices=ARCHS + ["resnet18"],
                    help=f"default: {' '.join(ARCHS)}")
    ap.add_argument("--mode", choices=["offline", "online", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--frames", type=int, default=10, help="frames per model per online round")
    ap.add_argument("--streams", type=int, default=1,
                    help="online: streams run together, each run a batch of one frame per stream (at most 16)")
    ap.add_argument("--tvm-rounds", type=int, default=3, help="rounds for TVM (untuned: ~33 s per ResNet-50 clip)")
    ap.add_argument("--tvm-frames", type=int, default=2, help="frames per model per online round, TVM")
    ap.add_argument("--variant", action="append", default=[],
                    help="extra offline ONNX (name=path or path; {arch} in it is replaced by the model name)")
    ap.add_argument("--online-variant", action="append", default=[], help="extra online ONNX (name=path or path)")
    ap.add_argument("--instances", type=int, default=3,
                    help="load each model this many times (sessions, compiled models, tract plans) and spread "
                    "the rounds over them: two loads of one model differ by up to 0.04 for as long as they live "
                    "(where their memory landed), a bias no number of rounds on one load averages out; TVM: 1")
    ap.add_argument("--no-standard", action="store_true", help="only 2d, null and the --variant files")
    ap.add_argument("--openvino-threads", type=int,
                    help="OpenVINO's inference threads (default: its own, every core); 1 is what each stream "
                    "gets in its throughput mode here")
    ap.add_argument("--work", default="/tmp/h-bench")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-overhead.md"), help="'-' for none")
    ap.add_argument("--json", help="also write the results as JSON here")
    args = ap.parse_args()
    global OV_THREADS
    OV_THREADS = args.openvino_threads
    runtimes = args.runtime or RUNTIMES
    archs = args.model or ARCHS
    modes = ["offline", "online"] if args.mode == "both" else [args.mode]

    def named(spec):
        if "=" in spec:
            n, p = spec.split("=", 1)
        else:
            n, p = os.path.splitext(os.path.basename(spec))[0], spec
        return n, p

    results = []
    t_start = time.time()
    for arch in archs:
        p = build(arch, args.work)
        variants = [named(v.replace("{arch}", arch)) for v in args.variant]
        online_variants = [named(v.replace("{arch}", arch)) for v in args.online_variant]
        checks = check_all(p, variants, online_variants=online_variants)
        bad = [k for k, (e, t) in checks.items() if e > t]
        if bad:
            log(f"NOT EXACT: {bad}")
        for mode in modes:
            if mode == "offline":
                models = {"2d": p["plain"], "null": p["null"]}
                if not args.no_standard:
                    models.update(roundtrip=p["roundtrip"], tsm=p["tsm"], batch=p["batch"], mmaction2=p["mmaction2"])
                models.update(dict(variants))
            else:
                models = {"2d": p["plain"], "null": p["null"]}
                if not args.no_standard:
                    models.update(roundtrip=p["online_roundtrip"], tsm=p["online"], batch=p["online_batch"])
                    models["tsm" + STATE] = p["online"]
                    models["batch" + STATE] = p["online_batch"]
                models.update(dict(online_variants))
            models["__ref"] = p["ref"]
            for rt in runtimes:
                if mode == "online" and RUNNERS[rt][1] is None:
                    continue
                log(f"[{arch}] {rt} {mode}: {', '.join(k for k in models if not k.startswith('__'))}")
                try:
                    if rt == "tvm":
                        summ, ms = bench(arch, rt, mode, models, args.tvm_rounds, args.tvm_frames, warmup=1,
                                         streams=args.streams)
                    else:
                        summ, ms = bench(arch, rt, mode, models, args.rounds, args.frames, streams=args.streams,
                                         instances=args.instances)
                except Exception as e:  # noqa: BLE001
                    log(f"  {rt} failed: {type(e).__name__}: {str(e)[:400]}")
                    summ, ms = {}, None
                fusion = {}
                if rt == "ort" and mode == "offline":
                    for n, path in models.items():
                        if not n.startswith("__"):
                            fusion[n] = ort_fusion(path, os.path.join(args.work, arch))
                results.append(dict(arch=arch, runtime=rt, mode=mode, ms_2d=ms, rows=summ, fusion=fusion,
                                    exact={k: v for k, v in checks.items()}))
                for n, s in summ.items():
                    log(f"  {arch:<12} {rt:<8} {mode:<7} {n:<22} {fmt(s)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.out != "-":
        write_md(results, args, time.time() - t_start)


def cpu_name():
    """The CPU's model name and the vector extensions the runtimes choose kernels by: the same
    graph is blocked by 8 or 16 channels, and OpenVINO's default precision is bf16 or f32, by them."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    ext = [e for e in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if e in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def write_md(results, args, secs):
    lines = ["# Inference overhead of the shift (bench/overhead.py)", "",
             f"Command: `python bench/overhead.py {' '.join(sys.argv[1:])}`; {secs / 60:.0f} min.",
             f"Machine: {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores (shared, noisy); onnxruntime {ort.__version__}"
             f" (default session options), openvino, tract, tvm from /work/venv.",
             "openvino: inference precision f32 (exact); openvino-auto: OpenVINO's default precision (bf16 "
             "on a CPU with AVX512-BF16 or AMX, else f32)"
             + (f", on {args.openvino_threads} inference thread(s)" if args.openvino_threads else "")
             + ". tvm: untuned Relax build (naive loops), fewer rounds.", "",
             "Each cell: median ratio to the 2D model measured in the same rounds, [interquartile range], "
             f"(min-max), over the rounds; each model loaded {args.instances} time(s) (TVM once), each load run "
             "in an equal share of the rounds, in a seeded order of its own. Offline: one clip of 8 frames at 224x224 per run. Online: per frame "
             f"(batch {args.streams}: {args.streams} stream(s)), {args.frames} frames per model per round, buffers fed back through preallocated "
             "tensors. null = a copy of the 2D model; roundtrip = each site's branch input through a channel "
             "Split+Concat (exact identity); tsm = tsm-rewrite's default (the stream form where channels "
             "align; elsewhere the clip view offline, the batch form's Concat online); batch = "
             "`--shift-form batch`; mmaction2 = the mmaction2-style PyTorch export.", ""]
    for arch in dict.fromkeys(r["arch"] for r in results):
        for mode in ("offline", "online"):
            rs = [r for r in results if r["arch"] == arch and r["mode"] == mode and r["rows"]]
            if not rs:
                continue
            names = list(dict.fromkeys(n for r in rs for n in r["rows"]))
            lines += [f"## {arch}, {mode}", "", "| row | " + " | ".join(
                f"{r['runtime']} (2D {r['ms_2d']:.1f} ms, {r['rows'][names[0]]['n']} rounds)" for r in rs) + " |",
                "|---|" + "---|" * len(rs)]
            for n in names:
                lines.append(f"| {n} | " + " | ".join(fmt(r["rows"][n]) if n in r["rows"] else "n/a" for r in rs) + " |")
            lines.append("")
            for r in rs:
                if r["fusion"]:
                    lines += ["onnxruntime optimized graph (ReorderInput / ReorderOutput / standalone Add / Relu / "
                              "NCHWc convs with a fused Sum input):", ""]
                    for n, f in r["fusion"].items():
                        lines.append(f"- {n}: {f['ReorderInput']} / {f['ReorderOutput']} / {f['Add']} / {f['Relu']}"
                                     f" / {f['conv+sum']}")
                    lines.append("")
        ex = next(r["exact"] for r in results if r["arch"] == arch)
        lines += [f"Exactness ({arch}, onnxruntime vs PyTorch, max|diff| / tolerance): "
                  + ", ".join(f"{k} {e:.1e}/{t:.1e}" for k, (e, t) in ex.items()), ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
