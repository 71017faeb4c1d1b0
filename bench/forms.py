#!/usr/bin/env python3
"""Form research for the shift subgraph (issue 8): each form replaces every site of the model that
tsm-rewrite wrote (nodes named `<prefix>/...`, output `<prefix>/shifted`), is checked for exactness
in onnxruntime against the PyTorch TSM reference, then timed against the 2D model with
bench/overhead.py's paired interleaved rounds. Results accumulate in --db (JSON) and are written to
bench/RESULTS-forms.md.

    python bench/forms.py --model resnet50 --runtime ort --forms current,split3 --rounds 9
    python bench/forms.py --online --model resnet50 --runtime openvino --forms current,channel
    python bench/forms.py --write            # only regenerate RESULTS-forms.md from the db

Offline forms: bidirectional, tsm order ([0,f) <- t+1, [f,2f) <- t-1, zeros outside the clip),
x = [N*T, C, H, W], f = C // 8, T = 8. Online forms: buffer_out = x[:, :f], shifted = x with
channels [0, f) replaced by buffer_in.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import overhead as oh  # noqa: E402

T = oh.T


# --------------------------------------------------------------------------
# Offline forms: form(b, x, C, H, W, f) -> output tensor name
# --------------------------------------------------------------------------

def shift_time(b, a, f, axis_t=1, ch_axis=2, flat=None):
    """On a = [N, T, 2f, HW] (or [N, T, 2f*HW] when flat=HW): next group (first f) from t+1,
    prev group (second f) from t-1, zero frames by Pad. Returns (next, prev)."""
    rank = 4 if flat is None else 3
    unit = 1 if flat is None else flat
    ax = ch_axis if flat is None else 2
    nxt = b.slice(a, [1, 0], [T, f * unit], [axis_t, ax])
    prv = b.slice(a, [0, f * unit], [T - 1, 2 * f * unit], [axis_t, ax])
    pe = [0] * (2 * rank)
    pe[rank + axis_t] = 1
    ps = [0] * (2 * rank)
    ps[axis_t] = 1
    nxt = b.op("Pad", [nxt, b.const(f"pads_end{b.k}", pe)], "next_padded")
    prv = b.op("Pad", [prv, b.const(f"pads_start{b.k}", ps)], "prev_padded")
    return nxt, prv


def form_current_rebuilt(b, x, c, h, w, f):
    """The tool's form, rebuilt here (to check the harness): Reshape [-1,T,C,HW], 2 Slice+Pad,
    Slice rest, Concat axis 2, Reshape [-1,C,H,W]."""
    clip = b.op("Reshape", [x, b.const("clip_shape", [-1, T, c, h * w])], "clip")
    nxt, prv = shift_time(b, clip, f)
    rest = b.slice(clip, [2 * f], [c], [2])
    j = b.op("Concat", [nxt, prv, rest], "shifted_clip", axis=2)
    return b.op("Reshape", [j, b.const("frame_shape", [-1, c, h, w])], "shifted")


def form_flat3(b, x, c, h, w, f):
    """Reshape [-1, T, C*H*W]; the groups are contiguous ranges of the flat frame: Slice+Pad the two
    shifted ranges, Slice the rest, Concat axis 2, Reshape back."""
    hw = h * w
    clip = b.op("Reshape", [x, b.const("clip_shape", [-1, T, c * hw])], "clip")
    nxt, prv = shift_time(b, clip, f, flat=hw)
    rest = b.slice(clip, [2 * f * hw], [c * hw], [2])
    j = b.op("Concat", [nxt, prv, rest], "shifted_clip", axis=2)
    return b.op("Reshape", [j, b.const("frame_shape", [-1, c, h, w])], "shifted")


def _split2(b, x, c, f, op="Split"):
    if op == "Split":
        return b.op("Split", [x, b.const("split", [2 * f, c - 2 * f])], "part", n_out=2, axis=1)
    return b.slice(x, [0], [2 * f], [1], "moved"), b.slice(x, [2 * f], [c], [1], "rest")


def form_split2(b, x, c, h, w, f, op="Split", flat=False):
    """Split channels [2f | C-2f]; only the 2f part is reshaped to [-1, T, 2f, HW] (or flat
    [-1, T, 2f*HW]) and shifted; Reshape back to [-1, 2f, H, W]; channel Concat with the rest."""
    a, rest = _split2(b, x, c, f, op)
    s = clip_moved(b, a, h, w, f, flat)
    return b.op("Concat", [s, rest], "shifted", axis=1)


def form_split_rows(b, x, c, h, w, f):
    """Split channels [2f | C-2f]; the 2f part moved as the tool's rows form moves the stream form's
    head (a zero frame joined first on the batch axis, viewed as rows of f channels, one Gather on an
    index made from the batch, back to [-1, 2f, H, W]); channel Concat with the rest into the
    unsplit convolution. OpenVINO removes a channel Split + Concat (its round-trip row is 1.00):
    does the rows head without split convolutions cost it less than the stream form?"""
    a, rest = _split2(b, x, c, f, "Split")
    zf = b.op("ConstantOfShape", [b.const("zero_frame_shape", [1, 2 * f, h, w])], "zero_frame",
              value=onnx.numpy_helper.from_array(np.zeros(1, np.float32), "value"))
    az = b.op("Concat", [zf, a], "head_z", axis=0)
    rows = b.op("Reshape", [az, b.const("rows_shape", [-1, f, h, w])], "rows_z")
    # index: output row 2t+g of frame t (t mod T = tc) reads row 2(t+1)+2 (g = 0) or 2(t-1)+1+2
    # (g = 1) of the rows after the zero frame, or row 0 (zeros) outside the clip
    nt = b.op("Gather", [b.op("Shape", [x], "xshape"), b.const("zero_i", 0)], "nt", axis=0)
    frames = b.op("Range", [b.const("r0", 0), nt, b.const("r1", 1)], "frames")
    tc = b.op("Mod", [frames, b.const("T", T)], "tc")
    tt = np.arange(T)
    valid = np.stack([tt < T - 1, tt > 0], axis=1)
    off = np.where(valid, np.array([2, -2]), 0) + 2
    src = b.op("Add", [b.op("Unsqueeze", [b.op("Mul", [frames, b.const("two", 2)], "t2"), b.const("ax1", [1])], "t2c"),
                       b.op("Gather", [b.const("off_table", off), tc], "off", axis=0)], "src0")
    src = b.op("Add", [src, b.const("groups", [[0, 1]])], "src")
    ok = b.op("Gather", [b.const("valid_table", valid, dtype=bool), tc], "valid", axis=0)
    idx = b.op("Reshape", [b.op("Where", [ok, src, b.const("zero_row", 0)], "src_or_zero"), b.const("flat", [-1])], "index")
    moved = b.op("Gather", [rows, idx], "moved", axis=0)
    m4 = b.op("Reshape", [moved, b.const("frames_shape", [-1, 2 * f, h, w])], "moved_frames")
    return b.op("Concat", [m4, rest], "shifted", axis=1)


def clip_moved(b, a, h, w, f, flat=False):
    """The 2f fold channels a = [N*T, 2f, H, W] shifted through a clip view: Reshape [-1, T, 2f, HW]
    (flat: [-1, T, 2f*HW]), Slice+Pad each group on T, Concat, Reshape [-1, 2f, H, W]."""
    hw = h * w
    if flat:
        a4 = b.op("Reshape", [a, b.const("clip_shape", [-1, T, 2 * f * hw])], "clip")
        nxt, prv = shift_time(b, a4, f, flat=hw)
    else:
        a4 = b.op("Reshape", [a, b.const("clip_shape", [-1, T, 2 * f, hw])], "clip")
        nxt, prv = shift_time(b, a4, f)
    j = b.op("Concat", [nxt, prv], "moved_clip", axis=2)
    return b.op("Reshape", [j, b.const("moved_shape", [-1, 2 * f, h, w])], "moved_shifted")


def form_split3(b, x, c, h, w, f, flatcat=False):
    """Split channels [f | f | C-2f]; each fold group reshaped to [-1, T, f*H*W], Slice on T,
    Pad one zero frame, Reshape to [-1, f, H, W]; channel Concat (g0, g1, rest)."""
    g0, g1, rest = b.op("Split", [x, b.const("split", [f, f, c - 2 * f])], "part", n_out=3, axis=1)
    hw = h * w
    shp = b.const("clip_shape", [-1, T, f * hw])
    back = b.const("group_shape", [-1, f, h, w])
    c0 = b.op("Reshape", [g0, shp], "g0_clip")
    c1 = b.op("Reshape", [g1, shp], "g1_clip")
    n = b.slice(c0, [1], [T], [1])
    p = b.slice(c1, [0], [T - 1], [1])
    n = b.op("Pad", [n, b.const("pads_end", [0, 0, 0, 0, 1, 0])], "next_padded")
    p = b.op("Pad", [p, b.const("pads_start", [0, 1, 0, 0, 0, 0])], "prev_padded")
    if flatcat:
        flat = b.const("flat", [0, -1])
        # [N, T, f*HW] -> [N*T, f*HW]
        fl = b.const("flat_nt", [-1, f * hw])
        n2 = b.op("Reshape", [n, fl], "next_flat")
        p2 = b.op("Reshape", [p, fl], "prev_flat")
        r2 = b.op("Reshape", [rest, flat], "rest_flat")
        j = b.op("Concat", [n2, p2, r2], "shifted_flat", axis=1)
        return b.op("Reshape", [j, b.const("frame_shape", [-1, c, h, w])], "shifted")
    n = b.op("Reshape", [n, back], "next_frames")
    p = b.op("Reshape", [p, back], "prev_frames")
    return b.op("Concat", [n, p, rest], "shifted", axis=1)


def form_split2_pad(b, x, c, h, w, f):
    """Split [2f | C-2f]; the 2f part -> [-1, T, 2f*HW], Pad one zero frame at both ends ->
    [N, T+2, 2f*HW], Slice next = frames 2..T+1 of the first f*HW, prev = frames 0..T-1 of the
    second; Concat axis 2; Reshape [-1, 2f, H, W]; channel Concat with the rest."""
    a, rest = _split2(b, x, c, f)
    hw = h * w
    a3 = b.op("Reshape", [a, b.const("clip_shape", [-1, T, 2 * f * hw])], "clip")
    pd = b.op("Pad", [a3, b.const("pads", [0, 1, 0, 0, 1, 0])], "clip_padded")
    nxt = b.slice(pd, [2, 0], [T + 2, f * hw], [1, 2])
    prv = b.slice(pd, [0, f * hw], [T, 2 * f * hw], [1, 2])
    j = b.op("Concat", [nxt, prv], "moved_clip", axis=2)
    s = b.op("Reshape", [j, b.const("moved_shape", [-1, 2 * f, h, w])], "moved_shifted")
    return b.op("Concat", [s, rest], "shifted", axis=1)


def form_gather(b, x, c, h, w, f):
    """Split [2f | C-2f]; 2f part -> [-1, T, 2f*HW], Pad one zero frame at the end -> [N, T+1, .];
    Gather on the time axis: next = frames [1..T-1, T(zero)] of the first f*HW, prev = frames
    [T(zero), 0..T-2] of the second (one Gather of the padded part each, then a Slice)."""
    a, rest = _split2(b, x, c, f)
    hw = h * w
    a3 = b.op("Reshape", [a, b.const("clip_shape", [-1, T, 2 * f, hw])], "clip")
    pd = b.op("Pad", [a3, b.const("pads", [0, 0, 0, 0, 0, 1, 0, 0])], "clip_padded")
    g0 = b.slice(pd, [0], [f], [2])
    g1 = b.slice(pd, [f], [2 * f], [2])
    nxt = b.op("Gather", [g0, b.const("idx_next", list(range(1, T + 1)))], "next", axis=1)
    prv = b.op("Gather", [g1, b.const("idx_prev", [T] + list(range(0, T - 1)))], "prev", axis=1)
    j = b.op("Concat", [nxt, prv], "moved_clip", axis=2)
    s = b.op("Reshape", [j, b.const("moved_shape", [-1, 2 * f, h, w])], "moved_shifted")
    return b.op("Concat", [s, rest], "shifted", axis=1)


def form_split3_sliceT(b, x, c, h, w, f):
    """Like split3, but 4D time view [-1, T, f, HW] for each group (no flat)."""
    g0, g1, rest = b.op("Split", [x, b.const("split", [f, f, c - 2 * f])], "part", n_out=3, axis=1)
    hw = h * w
    shp = b.const("clip_shape", [-1, T, f, hw])
    back = b.const("group_shape", [-1, f, h, w])
    c0 = b.op("Reshape", [g0, shp], "g0_clip")
    c1 = b.op("Reshape", [g1, shp], "g1_clip")
    n = b.slice(c0, [1], [T], [1])
    p = b.slice(c1, [0], [T - 1], [1])
    n = b.op("Pad", [n, b.const("pads_end", [0, 0, 0, 0, 0, 1, 0, 0])], "next_padded")
    p = b.op("Pad", [p, b.const("pads_start", [0, 1, 0, 0, 0, 0, 0, 0])], "prev_padded")
    n = b.op("Reshape", [n, back], "next_frames")
    p = b.op("Reshape", [p, back], "prev_frames")
    return b.op("Concat", [n, p, rest], "shifted", axis=1)


def form_batchpad(b, x, c, h, w, f):
    """No time axis for the moved channels: Split [f | f | C-2f]; group 0 -> [-1, T, f*HW]... (kept
    as a 5D-free 3D view), identical to split3 but the Pad/Slice order swapped: Pad first (one zero
    frame at the end / start of each clip), then Slice frames 1..T / 0..T-1."""
    g0, g1, rest = b.op("Split", [x, b.const("split", [f, f, c - 2 * f])], "part", n_out=3, axis=1)
    hw = h * w
    shp = b.const("clip_shape", [-1, T, f * hw])
    back = b.const("group_shape", [-1, f, h, w])
    c0 = b.op("Reshape", [g0, shp], "g0_clip")
    c1 = b.op("Reshape", [g1, shp], "g1_clip")
    n = b.op("Pad", [c0, b.const("pads_end", [0, 0, 0, 0, 1, 0])], "g0_padded")
    p = b.op("Pad", [c1, b.const("pads_start", [0, 1, 0, 0, 0, 0])], "g1_padded")
    n = b.slice(n, [1], [T + 1], [1])
    p = b.slice(p, [0], [T], [1])
    n = b.op("Reshape", [n, back], "next_frames")
    p = b.op("Reshape", [p, back], "prev_frames")
    return b.op("Concat", [n, p, rest], "shifted", axis=1)


def batch_masks(b, x):
    """Bool conditions [N*T, 1, 1, 1]: frame t < T-1 (has a next frame) and t > 0 (has a previous
    one), made from the tensor's batch at run time: Tile of a [T,1,1,1] constant by N = batch / T."""
    shape = b.op("Shape", [x], "shape")
    nt = b.slice(shape, [0], [1], [0], "nt")
    n = b.op("Div", [nt, b.const("t", [T])], "n")
    reps = b.op("Concat", [n, b.const("ones3", [1, 1, 1])], "reps", axis=0)
    mn = b.const("mask_next", np.array([t < T - 1 for t in range(T)]).reshape(T, 1, 1, 1), dtype=bool)
    mp = b.const("mask_prev", np.array([t > 0 for t in range(T)]).reshape(T, 1, 1, 1), dtype=bool)
    return b.op("Tile", [mn, reps], "has_next"), b.op("Tile", [mp, reps], "has_prev")


def batch_masks_expand(b, x):
    """As batch_masks, with Expand of [T,1,1,1] to [N,T,1,1,1] and Reshape [-1,1,1,1] instead of
    Tile (TVM's Relax frontend cannot Tile by a shape expression)."""
    shape = b.op("Shape", [x], "shape")
    nt = b.slice(shape, [0], [1], [0], "nt")
    n = b.op("Div", [nt, b.const("t", [T])], "n")
    shp = b.op("Concat", [n, b.const("t1111", [T, 1, 1, 1])], "mask_shape", axis=0)
    flat = b.const("mask_flat", [-1, 1, 1, 1])
    out = []
    for what, m in (("next", [t < T - 1 for t in range(T)]), ("prev", [t > 0 for t in range(T)])):
        mk = b.const(f"mask_{what}", np.array(m).reshape(T, 1, 1, 1), dtype=bool)
        e = b.op("Expand", [mk, shp], f"has_{what}_clip")
        out.append(b.op("Reshape", [e, flat], f"has_{what}"))
    return out


def form_batch4d(b, x, c, h, w, f, split=False, mask="where"):
    """No Reshape of activations: next = Pad(x[1:, 0:f], one zero frame at the end of axis 0),
    prev = Pad(x[:-1, f:2f], one at the start), both Where(frame has a neighbour in its clip, ., 0)
    with conditions tiled from [T,1,1,1] constants; Concat(next, prev, x[:, 2f:]) axis 1."""
    if split:
        g0, g1, rest = b.op("Split", [x, b.const("split", [f, f, c - 2 * f])], "part", n_out=3, axis=1)
        n, p = batch_shifted(b, x, f, mask, groups=(g0, g1))
    else:
        n, p = batch_shifted(b, x, f, mask)
        rest = b.slice(x, [2 * f], [c], [1], "rest")
    return b.op("Concat", [n, p, rest], "shifted", axis=1)


def batch_shifted(b, x, f, mask="where", groups=None):
    """The two shifted fold groups of x = [N*T, C, H, W] along the batch axis, each [N*T, f, H, W]:
    next = Where(has_next, Pad(x[1:, 0:f]) one zero frame at the end, 0), prev = Where(has_prev,
    Pad(x[:-1, f:2f]) one at the start, 0). groups=(g0, g1): the two groups already split off."""
    big = 2 ** 62
    if groups:
        n = b.slice(groups[0], [1], [big], [0])
        p = b.slice(groups[1], [0], [-1], [0])
    else:
        n = b.slice(x, [1, 0], [big, f], [0, 1])
        p = b.slice(x, [0, f], [-1, 2 * f], [0, 1])
    n = b.op("Pad", [n, b.const("pads_end", [0, 0, 0, 0, 1, 0, 0, 0])], "next_all")
    p = b.op("Pad", [p, b.const("pads_start", [1, 0, 0, 0, 0, 0, 0, 0])], "prev_all")
    hn, hp = batch_masks_expand(b, x) if mask == "expand" else batch_masks(b, x)
    zero = b.const("zero", np.float32(0), dtype=np.float32)
    n = b.op("Where", [hn, n, zero], "next")
    p = b.op("Where", [hp, p, zero], "prev")
    return n, p


def form_nhwc(b, x, c, h, w, f):
    """Transpose to NHWC, Reshape [-1, T, H*W, C], Slice+Pad the two groups on T (channels
    innermost), Slice rest, Concat axis 3, Reshape [-1, H, W, C], Transpose back to NCHW."""
    t = b.op("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    clip = b.op("Reshape", [t, b.const("clip_shape", [-1, T, h * w, c])], "clip")
    nxt = b.slice(clip, [1, 0], [T, f], [1, 3])
    prv = b.slice(clip, [0, f], [T - 1, 2 * f], [1, 3])
    nxt = b.op("Pad", [nxt, b.const("pads_end", [0, 0, 0, 0, 0, 1, 0, 0])], "next_padded")
    prv = b.op("Pad", [prv, b.const("pads_start", [0, 1, 0, 0, 0, 0, 0, 0])], "prev_padded")
    rest = b.slice(clip, [2 * f], [c], [3])
    j = b.op("Concat", [nxt, prv, rest], "shifted_clip", axis=3)
    r = b.op("Reshape", [j, b.const("frame_shape", [-1, h, w, c])], "shifted_nhwc")
    return b.op("Transpose", [r], "shifted", perm=[0, 3, 1, 2])



def form_batch2(b, x, c, h, w, f, split=True, one_where=False):
    """Split [2f | C-2f] (or two Slices); on the 2f part a: next = Pad(a[1:, 0:f]) (zero frame at
    the end of axis 0), prev = Pad(a[:-1, f:2f]) (at the start), each Where(frame has that
    neighbour in its clip, ., 0) (one_where: Concat first, then one Where with a [T,2f,1,1] mask);
    moved = Concat(next, prev) axis 1; shifted = Concat(moved, rest) axis 1: two parts at the conv."""
    big = 2 ** 62
    if split:
        a, rest = b.op("Split", [x, b.const("split", [2 * f, c - 2 * f])], "part", n_out=2, axis=1)
    else:
        a = b.slice(x, [0], [2 * f], [1], "moved_in")
        rest = b.slice(x, [2 * f], [c], [1], "rest")
    n = b.slice(a, [1, 0], [big, f], [0, 1])
    p = b.slice(a, [0, f], [-1, 2 * f], [0, 1])
    n = b.op("Pad", [n, b.const("pads_end", [0, 0, 0, 0, 1, 0, 0, 0])], "next_all")
    p = b.op("Pad", [p, b.const("pads_start", [1, 0, 0, 0, 0, 0, 0, 0])], "prev_all")
    zero = b.const("zero", np.float32(0), dtype=np.float32)
    if one_where:
        m = b.op("Concat", [n, p], "moved_all", axis=1)
        shape = b.op("Shape", [x], "shape")
        nt = b.slice(shape, [0], [1], [0], "nt")
        nn_ = b.op("Div", [nt, b.const("t", [T])], "n")
        reps = b.op("Concat", [nn_, b.const("ones3", [1, 1, 1])], "reps", axis=0)
        mk = np.zeros((T, 2 * f, 1, 1), bool)
        mk[: T - 1, :f] = True
        mk[1:, f:] = True
        cond = b.op("Tile", [b.const("mask", mk, dtype=bool), reps], "keep")
        moved = b.op("Where", [cond, m, zero], "moved")
    else:
        hn, hp = batch_masks(b, x)
        n = b.op("Where", [hn, n, zero], "next")
        p = b.op("Where", [hp, p, zero], "prev")
        moved = b.op("Concat", [n, p], "moved", axis=1)
    return b.op("Concat", [moved, rest], "shifted", axis=1)



def form_padwhere(b, x, c, h, w, f):
    """No activation Reshape and no Concat into the conv: next = Where(has_next, Pad(x[1:, 0:f])),
    prev = Where(has_prev, Pad(x[:-1, f:2f])) (axis-0 shifts, zero frames at clip borders, as
    batch4d); moved = Concat(next, prev) axis 1 ([NT, 2f, H, W]); Pad its channels with zeros up
    to C; shifted = Where(channel < 2f ([1,C,1,1] constant), padded, x)."""
    big = 2 ** 62
    n = b.slice(x, [1, 0], [big, f], [0, 1])
    p = b.slice(x, [0, f], [-1, 2 * f], [0, 1])
    n = b.op("Pad", [n, b.const("pads_end", [0, 0, 0, 0, 1, 0, 0, 0])], "next_all")
    p = b.op("Pad", [p, b.const("pads_start", [1, 0, 0, 0, 0, 0, 0, 0])], "prev_all")
    hn, hp = batch_masks(b, x)
    zero = b.const("zero", np.float32(0), dtype=np.float32)
    n = b.op("Where", [hn, n, zero], "next")
    p = b.op("Where", [hp, p, zero], "prev")
    m = b.op("Concat", [n, p], "moved", axis=1)
    m = b.op("Pad", [m, b.const("pads_channels", [0, 0, 0, 0, 0, c - 2 * f, 0, 0])], "moved_full")
    cm = b.const("moved_channels", (np.arange(c) < 2 * f).reshape(1, c, 1, 1), dtype=bool)
    return b.op("Where", [cm, m, x], "shifted")



def vi(form):
    return ("vi", form)


# name -> (description, form or "tool" (the tool's own model) , value_info)
OFFLINE = {
    "padwhere": ("batch4d's next/prev (axis-0 Slice+Pad, Where on tiled masks), Concat(next, prev), Pad channels to C, Where([1,C,1,1] channel<2f, ., x): no Reshape, no Concat into the conv", form_padwhere, False),
    "batch2": ("Split [2f|C-2f]; on the 2f part: Pad(a[1:,0:f]) / Pad(a[:-1,f:2f]) on axis 0, each Where(tiled mask, ., 0), Concat(next, prev); Concat(moved, rest) axis 1", form_batch2, False),
    "batch2-slice": ("batch2 with two Slices instead of the Split", lambda b, *a: form_batch2(b, *a, split=False), False),
    "batch2-1w": ("batch2 with one Where on Concat(next_all, prev_all) ([T,2f,1,1] mask tiled)", lambda b, *a: form_batch2(b, *a, one_where=True), False),
    "batch4d": ("no activation Reshape: Pad(x[1:,0:f]) / Pad(x[:-1,f:2f]) on axis 0, Where(tiled [T,1,1,1] mask, ., 0), Concat(next, prev, x[:,2f:]) axis 1", form_batch4d, False),
    "batch4d-expand": ("batch4d with the masks made by Expand [T,1,1,1] -> [N,T,1,1,1] + Reshape [-1,1,1,1] (TVM cannot Tile by a shape expression)", lambda b, *a: form_batch4d(b, *a, mask="expand"), False),
    "batch4d-split": ("batch4d with Split [f|f|C-2f] first", lambda b, *a: form_batch4d(b, *a, split=True), False),
    "nhwc": ("Transpose NHWC, Reshape [-1,T,HW,C], Slice+Pad on T, Concat axis 3, Reshape, Transpose back", form_nhwc, False),
    "current": ("tool's form as written (Reshape [-1,T,C,HW], Slice+Pad x2, Slice rest, Concat axis 2, Reshape back)", None, False),
    "current+vi": ("tool's form + value_info <prefix>/shifted = [batch, C, H, W]", None, True),
    "rebuilt": ("tool's form rebuilt by this script (harness check)", form_current_rebuilt, False),
    "flat3": ("Reshape [-1,T,CHW]; Slice+Pad the 2 flat ranges; Slice rest; Concat axis 2; Reshape back", form_flat3, False),
    "flat3+vi": ("flat3 + value_info", form_flat3, True),
    "split2": ("Split [2f|C-2f]; 2f -> [-1,T,2f,HW], Slice+Pad x2, Concat axis 2, Reshape [-1,2f,H,W]; Concat(.., rest) axis 1", form_split2, False),
    "split2flat": ("split2 with the 2f part as [-1,T,2f*HW]", lambda b, *a: form_split2(b, *a, flat=True), False),
    "slice2flat": ("split2flat with two Slices instead of Split", lambda b, *a: form_split2(b, *a, op="Slice", flat=True), False),
    "split2pad": ("Split [2f|C-2f]; 2f -> [-1,T,2f*HW]; one Pad (1 frame each end); 2 Slices; Concat axis 2; Reshape; channel Concat", form_split2_pad, False),
    "split3": ("Split [f|f|C-2f]; each group -> [-1,T,fHW], Slice T, Pad 1 frame, Reshape [-1,f,H,W]; Concat(g0,g1,rest) axis 1", form_split3, False),
    "split3-4d": ("split3 with the groups viewed [-1,T,f,HW]", form_split3_sliceT, False),
    "split3-padfirst": ("split3 with Pad before Slice", form_batchpad, False),
    "split3flat": ("split3, final Concat on frames flattened to [NT, CHW] (as the online form)", lambda b, *a: form_split3(b, *a, flatcat=True), False),
    "split-rows": ("Split [2f|C-2f]; the 2f part moved by the rows form (zero frame Concat, Reshape to rows of f, one Gather, Reshape back); channel Concat with the rest into the unsplit conv", form_split_rows, False),
    "gather": ("Split [2f|C-2f]; 2f -> [-1,T,2f,HW], Pad 1 frame at end, Slice groups, Gather on T, Concat, Reshape, channel Concat", form_gather, False),
}


# --------------------------------------------------------------------------
# Online forms: form(b, x, C, H, W, f) -> shifted; must also produce <prefix>/buffer_out
# --------------------------------------------------------------------------

def on_flat(b, x, c, h, w, f, shape0=False):
    """The tool's online form, rebuilt: buffer_out = Slice x[:, :f]; Reshape x [0,-1]; Slice flat
    rest; Reshape buffer [0,-1]; Concat axis 1; Reshape [-1 or 0, C, H, W]."""
    b.slice(x, [0], [f], [1], "buffer_out")
    flat = b.const("flat_shape", [0, -1])
    xf = b.op("Reshape", [x, flat], "x_flat")
    rest = b.slice(xf, [f * h * w], [c * h * w], [1], "rest")
    bf = b.op("Reshape", [b.name("buffer_in"), flat], "buffer_flat")
    j = b.op("Concat", [bf, rest], "shifted_flat", axis=1)
    return b.op("Reshape", [j, b.const("frame_shape", [0 if shape0 else -1, c, h, w])], "shifted")


def on_channel(b, x, c, h, w, f):
    """buffer_out = Slice x[:, :f]; rest = Slice x[:, f:]; Concat(buffer_in, rest) axis 1."""
    b.slice(x, [0], [f], [1], "buffer_out")
    rest = b.slice(x, [f], [c], [1], "rest")
    return b.op("Concat", [b.name("buffer_in"), rest], "shifted", axis=1)


def on_split(b, x, c, h, w, f):
    """Split x [f | C-f] axis 1 -> buffer_out, rest; Concat(buffer_in, rest) axis 1."""
    sp = b.const("split", [f, c - f])
    b.nodes.append(onnx.helper.make_node("Split", [x, sp], [b.name("buffer_out"), b.name("rest")],
                                         name=b.name("Split"), axis=1))
    return b.op("Concat", [b.name("buffer_in"), b.name("rest")], "shifted", axis=1)


def on_split_flat(b, x, c, h, w, f):
    """buffer_out = Slice x[:, :f]; Reshape x [0,-1]; Split flat [fHW | (C-f)HW]; Concat flat; Reshape [0,C,H,W]."""
    b.slice(x, [0], [f], [1], "buffer_out")
    flat = b.const("flat_shape", [0, -1])
    xf = b.op("Reshape", [x, flat], "x_flat")
    _, rest = b.op("Split", [xf, b.const("split", [f * h * w, (c - f) * h * w])], "part", n_out=2, axis=1)
    bf = b.op("Reshape", [b.name("buffer_in"), flat], "buffer_flat")
    j = b.op("Concat", [bf, rest], "shifted_flat", axis=1)
    return b.op("Reshape", [j, b.const("frame_shape", [0, c, h, w])], "shifted")


ONLINE = {
    "current": ("tool's online form as written (flat Concat, Reshape [-1,C,H,W])", None, False),
    "current+vi": ("tool's online form + value_info shifted = [batch,C,H,W]", None, True),
    "flat0": ("tool's online form with the final Reshape to [0,C,H,W] (keeps the batch symbol)", lambda b, *a: on_flat(b, *a, shape0=True), False),
    "channel": ("Slice buffer_out; Slice rest x[:, f:]; Concat(buffer_in, rest) axis 1", on_channel, False),
    "split": ("Split x [f|C-f] -> buffer_out, rest; Concat(buffer_in, rest) axis 1", on_split, False),
    "splitflat": ("Slice buffer_out; Reshape [0,-1], Split flat, Concat flat, Reshape [0,C,H,W]", on_split_flat, False),
}


# --------------------------------------------------------------------------

def py_tsm(arch, work):
    """Stand-in for tsm-rewrite's offline output while the binary is not built (ResNets only): the
    tool's form (form_current_rebuilt) at the input of every /layerI/layerI.J/conv1/Conv."""
    import re
    out = os.path.join(work, arch, "pytsm.onnx")
    if os.path.exists(out):
        return out
    m = onnx.load(os.path.join(work, arch, "plain.onnx"))
    g = m.graph
    new_nodes, inits = [], []
    for node in g.node:
        mt = re.match(r"^(/layer\d/layer\d\.\d+)/conv1/Conv$", node.name)
        if mt:
            prefix = mt.group(1) + "/tsm"
            w = next(t for t in g.initializer if t.name == node.input[1])
            # spatial size: from the stage (224 input: layer1 56, layer2 28 ...); conv1 input of
            # layerI.0 has the previous stage's size
            stage, idx = int(node.name[6]), int(node.name.split(".")[1].split("/")[0])
            hw = {1: 56, 2: 28, 3: 14, 4: 7}[stage if idx > 0 or stage == 1 else stage - 1]
            c = w.dims[1]
            b = oh.Builder(prefix)
            outn = form_current_rebuilt(b, node.input[0], c, hw, hw, c // 8)
            new_nodes += b.nodes
            inits += b.inits
            node.input[0] = outn
        new_nodes.append(node)
    g.ClearField("node")
    g.node.extend(new_nodes)
    g.initializer.extend(inits)
    onnx.save(m, out)
    return out


def make_variant(arch, name, online, work):
    if os.path.exists(oh.BIN):
        p = oh.build(arch, work)
        # the offline forms replace the batch form's sites, which offline_sites finds (the default's
        # stream-form heads it does not)
        src = p["online"] if online else p["batch"]
    else:
        assert not online
        src = py_tsm(arch, work)
    table = ONLINE if online else OFFLINE
    desc, form, value_info = table[name]
    out = os.path.join(work, arch, f"form-{'online-' if online else ''}{name}.onnx")
    if os.path.exists(out) and os.path.getmtime(out) > os.path.getmtime(__file__):
        return out
    m = onnx.load(src)
    sites = (oh.online_sites if online else oh.offline_sites)(m)
    if form is None:
        form = lambda b, x, *a: b.name("shifted")  # noqa: E731  (placeholder, handled below)
        if value_info:
            m2 = add_value_info(m, sites)
        else:
            m2 = m
    else:
        m2 = oh.replace_sites(m, sites, form, value_info=value_info)
    onnx.save(m2, out)
    return out


def add_value_info(m, sites):
    import copy
    m = copy.deepcopy(m)
    batch = m.graph.input[0].type.tensor_type.shape.dim[0]
    for prefix, x, c, h, w, f in sites:
        v = onnx.helper.make_tensor_value_info(prefix + "/shifted", onnx.TensorProto.FLOAT, [None, c, h, w])
        v.type.tensor_type.shape.dim[0].CopyFrom(batch)
        m.graph.value_info.append(v)
    return m


def arg_parser(doc, work, rounds, runtimes):
    """The command line shared by the form scripts (this one and bench/forms_fold.py)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", choices=oh.ARCHS)
    ap.add_argument("--runtime", action="append", choices=runtimes)
    ap.add_argument("--forms", default="")
    ap.add_argument("--online", action="store_true")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--roundtrip", action="store_true", help="also time the round-trip row")
    ap.add_argument("--no-time", action="store_true", help="only build, check and count fusions")
    ap.add_argument("--work", default=work)
    ap.add_argument("--db", default=os.path.join(work, "forms.json"))
    ap.add_argument("--write", action="store_true")
    return ap


def main():
    args = arg_parser(__doc__, "/tmp/h-bench", 9, oh.RUNTIMES).parse_args()
    db = json.load(open(args.db)) if os.path.exists(args.db) else []
    if args.forms:
        p = oh.build(args.model, args.work)
        r = np.load(p["ref"])
        names = [n for n in args.forms.split(",") if n]
        paths = {n: make_variant(args.model, n, args.online, args.work) for n in names}
        info = {}
        for n, path in paths.items():
            if args.online:
                e, t = oh.check_online(path, r["online"], r["x"][:T].reshape(T, 1, 3, oh.HW, oh.HW))
            else:
                e, t = oh.check_offline(path, r["tsm"], r["x"])
            fu = oh.ort_fusion(path, os.path.join(args.work, args.model))
            info[n] = dict(err=e, tol=t, exact=e <= t, fusion=fu)
            oh.log(f"  {n:<18} exact {'ok' if e <= t else 'FAIL'} ({e:.1e}/{t:.1e}) ort fusion {fu}")
        models = {"2d": p["plain"], "null": p["null"]}
        if not args.online:
            info["null"] = dict(fusion=oh.ort_fusion(p["null"], os.path.join(args.work, args.model)))
        if args.roundtrip:
            models["roundtrip"] = p["online_roundtrip" if args.online else "roundtrip"]
            if not args.online:
                info["roundtrip"] = dict(fusion=oh.ort_fusion(p["roundtrip"], os.path.join(args.work, args.model)))
        models.update({f"form:{n}": path for n, path in paths.items() if info[n]["exact"]})
        models["__ref"] = p["ref"]
        mode = "online" if args.online else "offline"
        for rt in ([] if args.no_time else (args.runtime or ["ort", "openvino", "tract"])):
            if args.online and oh.RUNNERS[rt][1] is None:
                continue
            summ, ms = oh.bench(args.model, rt, mode, models, args.rounds, args.frames)
            stamp = time.strftime("%H:%M")
            for n, s in summ.items():
                key = n[5:] if n.startswith("form:") else n
                db.append(dict(arch=args.model, mode=mode, runtime=rt, form=key, stamp=stamp, ms_2d=ms, **s,
                               fusion=info.get(key, {}).get("fusion", {}),
                               err=info.get(key, {}).get("err")))
                oh.log(f"  {args.model} {rt} {mode} {key:<18} {oh.fmt(s)}")
            json.dump(db, open(args.db, "w"), indent=1)
        if args.no_time:
            for n, i in info.items():
                db.append(dict(arch=args.model, mode=mode, runtime="-", form=n, stamp=time.strftime("%H:%M"),
                               fusion=i.get("fusion", {}), err=i.get("err")))
            json.dump(db, open(args.db, "w"), indent=1)
    write_md(db)


FINDINGS = """## Findings (ResNet-50 at 224, T=8, one clip; machine: 2 shared cores, load 4-5 during all runs)

**onnxruntime: why the residual Add+Relu fusion is lost.** `NchwcTransformerImpl::TransformBinary`
(onnxruntime/core/optimizer/nchwc_transformer.cc) fuses an Add into the NCHWc conv that feeds it
(`Conv` with a 4th "Sum" input, then the Relu as its activation) only if it can prove both Add
inputs have the same shape: each dim either derived from the same NodeArg, or equal `dim_value`s,
or equal `dim_param`s in ONNX shape inference. The shift's `Reshape(..., [-1, C, H, W])` gives the
branch an unknown batch dim (ONNX infers `-1` only for a known total size), so the branch's last
conv output has batch `?` while the shortcut has `batch`; the fusion fails and the Add falls back
to the "Reshape both to the true NCHWc shape" path (standalone Add + Relu, 16 each). Confirmed:
adding a `value_info` `<prefix>/shifted: [batch, C, H, W]` restores all 16 fusions (0 standalone
Add/Relu), and so does any form whose last op is a channel Concat with one input that still has
the symbolic batch (ONNX's Concat inference merges the non-axis dims: `?` + `batch` -> `batch`), or an
online Reshape to `[0, C, H, W]` (0 copies the input dim, symbol included). value_info is not a
portable fix: tract with a pinned batch fails analysis on it ("Impossible to unify Sym(batch) with
Val(8)"). With the fusion back, every form costs about the round trip (within noise): the rest is
the ReorderOutput/ReorderInput pair at each site, the price of any non-NCHWc op on the branch input.

**OpenVINO** runs the convolutions in NHWC (`brgconv_avx512_1x1`, layout `acdb`). Its Reshape
needs a planar tensor, so each `[N, T, ...]` view costs a Reorder NHWC->NCHW and back (~300 ms of
reorders for 32 per clip vs ~965 ms for the whole 2D model), and Slice/Pad/Concat/Split run as
`ref_f32`. A Split+Concat round trip is removed entirely (its row is ~1.00). Forms that never
reshape an activation (`batch4d`: shift along the batch axis with Slice+Pad, zero the clip borders
with Where on a tiled [T,1,1,1] mask) need no reorder and give ~1.17-1.24; the remaining cost is
the strided NHWC Slice of the rest and the channel Concat (both `ref_f32`). Splitting channels
first (`split2`, `split3`) is worst in OpenVINO (VariadicSplit from NHWC to planar, ~1.6x).

**tract** prefers forms that reshape only the 2f moved channels and join two parts (`split2`
~1.03-1.05, about the round trip), the current form is ~1.05-1.09, `batch4d` ~1.08-1.13 (three
Concat parts into a 1x1 conv, Where + Tile).

"""


def write_md(db):
    out = os.path.join(HERE, "RESULTS-forms.md")
    lines = ["# Shift forms tried (bench/forms.py)", "", FINDINGS,
             "Each timed cell: median ratio to the 2D model in the same paired interleaved rounds "
             "[interquartile range] (min-max), n rounds; one clip of 8 frames at 224x224 offline, batch-1 frames "
             "online. Every timed run has its own null row (a copy of the 2D model) measured in the same rounds. "
             "All forms checked exact in onnxruntime against the PyTorch TSM reference "
             "(max|diff| <= 1e-4 * max(1, max|ref|)) before timing. ORT fusion: ReorderInput / ReorderOutput / "
             "standalone Add / standalone Relu in onnxruntime's optimized graph.", ""]
    descs = {**{("offline", k): v[0] for k, v in OFFLINE.items()}, **{("online", k): v[0] for k, v in ONLINE.items()}}
    descs[("offline", "roundtrip")] = descs[("online", "roundtrip")] = "Split [f|f|C-2f] + Concat at each site (exact identity)"
    descs[("offline", "null")] = descs[("online", "null")] = "copy of the 2D model"
    for arch in dict.fromkeys(d["arch"] for d in db):
        for mode in ("offline", "online"):
            rows = [d for d in db if d["arch"] == arch and d["mode"] == mode]
            if not rows:
                continue
            lines += [f"## {arch}, {mode}", "", "| time | runtime | form | ratio [IQR] (min-max) | n | 2D ms | ORT fusion | form description |",
                      "|---|---|---|---|---|---|---|---|"]
            for d in rows:
                fu = d.get("fusion") or {}
                fus = f"{fu['ReorderInput']}/{fu['ReorderOutput']}/{fu['Add']}/{fu['Relu']}" if fu else ""
                cell = oh.fmt(d) if "median" in d else "(not timed)"
                ms = f"{d['ms_2d']:.1f}" if d.get("ms_2d") else ""
                lines.append(f"| {d['stamp']} | {d['runtime']} | {d['form']} | {cell} | {d.get('n', '')} | {ms} | {fus} | "
                             f"{descs.get((mode, d['form']), '')} |")
            lines.append("")
    # keep the section bench/forms_fold.py writes (from its begin marker to the end)
    old = open(out).read() if os.path.exists(out) else ""
    tail = old[old.index("<!-- conv-fold: begin"):] if "<!-- conv-fold: begin" in old else ""
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n" + tail)
    oh.log(f"wrote {out}")


if __name__ == "__main__":
    main()
