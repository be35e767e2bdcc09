"""Implementation of ``safecompress query`` and ``safecompress inspect``."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError


def query_command(artifact: Path, data: Path, out: Path | None, batch_size: int) -> dict:
    """Query ``artifact`` on ``data``'s x (and score its y if present); optionally save the probabilities."""
    import numpy as np

    from device_tests import load_artifact
    from toolkit.errors import ConfigError, DataError
    from toolkit.io import atomic_write_bytes, load_npz

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if out is not None:  # before the inference: an --out that cannot be written must not cost it
        from toolkit.io import check_output_dir, refuse_non_regular

        refuse_non_regular(out)
        check_output_dir(Path(out).parent, "--out", out)
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


# ------------------------------------------------------------------------------------------------ sidecar
# The ``<artifact>.json`` beside an artifact is written by `safecompress export` -- or by whoever handed us the
# artifact. It is informational, so a bad one is ignored with a warning (the artifact can still be inspected);
# a good one is reduced to the fields export writes (exporters.base.ArtifactInfo), each of a bounded size.
_Short = Annotated[str, Strict(), StringConstraints(max_length=256)]
_Count = Annotated[int, Strict(), Field(ge=0, le=2**53)]
_NonNeg = Annotated[float, Strict(), Field(ge=0.0, allow_inf_nan=False)]
_Fraction = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
#: Largest sidecar read (an export writes about 1 KB).
MAX_SIDECAR_BYTES = 1 << 20


class _SidecarPart(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SidecarParityCase(_SidecarPart):
    n: _Count | None = None
    max_abs_diff: _NonNeg | None = None
    mean_abs_diff: _NonNeg | None = None
    top1_agreement: _Fraction | None = None


class SidecarTolerance(_SidecarPart):
    max_abs_diff: _NonNeg | None = None
    min_top1: _Fraction | None = None


class SidecarParity(SidecarParityCase):
    tolerance: SidecarTolerance | None = None
    cases: dict[_Short, SidecarParityCase] = Field(default_factory=dict, max_length=16)


class Sidecar(_SidecarPart):
    """The export record beside an artifact (``<artifact>.json``), as far as ``inspect`` shows it."""

    path: Annotated[str, Strict(), StringConstraints(max_length=4096)] | None = None
    format: _Short | None = None
    mode: _Short | None = None
    sha256: _Short | None = None
    bytes: _Count | None = None
    gzip_bytes: _Count | None = None
    parity: SidecarParity | None = None
    source: dict[_Short, _Short | None] | None = Field(None, max_length=16)
    input_shape: list[_Count] | None = Field(None, max_length=8)
    input_dtype: _Short | None = None
    n_classes: _Count | None = None
    outputs: _Short | None = None
    details: dict[_Short, _Short | bool | _Count | _Finite | None] | None = Field(None, max_length=64)


def read_sidecar(artifact: Path) -> dict | None:
    """The validated sidecar of ``artifact`` as a dict, or None: absent (silently), or unreadable, not JSON,
    too large or deep, or not of the sidecar's shape (with one ``warning:`` line on stderr saying why)."""
    from toolkit.errors import SafeCompressError
    from toolkit.io import load_json_strict
    from toolkit.report.escape import printable

    side = Path(str(artifact) + ".json")
    if not side.is_file():
        return None
    try:
        doc = load_json_strict(side, "sidecar", max_bytes=MAX_SIDECAR_BYTES)
        return Sidecar.model_validate(doc).model_dump()
    except SafeCompressError as exc:
        reason = str(exc)
    except ValidationError as exc:
        from toolkit.config_io import validation_message

        reason = validation_message(exc, f"sidecar {printable(side)}")
    print(f"warning: {printable(reason)}; ignoring it", file=sys.stderr)
    return None


def inspect_command(artifact: Path) -> dict:
    """What the runtime sees in ``artifact``, plus its sidecar (if any, and valid) as recorded at export."""
    from device_tests import load_artifact
    from device_tests.runtimes import RUNTIMES

    runtime = load_artifact(artifact)
    info = {**runtime.describe(), "runtime": RUNTIMES.meta(runtime.format)["runtime"]}
    side = read_sidecar(artifact)
    if side is not None or Path(str(artifact) + ".json").is_file():
        info["sidecar"] = side
    return info


def format_inspect(info: dict) -> str:
    """The human lines of ``inspect``, each made printable (a path or a sidecar value cannot add a line)."""
    from toolkit.report.escape import printable

    lines = [f"{k}: {info[k]}" for k in ("path", "format", "runtime", "input_shape", "input_dtype", "n_classes",
                                         "bytes", "sha256")]
    side = info.get("sidecar")
    if side:
        p = side.get("parity") or {}
        lines.append(f"exported: mode {side.get('mode')}, source {side.get('source')}, parity max |diff| "
                     f"{p.get('max_abs_diff')}, top-1 agreement {p.get('top1_agreement')}")
    return "\n".join(printable(line) for line in lines)
