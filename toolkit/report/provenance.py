"""What reproduces a run: the command line, the seed, the working directory and the package versions.

Versions are read from installed package metadata (``importlib.metadata``), so nothing heavy is imported.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
from collections.abc import Sequence

#: Distributions whose versions decide the figures of a run (those not installed are left out).
PACKAGES = ("safecompress", "numpy", "scikit-learn", "scipy", "torch", "tensorflow", "tf-keras",
            "tensorflow-model-optimization", "onnx", "onnxruntime", "ai-edge-litert", "executorch", "nni",
            "opacus", "matplotlib", "pydantic", "typer")


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def provenance(argv: Sequence[str] | None, seed: int | None) -> dict:
    """``{"command", "argv", "cwd", "seed", "versions", "platform", "created"}`` for report.json/html."""
    args = ["safecompress", *(argv or [])]
    return {"command": shlex.join(args), "argv": list(args), "cwd": os.getcwd(), "seed": seed,
            "versions": package_versions(), "platform": platform.platform(),
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
