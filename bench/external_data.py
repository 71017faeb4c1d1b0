#!/usr/bin/env python3
"""External data on a full-size model: ResNet-50 saved with its weights in a data file.

    /work/venv/bin/python bench/external_data.py

Needs /tmp/tsm-online/resnet50.onnx (made by bench/verify_online.py: torchvision ResNet-50, seeded
random weights, opset 17) and a release build (cargo build --release). Works in /tmp/tsm-ext/.
  1. saves ResNet-50 with every tensor of 1 KiB or more in `resnet50.onnx.data` (onnx.save_model,
     save_as_external_data), as exporters do;
  2. rewrites it into another folder, with and without validation, under /usr/bin/time: wall time,
     peak RSS against the size of the model and its data;
  3. loads the output (`tsm.onnx` + `tsm.onnx.data`) in onnxruntime and compares it with the
     rewrite of the inline model: must be identical;
  4. a copy of the model whose `location` is `../resnet50.onnx.data` is refused, and strace shows
     that no file outside its folder was opened;
  5. a model over 2 GiB (a 2.25 GiB tensor in a sparse data file, beside ResNet-50's weights) is
     rewritten, its data file written beside the output.
Writes bench/RESULTS-external.md.
"""
import hashlib, os, re, shutil, subprocess
import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("TSM_BIN", os.path.join(REPO, "target", "release", "tsm-rewrite"))
SRC = "/tmp/tsm-online/resnet50.onnx"
WORK = "/tmp/tsm-ext"


def timed(args):
    p = subprocess.run(["/usr/bin/time", "-v", BIN] + args, capture_output=True, text=True)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    m, s = wall.split(":")[-2:]
    return p.returncode, float(m) * 60 + float(s), rss, p.stderr


def ort_run(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def main():
    assert os.path.exists(SRC), f"{SRC} missing: run bench/verify_online.py first"
    shutil.rmtree(WORK, ignore_errors=True)
    for d in ("in", "out", "out2", "bad", "big", "bigout", "inline"):
        os.makedirs(os.path.join(WORK, d))
    m = onnx.load(SRC)
    model_path = os.path.join(WORK, "in", "resnet50.onnx")
    onnx.save_model(m, model_path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="resnet50.onnx.data", size_threshold=1024)
    sizes = {"model": os.path.getsize(model_path), "data": os.path.getsize(model_path + ".data")}
    total = sizes["model"] + sizes["data"]
    L = ["# External data on a full-size model", "",
         "`bench/external_data.py` on this machine (2 cores). ResNet-50 (torchvision, seeded random weights, "
         f"opset 17) saved with external data: model file {sizes['model'] / 1024:.0f} KiB, data file "
         f"{sizes['data'] / 2**20:.1f} MiB (every tensor of 1 KiB or more).", ""]

    digest = lambda: [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (model_path, model_path + ".data")]
    before = digest()
    rows = []
    out = os.path.join(WORK, "out", "tsm.onnx")
    for label, extra in (("--no-validate", ["--no-validate"]), ("validated", [])):
        runs = [timed([model_path, "-o", out] + extra) for _ in range(3 if extra else 1)]
        rc = max(r[0] for r in runs)
        assert rc == 0, runs[0][3]
        wall = sorted(r[1] for r in runs)[len(runs) // 2]
        rss = max(r[2] for r in runs)
        rows.append(f"| rewrite, {label} | {wall:.2f} s | {rss / 2**20:.0f} MiB | {rss / total:.2f}x |")
    out_data = out + ".data"
    offsets = [int(e.value) for t in onnx.load(out, load_external_data=False).graph.initializer
               for e in t.external_data if e.key == "offset"]
    assert offsets and all(o % 4096 == 0 for o in offsets)
    assert digest() == before, "the input or its data file changed"
    L += ["| what | wall | peak RSS | RSS / (model + data) |", "|---|---|---|---|"] + rows + [""]
    L.append(f"The output is `tsm.onnx` ({os.path.getsize(out) / 1024:.0f} KiB) and `tsm.onnx.data` "
             f"({os.path.getsize(out_data) / 2**20:.1f} MiB; {len(offsets)} tensors, every offset a multiple "
             "of 4096). The input's files are unchanged (compared byte for byte).")

    inline = os.path.join(WORK, "inline", "tsm.onnx")
    subprocess.run([BIN, SRC, "-o", inline, "--no-validate"], check=True, capture_output=True)
    x = np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32)
    a, b = ort_run(out, x), ort_run(inline, x)
    L.append(f"onnxruntime loads the output with its data file and gives the same logits as the rewrite of the "
             f"inline model: max abs diff {float(np.max(np.abs(a - b))):.1e}.")
    assert np.array_equal(a, b)

    bad_dir = os.path.join(WORK, "bad")
    bm = onnx.load(model_path, load_external_data=False)
    for t in bm.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../in/resnet50.onnx.data"
    bad = os.path.join(bad_dir, "evil.onnx")
    onnx.save_model(bm, bad)
    trace = os.path.join(WORK, "strace.txt")
    p = subprocess.run(["strace", "-f", "-e", "trace=open,openat", "-o", trace, BIN, bad, "-o",
                        os.path.join(bad_dir, "out.onnx")], capture_output=True, text=True)
    opened = [l for l in open(trace) if "resnet50.onnx.data" in l]
    assert p.returncode == 2 and "leaves the model's folder" in p.stderr and not opened, (p.stderr, opened)
    L += ["", f"A copy whose `location` is `../in/resnet50.onnx.data` is refused (exit {p.returncode}): "
          f"`{p.stderr.strip().splitlines()[-1]}`; strace shows no open() of the data file."]

    # Over 2 GiB: ResNet-50's weights plus one 2.25 GiB tensor in a sparse file.
    big_dir = os.path.join(WORK, "big")
    shutil.copy(model_path + ".data", os.path.join(big_dir, "resnet50.onnx.data"))
    extra = os.path.join(big_dir, "extra.bin")
    n = (9 << 28) // 4  # 2.25 GiB of float32
    with open(extra, "wb") as f:
        f.truncate(n * 4)
    gm = onnx.load(model_path, load_external_data=False)
    t = gm.graph.initializer.add()
    t.name, t.data_type = "unused_big", onnx.TensorProto.FLOAT
    t.dims.append(n)
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "extra.bin"), ("offset", "0"), ("length", str(n * 4))):
        e = t.external_data.add()
        e.key, e.value = k, v
    big = os.path.join(big_dir, "big.onnx")
    onnx.save_model(gm, big)
    big_out = os.path.join(WORK, "bigout", "tsm.onnx")
    rc, wall, rss, err = timed([big, "-o", big_out, "--no-validate"])
    assert rc == 0, err
    data_size = os.path.getsize(big_out + ".data")
    L += ["", f"A model of {(os.path.getsize(big) + os.path.getsize(extra) + sizes['data']) / 2**30:.2f} GiB "
          f"(ResNet-50 plus an unused 2.25 GiB tensor in a data file) is rewritten with `--no-validate` in "
          f"{wall:.1f} s at a peak RSS of {rss / 2**20:.0f} MiB; the output's data file is "
          f"{data_size / 2**30:.2f} GiB beside a {os.path.getsize(big_out) / 1024:.0f} KiB model file."]
    os.remove(big_out + ".data")
    with open(os.path.join(HERE, "RESULTS-external.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
