"""Regenerate the small valid seed files the fuzz tests mutate (``corpus/seeds/``).

    .venv/bin/python tests/reliability/make_seeds.py

Seeds are tiny (an 8x8x1 -> 16 -> 10 MLP, untrained weights drawn from a fixed seed) so that every fuzz case
is cheap; they are committed so the default test set needs neither TensorFlow nor an ExecuTorch export.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SEEDS = Path(__file__).resolve().parent / "corpus" / "seeds"


def main() -> None:
    from exporters import export
    from toolkit.models import ModelSpec, build_model

    SEEDS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32).astype(np.int64)
    spec = ModelSpec(arch="mlp", input_shape=(8, 8, 1), n_classes=10, hidden=(16,))
    cnn = ModelSpec(arch="cnn", input_shape=(8, 8, 1), n_classes=10, channels=(4,), dense=8)
    for arch, sp in (("mlp", spec), ("cnn", cnn)):
        torch_model = build_model(sp, "torch", seed=0)
        keras_model = build_model(sp, "keras", seed=0)
        for fmt, model in (("onnx", torch_model), ("ptl", torch_model), ("pte", torch_model),
                           ("tflite", keras_model)):
            out = SEEDS / f"{arch}.{fmt}"
            export(model, fmt, out, x)
            Path(f"{out}.json").unlink(missing_ok=True)
    # A quantized flatbuffer (int8 input/output tensors) reaches the runtime's (de)quantization paths.
    out = SEEDS / "mlp-int8.tflite"
    export(build_model(spec, "keras", seed=0), "tflite", out, x, mode="int8", representative=x)
    Path(f"{out}.json").unlink(missing_ok=True)
    np.savez(SEEDS / "data.npz", x=x, y=y)
    for p in sorted(SEEDS.iterdir()):
        print(f"{p.name:12s} {p.stat().st_size:8d} bytes")


if __name__ == "__main__":
    main()
