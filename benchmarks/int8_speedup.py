"""``int8_speedup``: throughput of each int8 artifact / throughput of its float export, per runtime.

Setting: Fashion-MNIST, the reference MLP and CNN trained 3 epochs on 2,000 members (torch, and the tf_keras twin
for TFLite); 10,000 queries (quick: 2,000, MLP only); ``device_tests.load_artifact(path, batch_size=256,
threads=N).predict_proba(x)``, best of 3, same threads. Pairs (int8 artifact vs the float artifact of the same
model, format and runtime), all written by ``exporters.export``:

* LiteRT: ``.tflite`` mode ``int8`` (full integer, calibrated on 200 members) vs mode ``float``;
* ONNX Runtime: ``.onnx`` mode ``dynamic`` (dynamic int8 weights) vs ``float``, and a ``torch_static_int8``
  model exported to ``.onnx`` (QDQ int8) vs ``float``;
* PyTorch lite interpreter: ``torch_dynamic_int8`` -> ``.ptl`` vs the float model -> ``.ptl``; likewise
  ``torch_static_int8``;
* ExecuTorch: ``.pte`` mode ``int8`` (PT2E, XNNPACK) vs ``float`` (XNNPACK).

No goal was set: reported (> 1: int8 is faster).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import best_of, fashion_split, figure, pin_torch_threads, quiet_warnings, threads

#: runtime -> [(int8 label, source, export mode)], each compared with (float source, mode "float").
PLANS = {
    "LiteRT (tflite)": ("tflite", "keras", [("int8", "keras", "int8")]),
    "ONNX Runtime (onnx)": ("onnx", "torch", [("dynamic", "torch", "dynamic"), ("static_int8", "torch_static_int8", "float")]),
    "lite interpreter (ptl)": ("ptl", "torch", [("dynamic_int8", "torch_dynamic_int8", "float"),
                                                ("static_int8", "torch_static_int8", "float")]),
    "ExecuTorch (pte)": ("pte", "torch", [("int8", "torch", "int8")]),
}


def run(quick: bool = False, log=print) -> dict:
    quiet_warnings()
    from device_tests import load_artifact
    from exporters import export
    from toolkit.compress import CompressData, compress
    from toolkit.models import ModelSpec, TrainRecipe, train_reference_model

    n_queries, repeats, archs, limit = (2000, 1, ("mlp",), 5000) if quick else (10_000, 3, ("mlp", "cnn"), None)
    pin_torch_threads()
    ds, parts = fashion_split(2000 if not quick else 500, 2000 if not quick else 500, 0, seed=0, limit=limit)
    mem, non = parts["members"], parts["nonmembers"]
    from toolkit.data import load_dataset

    pool = load_dataset("fashion_mnist", limit=limit).x
    x = np.ascontiguousarray(np.concatenate([pool] * int(np.ceil(n_queries / len(pool))))[:n_queries])
    recipe = TrainRecipe(epochs=1 if quick else 3, seed=0)
    data = CompressData(mem.x, mem.y, non.x, non.y, recipe)
    rows, figures = [], []
    with tempfile.TemporaryDirectory(prefix="sc-bench-int8-") as tmp:
        for arch in archs:
            spec = ModelSpec(arch=arch, input_shape=ds.input_shape, n_classes=ds.n_classes)
            sources = {fw: train_reference_model(spec, fw, mem.x, mem.y, recipe) for fw in ("torch", "keras")}
            for method in ("torch_dynamic_int8", "torch_static_int8"):
                sources[method] = compress(sources["torch"], {"method": method}, data)

            def throughput(src: str, fmt: str, mode: str) -> tuple[float, dict]:
                path = Path(tmp) / f"{arch}-{src}-{mode}.{fmt}"
                info = export(sources[src], fmt, path, non.x[:200], mode=mode, representative=mem.x[:200])
                rt = load_artifact(info.path, batch_size=256, threads=threads())
                rt.predict_proba(x[:256])  # first call: lazy allocation, outside the timer
                best, times = best_of(lambda: rt.predict_proba(x), repeats)
                return n_queries / best, {"bytes": info.bytes, "mode": info.mode, "seconds": round(best, 4),
                                          "all_s": times}

            for runtime, (fmt, float_src, pairs) in PLANS.items():
                qps_float, finfo = throughput(float_src, fmt, "float")
                for label, src, mode in pairs:
                    qps_q, qinfo = throughput(src, fmt, mode)
                    ratio = qps_q / qps_float
                    rows.append({"arch": arch, "runtime": runtime, "format": fmt, "int8": label,
                                 "float_qps": round(qps_float), "int8_qps": round(qps_q), "ratio": round(ratio, 3),
                                 "float": finfo, "quantized": qinfo})
                    figures.append(figure(f"{arch} {fmt} {label} / float", ratio, None,
                                          note=f"{runtime}: {qps_q:,.0f} vs {qps_float:,.0f} queries/s; "
                                               f"{qinfo['bytes']:,} vs {finfo['bytes']:,} bytes"))
                    log(f"int8_speedup {arch} {fmt} {label}: {qps_q:,.0f} vs {qps_float:,.0f} q/s -> x{ratio:.2f}")
    return {"figures": figures,
            "details": {"setting": {"data": "fashion_mnist", "n_queries": n_queries, "batch_size": 256,
                                    "repeats": repeats, "threads": threads(), "archs": list(archs)},
                        "rows": rows}}
