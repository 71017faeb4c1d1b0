#!/usr/bin/env bash
# Per-frame latency of online TSM graphs against their original 2D models, in tract, one stream.
#
#   bash bench/online_latency.sh [FRAMES] [RUNS]
#
# Needs the full-size torchvision exports made by bench/verify_online.py in /tmp/tsm-online
# (mobilenet_v2.onnx, resnet18.onnx, resnet50.onnx: seeded random weights, opset 17, 224x224).
# Each model is rewritten with --online (residual, fold_div 8) and streamed by examples/stream.rs,
# which runs every frame through both the online graph and the 2D model (alternating which goes
# first), pinned to one core, and reports percentiles over FRAMES frames after 5 warm-up frames.
# A "null" row streams an identical copy of the 2D model (no buffers) in the online slot: the
# harness's own bias. Each comparison runs RUNS times. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-80}
runs=${2:-3}
src=/tmp/tsm-online
py=${PYTHON:-/work/venv/bin/python}
cargo build --release --quiet
cargo build --release --quiet --example stream
for m in mobilenet_v2 resnet18 resnet50; do
  test -f "$src/$m.onnx" || { echo "missing $src/$m.onnx: run bench/verify_online.py first" >&2; exit 2; }
  ./target/release/tsm-rewrite "$src/$m.onnx" -o "$src/$m.bench-online.onnx" --online --no-validate 2>/dev/null
  "$py" - "$src/$m.onnx" "$src/$m.bench-null.onnx" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
p = m.metadata_props.add(); p.key, p.value = "tsm-rewrite.buffers", "[]"
onnx.save(m, sys.argv[2])
PY
  for run in $(seq "$runs"); do
    for kind in online null; do
      printf '%-13s %-7s run %s  ' "$m" "$kind" "$run"
      taskset -c 1 ./target/release/examples/stream "$src/$m.bench-$kind.onnx" --frames "$frames" \
        --compare "$src/$m.onnx" | tr '\n' ' ' | sed -E 's/ +/ /g; s/.*online: (p50 [0-9.]+ ms).* 2D: (p50 [0-9.]+ ms).*at p50: ([0-9.]+).*/online \1, 2D \2, ratio \3/'
      echo
    done
  done
done
