"""Streaming an ``--online`` model in OpenVINO with its buffers as OpenVINO states.

Fed as inputs and outputs, every buffer crosses the runtime's boundary each frame: in f32 and in
NCHW, whatever precision and layout OpenVINO computes in. On a CPU where OpenVINO runs bf16 (AVX512-
BF16, AMX) that costs ResNet-50 about 5-10% per frame (bench/openvino_online_modes.py). As
states (``ReadValue``/``Assign``, OpenVINO's MakeStateful pass), the buffers stay inside: the
request takes only the frame, and ``reset_state()`` starts a new video with zeroed buffers."""

import json

from ._stream import BUFFERS_KEY

# Unary nodes OpenVINO's CPU plugin fuses into the convolution that an in-place sum ends in.
_ACTIVATIONS = {"Relu", "Clamp", "Sigmoid", "Tanh", "Swish", "HSwish", "HSigmoid", "Gelu", "Elu"}


def openvino_stateful(model, streams=1, core=None, copy_in_place_sums=True):
    """The ``--online`` model ``model`` (a path, or an ``openvino.Model`` read from one) as an
    ``openvino.Model`` whose shift buffers are states, with ``streams`` streams as its batch.

    The buffer pairs come from the model's ``tsm-rewrite.buffers`` metadata. The batch is fixed
    because a state starts as zeros of its own shape. Where a buffer is a sum that OpenVINO
    writes in place, it is copied first (``_copy_in_place_sums``; ``copy_in_place_sums=False``
    leaves it out): the same values, bit for bit, and cheaper than the copy OpenVINO makes."""
    import openvino as ov
    from openvino.passes import MakeStateful, Manager

    if not isinstance(model, ov.Model):
        model = (core or ov.Core()).read_model(str(model))
    key = ["framework", BUFFERS_KEY]
    if not model.has_rt_info(key):
        raise ValueError(f"the model has no '{BUFFERS_KEY}' metadata: it was not written by tsm-rewrite --online")
    buffers = json.loads(model.get_rt_info(key).astype(str))
    model.reshape({p.get_any_name(): [streams] + list(p.get_partial_shape())[1:] for p in model.inputs})
    pairs = [(model.input(b["input"]).get_node(), model.output(b["output"]).get_node()) for b in buffers]
    passes = Manager()
    passes.register_pass(MakeStateful(pairs))
    passes.run_passes(model)
    if copy_in_place_sums:
        _copy_in_place_sums(model)
    return model


def _copy_in_place_sums(model):
    """Put an exact copy, ``Maximum(x, x)``, between each state's ``Assign`` and a buffer that is a
    residual sum whose terms no state or output reads (``Relu(Add(a, b))``: on a stream-form
    ResNet, the buffers after each stage's first block). OpenVINO's CPU plugin fuses such an Add
    into the convolution before it, which then writes into ``b``'s memory; the ``Assign`` cannot
    share that memory and copies it every frame, with a reorder (0.07-0.44 ms each on ResNet-50 at
    224, about 2% of a frame in f32), where the copy's own kernel takes 0.025 ms and the
    ``Assign`` then writes nothing (bench/openvino_assign_copies.py). A buffer whose sum reads
    another buffer, as in every other block, is not fused and needs no copy; where a guess is
    wrong, the copy costs its kernel, never a value. Returns the number of copies."""
    import openvino.opset13 as ops

    def feeds_a_sink(output):
        return any(t.get_node().get_type_name() in ("Assign", "Result") for t in output.get_target_inputs())

    # Decide for every buffer before changing any: a copy would hide the Assign it feeds.
    fused = []
    for assign in [op for op in model.get_ordered_ops() if op.get_type_name() == "Assign"]:
        node = assign.input_value(0).get_node()
        while node.get_type_name() in _ACTIVATIONS:
            node = node.input_value(0).get_node()
        if node.get_type_name() != "Add":
            continue
        terms = [node.input_value(i) for i in range(2)]
        if not any(t.get_node().get_type_name() == "Constant" or feeds_a_sink(t) for t in terms):
            fused.append((assign, node))
    for assign, add in fused:
        buffer = assign.input_value(0)
        copy = ops.maximum(buffer, buffer)
        copy.set_friendly_name(f"{add.get_friendly_name()}/copy_for_state")
        assign.input(0).replace_source_output(copy.output(0))
    if fused:
        model.validate_nodes_and_infer_types()
    return len(fused)
