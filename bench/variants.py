#!/usr/bin/env python3
"""Variants of a rewritten model for form experiments (issue 8), made with onnx's Python API from the
tool's own output, so that a form can be timed before it is built into the emitter.

    python bench/variants.py nhwc-buffers online.onnx online_nhwc.onnx
    python bench/variants.py swap-slice-axes clip.onnx clip_swapped.onnx
    python bench/variants.py clip-carrier clip.onnx clip_carrier.onnx
    python bench/variants.py head-clip tsm.onnx tsm_head_clip.onnx
    python bench/variants.py pack-buffers online.onnx online_packed.onnx
    python bench/variants.py pack-nhwc-buffers online.onnx online_packed_nhwc.onnx
    python bench/variants.py mul-mask tsm.onnx tsm_mul.onnx
    python bench/variants.py zero-frames tsm.onnx tsm_zero_frames.onnx
    python bench/variants.py joined-consumer online.onnx online_joined.onnx
    python bench/variants.py joined-clip tsm.onnx tsm_joined_clip.onnx
    python bench/variants.py scatter-online online_batch.onnx online_scatter.onnx
    python bench/variants.py no-shift tsm.onnx tsm_no_shift.onnx
    python bench/variants.py gather-head tsm.onnx tsm_gather_head.onnx
    python bench/variants.py side-conv online.onnx online_side.onnx
    python bench/variants.py channel-concat online.onnx online_cc.onnx
    python bench/variants.py flat-buffer-out online.onnx online_fb.onnx
    python bench/variants.py flat-head online.onnx online_fh.onnx
    python bench/variants.py stem-split online.onnx online_stem.onnx
    python bench/variants.py group-heads tsm.onnx tsm_groups.onnx
    python bench/variants.py row-gather tsm.onnx tsm_rows.onnx          (also row-gather-zero, -concat, -frame)
    python bench/variants.py nhwc-rows tsm.onnx tsm_nhwc.onnx           (also nhwc-rows-carrier, -where)
    python bench/variants.py dw-volume tract.onnx tract_dw3d.onnx       (also dw-no-pad, dw-groups)
    python bench/variants.py unfused-adds plain.onnx plain_unfused.onnx

- nhwc-buffers: an online model whose buffers cross the boundary as [N, H, W, f] (channels last),
  each with a Transpose inside the graph, and the metadata's buffer list updated to match. OpenVINO
  and onnxruntime compute the convolutions channels-last or blocked; a planar NCHW buffer costs each
  a reorder on its way in and out, which a Transpose next to the reorder might cancel.
- swap-slice-axes: every Slice over two axes with its axes (and starts and ends) in reverse order;
  the same result, but a runtime that slices one axis at a time (tract) copies in another order.
- clip-carrier: a `--shift-form clip` model whose shifted tensor, reshaped back to frames with a
  -1, is concatenated on the channel axis with an empty slice of the site's tensor: shape inference
  takes the batch symbol from the empty part, which the Reshape lost, so that onnxruntime can prove
  the block's residual Add's inputs equal in shape and fuse it into its convolution again.
- head-clip: an offline stream-form model whose heads (the 2f channels that move, computed apart
  from the rest) are shifted on a clip view as `--shift-form clip` shifts a whole tensor (Reshape to
  [N, T, 2f, H*W], Slice and Pad on the time axis, Concat, Reshape back, an empty slice of the head
  concatenated to carry the batch symbol) in place of the batch axis and its Where on a mask: no
  Where (tract's profile has 31 ms of them on ResNet-50), two Reshapes.
- pack-buffers: an online model whose buffers cross the boundary as one tensor, `[N, S]` in and out
  (S the buffers' sizes summed): inside, a Slice and a Reshape give each site its buffer, and each
  buffer output is flattened into one Concat. Made when OpenVINO seemed to pay a fixed cost per
  input and output (`bench/openvino_buffer_io.py`, which until stop 44 timed the Python binding's
  copies of the outputs instead: `bench/RESULTS-openvino-boundary.md`).
- pack-nhwc-buffers: both of the above: the buffers channels-last, then packed into one `[N, S]`
  tensor. In OpenVINO the packed Slices and the Concat of a planar tensor whose leading dimension
  is 1 can be views, and a channels-last buffer needs no reorder to or from the layout OpenVINO
  computes the convolutions in: together they might leave the ports nothing to copy.

- mul-mask: every `Where(keep, x, 0)` of the shift a multiplication by the condition cast to the
  element type, `x * float(keep)`. tract evaluates Where with a generic broadcasting zip (31 ms of
  ResNet-50's clip in its profile), a multiplication with its vectorized kernels. Exact for finite
  activations only: an inf or NaN in the neighbouring clip's frame gives NaN where Where gives 0.
- zero-frames: every Pad of one zero frame on the batch axis (the batch form's and the stream
  form's head) a Concat on the batch axis with a zero frame of constant shape (ConstantOfShape, so
  the file does not grow). OpenVINO runs Pad as a reference kernel; a Concat on the outermost axis
  it can write in place.
- joined-consumer: every pair of partial products the stream form adds (`Conv(tail, W[:, s:], B)` and
  `Conv(moved, W[:, :s])` into an Add, the `.../sum` nodes) one convolution on a channel Concat of
  the two inputs, its weights re-joined by input channel. The producers stay split, so no Slice of
  the site's tensor comes back; the Concat copies the tail, where the stream form adds two partial
  sums in a pass over the (narrower) consumer's output. The hope was that OpenVINO writes a channel
  Concat in place when the batch is one (online); it did not (bench/RESULTS-online-fewer-nodes.md).
  The graph has 21 nodes fewer on ResNet-50 online (196 against 220).

- joined-clip: an offline stream-form model made head-clip first, whose consumers' two partial
  products are then one convolution again, on the shifted head and the tail joined on the clip view
  (Concat on the channel axis of `[N, T, C, H*W]`, Reshape back, an empty slice carrying the batch
  symbol): the producers stay split, so the tail is copied once (the Concat) and never sliced, and
  the Reshape keeps tract from splitting the consumer over the Concat's parts.
- scatter-online: an online model (`--shift-form batch`, or `tract` for its batch-form sites) whose
  batch-form sites read `ScatterND(x, [(frame, channel)], buffer_in)`, the buffer written over a
  copy of x's first fold channels, in place of the flattened channel Concat: the offline form of
  `--shift-form tract` (src/emit/scatter.rs), per frame.
The variants on the stream form's head (head-clip, mul-mask, zero-frames, joined-clip, gather-head,
group-heads, row-gather*) take the head as the tool wrote it until stop 42 (Slices, Pads, a Concat
and a Where: `git checkout adcbbc7 && cargo build --release`); on a graph without such heads a
variant writes nothing and says so. no-shift takes that form and the rows form of the tool now.

- no-shift: NOT EXACT, a diagnostic: an offline stream-form model whose heads are not shifted at all
  (each consumer's `from_shifted` convolution reads the head as it was made; the Slices, Pads,
  Concat and Where of the head and the frame masks they alone read are dropped). Timed against the
  default, it splits the stream form's cost in two: the split convolutions (this row) and the
  movement of the head (the difference). The exactness check of bench/overhead.py reports it as
  NOT EXACT, as it should. On the volume forms (`--shift-form openvino` and `tract` offline) each
  depthwise convolution over time, and the clips' border mask after it, is dropped: the volume's
  layout alone.
- gather-head: (reads the tool's output at stop 29, commit 5645cdc: its frame counter
  `/tsm/frames/frames`, which later outputs do not have) an offline stream-form model whose heads
  move by two Gathers on the batch axis, the
  whole head gathered from the next frames and from the previous ones (indices `(frame + 1) mod N`
  and `(frame - 1) mod N`), and two Wheres on per-(frame, channel) masks pick the group and zero the
  clip borders: two gathers and two selects, against two Slices, two Pads, a Concat and a Where.
- side-conv: an online model whose sites in the batch form's flattened Concat (ResNet-50's first,
  every MobileNetV2 site) feed their consumer convolution no Concat at all: it reads x itself, its
  weights' first fold input columns zeroed, plus a side convolution of the buffer input through
  those columns, the two summed (`Conv(x, W with [:, :fold] = 0, B) + Conv(buffer_in, W[:, :fold])`).
  No Reshape, Slice of the rest or Concat: in OpenVINO, which computes channels-last, the
  flattened Concat costs a reorder to planar and back. The price: the side convolution's
  multiply-adds (fold/C of the consumer's, which the zeroed columns waste), the zeroed copy of the
  consumer's weights in the file, and exactness for finite values only (a zeroed column times an
  inf or NaN in x's replaced channels is NaN, where the shift reads the buffer).
- slice-consumer: an online model whose sites in the batch form's flattened Concat (ResNet-50's
  first) feed their consumer convolution folded by input halves, `Conv(x[:, fold:], W[:, fold:], B)
  + Conv(buffer_in, W[:, :fold])`, the rest and the buffer output two channel Slices of x itself: no
  Reshape, no Concat, no zeroed weights, exact. The question (stop 36): does it spare OpenVINO the
  flattened Concat's reorders at the one site the stream form leaves out.
- channel-concat: an online model whose sites in the batch form's flattened Concat join the buffer
  and `x[:, fold:]` on the channel axis, unflattened (the form the tool keeps for a strided 1x1
  consumer): no Reshape, so no reorder to planar in OpenVINO; the hope was that OpenVINO's channel
  Slice and Concat would then run in its own layout.
- flat-buffer-out: an online model whose sites in the batch form's flattened Concat take their
  buffer output from the flattened frame (`x_flat[:, :fold*H*W]`, reshaped to `[N, fold, H, W]`),
  the Slice of the rest's neighbour, not from x's channels. OpenVINO computes x channels-last and
  reorders it to planar for the flattening Reshape anyway; sliced from x, the buffer is a strided
  copy that its Assign (or output) then reorders again, and x's second reader keeps the block's
  residual Add out of its convolution. The tool's own form since stop 30: on its output this
  changes nothing.
- flat-head: an online model whose stream-form heads rounded up past the fold (ResNet-18's two
  64-channel sites) are split into the buffer output and the channels that stay, and joined with
  the buffer input, on the head flattened to `[N, s*H*W]`, as flat-buffer-out does for the batch
  form's sites: OpenVINO runs the head's two channel Slices as one reference VariadicSplit.

- stem-split, stem-split16: an online model whose site in the batch form's flattened Concat on a
  stem's output (Conv, Relu, MaxPool: ResNet-50's first site, fold 8 of 64) is taken by splitting
  the stem by output channel at s (the fold, or the fold rounded up to 16): two stem convolutions,
  ReLUs and MaxPools; the buffer output is the first part (with s = 16 its first fold channels, the
  other ones joined after the buffer input); the consumer is folded by its input halves as the
  stream form folds it, and the site's other reader (the downsample, which widens 64 channels to
  256 and so keeps this site out of the stream form) reads the two parts joined by one channel
  Concat. No reorder to planar in OpenVINO, which the flattened Concat costs there.

- group-heads: an offline stream-form model whose heads are computed as two tensors, one per moved
  group (channels `[0, f)`, which take the next frame, and `[f, 2f)`, the previous one): every
  convolution writing a head split once more by output channel, every Add and Relu on a head done
  per group, every convolution reading a head (the consumer's partial product on the shifted head,
  the stage-first downsamples) folded by the two groups. Each group then moves along the batch axis
  alone (a Slice and a Pad on axis 0, an empty channel slice carrying the batch symbol, a `Where` on
  a `[N*T, 1, 1, 1]` frame mask): no channel Slice and no channel Concat, which OpenVINO runs
  channels-last as strided copies in its reference kernels. The price: a third part for every
  split convolution (122 1x1 convolutions on ResNet-50 against 76).

- row-gather, row-gather-zero, row-gather-concat, row-gather-frame: an offline stream-form model
  (stop 42's default, whose heads move by Slices, Pads, a Concat and a `Where`) whose heads are
  viewed as rows of `fold` channels, `[N*T*2, fold, H, W]` (row 2t+g: group g of frame t), and
  moved by one Gather on axis 0 whose index, made once for the graph from the tool's frame counter
  and frame-in-clip index, names each row's source: group 0 of the next frame, group 1 of the
  previous one. The four differ in how the clip borders get their zeros: a `Where` on a
  `[N*T*2, 1, 1, 1]` mask after the Gather (row-gather); a zero row appended by a Pad on axis 0 that
  the border rows read (row-gather-zero); the same row appended by a Concat with a ConstantOfShape
  (row-gather-concat); a zero frame joined before the head by a Concat on the batch axis, before
  the Reshape to rows (row-gather-frame, the tool's own form since stop 43, src/emit/rows.rs).
- nhwc-rows, nhwc-rows-carrier, nhwc-rows-where: the tool's rows form (src/emit/rows.rs) with its
  movement on a channels-last view of the head: a Transpose to `[N*T, H, W, 2f]`, rows of `fold`
  channels per pixel, one Gather on a per-resolution index built from the tool's
  /tsm/frames/rows0, and a Transpose back. OpenVINO computes ResNet-50's f32 convolutions
  channels-last and runs the rows form's Reshapes planar, a reorder each way at every site; the
  Transposes around a channels-last view can merge with those reorders. nhwc-rows keeps the zero
  frame and the batch carrier where the tool writes them; nhwc-rows-carrier carries the batch by an
  empty channels-last tensor (an Expand of an empty slice of the frame counter's ones) joined
  before the Transpose back, which onnxruntime then folds into its ReorderInput; nhwc-rows-where
  has no zero frame (a Where on the clip borders instead) and its first Transpose straight after
  the head, which onnxruntime folds into its ReorderOutput.
  OpenVINO reorders the head out of its blocked layout for the Reshape and back; the Gather copies
  whole contiguous rows, where the Slices and Pads copied strided ranges in reference kernels.

- dw-volume, dw-no-pad, dw-groups: `--shift-form tract`'s depthwise convolutions run on the frames
  (stop 56, `depthwise_on_frames` in src/emit/volume/rules.rs: a Reshape to `[C, N*T, H, W]`, a Pad, a
  Transpose to `[N*T, C, H', W']`, the 2D convolution, a Transpose and a Reshape back) written
  otherwise. dw-volume: each back as one 3D convolution of depth 1 on the volume, as stop 55 wrote
  them (tract's depthwise loop then runs along the frames). dw-no-pad: the Pad dropped and its pads
  given back to the 2D convolution, which lets tract push the first Transpose into the convolution
  before. dw-groups: no Transpose at all, a 2D convolution of C*16 groups on the volume's own
  memory viewed as `[1, C*16, H, W]`, each kernel repeated over 16 frames (two clips of 8: the
  model then runs only that many frames; the file grows by the repeated kernels).

- unfused-adds: any model (the 2D export too), each Add of two equal 4D tensors one of which a Conv
  writes gets its other operand through a channel Split `[s, C-s]` and Concat, a copy that computes
  nothing (s = 16, or 1 below 17 channels). tract fuses such an Add (and the Relu after it) into the
  convolution's matrix product when both operands' facts are equal, which a Concat's output is not
  to it; per frame (batch 1) that fused Add costs it more than the copy and a standalone Add
  (`bench/RESULTS-tract-fused-add.md`). A diagnostic of tract's kernels, not a form: it changes the
  2D model as much as the TSM one.

All are exact (mul-mask and side-conv as said above, no-shift not at all): the buffers hold the same values, transposed; the slices take the same elements.
Time them with bench/overhead.py (--online-variant, --variant) or the profiles
(bench/openvino_profile.py, bench/tract_profile.py).
"""
import argparse
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper


def inferred_dims(m):
    """Each intermediate tensor's dims as ONNX shape inference gives them (0 where symbolic)."""
    inferred = onnx.shape_inference.infer_shapes(m)
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}


def replace_nodes(g, nodes):
    del g.node[:]
    g.node.extend(nodes)


def init(g, name, a):
    """Adds the initializer `name` holding the array `a`, in its own type; returns its name."""
    g.initializer.append(numpy_helper.from_array(np.asarray(a), name))
    return name


def int64_init(g, name, values):
    """Adds the int64 initializer `name` holding `values`; returns its name."""
    return init(g, name, np.array(values, np.int64))


def drop_unread_initializers(g):
    read = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in read]
    del g.initializer[:]
    g.initializer.extend(keep)


def nhwc_buffers(m):
    g = m.graph
    meta = {p.key: p for p in m.metadata_props}["tsm-rewrite.buffers"]
    bufs = json.loads(meta.value)
    ins, outs = {b["input"] for b in bufs}, {b["output"] for b in bufs}

    def channels_last(vi, name):
        d = vi.type.tensor_type.shape.dim
        dims = [d[0].dim_param or d[0].dim_value, d[2].dim_value, d[3].dim_value, d[1].dim_value]
        return helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, dims)

    head, tail = [], []
    for k, vi in enumerate(g.input):
        if vi.name in ins:
            head.append(helper.make_node("Transpose", [vi.name + "_nhwc"], [vi.name], name=vi.name + "/to_nchw", perm=[0, 3, 1, 2]))
            g.input[k].CopyFrom(channels_last(vi, vi.name + "_nhwc"))
    for k, vi in enumerate(g.output):
        if vi.name in outs:
            tail.append(helper.make_node("Transpose", [vi.name], [vi.name + "_nhwc"], name=vi.name + "/to_nhwc", perm=[0, 2, 3, 1]))
            g.output[k].CopyFrom(channels_last(vi, vi.name + "_nhwc"))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    for b in bufs:
        s = b["shape"]
        b.update(input=b["input"] + "_nhwc", output=b["output"] + "_nhwc", shape=[s[0], s[2], s[3], s[1]])
    meta.value = json.dumps(bufs)
    return len(bufs)


def swap_slice_axes(m):
    inits = {i.name: i for i in m.graph.initializer}
    swapped = 0
    for node in m.graph.node:
        if node.op_type != "Slice" or len(node.input) < 4 or node.input[3] not in inits:
            continue
        if numpy_helper.to_array(inits[node.input[3]]).size != 2:
            continue
        for k in (1, 2, 3):  # starts, ends, axes: the tool names these per node, none is shared
            t = inits[node.input[k]]
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[::-1].copy(), t.name))
        swapped += 1
    return swapped


def clip_carrier(m):
    g = m.graph
    by_output = {o: n for n in g.node for o in n.output}
    nodes, changed = [], 0
    for n in g.node:
        nodes.append(n)
        if n.op_type != "Reshape" or not n.name.endswith("/tsm/Reshape_frames"):
            continue
        prefix = n.name[: -len("Reshape_frames")]
        x = by_output[prefix + "clip"].input[0]  # Reshape_clip's input: the site's tensor
        view, out = n.output[0] + "_view", n.output[0]
        n.output[0] = view
        consts = [int64_init(g, prefix + "carrier_" + k, v) for k, v in (("starts", [0]), ("ends", [0]), ("axes", [1]))]
        nodes.append(helper.make_node("Slice", [x] + consts, [prefix + "carrier"], name=prefix + "Slice_carrier"))
        nodes.append(helper.make_node("Concat", [view, prefix + "carrier"], [out], name=prefix + "Concat_carrier", axis=1))
        changed += 1
    replace_nodes(g, nodes)
    return changed


def head_clip(m):
    g = m.graph
    shapes = inferred_dims(m)
    inits = {i.name: i for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    sites = [n.name[: -len("Where")] for n in g.node
             if n.op_type == "Where" and n.name.endswith("/tsm/Where")
             and len(by_name[n.name[: -len("Where")] + "Concat"].input) == 3]  # the head: next, prev, carrier
    new, gone = {}, set()
    for p in sites:
        head = by_name[p + "Slice_next"].input[0]
        fold = int(numpy_helper.to_array(inits[by_name[p + "Slice_next"].input[2]])[1])
        # T: the site's own constant once, the graph's frame masks' since they are shared.
        t = int(numpy_helper.to_array(inits.get(p + "segments") or inits["/tsm/frames/segments"]).reshape(-1)[0])
        _, c, h, w = shapes[head]
        assert c == 2 * fold, (p, c, fold)

        def const(k, v):
            return int64_init(g, p + "hc_" + k, v)
        nodes = [
            helper.make_node("Reshape", [head, const("clip_shape", [-1, t, c, h * w])], [p + "hc_clip"], name=p + "hc_Reshape_clip"),
            helper.make_node("Slice", [p + "hc_clip", const("n_s", [1, 0]), const("n_e", [t, fold]), const("n_a", [1, 2])],
                             [p + "hc_next"], name=p + "hc_Slice_next"),
            helper.make_node("Pad", [p + "hc_next", const("n_p", [0, 0, 0, 0, 0, 1, 0, 0])], [p + "hc_next_padded"], name=p + "hc_Pad_next"),
            helper.make_node("Slice", [p + "hc_clip", const("p_s", [0, fold]), const("p_e", [t - 1, c]), const("p_a", [1, 2])],
                             [p + "hc_prev"], name=p + "hc_Slice_prev"),
            helper.make_node("Pad", [p + "hc_prev", const("p_p", [0, 1, 0, 0, 0, 0, 0, 0])], [p + "hc_prev_padded"], name=p + "hc_Pad_prev"),
            helper.make_node("Concat", [p + "hc_next_padded", p + "hc_prev_padded"], [p + "hc_joined"], name=p + "hc_Concat", axis=2),
            helper.make_node("Reshape", [p + "hc_joined", const("frame_shape", [-1, c, h, w])], [p + "hc_frames"], name=p + "hc_Reshape_frames"),
            helper.make_node("Slice", [head, const("c_s", [0]), const("c_e", [0]), const("c_a", [1])], [p + "hc_carrier"], name=p + "hc_Slice_carrier"),
            helper.make_node("Concat", [p + "hc_frames", p + "hc_carrier"], [p + "shifted"], name=p + "hc_Concat_carrier", axis=1),
        ]
        new[p + "Where"] = nodes
        gone.update(n.name for n in g.node if n.name.startswith(p) and n.name != p + "Where")
    nodes = [x for n in g.node if n.name not in gone for x in new.get(n.name, [n])]
    del g.node[:]
    g.node.extend(nodes)
    drop_unread_initializers(g)
    return len(sites)


def pack_buffers(m):
    g = m.graph
    meta = {p.key: p for p in m.metadata_props}["tsm-rewrite.buffers"]
    bufs = json.loads(meta.value)
    ins = {v.name: v for v in g.input}
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    lead = dims(ins[bufs[0]["input"]])[0]
    elem = ins[bufs[0]["input"]].type.tensor_type.elem_type
    head, tail, flat, offset = [], [], [], 0

    for k, b in enumerate(bufs):
        _, f, h, w = dims(ins[b["input"]])
        size = f * h * w
        p = f"/packed/{k}/"
        head.append(helper.make_node("Slice", ["buffers_in", int64_init(g, p + "starts", [offset]), int64_init(g, p + "ends", [offset + size]),
                                               int64_init(g, p + "axes", [1])], [p + "in_flat"], name=p + "Slice"))
        head.append(helper.make_node("Reshape", [p + "in_flat", int64_init(g, p + "shape", [0, f, h, w])], [b["input"]], name=p + "Reshape_in"))
        tail.append(helper.make_node("Reshape", [b["output"], int64_init(g, p + "flat", [0, -1])], [p + "out_flat"], name=p + "Reshape_out"))
        flat.append(p + "out_flat")
        offset += size
    tail.append(helper.make_node("Concat", flat, ["buffers_out"], name="/packed/Concat", axis=1))
    names_in = {b["input"] for b in bufs}
    names_out = {b["output"] for b in bufs}
    kept_in = [v for v in g.input if v.name not in names_in]
    kept_out = [v for v in g.output if v.name not in names_out]
    del g.input[:]
    g.input.extend(kept_in + [helper.make_tensor_value_info("buffers_in", elem, [lead, offset])])
    del g.output[:]
    g.output.extend(kept_out + [helper.make_tensor_value_info("buffers_out", elem, [lead, offset])])
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    meta.value = json.dumps([{"input": "buffers_in", "output": "buffers_out", "shape": [lead, offset]}])
    return len(bufs)


def mul_mask(m):
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    nodes, changed = [], 0
    for n in g.node:
        # only a select against zeros is a product with its mask (the frame index's Where(never, values, 1) is not)
        if n.op_type == "Where" and "/tsm/" in n.name and n.input[2] in inits \
                and not numpy_helper.to_array(inits[n.input[2]]).any():
            elem = inits[n.input[2]].data_type
            cast = n.name + "_mask"
            nodes.append(helper.make_node("Cast", [n.input[0]], [cast], name=n.name + "_Cast", to=elem))
            nodes.append(helper.make_node("Mul", [n.input[1], cast], [n.output[0]], name=n.name + "_Mul"))
            changed += 1
        else:
            nodes.append(n)
    replace_nodes(g, nodes)
    return changed


def zero_frames(m):
    g = m.graph
    shapes = inferred_dims(m)
    inits = {i.name: i for i in g.initializer}
    nodes, changed = [], 0
    for n in g.node:
        pads = numpy_helper.to_array(inits[n.input[1]]).tolist() if n.op_type == "Pad" and len(n.input) > 1 and n.input[1] in inits else None
        if pads is None or "/tsm/" not in n.name or len(pads) != 8 or sum(pads) != 1 or pads[0] + pads[4] != 1:
            nodes.append(n)
            continue
        dims = shapes[n.input[0]]
        elem = inits[n.input[2]].data_type if len(n.input) > 2 and n.input[2] in inits else onnx.TensorProto.FLOAT
        shape = numpy_helper.from_array(np.array([1] + dims[1:], np.int64), n.name + "_zero_shape")
        g.initializer.append(shape)
        zero = helper.make_tensor("value", elem, [1], [0])
        nodes.append(helper.make_node("ConstantOfShape", [shape.name], [n.name + "_zero"], name=n.name + "_Zero", value=zero))
        parts = [n.name + "_zero", n.input[0]] if pads[0] == 1 else [n.input[0], n.name + "_zero"]
        nodes.append(helper.make_node("Concat", parts, [n.output[0]], name=n.name + "_Concat", axis=0))
        changed += 1
    replace_nodes(g, nodes)
    return changed


def joined_consumer(m):
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    joins, replaced, dropped = {}, {}, set()
    for n in g.node:
        a, b = (producer.get(i) for i in n.input) if n.op_type == "Add" and len(n.input) == 2 else (None, None)
        if not n.name.endswith("/sum") or a is None or b is None or a.op_type != "Conv" or b.op_type != "Conv":
            continue
        tail, moved = (a, b) if a.name.endswith("/from_tail") else (b, a)
        if not tail.name.endswith("/from_tail") or moved.input[1] not in inits or tail.input[1] not in inits:
            continue
        w = np.concatenate([numpy_helper.to_array(inits[moved.input[1]]), numpy_helper.to_array(inits[tail.input[1]])], axis=1)
        g.initializer.append(numpy_helper.from_array(w, n.name + "_W"))
        # The stage-first downsample is folded twice (its head and its tail): one Concat serves both.
        key = (moved.input[0], tail.input[0])
        if key not in joins:
            joins[key] = helper.make_node("Concat", list(key), [n.name + "_in"], name=n.name + "_Concat", axis=1)
        conv = helper.make_node("Conv", [joins[key].output[0], n.name + "_W"] + list(tail.input[2:]), [n.output[0]],
                                name=n.name + "_Conv")
        conv.attribute.extend(tail.attribute)
        replaced[n.name] = (joins[key], conv)
        dropped |= {tail.name, moved.name}
    nodes, placed = [], set()
    for n in g.node:
        if n.name in replaced:
            join, conv = replaced[n.name]
            if join.name not in placed:
                nodes.append(join)
                placed.add(join.name)
            nodes.append(conv)
        elif n.name not in dropped:
            nodes.append(n)
    replace_nodes(g, nodes)
    drop_unread_initializers(g)
    return len(replaced)


def joined_clip(m):
    if head_clip(m) == 0:
        return 0  # its consumers' joins read the head-clip heads: none here
    g = m.graph
    shapes = inferred_dims(m)
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    replaced, dropped = {}, set()
    for n in g.node:
        if n.op_type != "Add" or not n.name.endswith("/sum"):
            continue
        a, b = (producer.get(i) for i in n.input)
        if a is None or b is None or a.op_type != "Conv" or b.op_type != "Conv":
            continue
        tail, moved = (a, b) if a.name.endswith("/from_tail") else (b, a)
        if not moved.name.endswith("/from_shifted"):
            continue  # a downsample's two halves read the unshifted tensor
        p = n.name + "_jc_"
        carrier_concat = producer[moved.input[0]]  # head-clip's Concat_carrier
        frames = producer[carrier_concat.input[0]]  # its Reshape_frames
        head_view = frames.input[0]  # [N, T, 2f, HW]
        _, t, s, hw = shapes[head_view]
        _, r, h, w = shapes[tail.input[0]]

        def const(k, v):
            return int64_init(g, p + k, v)
        wj = np.concatenate([numpy_helper.to_array(inits[moved.input[1]]), numpy_helper.to_array(inits[tail.input[1]])], axis=1)
        g.initializer.append(numpy_helper.from_array(wj, p + "W"))
        conv = helper.make_node("Conv", [p + "in", p + "W"] + list(tail.input[2:]), [n.output[0]], name=p + "Conv")
        conv.attribute.extend(tail.attribute)
        replaced[n.name] = [
            helper.make_node("Reshape", [tail.input[0], const("tail_shape", [-1, t, r, hw])], [p + "tail_clip"], name=p + "Reshape_tail"),
            helper.make_node("Concat", [head_view, p + "tail_clip"], [p + "joined"], name=p + "Concat", axis=2),
            helper.make_node("Reshape", [p + "joined", const("frame_shape", [-1, s + r, h, w])], [p + "frames"], name=p + "Reshape_frames"),
            helper.make_node("Slice", [tail.input[0], const("c_s", [0]), const("c_e", [0]), const("c_a", [1])], [p + "carrier"], name=p + "Slice_carrier"),
            helper.make_node("Concat", [p + "frames", p + "carrier"], [p + "in"], name=p + "Concat_carrier", axis=1),
            conv,
        ]
        dropped |= {tail.name, moved.name, carrier_concat.name, frames.name}
    replace_nodes(g, [x for n in g.node if n.name not in dropped for x in replaced.get(n.name, [n])])
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    replace_nodes(g, [n for n in g.node if any(o in read for o in n.output)])  # head-clip's unread carriers
    drop_unread_initializers(g)
    return len(replaced)


def scatter_online(m):
    g = m.graph
    by_name = {n.name: n for n in g.node}
    sites = sorted({n.name[: -len("Concat")] for n in g.node if n.op_type == "Concat" and n.name.endswith("/tsm/Concat")})
    folds = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in g.input}
    frame_input = g.input[0].name
    g.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "/sc/axis0"),
                          numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "/sc/column")])
    pre = [
        helper.make_node("Shape", [frame_input], ["/sc/n"], name="/sc/Shape", start=0, end=1),
        helper.make_node("ConstantOfShape", ["/sc/n"], ["/sc/ones"], name="/sc/ones", value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("CumSum", ["/sc/ones", "/sc/axis0"], ["/sc/count"], name="/sc/CumSum", exclusive=1),
        helper.make_node("Reshape", ["/sc/count", "/sc/column"], ["/sc/frame"], name="/sc/Reshape_frame"),
    ]
    positions, new, gone = {}, {}, set()
    for p in sites:
        x, buf = by_name[p + "Reshape_x"].input[0], p + "buffer_in"
        f = folds[buf]
        if f not in positions:
            q = f"/sc/positions{f}/"
            g.initializer.append(numpy_helper.from_array(np.array([f, 1], np.int64), q + "dims"))
            g.initializer.append(numpy_helper.from_array(np.arange(f, dtype=np.int64).reshape(1, f, 1), q + "channel"))
            pre += [
                helper.make_node("Concat", ["/sc/n", q + "dims"], [q + "shape"], name=q + "Concat_shape", axis=0),
                helper.make_node("Expand", ["/sc/frame", q + "shape"], [q + "frames"], name=q + "Expand_frames"),
                helper.make_node("Expand", [q + "channel", q + "shape"], [q + "channels"], name=q + "Expand_channels"),
                helper.make_node("Concat", [q + "frames", q + "channels"], [q + "positions"], name=q + "Concat", axis=2),
            ]
            positions[f] = q + "positions"
        out = by_name[p + "Reshape_frame"].output[0]
        new[p + "Reshape_frame"] = [helper.make_node("ScatterND", [x, positions[f], buf], [out], name=p + "ScatterND")]
        gone |= {p + k for k in ("Reshape_x", "Slice_rest", "Reshape_buffer", "Concat")}
    replace_nodes(g, pre + [y for n in g.node if n.name not in gone for y in new.get(n.name, [n])])
    drop_unread_initializers(g)
    return len(sites)


def stream_heads(g):
    """Each stream-form head of an offline model: (prefix, head tensor, fold, the Where's output)."""
    inits = {i.name: i for i in g.initializer}
    by = {n.name: n for n in g.node}
    heads = []
    for n in g.node:
        if n.op_type == "Where" and n.name.endswith("/tsm/Where") and n.name[:-5] + "Slice_next" in by:
            pre = n.name[:-5]
            nxt = by[pre + "Slice_next"]
            fold = int(numpy_helper.to_array(inits[nxt.input[2]])[1])
            heads.append((pre, nxt.input[0], fold, n.output[0]))
    return heads


def toposort(nodes, known):
    """`nodes` in an order where each runs after the producers of its inputs (`known`: the graph's
    inputs and initializers). Also bench/forms_fold.py's."""
    known, out, todo = set(known), [], list(nodes)
    while todo:
        rest = []
        for n in todo:
            if all(not i or i in known for i in n.input):
                out.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(todo):
            raise ValueError(f"cycle or missing input at {rest[0].name}")
        todo = rest
    return out


def drop_dead_nodes(g):
    need = {o.name for o in g.output}
    keep = []
    for n in reversed(g.node):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(n.input)
    replace_nodes(g, keep[::-1])
    drop_unread_initializers(g)


def rows_heads(g):
    """Each head of the tool's own rows form (src/emit/rows.rs, the default since stop 43):
    (prefix, head tensor, the shifted head's name)."""
    by = {n.name: n for n in g.node}
    heads = []
    for n in g.node:
        if n.op_type == "Concat" and n.name.endswith("/tsm/Concat_zero_frame"):
            pre = n.name[: -len("Concat_zero_frame")]
            last = by.get(pre + "Concat") or by[pre + "Reshape_frames"]   # the batch carrier's Concat where the batch is symbolic
            heads.append((pre, n.input[1], last.output[0]))
    return heads


def volume_shifts(g):
    """Each shift of the volume forms (src/emit/volume/; `--shift-form openvino` and `tract`
    offline): (its input, its output after the clips' border mask where there is one)."""
    masked = {n.input[0]: n.output[0] for n in g.node if n.name.endswith("/Mul_clip_borders")}
    return [(n.input[0], masked.get(n.output[0], n.output[0])) for n in g.node if n.name.endswith("/Conv_time")]


def no_shift(m):
    g = m.graph
    heads = [(pre, head, shifted) for pre, head, _, shifted in stream_heads(g)] + rows_heads(g)
    heads += [("", x, shifted) for x, shifted in volume_shifts(g)]
    unshifted = {shifted: head for _, head, shifted in heads}
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in unshifted:
                n.input[i] = unshifted[name]
    drop_dead_nodes(g)
    return len(heads)


def gather_head(m, segments=8):
    g = m.graph
    heads = stream_heads(g)
    made = {o for n in g.node for o in n.output}
    if not heads or "/tsm/frames/frames" not in made:
        return 0  # it reads the frame counter of the tool's output at stop 29 (5645cdc), gone since
    shapes = inferred_dims(m)

    def const(name, a):
        return init(g, name, a)

    one = const("/tsm/gather/one", np.array([1], np.int64))
    # the frame counter, frame count and frame-in-clip index the tool's output makes once per graph
    frame, frames, index = "/tsm/frames/frame", "/tsm/frames/frames", "/tsm/frames/frame_index"
    new = [
        helper.make_node("Add", [frame, one], ["/tsm/gather/f1"], name="/tsm/gather/Add_next"),
        helper.make_node("Mod", ["/tsm/gather/f1", frames], ["/tsm/gather/next"], name="/tsm/gather/Mod_next"),
        helper.make_node("Sub", [frames, one], ["/tsm/gather/n1"], name="/tsm/gather/Sub"),
        helper.make_node("Add", [frame, "/tsm/gather/n1"], ["/tsm/gather/fp"], name="/tsm/gather/Add_prev"),
        helper.make_node("Mod", ["/tsm/gather/fp", frames], ["/tsm/gather/prev"], name="/tsm/gather/Mod_prev"),
    ]
    outputs = {}
    for pre, head, fold, shifted in heads:
        s = shapes[head][1]
        take_next = np.zeros((segments, s, 1, 1), bool)
        take_prev = np.zeros((segments, s, 1, 1), bool)
        take_next[: segments - 1, :fold] = True
        take_prev[1:, fold:2 * fold] = True
        keep = np.zeros((segments, s, 1, 1), bool)
        keep[:, 2 * fold:] = True
        zero = const(pre + "gather/zero", np.array(0, np.float32))
        new += [
            helper.make_node("Gather", [const(pre + "gather/next_rows", take_next), index], [pre + "gather/cn0"], axis=0),
            helper.make_node("Gather", [const(pre + "gather/prev_rows", take_prev), index], [pre + "gather/cp0"], axis=0),
            # the empty carrier the default's mask has: the batch symbol for onnxruntime's shape inference
            helper.make_node("Concat", [pre + "gather/cn0", pre + "keep_carrier_bool"], [pre + "gather/cn"], axis=1),
            helper.make_node("Concat", [pre + "gather/cp0", pre + "keep_carrier_bool"], [pre + "gather/cp"], axis=1),
            helper.make_node("Gather", [head, "/tsm/gather/next"], [pre + "gather/from_next"], axis=0),
            helper.make_node("Gather", [head, "/tsm/gather/prev"], [pre + "gather/from_prev"], axis=0),
            helper.make_node("Where", [pre + "gather/cp", pre + "gather/from_prev",
                                       pre + "gather/keep_or_zero" if 2 * fold < s else zero], [pre + "gather/prev_or_zero"]),
            helper.make_node("Where", [pre + "gather/cn", pre + "gather/from_next", pre + "gather/prev_or_zero"], [shifted]),
        ]
        if 2 * fold < s:
            new.append(helper.make_node("Where", [const(pre + "gather/keep_rows", keep[:1]), head, zero], [pre + "gather/keep_or_zero"]))
        outputs[shifted] = pre
    kept = [n for n in g.node if not (n.op_type == "Where" and n.output[0] in outputs)]
    # the new nodes read each other and the graph's: sort all in dependency order, then drop what nobody reads
    order = toposort(kept + new, {i.name for i in g.input} | {i.name for i in g.initializer})
    replace_nodes(g, order)
    drop_dead_nodes(g)
    return len(heads)


def row_gather(m, border="where", segments=8):
    """`border`: how the clip borders get their zeros: "where" (a Where on the gathered rows), "pad"
    or "concat" (a zero row appended to the rows), "frame" (a zero frame joined before the head)."""
    g = m.graph
    heads = stream_heads(g)
    if not heads:
        return 0
    shapes = inferred_dims(m)

    def const(name, a):
        return init(g, name, a)

    def zeros(name, dims):
        return helper.make_node("ConstantOfShape", [const(name + "_shape", np.array(dims, np.int64))], [name],
                                value=numpy_helper.from_array(np.zeros(1, np.float32), "value"))

    # Row 2*t + g of the [N*T*2, f, H, W] view is group g of frame t; its source row is 2*(t+1) for
    # group 0 and 2*(t-1)+1 for group 1, inside the clip. The tool's /tsm/frames/frame counts frames
    # from 0 and /tsm/frames/frame_index is that count mod T, so a table by frame_index gives each
    # frame's offsets and which of its two rows have a source.
    tt = np.arange(segments)
    valid = np.stack([tt < segments - 1, tt > 0], axis=1)
    off = np.where(valid, np.array([2, -2]), 0).astype(np.int64)
    P = "/tsm/rowgather/"
    new = [
        helper.make_node("Mul", ["/tsm/frames/frame", const(P + "two", np.array(2, np.int64))], [P + "t2"]),
        helper.make_node("Unsqueeze", [P + "t2", const(P + "ax1", np.array([1], np.int64))], [P + "t2c"]),
        helper.make_node("Add", [P + "t2c", const(P + "groups", np.array([[0, 1]], np.int64))], [P + "rows"]),
        helper.make_node("Gather", [const(P + "off_table", off), "/tsm/frames/frame_index"], [P + "off"], axis=0),
        helper.make_node("Gather", [const(P + "valid_table", valid), "/tsm/frames/frame_index"], [P + "valid"], axis=0),
        helper.make_node("Add", [P + "rows", P + "off"], [P + "src"]),
    ]
    flat = const(P + "flat", np.array([-1], np.int64))
    if border == "frame":
        # the zero frame goes first: every row of the head is two rows on, and rows 0 and 1 are zeros
        new += [
            helper.make_node("Add", [P + "src", const(P + "first", np.array(2, np.int64))], [P + "src_after"]),
            helper.make_node("Where", [P + "valid", P + "src_after", const(P + "zero_index", np.array(0, np.int64))], [P + "src_or_zero"]),
            helper.make_node("Reshape", [P + "src_or_zero", flat], [P + "index"]),
        ]
    elif border in ("pad", "concat"):
        # invalid rows read the zero row appended to each site's rows: row 2*N*T
        new += [
            helper.make_node("Shape", ["/tsm/frames/frame"], [P + "nt"]),
            helper.make_node("Mul", [P + "nt", P + "two"], [P + "nt2"]),
            helper.make_node("Squeeze", [P + "nt2"], [P + "nt2s"]),
            helper.make_node("Where", [P + "valid", P + "src", P + "nt2s"], [P + "src_or_zero"]),
            helper.make_node("Reshape", [P + "src_or_zero", flat], [P + "index"]),
        ]
    else:
        new += [
            helper.make_node("Reshape", [P + "src", flat], [P + "index"]),
            helper.make_node("Reshape", [P + "valid", const(P + "mask_shape", np.array([-1, 1, 1, 1], np.int64))], [P + "ok"]),
        ]
    for pre, head, fold, shifted in heads:
        q = pre + "rowgather/"
        _, _, hh, ww = shapes[head]
        rows_shape = const(q + "rows_shape", np.array([-1, fold, 0, 0], np.int64))
        if border == "frame":
            new += [zeros(q + "zero_frame", [1, 2 * fold, hh, ww]),
                    helper.make_node("Concat", [q + "zero_frame", head], [q + "head_z"], axis=0),
                    helper.make_node("Reshape", [q + "head_z", rows_shape], [q + "rows_z"])]
        else:
            new.append(helper.make_node("Reshape", [head, rows_shape], [q + "rows"]))
        if border == "concat":
            new += [zeros(q + "zero_row", [1, fold, hh, ww]),
                    helper.make_node("Concat", [q + "rows", q + "zero_row"], [q + "rows_z"], axis=0)]
        elif border == "pad":
            pads = const(q + "pads", np.array([0, 0, 0, 0, 1, 0, 0, 0], np.int64))
            new.append(helper.make_node("Pad", [q + "rows", pads], [q + "rows_z"]))
        if border == "where":
            new += [helper.make_node("Gather", [q + "rows", P + "index"], [q + "gathered"], axis=0),
                    helper.make_node("Where", [P + "ok", q + "gathered", pre + "zero"], [q + "moved"])]
        else:
            new.append(helper.make_node("Gather", [q + "rows_z", P + "index"], [q + "moved"], axis=0))
        new += [helper.make_node("Reshape", [q + "moved", const(q + "frames_shape", np.array([-1, 2 * fold, 0, 0], np.int64))], [q + "frames"]),
                # the empty slice of the head the default's Concat has: the batch symbol for onnxruntime
                helper.make_node("Concat", [q + "frames", pre + "batch_carrier"], [shifted], axis=1)]
    kept = [n for n in g.node if not (n.op_type == "Where" and n.output[0] in {h[3] for h in heads})]
    order = toposort(kept + new, {i.name for i in g.input} | {i.name for i in g.initializer})
    replace_nodes(g, order)
    drop_dead_nodes(g)
    return len(heads)


def flattened_sites(g):
    """The online sites in the batch form's flattened Concat: (prefix, x, buffer input, fold)."""
    by_name = {n.name: n for n in g.node}
    channels = {vi.name: vi.type.tensor_type.shape.dim[1].dim_value for vi in g.input}
    sites = []
    for n in g.node:
        if n.op_type == "Reshape" and n.name.endswith("/tsm/Reshape_x"):
            p = n.name[: -len("Reshape_x")]
            buffer_in = by_name[p + "Reshape_buffer"].input[0]
            sites.append((p, n.input[0], buffer_in, channels[buffer_in]))
    return sites


def apply_plan(g, plan, drop=()):
    """Each node named in `plan` replaced by the nodes it maps to, the nodes named in `drop` gone,
    and then every node no output needs any more (a flattened site's Reshape of x goes with its
    Slice and Concat, unless the buffer output is sliced from it too)."""
    replace_nodes(g, [r for n in g.node if n.name not in drop for r in plan.get(n.name, [n])])
    drop_dead_nodes(g)
    return len(plan)


def conv_sites(g):
    """The flattened sites whose shifted tensor one ungrouped Conv reads: (prefix, x, buffer input,
    fold, the Conv, its weights)."""
    inits = {i.name: i for i in g.initializer}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for p, x, buffer_in, fold in flattened_sites(g):
        reads = readers.get(p + "shifted", [])
        if len(reads) != 1 or reads[0].op_type != "Conv" or reads[0].input[0] != p + "shifted":
            continue
        conv = reads[0]
        if next((a.i for a in conv.attribute if a.name == "group"), 1) != 1:
            continue
        yield p, x, buffer_in, fold, conv, numpy_helper.to_array(inits[conv.input[1]])


def side_conv(m):
    g = m.graph
    plan = {}
    for p, x, buffer_in, fold, conv, w in list(conv_sites(g)):
        zeroed = w.copy()
        zeroed[:, :fold] = 0
        g.initializer.append(numpy_helper.from_array(zeroed, p + "side/w_zeroed"))
        g.initializer.append(numpy_helper.from_array(w[:, :fold].copy(), p + "side/w_buffer"))
        from_x = helper.make_node("Conv", [x, p + "side/w_zeroed"] + list(conv.input[2:]), [p + "side/from_x"],
                                  name=conv.name + "/from_x")
        from_buffer = helper.make_node("Conv", [buffer_in, p + "side/w_buffer"], [p + "side/from_buffer"],
                                       name=conv.name + "/from_buffer")
        for c in (from_x, from_buffer):
            c.attribute.extend(conv.attribute)
        add = helper.make_node("Add", [p + "side/from_x", p + "side/from_buffer"], [conv.output[0]], name=conv.name + "/sum")
        plan[conv.name] = [from_x, from_buffer, add]
    return apply_plan(g, plan)


def slice_consumer(m):
    g = m.graph
    plan, drop = {}, []
    for p, x, buffer_in, fold, conv, w in list(conv_sites(g)):
        g.initializer.append(numpy_helper.from_array(w[:, fold:].copy(), p + "sc/w_rest"))
        g.initializer.append(numpy_helper.from_array(w[:, :fold].copy(), p + "sc/w_buffer"))
        for k, v in (("s0", 0), ("sf", fold), ("sc", w.shape[1]), ("ax", 1)):
            int64_init(g, p + "sc/" + k, [v])
        rest = helper.make_node("Slice", [x, p + "sc/sf", p + "sc/sc", p + "sc/ax"], [p + "sc/rest"],
                                name=p + "sc/Slice_rest")
        head = helper.make_node("Slice", [x, p + "sc/s0", p + "sc/sf", p + "sc/ax"], [p + "buffer_out"],
                                name=p + "sc/Slice_head")
        a = helper.make_node("Conv", [p + "sc/rest", p + "sc/w_rest"] + list(conv.input[2:]), [p + "sc/from_rest"],
                             name=conv.name + "/from_rest")
        b = helper.make_node("Conv", [buffer_in, p + "sc/w_buffer"], [p + "sc/from_buffer"], name=conv.name + "/from_buffer")
        for c in (a, b):
            c.attribute.extend(conv.attribute)
        add = helper.make_node("Add", [p + "sc/from_rest", p + "sc/from_buffer"], [conv.output[0]], name=conv.name + "/sum")
        plan[conv.name] = [rest, head, a, b, add]
        drop.append(p + "Reshape_buffer_out")
    return apply_plan(g, plan, drop)


def channel_concat(m):
    g = m.graph
    shapes = inferred_dims(m)
    plan = {}
    for p, x, buffer_in, fold in flattened_sites(g):
        consts = [int64_init(g, p + "cc_" + k, v) for k, v in (("starts", [fold]), ("ends", [shapes[x][1]]), ("axes", [1]))]
        plan[p + "Reshape_frame"] = [
            helper.make_node("Slice", [x] + consts, [p + "cc_rest"], name=p + "cc_Slice_rest"),
            helper.make_node("Concat", [buffer_in, p + "cc_rest"], [p + "shifted"], name=p + "cc_Concat", axis=1),
        ]
    return apply_plan(g, plan)


def flat_buffer_out(m):
    g = m.graph
    by_output = {o: n for n in g.node for o in n.output}
    shapes = inferred_dims(m)
    drop, plan = set(), {}
    for p, x, _, fold in flattened_sites(g):
        sliced = by_output.get(p + "buffer_out")
        if sliced is None or sliced.op_type != "Slice" or sliced.input[0] != x:
            continue
        _, c, h, w = shapes[x]
        slice_inputs = [int64_init(g, p + "fb_" + k, v) for k, v in (("starts", [0]), ("ends", [fold * h * w]), ("axes", [1]))]
        shape = int64_init(g, p + "fb_shape", [0, fold, h, w])
        plan[p + "Reshape_x"] = [
            by_output[p + "x_flat"],
            helper.make_node("Slice", [p + "x_flat"] + slice_inputs, [p + "fb_flat"], name=p + "fb_Slice_buffer_out"),
            helper.make_node("Reshape", [p + "fb_flat", shape], [p + "buffer_out"], name=p + "fb_Reshape_buffer_out"),
        ]
        drop.add(sliced.name)
    return apply_plan(g, plan, drop)

def flat_head(m):
    g = m.graph
    by_name = {n.name: n for n in g.node}
    shapes = inferred_dims(m)
    channels = {vi.name: vi.type.tensor_type.shape.dim[1].dim_value for vi in g.input}
    drop, plan = set(), {}
    for n in g.node:
        if n.op_type != "Concat" or not n.name.endswith("/tsm/Concat") or (n.name[: -len("Concat")] + "Slice_stay") not in by_name:
            continue
        p = n.name[: -len("Concat")]
        head = by_name[p + "Slice_stay"].input[0]
        buffer_in = n.input[0]
        fold = channels[buffer_in]
        _, s, h, w = shapes[head]

        def const(k, v):
            return int64_init(g, p + "fh_" + k, v)
        flat, axes = const("flat", [0, -1]), const("axes", [1])
        plan[n.name] = [
            helper.make_node("Reshape", [head, flat], [p + "fh_head_flat"], name=p + "fh_Reshape_head"),
            helper.make_node("Slice", [p + "fh_head_flat", const("b_s", [0]), const("b_e", [fold * h * w]), axes],
                             [p + "fh_buffer_flat_out"], name=p + "fh_Slice_buffer_out"),
            helper.make_node("Reshape", [p + "fh_buffer_flat_out", const("b_shape", [0, fold, h, w])], [p + "buffer_out"],
                             name=p + "fh_Reshape_buffer_out"),
            helper.make_node("Slice", [p + "fh_head_flat", const("s_s", [fold * h * w]), const("s_e", [s * h * w]), axes],
                             [p + "fh_stay"], name=p + "fh_Slice_stay"),
            helper.make_node("Reshape", [buffer_in, flat], [p + "fh_buffer_in_flat"], name=p + "fh_Reshape_buffer_in"),
            helper.make_node("Concat", [p + "fh_buffer_in_flat", p + "fh_stay"], [p + "fh_shifted_flat"],
                             name=p + "fh_Concat", axis=1),
            helper.make_node("Reshape", [p + "fh_shifted_flat", const("shape", [0, s, h, w])], [n.output[0]],
                             name=p + "fh_Reshape_shifted"),
        ]
        drop |= {p + "Slice_buffer_out", p + "Slice_stay"}
    return apply_plan(g, plan, drop)


def stem_split(m, block=None):
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    by_output = {o: n for n in g.node for o in n.output}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    arr = lambda name: numpy_helper.to_array(inits[name])
    plan, drop = {}, set()
    for p, x, buffer_in, fold in flattened_sites(g):
        mp = by_output.get(x)
        relu = mp and by_output.get(mp.input[0])
        stem = relu and by_output.get(relu.input[0])
        reads = readers.get(p + "shifted", [])
        if not (mp and mp.op_type == "MaxPool" and relu.op_type == "Relu" and stem.op_type == "Conv"
                and len(stem.input) == 3 and len(reads) == 1 and reads[0].op_type == "Conv"):
            continue
        conv, w, b = reads[0], arr(stem.input[1]), arr(stem.input[2])
        c = w.shape[0]
        s = fold if block is None else (fold + block - 1) // block * block
        def init(name, a):
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(a), p + "ss/" + name))
            return p + "ss/" + name
        def node(op, ins, out, name, like=None, **kw):
            n = helper.make_node(op, ins, [out], name=p + "ss/" + name, **kw)
            if like is not None:
                n.attribute.extend(like.attribute)
            return n
        new = []
        for part, rows in (("a", slice(0, s)), ("b", slice(s, c))):
            new += [node("Conv", [stem.input[0], init("w_" + part, w[rows]), init("b_" + part, b[rows])], p + "ss/stem_" + part, "Conv_" + part, stem),
                    node("Relu", [p + "ss/stem_" + part], p + "ss/relu_" + part, "Relu_" + part),
                    node("MaxPool", [p + "ss/relu_" + part], p + "ss/x_" + part, "MaxPool_" + part, mp)]
        new.append(node("Concat", [p + "ss/x_a", p + "ss/x_b"], x, "Concat_x", axis=1))
        if s == fold:
            new.append(node("Identity", [p + "ss/x_a"], p + "buffer_out", "buffer_out"))
            head = buffer_in
        else:
            axes = int64_init(g, p + "ss/axes", [1])
            bounds = [int64_init(g, p + "ss/at_" + str(v), [v]) for v in (0, fold, s)]
            new += [node("Slice", [p + "ss/x_a", bounds[0], bounds[1], axes], p + "buffer_out", "Slice_buffer_out"),
                    node("Slice", [p + "ss/x_a", bounds[1], bounds[2], axes], p + "ss/stay", "Slice_stay"),
                    node("Concat", [buffer_in, p + "ss/stay"], p + "ss/head", "Concat_head", axis=1)]
            head = p + "ss/head"
        cw = arr(conv.input[1])
        new += [node("Conv", [head, init("consumer_head", cw[:, :s])], p + "ss/from_shifted", "from_shifted", conv),
                node("Conv", [p + "ss/x_b", init("consumer_tail", cw[:, s:])] + list(conv.input[2:]), p + "ss/from_tail", "from_tail", conv),
                node("Add", [p + "ss/from_tail", p + "ss/from_shifted"], conv.output[0], "sum")]
        plan[stem.name] = new
        drop |= {relu.name, mp.name, conv.name, by_output[p + "buffer_out"].name}
    n = apply_plan(g, plan, drop)
    order = toposort(list(g.node), {i.name for i in g.input} | {i.name for i in g.initializer})
    replace_nodes(g, order)
    return n


def group_heads(m):
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    arr = lambda name: numpy_helper.to_array(inits[name])
    sites = {pre: (head, fold) for pre, head, fold, _ in stream_heads(g)}
    if not sites:
        return 0
    by_name = {n.name: n for n in g.node}
    parts = {}  # head-valued tensor -> (part A, part B, channels of A)
    out = []

    def init(name, a):
        if name not in inits:
            t = numpy_helper.from_array(np.ascontiguousarray(a), name)
            g.initializer.append(t)
            inits[name] = t
        return name

    def conv(x, w, b, y, like, tag):
        n = helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=like.name + tag)
        n.attribute.extend(like.attribute)
        return n

    def folded(x, w_name, wa, b, y, like, tag):
        """Conv(x, W) for x head-valued: a partial product per part, summed."""
        xa, xb, fa = parts[x]
        ca = conv(xa, init(w_name + "/ga", wa[:, :fa]), b, y + "/ga", like, tag + "/ga")
        cb = conv(xb, init(w_name + "/gb", wa[:, fa:]), None, y + "/gb", like, tag + "/gb")
        return [ca, cb, helper.make_node("Add", [y + "/ga", y + "/gb"], [y], name=like.name + tag + "/gsum")]

    for n in g.node:
        pre = n.name.rsplit("/", 1)[0] + "/"
        if n.op_type == "Conv" and "/rows_0_" in n.input[1]:
            # a convolution writing head channels: split by output rows (and by input parts)
            w = arr(n.input[1])
            b = arr(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            f = w.shape[0] // 2
            y = n.output[0]
            made = []
            for tag, rows in (("/A", slice(0, f)), ("/B", slice(f, 2 * f))):
                bn = init(n.input[2] + tag, b[rows]) if b is not None else None
                if n.input[0] in parts:
                    made += folded(n.input[0], n.input[1] + tag, w[rows], bn, y + tag, n, tag)
                else:
                    made.append(conv(n.input[0], init(n.input[1] + tag, w[rows]), bn, y + tag, n, tag))
            parts[y] = (y + "/A", y + "/B", f)
            out += made
        elif n.op_type == "Conv" and n.input[0] in parts:
            # a convolution reading a head (the downsample's tail from the head): folded by parts
            w = arr(n.input[1])
            b = n.input[2] if len(n.input) > 2 and n.input[2] else None
            out += folded(n.input[0], n.input[1], w, b, n.output[0], n, "")
        elif n.op_type in ("Add", "Relu") and any(i in parts for i in n.input):
            assert all(i in parts for i in n.input), n.name
            y = n.output[0]
            for k in (0, 1):
                out.append(helper.make_node(n.op_type, [parts[i][k] for i in n.input], [y + ("/A", "/B")[k]],
                                            name=n.name + ("/A", "/B")[k]))
            parts[y] = (y + "/A", y + "/B", parts[n.input[0]][2])
        elif n.op_type == "Concat" and n.name.endswith("/join"):
            h = n.input[0]
            out.append(helper.make_node("Concat", [parts[h][0], parts[h][1]] + list(n.input[1:]), list(n.output),
                                        name=n.name, axis=1))
        elif n.name.endswith("/tsm/Slice_next") and pre in sites:
            head, fold = sites[pre]
            ha, hb, fa = parts[head]
            assert fa == fold, (n.name, fa, fold)
            big = 1 << 62
            ks = {k: int64_init(g, pre + "g_" + k, v) for k, v in dict(
                s1=[1], big=[big], s0=[0], m1=[-1], ax0=[0], ax1=[1], c0=[0],
                kc_s=[0, 0, 0], kc_e=[0, 1, 1], kc_ax=[1, 2, 3],
                pad_next=[0, 0, 0, 0, 1, 0, 0, 0], pad_prev=[1, 0, 0, 0, 0, 0, 0, 0]).items()}
            for grp, x, s, e, pads, mask in (("A", ha, "s1", "big", "pad_next", "/tsm/frames/gmaskA"),
                                            ("B", hb, "s0", "m1", "pad_prev", "/tsm/frames/gmaskB")):
                q = pre + "g" + grp + "_"
                out += [
                    helper.make_node("Slice", [x, ks["c0"], ks["c0"], ks["ax1"]], [q + "carrier"], name=q + "Slice_carrier"),
                    helper.make_node("Slice", [x, ks[s], ks[e], ks["ax0"]], [q + "moved"], name=q + "Slice"),
                    helper.make_node("Pad", [q + "moved", ks[pads]], [q + "padded"], name=q + "Pad"),
                    helper.make_node("Concat", [q + "carrier", q + "padded"], [q + "joined"], name=q + "Concat", axis=1),
                    helper.make_node("Slice", [x, ks["kc_s"], ks["kc_e"], ks["kc_ax"]], [q + "kc"], name=q + "Slice_kc"),
                    helper.make_node("Cast", [q + "kc"], [q + "kcb"], name=q + "Cast_kc", to=onnx.TensorProto.BOOL),
                    helper.make_node("Concat", [q + "kcb", mask], [q + "keep"], name=q + "Concat_keep", axis=1),
                    helper.make_node("Where", [q + "keep", q + "joined", pre + "zero"], [q + "shifted"], name=q + "Where"),
                ]
        elif n.name.endswith("/from_shifted") and n.input[0].endswith("/tsm/shifted"):
            p2 = n.input[0][: -len("shifted")]
            w = arr(n.input[1])
            f = w.shape[1] // 2
            y = n.output[0]
            out += [conv(p2 + "gA_shifted", init(n.input[1] + "/A", w[:, :f]), None, y + "/ga", n, "/ga"),
                    conv(p2 + "gB_shifted", init(n.input[1] + "/B", w[:, f:]), None, y + "/gb", n, "/gb"),
                    helper.make_node("Add", [y + "/ga", y + "/gb"], [y], name=n.name + "/gsum")]
        elif pre in sites:
            continue  # the site's joined-head nodes, replaced above
        else:
            out.append(n)
    # per-group frame masks: gathered from the first mask's rows, the groups' first channels
    rows = arr("/tsm/frames/mask0_rows")
    f0 = rows.shape[1] // 2
    first = by_name["/tsm/frames/mask0/Gather"]
    for grp, ch in (("A", 0), ("B", f0)):
        init("/tsm/frames/gmask" + grp + "_rows", rows[:, ch:ch + 1])
        out.insert(out.index(first) + 1, helper.make_node("Gather", ["/tsm/frames/gmask" + grp + "_rows", first.input[1]],
                                                          ["/tsm/frames/gmask" + grp], name="/tsm/frames/gmask" + grp + "/Gather"))
    replace_nodes(g, toposort(out, [i.name for i in g.input] + [i.name for i in g.initializer]))
    drop_dead_nodes(g)
    return len(sites)



def nhwc_rows(m, kind="frame"):
    """The rows form's movement on a channels-last view of the head: each pixel's `2f` channels as
    `k` rows of `fold`, moved by one Gather on a per-resolution index built from the tool's own
    /tsm/frames/rows0. `kind`: "frame" keeps the tool's zero frame (a Concat on the batch axis)
    and batch carrier, the Transposes around the view (what OpenVINO merges with its reorders);
    "carrier" the same with the batch carried by an empty channels-last tensor joined before the
    Transpose back (onnxruntime then folds that Transpose into its ReorderInput); "where" no zero
    frame, the Transpose straight after the head and a Where on the clip borders (onnxruntime folds
    both Transposes into its reorders)."""
    g = m.graph
    dims = inferred_dims(m)
    inits = {t.name: t for t in g.initializer}
    by = {n.name: n for n in g.node}

    def const(name, a):
        if name not in inits:
            init(g, name, a)
            inits[name] = g.initializer[-1]
        return name

    P = "/tsm/nhwc/"
    out, drop, index, carriers, changed = [], set(), {}, {}, 0

    def index_for(rows, hw, k):
        # rows0 holds each (frame, group) row's source row s*k + j in the zero-framed head (s = 0
        # the zero frame); the channels-last rows of pixel p are (s*hw + p)*k + j.
        key = (rows, hw, k)
        if key in index:
            return index[key]
        q = f"{P}{hw}_{k}/"
        src = q + "S"
        out.append(helper.make_node("Reshape", [rows, const(q + "rk", np.array([-1, 1, k], np.int64))], [q + "R"], name=q + "Reshape_R"))
        out.append(helper.make_node("Div", [q + "R", const(q + "K", np.array(k, np.int64))], [q + "S1"], name=q + "Div"))
        if kind == "where":
            # no zero frame: frame s - 1, the borders (s = 0) read frame 0 and are masked after
            out.extend([
                helper.make_node("Sub", [q + "S1", const(q + "one", np.array(1, np.int64))], [q + "S0"], name=q + "Sub"),
                helper.make_node("Max", [q + "S0", const(q + "zero", np.array(0, np.int64))], [src], name=q + "Max"),
                helper.make_node("Greater", [rows, const(q + "zero", np.array(0, np.int64))], [q + "valid_flat"], name=q + "Greater"),
                helper.make_node("Reshape", [q + "valid_flat", const(q + "mask_shape", np.array([-1, 1, k, 1], np.int64))], [q + "valid"], name=q + "Reshape_valid"),
            ])
        else:
            src = q + "S1"
        out.extend([
            helper.make_node("Mul", [src, const(q + "HWK", np.array(hw * k, np.int64))], [q + "base0"], name=q + "Mul"),
            helper.make_node("Add", [q + "base0", const(q + "J", np.arange(k, dtype=np.int64).reshape(1, 1, k))], [q + "base"], name=q + "Add_j"),
            helper.make_node("Add", [q + "base", const(q + "P", (np.arange(hw, dtype=np.int64) * k).reshape(1, hw, 1))], [q + "idx3"], name=q + "Add_p"),
            helper.make_node("Reshape", [q + "idx3", const(q + "flat", np.array([-1], np.int64))], [q + "index"], name=q + "Reshape_index"),
        ])
        index[key] = q + "index"
        return index[key]

    def carrier(hh, ww):
        # an empty [N*T, H, W, 0] tensor that carries the batch symbol from the tool's frame counter
        if (hh, ww) not in carriers:
            if not carriers:
                out.append(helper.make_node("Slice", ["/tsm/frames/input_ones", const(P + "c0", np.array([0], np.int64)),
                                                      const(P + "c0", np.array([0], np.int64)), const(P + "c3", np.array([3], np.int64))],
                                            [P + "empty"], name=P + "Slice_empty"))
            q = f"{P}carrier_{hh}x{ww}/"
            out.append(helper.make_node("Expand", [P + "empty", const(q + "shape", np.array([1, hh, ww, 0], np.int64))], [q + "carrier"], name=q + "Expand"))
            carriers[(hh, ww)] = q + "carrier"
        return carriers[(hh, ww)]

    for n in g.node:
        if not (n.op_type == "Reshape" and n.name.endswith("/tsm/Reshape_rows")):
            out.append(n)
            continue
        pre = n.name[: -len("Reshape_rows")]
        with_zero, gather, joined = n.input[0], by[pre + "Gather_rows"], by[pre + "Concat"]
        head = by[pre + "Concat_zero_frame"].input[1]
        _, c2, hh, ww = dims[with_zero]
        fold = int(numpy_helper.to_array(inits[n.input[1]])[1])
        k, hw = c2 // fold, hh * ww
        idx = index_for(gather.input[1], hw, k)
        t = pre + "nhwc/"
        rows = [helper.make_node("Reshape", [t + "view", const(t + "rows_shape", np.array([-1, fold], np.int64))], [t + "rows"], name=t + "Reshape_rows"),
                helper.make_node("Gather", [t + "rows", idx], [t + "moved"], axis=0, name=t + "Gather_rows")]
        frames = const(t + "frames_shape", np.array([-1, hh, ww, c2], np.int64))
        drop.update([pre + "Gather_rows", pre + "Reshape_frames"])
        if kind == "frame":
            out += [helper.make_node("Transpose", [with_zero], [t + "view"], perm=[0, 2, 3, 1], name=t + "Transpose_in"), *rows,
                    helper.make_node("Reshape", [t + "moved", frames], [t + "frames"], name=t + "Reshape_frames"),
                    helper.make_node("Transpose", [t + "frames"], [by[pre + "Reshape_frames"].output[0]], perm=[0, 3, 1, 2], name=t + "Transpose_out")]
        else:
            if kind == "carrier":
                out.append(helper.make_node("Transpose", [with_zero], [t + "view"], perm=[0, 2, 3, 1], name=t + "Transpose_in"))
                out += rows
                out.append(helper.make_node("Reshape", [t + "moved", frames], [t + "frames"], name=t + "Reshape_frames"))
            else:
                out.append(helper.make_node("Transpose", [head], [t + "view"], perm=[0, 2, 3, 1], name=t + "Transpose_in"))
                out += rows
                out += [helper.make_node("Reshape", [t + "moved", const(t + "groups_shape", np.array([-1, hw, k, fold], np.int64))], [t + "groups"], name=t + "Reshape_groups"),
                        helper.make_node("Where", [f"{P}{hw}_{k}/valid", t + "groups", const(P + "fzero", np.array(0, np.float32))], [t + "masked"], name=t + "Where_borders"),
                        helper.make_node("Reshape", [t + "masked", frames], [t + "frames"], name=t + "Reshape_frames")]
                drop.update([pre + "Concat_zero_frame", pre + "ConstantOfShape_zero_frame"])
            out += [helper.make_node("Concat", [carrier(hh, ww), t + "frames"], [t + "carried"], axis=3, name=t + "Concat_carrier"),
                    helper.make_node("Transpose", [t + "carried"], [joined.output[0]], perm=[0, 3, 1, 2], name=t + "Transpose_out")]
            drop.update([pre + "Slice_batch_carrier", pre + "Concat"])
        changed += 1
    known = [i.name for i in g.input] + list(inits)
    replace_nodes(g, toposort([n for n in out if n.name not in drop], known))
    drop_unread_initializers(g)
    return changed


def frames_groups(g):
    """Each depthwise convolution `--shift-form tract` runs on the frames: (prefix, nodes by role)."""
    by = {n.name: n for n in g.node}
    groups = []
    for n in g.node:
        if n.op_type == "Conv" and n.name.endswith("/volume/frames"):
            pre = n.name[: -len("frames")]
            roles = {r: by[pre + r] for r in ("planes", "pad", "to_frames", "from_frames", "volume")}
            groups.append((pre, dict(roles, conv=n)))
    return groups


def dw_frames(m, how):
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    groups = frames_groups(g)
    done = {n.name for _, roles in groups for n in roles.values()}
    last = {roles["volume"].name: roles for _, roles in groups}
    out = []
    for n in g.node:
        if n.name in last:
            out += dw_frames_nodes(g, inits, last[n.name], how)
        elif n.name not in done:
            out.append(n)
    replace_nodes(g, out)
    drop_unread_initializers(g)
    return len(groups)


def dw_frames_nodes(g, inits, r, how):
    """One group's replacement, put where its last node was."""
    conv = r["conv"]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    hb, wb, he, we = [int(v) for v in inits[r["pad"].input[1]][[2, 3, 6, 7]]]
    x, y = r["planes"].input[0], r["volume"].output[0]
    w, bias = conv.input[1], conv.input[2:]
    rest = {k: v for k, v in attrs.items() if k in ("dilations",)}
    if how == "no-pad":
        t0 = helper.make_node("Transpose", [r["planes"].output[0]], list(r["to_frames"].output),
                              name=r["to_frames"].name, perm=[1, 0, 2, 3])
        c = helper.make_node("Conv", [t0.output[0], w] + bias, list(conv.output), name=conv.name,
                             pads=[hb, wb, he, we], **{k: v for k, v in attrs.items() if k != "pads"})
        return [r["planes"], t0, c, r["from_frames"], r["volume"]]
    pads5 = [0, hb, wb, 0, he, we]
    if how == "volume":
        w5 = init(g, w + "/dw_volume", inits[w][:, :, None])
        kh, kw = attrs["kernel_shape"]
        d = attrs.get("dilations", [1, 1])
        return [helper.make_node("Conv", [x, w5] + bias, [y], name=conv.name[: -len("frames")] + "dw3d",
                                 group=attrs["group"], kernel_shape=[1, kh, kw], pads=pads5,
                                 strides=[1, 1, 1], dilations=[1] + list(d))]
    frames = 16
    c, _, h, wd = [int(v) for v in inits[r["planes"].input[1]]]
    _, _, _, ho, wo = [int(v) for v in inits[r["volume"].input[1]]]
    pre = conv.name[: -len("frames")]
    flat = int64_init(g, pre + "groups_in_shape", [1, c * frames, h, wd])
    back = int64_init(g, pre + "groups_out_shape", [1, c, frames, ho, wo])
    wr = init(g, w + "/repeated", np.repeat(inits[w], frames, axis=0))
    br = [init(g, b + "/repeated", np.repeat(inits[b], frames, axis=0)) for b in bias]
    return [helper.make_node("Reshape", [x, flat], [pre + "groups_in"], name=pre + "groups_in"),
            helper.make_node("Conv", [pre + "groups_in", wr] + br, [pre + "groups_out"], name=pre + "groups",
                             group=c * frames, kernel_shape=attrs["kernel_shape"], pads=[hb, wb, he, we], **rest),
            helper.make_node("Reshape", [pre + "groups_out", back], [y], name=pre + "groups_back")]



def unfused_adds(m):
    """See the module doc: each residual join's non-convolution operand through a channel round trip."""
    g = m.graph
    dims = inferred_dims(m)
    for v in list(g.input) + list(g.output):
        dims.setdefault(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim])
    conv_out = {o for n in g.node if n.op_type == "Conv" for o in n.output}
    out, k = [], 0
    for n in g.node:
        a, b = (list(n.input) + ["", ""])[:2]
        da, db = dims.get(a), dims.get(b)
        if n.op_type == "Add" and da and da == db and len(da) == 4 and da[1] > 1 and (a in conv_out or b in conv_out):
            slot = 1 if a in conv_out else 0
            c = da[1]
            s = 16 if c > 16 else 1
            sizes = int64_init(g, f"{n.name}/unfused/sizes", [s, c - s])
            head, tail, joined = (f"{n.name}/unfused/{w}" for w in ("head", "tail", "joined"))
            out.append(helper.make_node("Split", [n.input[slot], sizes], [head, tail], axis=1,
                                        name=f"{n.name}/unfused/Split"))
            out.append(helper.make_node("Concat", [head, tail], [joined], axis=1, name=f"{n.name}/unfused/Concat"))
            n.input[slot] = joined
            k += 1
        out.append(n)
    replace_nodes(g, out)
    return k

VARIANTS = {"nhwc-buffers": nhwc_buffers, "swap-slice-axes": swap_slice_axes, "clip-carrier": clip_carrier,
            "head-clip": head_clip, "pack-buffers": pack_buffers,
            "pack-nhwc-buffers": lambda m: nhwc_buffers(m) and pack_buffers(m), "mul-mask": mul_mask,
            "zero-frames": zero_frames, "joined-consumer": joined_consumer, "joined-clip": joined_clip,
            "scatter-online": scatter_online, "no-shift": no_shift, "gather-head": gather_head,
            "side-conv": side_conv, "slice-consumer": slice_consumer, "channel-concat": channel_concat,
            "flat-buffer-out": flat_buffer_out, "flat-head": flat_head, "stem-split": stem_split,
            "stem-split16": lambda m: stem_split(m, 16), "group-heads": group_heads,
            "row-gather": row_gather, "row-gather-zero": lambda m: row_gather(m, "pad"),
            "row-gather-concat": lambda m: row_gather(m, "concat"), "row-gather-frame": lambda m: row_gather(m, "frame"),
            "nhwc-rows": nhwc_rows, "nhwc-rows-carrier": lambda m: nhwc_rows(m, "carrier"),
            "nhwc-rows-where": lambda m: nhwc_rows(m, "where"),
            "dw-volume": lambda m: dw_frames(m, "volume"), "dw-no-pad": lambda m: dw_frames(m, "no-pad"),
            "dw-groups": lambda m: dw_frames(m, "groups"), "unfused-adds": unfused_adds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args()
    m = onnx.load(args.input)
    n = VARIANTS[args.variant](m)
    if n == 0:
        # Most variants rewrite the head's Slices, Pads and Where of the tool's output before stop 43
        # (git checkout adcbbc7 builds it); on another graph they find nothing to change.
        raise SystemExit(f"{args.variant}: no site of the form it rewrites in {args.input}; nothing written")
    onnx.checker.check_model(m)
    onnx.save(m, args.output)
    print(f"{args.variant}: {n} changed, wrote {args.output}")


if __name__ == "__main__":
    main()
