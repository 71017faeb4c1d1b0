"""The runtimes as the correctness scripts run them (fixture_sweep.py, openvino_qdq_consensus.py,
openvino_qdq_dynamic.py): each takes a model path and a feed {input name: array} and returns every
output as a numpy array, in the graph's output order. The timing harness (overhead.py) has its own:
it preallocates and binds buffers, which a check does not need."""
import numpy as np
import onnx
import onnxruntime as ort

TRACT_TYPES = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def ort_session(path, optimize=True):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_run(path, feed, optimize=True):
    return ort_session(path, optimize).run(None, feed)


def openvino_run(path, feed, static, core=None):
    """OpenVINO CPU in f32, compiled as read (the batch, and any H and W the model leaves open,
    dynamic: what `core.compile_model(path)` does) or reshaped to the feed's shapes first."""
    import openvino as ov
    core = core or ov.Core()
    model = core.read_model(path)
    if static:
        model.reshape({i.get_any_name(): list(feed[i.get_any_name()].shape) for i in model.inputs})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.create_infer_request().infer(feed)
    return [got[port] for port in compiled.outputs]


def tract_run(path, feed):
    """tract's Python bindings, every input's fact the shape and type fed. Where tract cannot unify
    those with the graph's own symbolic dims (a value_info entry `[batch, ...]`), the inputs keep
    the model's symbols, bound before running, as tsm-rewrite's validation does."""
    import tract
    declared = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in onnx.load(path, load_external_data=False).graph.input}
    first_error = None
    for symbolic in (False, True):
        im = tract.onnx().load(path)
        names = [im.input_name(i) for i in range(im.input_count())]
        binds = {}
        for i, n in enumerate(names):
            dims = []
            for d, v in zip(declared[n], feed[n].shape):
                if symbolic and isinstance(d, str) and d:
                    binds[d] = int(v)
                    dims.append(d)
                else:
                    dims.append(str(v))
            im.set_input_fact(i, ",".join(dims) + "," + TRACT_TYPES[feed[n].dtype])
        if symbolic and not binds:
            break
        try:
            model = im.into_model()
        except Exception as e:  # noqa: BLE001
            first_error = first_error or e
            continue
        if binds:
            model.transform(tract.SetSymbols(binds))
        r = model.into_runnable()
        return [o.to_numpy() for o in r.run([np.ascontiguousarray(feed[n]) for n in names])]
    raise first_error


def tvm_run(path, feed):
    """TVM's Relax ONNX frontend, built for `llvm` (no tuning), the inputs fed in the graph's order."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend import onnx as rx_onnx
    m = onnx.load(path)
    order = [i.name for i in m.graph.input if i.name in feed]
    mod = rx_onnx.from_onnx(m, shape_dict={k: list(v.shape) for k, v in feed.items()}, keep_params_in_input=False)
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(feed[n])) for n in order])
    return [o.numpy() for o in ([out] if hasattr(out, "numpy") else out)]
