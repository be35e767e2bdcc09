"""Implementation of ``safecompress query`` and ``safecompress inspect``."""

from __future__ import annotations

import io
import json
from pathlib import Path


def query_command(artifact: Path, data: Path, out: Path | None, batch_size: int) -> dict:
    """Query ``artifact`` on ``data``'s x (and score its y if present); optionally save the probabilities."""
    import numpy as np

    from device_tests import load_artifact
    from toolkit.errors import ConfigError, DataError
    from toolkit.io import atomic_write_bytes, load_npz

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    arrays = load_npz(data, keys=("x",))
    x = arrays["x"]
    runtime = load_artifact(artifact, batch_size=batch_size)
    probs = runtime.predict_proba(x)
    summary = {**runtime.describe(), "n": int(len(x)), "output_shape": list(probs.shape)}
    if "y" in arrays:
        y = np.asarray(arrays["y"])
        if y.shape != (len(x),):
            raise DataError(f"{data}: y has shape {y.shape}, expected ({len(x)},)")
        k = probs.shape[1]
        if not (y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.isfinite(y).all() and np.all(np.mod(y, 1) == 0))):
            raise DataError(f"{data}: y must hold integer class indices, got dtype {y.dtype}")
        if len(y) and (y.min() < 0 or y.max() >= k):
            bad = y.min() if y.min() < 0 else y.max()
            raise DataError(f"{data}: label {bad:g} is outside the model's {k} classes (0..{k - 1})")
        summary["accuracy"] = float(np.mean(probs.argmax(1) == y))
    if out is not None:
        buf = io.BytesIO()
        np.save(buf, probs, allow_pickle=False)
        atomic_write_bytes(out, buf.getvalue())
        summary["out"] = str(out)
    return summary


def inspect_command(artifact: Path) -> dict:
    """What the runtime sees in ``artifact``, plus its sidecar (if any) as recorded at export."""
    from device_tests import load_artifact
    from device_tests.runtimes import RUNTIMES

    runtime = load_artifact(artifact)
    info = {**runtime.describe(), "runtime": RUNTIMES.meta(runtime.format)["runtime"]}
    side = Path(str(artifact) + ".json")
    if side.is_file() and side.stat().st_size < 1 << 20:
        try:
            info["sidecar"] = json.loads(side.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            info["sidecar"] = None
    return info


def format_inspect(info: dict) -> str:
    lines = [f"{k}: {info[k]}" for k in ("path", "format", "runtime", "input_shape", "input_dtype", "n_classes",
                                         "bytes", "sha256")]
    side = info.get("sidecar")
    if side:
        p = side.get("parity", {})
        lines.append(f"exported: mode {side.get('mode')}, source {side.get('source')}, parity max |diff| "
                     f"{p.get('max_abs_diff')}, top-1 agreement {p.get('top1_agreement')}")
    return "\n".join(lines)
