#!/usr/bin/env bash
# Per-frame latency of online TSM graphs against their original 2D models, in tract, one stream.
#
#   bash bench/online_latency.sh [FRAMES]
#
# Needs the full-size torchvision exports made by bench/verify_online.py in /tmp/tsm-online
# (mobilenet_v2.onnx, resnet18.onnx, resnet50.onnx: seeded random weights, opset 17, 224x224).
# Each model is rewritten with --online (residual, fold_div 8) and streamed by examples/stream.rs,
# which runs every frame through the online graph and then the 2D model, so both see the same
# machine state; it reports percentiles over FRAMES frames (after 5 warm-up frames). The whole
# comparison is repeated 3 times. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-100}
src=/tmp/tsm-online
cargo build --release --quiet
cargo build --release --quiet --example stream
for m in mobilenet_v2 resnet18 resnet50; do
  test -f "$src/$m.onnx" || { echo "missing $src/$m.onnx: run bench/verify_online.py first" >&2; exit 2; }
  ./target/release/tsm-rewrite "$src/$m.onnx" -o "$src/$m.bench-online.onnx" --online --no-validate 2>/dev/null
  for run in 1 2 3; do
    echo "== $m run $run"
    ./target/release/examples/stream "$src/$m.bench-online.onnx" --frames "$frames" --compare "$src/$m.onnx"
  done
done
