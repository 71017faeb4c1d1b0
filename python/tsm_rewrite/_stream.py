"""Streaming an ``--online`` model in onnxruntime: the buffers are allocated from the model's
``tsm-rewrite.buffers`` metadata, bound as onnxruntime values and fed back by swapping two sets of
them each frame (I/O binding: Python copies no buffer)."""

import json

import numpy as np

BUFFERS_KEY = "tsm-rewrite.buffers"
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class Stream:
    """``streams`` independent streams through the online model at ``path``, as one batch.

    ``step(frame)`` takes the frame input (``[streams, C, H, W]``; a single ``[C, H, W]`` frame is
    taken as one stream) and returns the model's own outputs as ``{name: numpy array}``;
    ``reset()`` zeroes the buffers (a new video). ``providers`` and ``sess_options`` go to
    ``onnxruntime.InferenceSession``."""

    def __init__(self, path, providers=None, streams=1, sess_options=None):
        import onnxruntime as ort
        self._ort = ort
        self.session = ort.InferenceSession(
            str(path), sess_options, providers=providers or ["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if BUFFERS_KEY not in meta:
            raise ValueError(f"{path} has no '{BUFFERS_KEY}' metadata: it was not written by "
                             "tsm-rewrite --online")
        self.buffers = json.loads(meta[BUFFERS_KEY])
        self.streams = streams
        buffer_inputs = {b["input"] for b in self.buffers}
        buffer_outputs = {b["output"] for b in self.buffers}
        inputs = {i.name: i for i in self.session.get_inputs()}
        data = [n for n in inputs if n not in buffer_inputs]
        if len(data) != 1:
            raise ValueError(f"{path}: expected one frame input besides the buffers, found {data}")
        self.input = data[0]
        self.outputs = [o.name for o in self.session.get_outputs() if o.name not in buffer_outputs]
        for b in self.buffers:
            fixed = b["shape"][0]
            if isinstance(fixed, int) and fixed != streams:
                raise ValueError(f"{path} has a fixed batch of {fixed} streams, not {streams}")
        self._dtype = {b["input"]: _DTYPES.get(inputs[b["input"]].type, np.float32) for b in self.buffers}
        self._state = [self._zeros(), self._zeros()]
        self._io = self.session.io_binding()

    def _shape(self, b):
        return [self.streams if not isinstance(d, int) else d for d in b["shape"]]

    def _zeros(self):
        return {b["input"]: self._ort.OrtValue.ortvalue_from_numpy(np.zeros(self._shape(b), self._dtype[b["input"]]))
                for b in self.buffers}

    def reset(self):
        """Zeroes the buffers, as before a video's first frame."""
        for state in self._state:
            for b in self.buffers:
                state[b["input"]].update_inplace(np.zeros(self._shape(b), self._dtype[b["input"]]))

    def step(self, frame):
        """Runs one frame; returns ``{output name: array}`` for the model's own outputs."""
        frame = np.asarray(frame)
        if frame.ndim == 3:
            frame = frame[None]
        current, following = self._state
        io = self._io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        io.bind_cpu_input(self.input, np.ascontiguousarray(frame))
        for b in self.buffers:
            io.bind_ortvalue_input(b["input"], current[b["input"]])
            io.bind_ortvalue_output(b["output"], following[b["input"]])
        for name in self.outputs:
            io.bind_output(name)
        self.session.run_with_iobinding(io)
        self._state = [following, current]
        values = io.get_outputs()
        # get_outputs follows the binding order: the buffers first, then the model's outputs.
        return {name: values[len(self.buffers) + k].numpy() for k, name in enumerate(self.outputs)}
