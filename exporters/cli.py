"""Implementation of ``safecompress export``."""

from __future__ import annotations

from pathlib import Path


def export_command(weights: Path, fmt: str, mode: str, data: Path, out: Path, samples: int = 256) -> dict:
    """Load a model saved by ``safecompress train``, export it, return the artifact's sidecar dict."""
    import numpy as np

    from exporters import FORMATS, export
    from toolkit.errors import ConfigError, DataError
    from toolkit.io import load_npz
    from toolkit.models import load_model

    FORMATS.meta(fmt)  # unknown format -> one-line error listing the formats, before any heavy import
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    x = load_npz(data, keys=("x",))["x"]
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{data}: x must hold at least one sample, got shape {x.shape}")
    model, spec = load_model(weights)
    want = tuple(getattr(spec, "input_shape", ()) or ())
    if want and tuple(x.shape[1:]) != want:
        # Flat rows of the right size (e.g. digits as 64 columns) are the same samples: reshape, as queries do.
        if int(np.prod(x.shape[1:])) != int(np.prod(want)):
            raise DataError(f"{data}: samples have shape {tuple(x.shape[1:])}, the model takes {want}")
        x = x.reshape((len(x), *want))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(x), size=min(samples, len(x)), replace=False))
    info = export(model, fmt, out, x[pick], mode=mode, representative=x[pick])
    return info.to_dict()
