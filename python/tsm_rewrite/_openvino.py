"""Streaming an ``--online`` model in OpenVINO with its buffers as OpenVINO states.

Fed as inputs and outputs, every buffer crosses the runtime's boundary each frame: in f32 and in
NCHW, whatever precision and layout OpenVINO computes in. On a CPU where OpenVINO runs bf16 (AVX512-
BF16, AMX) that costs ResNet-50 about 5-10% per frame (bench/openvino_online_modes.py). As
states (``ReadValue``/``Assign``, OpenVINO's MakeStateful pass), the buffers stay inside: the
request takes only the frame, and ``reset_state()`` starts a new video with zeroed buffers."""

import json

from ._stream import BUFFERS_KEY


def openvino_stateful(model, streams=1, core=None):
    """The ``--online`` model ``model`` (a path, or an ``openvino.Model`` read from one) as an
    ``openvino.Model`` whose shift buffers are states, with ``streams`` streams as its batch.

    The buffer pairs come from the model's ``tsm-rewrite.buffers`` metadata. The batch is fixed
    because a state starts as zeros of its own shape."""
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
    return model
