#!/usr/bin/env bash
# What the stream form costs the rewrite itself: wall time and peak RSS of
# `tsm-rewrite IN -o OUT --no-validate --shift-form FORM` for stream and batch, on a ResNet-50
# with its weights inline and the same model with its weights in an external data file.
#
#   bash bench/rewrite_forms.sh                 # RUNS=7; IN defaults to bench/overhead.py's export
#   IN=/path/resnet50.onnx RUNS=11 bash bench/rewrite_forms.sh
#
# Needs: cargo build --release; GNU time; /work/venv (onnx) to write the external-data copy.
# Runs alternate stream and batch; reported: median [min-max] over RUNS. Writes
# bench/RESULTS-rewrite-forms.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${TSM_BIN:-$(dirname "$HERE")/target/release/tsm-rewrite}"
PY="${PY:-/work/venv/bin/python}"
IN="${IN:-/tmp/h-bench/resnet50/plain.onnx}"
RUNS="${RUNS:-7}"
WORK="${WORK:-/tmp/tsm-rewrite-forms}"
OUTMD="$HERE/RESULTS-rewrite-forms.md"
[ -s "$IN" ] || { echo "no $IN: run bench/overhead.py once (it exports ResNet-50 there), or set IN" >&2; exit 1; }
mkdir -p "$WORK/ext"
if [ ! -s "$WORK/ext/model.onnx" ]; then
  "$PY" -c "import onnx,sys; onnx.save_model(onnx.load(sys.argv[1]), sys.argv[2], save_as_external_data=True, all_tensors_to_one_file=True, location='model.data', size_threshold=1024)" "$IN" "$WORK/ext/model.onnx"
fi
stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f [%.3f-%.3f]", a[int((NR+1)/2)], a[1], a[NR]}'; }
{
  echo "# Rewrite cost of the stream form (bench/rewrite_forms.sh)"
  echo
  echo "Input: \`$IN\` ($(stat -c %s "$IN") bytes); $RUNS runs per cell, stream and batch alternating; median [min-max]. Load at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| input | form | wall s | peak RSS MiB | output .onnx bytes | data file bytes |"
  echo "|---|---|---|---|---|---|"
} > "$OUTMD"
for layout in inline external; do
  src="$IN"; [ "$layout" = external ] && src="$WORK/ext/model.onnx"
  declare -A T R
  for form in stream batch; do T[$form]=""; R[$form]=""; done
  for _ in $(seq "$RUNS"); do
    for form in stream batch; do
      out="$WORK/out-$layout-$form.onnx"; rm -f "$out" "$out.data"
      /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$BIN" "$src" -o "$out" --no-validate --shift-form "$form" >/dev/null 2>&1
      read -r secs kb < "$WORK/time.txt"
      T[$form]+="$secs"$'\n'; R[$form]+="$(awk -v k="$kb" 'BEGIN{print k/1024}')"$'\n'
    done
  done
  for form in stream batch; do
    out="$WORK/out-$layout-$form.onnx"
    data=$( [ -f "$out.data" ] && stat -c %s "$out.data" || echo 0 )
    echo "| $layout | $form | $(printf %s "${T[$form]}" | stats) | $(printf %s "${R[$form]}" | stats) | $(stat -c %s "$out") | $data |" >> "$OUTMD"
  done
done
cat "$OUTMD"
