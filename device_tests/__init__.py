"""Device-side tests: load any artifact in its real runtime behind one ``predict_proba`` protocol; leakage audit.

``load_artifact(path, batch_size=256, threads=None) -> Runtime`` detects the format from the file's content
(:mod:`device_tests.detect`), refuses pickles and opens it in its runtime (:mod:`device_tests.runtimes`) inside
a confined child process (:mod:`device_tests.sandbox`): LiteRT for ``.tflite``, ONNX Runtime for ``.onnx``, the PyTorch lite
interpreter for ``.ptl`` and the ExecuTorch runtime for ``.pte``.

Importing this package imports no framework: everything heavy is loaded on first use.
"""

from __future__ import annotations

__all__ = ["load_artifact", "detect_format", "RUNTIMES"]


def load_artifact(path, batch_size: int = 256, threads: int | None = None, *, sandbox: bool | None = None):
    """Open the artifact at ``path`` in its runtime; see :func:`device_tests.runtimes.load_artifact`."""
    from device_tests.runtimes import load_artifact as _load

    return _load(path, batch_size=batch_size, threads=threads, sandbox=sandbox)


def __getattr__(name: str):
    if name == "RUNTIMES":
        from device_tests.runtimes import RUNTIMES

        return RUNTIMES
    if name == "detect_format":
        from device_tests.detect import detect_format

        return detect_format
    raise AttributeError(f"module 'device_tests' has no attribute {name!r}")
