#!/usr/bin/env bash
# Benchmark tsm-rewrite on a full-size ResNet-50 (~100 MB, opset 13) against plain file copies.
#
#   bash bench/rewrite_resnet50.sh            # RUNS=10 VRUNS=3 by default
#   RUNS=20 VRUNS=5 bash bench/rewrite_resnet50.sh
#
# Needs: cargo build --release; /work/venv (torch, torchvision, onnx); hyperfine and GNU time
# (apt-get install -y hyperfine time). Work files go to /tmp/tsm-bench (never into the repo);
# results are written to bench/RESULTS-bench.md.
#
# Measured (page cache warm, median over RUNS; output file removed before every run):
#   cp IN OUT                  GNU cp (may use copy_file_range: in-kernel copy)
#   cat IN > OUT               read/write through user space
#   cat IN > OUT && sync OUT   + fsync of the copy (tsm-rewrite fsyncs its output before renaming)
#   tsm-rewrite IN --dry-run   parse + plan, nothing written
#   tsm-rewrite IN -o OUT --no-validate
#   tsm-rewrite IN -o OUT      (tract validation on; VRUNS runs)
# Peak RSS from `/usr/bin/time -v` ("Maximum resident set size"), median over RUNS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
BIN="${TSM_BIN:-$REPO/target/release/tsm-rewrite}"
PY="${PY:-/work/venv/bin/python}"
WORK="${WORK:-/tmp/tsm-bench}"
RUNS="${RUNS:-10}"
VRUNS="${VRUNS:-3}"
OUTMD="$HERE/RESULTS-bench.md"
IN="$WORK/resnet50.onnx"

command -v hyperfine >/dev/null || { echo "need hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "need GNU time: apt-get install -y time" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cd $REPO && cargo build --release" >&2; exit 1; }
mkdir -p "$WORK"

if [ ! -s "$IN" ]; then
  echo "exporting ResNet-50 to $IN"
  "$PY" - "$IN" <<'EOF'
import sys, warnings, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet50(weights=None).eval()
# distinct BN parameters: with torchvision's default BN init (1/0/0/1) the exporter dedups the
# identical initializers into 47 Identity nodes, which is not what a trained model looks like
with torch.no_grad():
    for b in m.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.weight.uniform_(0.5, 1.5); b.bias.uniform_(-0.3, 0.3)
            b.running_mean.uniform_(-0.3, 0.3); b.running_var.uniform_(0.5, 2.0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(m, (torch.zeros(2, 3, 224, 224),), sys.argv[1], dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
EOF
fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
SIZE=$(stat -c %s "$IN")
echo "input: $IN ($SIZE bytes)"
cat "$IN" > /dev/null   # warm the page cache

OUT="$WORK/out.onnx"
HF="$WORK/hyperfine"
mkdir -p "$HF"

bench() {  # name runs command
  local name="$1" runs="$2" cmd="$3"
  hyperfine -N --style basic --warmup 1 --runs "$runs" --prepare "rm -f $OUT" \
    --export-json "$HF/$name.json" "$cmd" >"$HF/$name.txt" 2>&1 || {
    # -N (no shell) cannot run redirections; retry through the shell
    hyperfine --style basic --warmup 1 --runs "$runs" --prepare "rm -f $OUT" \
      --export-json "$HF/$name.json" "$cmd" >"$HF/$name.txt" 2>&1; }
  echo "  $name: $(grep -m1 'Time (mean' "$HF/$name.txt" | sed 's/^ *//')"
}

rss() {  # name runs command... : median peak RSS in kB (and median wall s from GNU time)
  local name="$1" runs="$2"; shift 2
  : >"$HF/$name.rss"
  for _ in $(seq "$runs"); do
    rm -f "$OUT"
    /usr/bin/time -v "$@" 2>"$HF/$name.timev" >/dev/null || true
    awk -F': ' '/Maximum resident set size/ {m=$2} /Elapsed \(wall clock\)/ {e=$2} /Exit status/ {x=$2}
                END {print m, e, x}' "$HF/$name.timev" >>"$HF/$name.rss"
  done
  echo "  $name peak RSS (kB, per run): $(cut -d' ' -f1 "$HF/$name.rss" | tr '\n' ' ')"
}

echo "timing (hyperfine, $RUNS runs, warm cache):"
bench cp "$RUNS" "cp $IN $OUT"
bench cat "$RUNS" "sh -c 'cat $IN > $OUT'"
bench cat_sync "$RUNS" "sh -c 'cat $IN > $OUT && sync $OUT'"
bench dry_run "$RUNS" "$BIN $IN --dry-run"
bench rewrite "$RUNS" "$BIN $IN -o $OUT --no-validate"
bench rewrite_validate "$VRUNS" "$BIN $IN -o $OUT"

echo "peak RSS (/usr/bin/time -v):"
rss cp "$RUNS" cp "$IN" "$OUT"
rss cat "$RUNS" sh -c "cat $IN > $OUT"
rss dry_run "$RUNS" "$BIN" "$IN" --dry-run
rss rewrite "$RUNS" "$BIN" "$IN" -o "$OUT" --no-validate
rss rewrite_validate "$VRUNS" "$BIN" "$IN" -o "$OUT"

# the rewrite's own report (one run)
rm -f "$OUT"
"$BIN" "$IN" -o "$OUT" >"$HF/rewrite.stderr" 2>&1 || true
OUTSIZE=$(stat -c %s "$OUT" 2>/dev/null || echo 0)

"$PY" - "$HF" "$SIZE" "$OUTSIZE" "$IN" "$BIN" "$RUNS" "$VRUNS" "$OUTMD" "$LOAD0" <<'EOF'
import collections, json, os, statistics, sys
import onnx
hf, size, outsize, inp, binp, runs, vruns, outmd, load0 = sys.argv[1:]
size, outsize = int(size), int(outsize)

def hyper(name):
    r = json.load(open(os.path.join(hf, name + ".json")))["results"][0]
    return dict(median=r["median"], mean=r["mean"], stddev=r.get("stddev") or 0.0, min=r["min"],
                max=r["max"], n=len(r["times"]), cmd=r["command"])

def rss(name):
    rows = [l.split() for l in open(os.path.join(hf, name + ".rss")) if l.strip()]
    kb = [int(r[0]) for r in rows]
    status = sorted({r[2] for r in rows if len(r) > 2})
    return statistics.median(kb), min(kb), max(kb), status

names = ["cp", "cat", "cat_sync", "dry_run", "rewrite", "rewrite_validate"]
H = {n: hyper(n) for n in names}
R = {n: rss(n) for n in ["cp", "cat", "dry_run", "rewrite", "rewrite_validate"]}
load = open("/proc/loadavg").read().split()[:3]
L = ["# tsm-rewrite on ResNet-50: time and memory vs copying the file\n",
     f"Generated by `bench/rewrite_resnet50.sh` (RUNS={runs}, VRUNS={vruns}). "
     f"Input `{inp}`: {size} bytes ({size / 2**20:.1f} MiB), torchvision resnet50 (weights=None, seed 0), "
     f"TorchScript exporter, opset 13, dynamic batch. Output {outsize} bytes. Page cache warm "
     "(file read once before, 1 warm-up run per command), output removed before every run. "
     f"{os.cpu_count()} CPUs; load average at the start {load0}, at the end {' '.join(load)}. "
     f"Ops in the input: {dict(collections.Counter(n.op_type for n in onnx.load(inp).graph.node))}.\n",
     "| command | median s | mean ± sd s | min s | max s | runs | median peak RSS MiB | RSS / file size |",
     "| --- | --- | --- | --- | --- | --- | --- | --- |"]
label = {"cp": "`cp IN OUT`", "cat": "`cat IN > OUT`", "cat_sync": "`cat IN > OUT && sync OUT`",
         "dry_run": "`tsm-rewrite IN --dry-run`", "rewrite": "`tsm-rewrite IN -o OUT --no-validate`",
         "rewrite_validate": "`tsm-rewrite IN -o OUT` (tract validation)"}
for n in names:
    h = H[n]
    r = R.get(n)
    rs = f"{r[0] / 1024:.1f}" if r else "-"
    rr = f"{r[0] * 1024 / size:.2f}" if r else "-"
    L.append(f"| {label[n]} | {h['median']:.4f} | {h['mean']:.4f} ± {h['stddev']:.4f} | {h['min']:.4f} | "
             f"{h['max']:.4f} | {h['n']} | {rs} | {rr} |")
rw = H["rewrite"]["median"]
L += ["",
      "Ratios (medians):\n",
      f"- rewrite (--no-validate) / cp = {rw / H['cp']['median']:.2f}",
      f"- rewrite (--no-validate) / cat = {rw / H['cat']['median']:.2f}",
      f"- rewrite (--no-validate) / (cat + fsync) = {rw / H['cat_sync']['median']:.2f}  "
      "(tsm-rewrite fsyncs the temp file before the rename)",
      f"- rewrite with validation / cp = {H['rewrite_validate']['median'] / H['cp']['median']:.1f}",
      f"- peak RSS / file size: rewrite --no-validate {R['rewrite'][0] * 1024 / size:.2f}, "
      f"--dry-run {R['dry_run'][0] * 1024 / size:.2f}, with validation {R['rewrite_validate'][0] * 1024 / size:.2f}",
      f"- peak RSS ranges (MiB, min-max): " + ", ".join(
          f"{n} {R[n][1] / 1024:.1f}-{R[n][2] / 1024:.1f}" for n in R),
      f"- exit statuses seen under /usr/bin/time: " + ", ".join(f"{n} {R[n][3]}" for n in R),
      "- note: tsm-rewrite mmaps its input, so its peak RSS includes the touched file-backed pages of "
      "the input (page cache), not only heap memory.",
      "", "Tool output of one default run:\n", "```",
      open(os.path.join(hf, "rewrite.stderr")).read().strip(), "```", ""]
open(outmd, "w").write("\n".join(L) + "\n")
print("\n".join(L))
EOF
rm -f "$OUT"
echo "wrote $OUTMD"
