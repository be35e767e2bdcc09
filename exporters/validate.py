"""Parity of a written artifact with its source model, in the artifact's own runtime.

The artifact is loaded with :func:`device_tests.load_artifact`, queried on the export's ``sample_x`` and
compared with ``toolkit.models.predict_proba(source_model, sample_x)``: **top-1 agreement** and **max
absolute difference of probabilities**. Tolerances by mode (the format does not change them; measured
figures are in docs/export-and-query.md):

=========  ===============  =====================
mode       max |p - p_ref|  min top-1 agreement
=========  ===============  =====================
float      1e-4             0.99
float16    5e-3             0.98
dynamic    5e-2             0.95
int8       0.35             0.90
=========  ===============  =====================

A source that carries its own quantization (torch.ao int8, a tflite_* flatbuffer) is compared with itself
in its framework, so a carried int8 model is held to the int8 row although most runtimes reproduce it
closely. Text models (int64 token ids with a dynamic sequence axis) are also checked at a shorter width.
Outside tolerance: :class:`~toolkit.errors.ExportError` (the caller deletes the artifact).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import ExportError


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float
    min_top1: float


TOLERANCES = {"float": Tolerance(1e-4, 0.99), "float16": Tolerance(5e-3, 0.98),
              "dynamic": Tolerance(5e-2, 0.95), "int8": Tolerance(0.35, 0.90)}


def compare(reference: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(got, np.float64))
    return {"n": int(len(reference)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float(np.mean(np.argmax(reference, 1) == np.argmax(got, 1)))}


def _cases(source, sample: np.ndarray) -> dict[str, np.ndarray]:
    cases = {"full": sample}
    if source.integer_input and sample.shape[1] > 2:
        pad = int(getattr(source.model, "pad_id", 0))
        width = max(2, int((sample != pad).sum(axis=1).max()) // 2)
        cases["short"] = np.ascontiguousarray(sample[: max(1, len(sample) // 2), :width])
    return cases


def check_parity(path: Path, source, sample: np.ndarray, fmt: str, mode: str):
    """``(parity dict, runtime)``; raises :class:`ExportError` outside the tolerance of ``mode``."""
    from device_tests import load_artifact
    from toolkit.models import predict_proba

    tol = TOLERANCES[mode]
    runtime = load_artifact(path)
    cases = {}
    for name, x in _cases(source, sample).items():
        ref = predict_proba(source.model, x)
        got = runtime.predict_proba(x)
        if got.shape != ref.shape:
            raise ExportError(f"the {fmt} artifact answers shape {got.shape}, the model {ref.shape}")
        cases[name] = compare(ref, got)
    worst_diff = max(c["max_abs_diff"] for c in cases.values())
    worst_top1 = min(c["top1_agreement"] for c in cases.values())
    parity = {**cases["full"], "tolerance": {"max_abs_diff": tol.max_abs_diff, "min_top1": tol.min_top1},
              "cases": cases}
    if not (worst_diff <= tol.max_abs_diff and worst_top1 >= tol.min_top1):
        raise ExportError(f"the {fmt} ({mode}) artifact does not match its source model: max |prob diff| "
                          f"{worst_diff:.3g} (tolerance {tol.max_abs_diff:g}), top-1 agreement {worst_top1:.1%} "
                          f"(minimum {tol.min_top1:.0%}) on {len(sample)} samples")
    return parity, runtime
