"""Parity and size of every (framework, arch, format, mode) export the exporters support (issue 4).

Run: ``.venv/bin/python -m benchmarks.export_parity`` -> ``benchmarks/results/export_parity.json`` and ``.md``.

Setting: digits (600 members / 600 non-members, seed 0), a torch and a tf_keras MLP and CNN trained 15 epochs
(Adam). Each export validates itself on 200 held-out samples (the sidecar's parity figures: max absolute
difference of probabilities and top-1 agreement with the in-framework model); int8 exports calibrate on 200
members. The table also gives the artifact's accuracy on all 600 non-members through its runtime, to show
what a quantization costs.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _cases():
    from exporters import FORMATS

    for fmt in FORMATS:
        meta = FORMATS.meta(fmt)
        for framework in meta["sources"]:
            if framework == "tflite":  # flatbuffers made by tflite_* methods: covered by the method tests
                continue
            for mode in meta["modes"]:
                if framework == "keras" and fmt == "onnx" and mode != "float":
                    continue  # tf2onnx then ONNX Runtime dynamic quantization: same path as torch's
                yield framework, fmt, mode


def run(log=print) -> dict:
    from device_tests import load_artifact
    from exporters import export
    from toolkit.data import load_dataset, make_split
    from toolkit.models import ModelSpec, TrainRecipe, predict_proba, train_reference_model

    ds = load_dataset("digits")
    split = make_split(ds, members=600, nonmembers=600, population=597, seed=0)
    mem, non = split.take(ds, "members"), split.take(ds, "nonmembers")
    recipe = TrainRecipe(epochs=15, batch_size=64, seed=0)
    models = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("mlp", "cnn"):
            spec = ModelSpec(arch=arch, input_shape=ds.input_shape, n_classes=ds.n_classes)
            for framework, fmt, mode in _cases():
                key = (framework, arch)
                if key not in models:
                    models[key] = train_reference_model(spec, framework, mem.x, mem.y, recipe)
                model = models[key]
                t0 = time.perf_counter()
                info = export(model, fmt, Path(tmp) / f"{framework}-{arch}-{mode}.{fmt}", non.x[:200], mode=mode,
                              representative=mem.x[:200])
                seconds = time.perf_counter() - t0
                acc = float(np.mean(load_artifact(info.path).predict_proba(non.x).argmax(1) == non.y))
                ref = float(np.mean(predict_proba(model, non.x).argmax(1) == non.y))
                row = {"framework": framework, "arch": arch, "format": fmt, "mode": mode, "bytes": info.bytes,
                       "gzip_bytes": info.gzip_bytes, "max_abs_diff": info.parity["max_abs_diff"],
                       "top1_agreement": info.parity["top1_agreement"], "artifact_accuracy": acc,
                       "model_accuracy": ref, "export_seconds": round(seconds, 2)}
                log(f"{framework:5s} {arch} {fmt:6s} {mode:7s} diff {row['max_abs_diff']:.2e} "
                    f"top1 {row['top1_agreement']:.3f} acc {acc:.3f}/{ref:.3f} {info.bytes} B")
                rows.append(row)
    return {"setting": "digits 600/600, 15 epochs, parity on 200 held-out samples", "rows": rows,
            "platform": platform.platform()}


def to_markdown(result: dict) -> str:
    lines = ["# Export parity (issue 4)", "", "Command: `.venv/bin/python -m benchmarks.export_parity`", "",
             f"Setting: {result['setting']}. `diff` = max |p_artifact - p_model| over the parity sample; `top-1` = "
             "agreement of the predicted class; `acc` = accuracy of the artifact through its runtime / of the "
             "in-framework model on 600 non-members.", "",
             "| source | arch | format | mode | bytes | gzip bytes | diff | top-1 | acc (artifact / model) | export s |",
             "|---|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['framework']} | {r['arch']} | {r['format']} | {r['mode']} | {r['bytes']} | "
                     f"{r['gzip_bytes']} | {r['max_abs_diff']:.1e} | {r['top1_agreement']:.3f} | "
                     f"{r['artifact_accuracy']:.3f} / {r['model_accuracy']:.3f} | {r['export_seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    result = run()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export_parity.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "export_parity.md").write_text(to_markdown(result))


if __name__ == "__main__":
    main()
