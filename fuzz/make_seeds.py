#!/usr/bin/env python3
"""Seeds for the fuzz targets: each fixture model with its float and int8 weights emptied (the
pipeline reads their dims, never their values) and integer constants kept, so the seeds are a few
KiB (up to 90 for a quantized model's per-channel constants) and carry every block structure the
fixtures cover.   python fuzz/make_seeds.py"""
import glob, os
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(HERE, "seeds")
os.makedirs(out, exist_ok=True)
for path in sorted(glob.glob(os.path.join(HERE, "..", "fixtures", "models", "*.onnx"))):
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        floats = t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
        # A quantized model's int8 weights too; its zero points (one, or one per channel) stay.
        weights = t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) > 1
        if floats or weights:
            t.ClearField("raw_data")
            del t.float_data[:]
            del t.int32_data[:]
    name = os.path.basename(path).replace(".onnx", ".seed.onnx")
    with open(os.path.join(out, name), "wb") as f:
        f.write(m.SerializeToString())
    print(name, os.path.getsize(os.path.join(out, name)))
