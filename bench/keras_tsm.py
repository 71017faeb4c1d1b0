#!/usr/bin/env python3
# Run with a venv holding tensorflow-cpu, tf2onnx and onnxruntime (not the fixtures venv):
#   python bench/keras_tsm.py ResNet50 64     (ResNet50, ResNet50V2, MobileNetV2)
# Models and outputs go to /tmp/keras. Results: bench/RESULTS-exporters.md.
"""Keras TSM reference: the Keras application rebuilt layer by layer with a shift layer wrapped
around the first layer of each residual branch, run in TensorFlow; compared with the tsm-rewrite
output of the tf2onnx export, run in onnxruntime."""
import os, sys, re, subprocess
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf2onnx, onnxruntime as ort
T, FD = 8, 8

class Shift(tf.keras.layers.Layer):
    """NHWC [N*T, H, W, C]: channels [0,f) from frame t+1, [f,2f) from t-1, zeros outside the clip
    (direction 'past': [0,f) from t-1)."""
    def __init__(self, direction="bidirectional", **kw):
        super().__init__(**kw); self.direction = direction
    def call(self, x):
        s = tf.shape(x); h, w, c = x.shape[1], x.shape[2], x.shape[3]
        f = c // FD
        v = tf.reshape(x, [-1, T, h, w, c])
        zero = tf.zeros_like(v[:, :1, :, :, :f])
        if self.direction == "past":
            a = tf.concat([zero, v[:, :-1, :, :, :f]], 1)
            out = tf.concat([a, v[:, :, :, :, f:]], 4)
        else:
            a = tf.concat([v[:, 1:, :, :, :f], zero], 1)
            b = tf.concat([zero, v[:, :-1, :, :, f:2 * f]], 1)
            out = tf.concat([a, b, v[:, :, :, :, 2 * f:]], 4)
        return tf.reshape(out, s)

def first_branch_layers(model):
    names = [l.name for l in model.layers]
    if any(n.endswith("_preact_bn") for n in names):   # ResNetV2: the branch starts at preact (identity) or after it (projection)
        out = []
        for n in names:
            m = re.match(r"(conv\d_block\d+)_preact_bn", n)
            if m:
                out.append(f"{m.group(1)}_1_conv" if f"{m.group(1)}_0_conv" in names else n)
        return out
    if any(re.match(r"conv\d_block\d+_1_conv", n) for n in names):  # ResNet v1
        return [n for n in names if re.match(r"conv\d_block\d+_1_conv$", n)]
    # MobileNetV2: blocks with an Add
    adds = [n for n in names if re.match(r"block_\d+_add", n)]
    return [n.replace("_add", "_expand") for n in adds]

def rebuild(model, shifted, direction):
    mapping = {id(model.inputs[0]): model.inputs[0]}
    inp = tf.keras.Input(shape=model.inputs[0].shape[1:], name="input")
    mapping[id(model.inputs[0])] = inp
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        src = layer.input
        args = [mapping[id(t)] for t in src] if isinstance(src, (list, tuple)) else mapping[id(src)]
        if layer.name in shifted:
            args = Shift(direction)(args)
        mapping[id(layer.output)] = layer(args)
    return tf.keras.Model(inp, mapping[id(model.outputs[0])])

def main():
    name, size = sys.argv[1], int(sys.argv[2])
    tf.keras.utils.set_random_seed(0)
    model = getattr(tf.keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    os.makedirs("/tmp/keras", exist_ok=True)
    path = f"/tmp/keras/{name}_{size}.onnx"
    if not os.path.exists(path):
        tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, size, size, 3), tf.float32, name="input"),), opset=17, output_path=path)
    x = np.random.default_rng(1).standard_normal((2 * T, size, size, 3)).astype(np.float32)
    shifted = first_branch_layers(model)
    for direction in ("bidirectional", "past"):
        ref = rebuild(model, set(shifted), direction)(x).numpy()
        plain = model(x).numpy()
        out = path.replace(".onnx", f"_{direction}.onnx")
        p = subprocess.run([os.environ.get("TSM_BIN", "/work/main/target/release/tsm-rewrite"), path, "-o", out, "--direction", direction], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        summary = [l for l in p.stderr.splitlines() if "block(s) found" in l or l.startswith(("validated", "note"))]
        y = ort.InferenceSession(out).run(None, {ort.InferenceSession(out).get_inputs()[0].name: x})[0]
        print(f"{name} {direction}: {len(shifted)} branches shifted in Keras; {summary[0]}; max|tool - keras TSM| {np.abs(y - ref).max():.2e}, |keras TSM - plain| {np.abs(ref - plain).max():.2e}, |ref| {np.abs(ref).max():.2e}")

    p = subprocess.run([os.environ.get("TSM_BIN", "/work/main/target/release/tsm-rewrite"), path, "-o", path.replace(".onnx", "_online.onnx"), "--online"], capture_output=True, text=True)
    print(f"{name} online: exit {p.returncode}; " + "; ".join(l for l in p.stderr.splitlines() if l.startswith(("validated", "tsm-rewrite: error", "note"))))


if __name__ == "__main__":
    main()
