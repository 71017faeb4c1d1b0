#!/usr/bin/env python3
# Run with a venv holding paddlepaddle, paddle2onnx, onnxruntime and numpy (not the fixtures venv):
#   pip install paddlepaddle paddle2onnx onnxruntime numpy onnx_graphsurgeon sympy
#   python bench/paddle_tsm.py [SIZE]      (default 64)
# (paddle.onnx.export folds constants with Polygraphy, which pip-installs onnx_graphsurgeon and sympy
# into the running venv on first use if they are missing; installing them first avoids that.)
# Models go to /tmp/paddle. Results: bench/RESULTS-exporters.md.
"""Paddle TSM reference: paddle.vision.models.resnet50 with PaddleVideo ResNetTSM's shift
(paddle.nn.functional.temporal_shift(x, seg_num, 1/seg_num) on the input of each bottleneck's first
conv, the residual branch only; the shortcut sees the unshifted tensor), same weights, run in
Paddle; compared with the tsm-rewrite output of the paddle.onnx.export (paddle2onnx) export, run in
onnxruntime, with --group-order paddle (must match) and the default order (must not)."""
import os, sys, types, subprocess
import numpy as np, paddle, paddle.nn.functional as F, paddle2onnx, onnxruntime as ort, onnx

T, FD = 8, 8
size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
tool = os.environ.get("TSM_BIN", "/work/main/target/release/tsm-rewrite")
paddle.set_device("cpu")

# temporal_shift's order, checked on a small tensor: fold = C * shift_ratio; channels [0, fold)
# take frame t-1, [fold, 2*fold) take t+1, zeros outside the clip (the tool's --group-order paddle).
v = np.random.default_rng(2).standard_normal((2, T, 16, 2, 2)).astype(np.float32)
got = F.temporal_shift(paddle.to_tensor(v.reshape(2 * T, 16, 2, 2)), T, 1.0 / FD).numpy().reshape(v.shape)
want = v.copy(); f = 16 // FD
want[:, :, :f] = 0; want[:, 1:, :f] = v[:, :-1, :f]
want[:, :, f:2 * f] = 0; want[:, :-1, f:2 * f] = v[:, 1:, f:2 * f]
assert np.array_equal(got, want), "temporal_shift order is not [0,f) <- t-1, [f,2f) <- t+1"

paddle.seed(0)
model = paddle.vision.models.resnet50(num_classes=10)
model.eval()

os.makedirs("/tmp/paddle", exist_ok=True)
prefix = f"/tmp/paddle/resnet50_{size}"
path = prefix + ".onnx"
paddle.onnx.export(model, prefix, input_spec=[paddle.static.InputSpec([None, 3, size, size], "float32", "x")], opset_version=13)

x = np.random.default_rng(1).standard_normal((2 * T, 3, size, size)).astype(np.float32)
with paddle.no_grad():
    plain = model(paddle.to_tensor(x)).numpy()

def tsm_forward(self, x):
    # paddle.vision BottleneckBlock.forward with PaddleVideo ResNetTSM's shift on conv1's input
    identity = x
    out = self.relu(self.bn1(self.conv1(F.temporal_shift(x, T, 1.0 / FD))))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu(out + identity)

blocks = [m for m in model.sublayers() if type(m).__name__ == "BottleneckBlock"]
for b in blocks:
    b.forward = types.MethodType(tsm_forward, b)
with paddle.no_grad():
    ref = model(paddle.to_tensor(x)).numpy()

onnx_model = onnx.load(path)
sess = ort.InferenceSession(path)
y2d = sess.run(None, {sess.get_inputs()[0].name: x})[0]
print(f"paddle {paddle.__version__}, paddle2onnx {paddle2onnx.__version__}, onnxruntime {ort.__version__}; "
      f"{path}: opset {onnx_model.opset_import[0].version}, {len(onnx_model.graph.node)} nodes, "
      f"input {[d.dim_param or d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]}, "
      f"{os.path.getsize(path) / 1e6:.1f} MB; {len(blocks)} bottlenecks shifted in Paddle")
print(f"2D export vs Paddle 2D: max abs diff {np.abs(y2d - plain).max():.2e}; "
      f"|Paddle TSM - 2D| {np.abs(ref - plain).max():.2e}; |ref| {np.abs(ref).max():.2e}")

for order in ("paddle", "tsm"):
    out = path.replace(".onnx", f"_tsm_{order}.onnx")
    p = subprocess.run([tool, path, "-o", out, "--group-order", order], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    summary = [l for l in p.stderr.splitlines() if "block(s) found" in l or l.startswith(("validated", "note"))]
    s = ort.InferenceSession(out)
    y = s.run(None, {s.get_inputs()[0].name: x})[0]
    d = np.abs(y - ref).max()
    print(f"--group-order {order}: {'; '.join(summary)}; max|tool - Paddle TSM| {d:.2e} "
          f"({d / np.abs(ref).max():.1e} of max|ref|, {d / np.abs(ref - plain).max():.1e} of the shift's effect)")
