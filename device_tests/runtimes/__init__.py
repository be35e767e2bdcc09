"""Runtimes that answer ``predict_proba`` for artifacts on disk, one per format, registered lazily.

``RUNTIMES`` maps a format name (what :func:`device_tests.detect.detect_format` returns) to a
:class:`~device_tests.runtimes.base.Runtime` subclass. Entry metadata: ``suffix`` (conventional file
extension), ``isolate`` (the runtime can be crashed by a corrupt file, so a new file is first opened in a
subprocess, see :mod:`device_tests.isolate`).
"""

from __future__ import annotations

from pathlib import Path

from toolkit.registry import Registry

RUNTIMES = Registry("artifact runtime")
RUNTIMES.register("tflite", "device_tests.runtimes.litert:LiteRTRuntime", suffix=".tflite", isolate=True,
                  runtime="LiteRT (ai_edge_litert)")
RUNTIMES.register("onnx", "device_tests.runtimes.onnxrt:OnnxRuntime", suffix=".onnx", isolate=False,
                  runtime="ONNX Runtime (CPUExecutionProvider)")
RUNTIMES.register("ptl", "device_tests.runtimes.lite:LiteInterpreterRuntime", suffix=".ptl", isolate=True,
                  runtime="PyTorch lite interpreter")
RUNTIMES.register("pte", "device_tests.runtimes.executorch_rt:ExecuTorchRuntime", suffix=".pte", isolate=True,
                  runtime="ExecuTorch runtime (XNNPACK)")


def open_artifact(path: Path, content: bytes, fmt: str, batch_size: int = 256, threads: int | None = None):
    """Open already-read ``content`` in the runtime of ``fmt`` in this process (no isolation)."""
    return RUNTIMES.get(fmt)(path, content, batch_size=batch_size, threads=threads)


def load_artifact(path, batch_size: int = 256, threads: int | None = None):
    """Open the artifact at ``path`` in its runtime and return the runtime object.

    The format comes from the content. Pickles are refused. For formats whose runtime a corrupt file could
    crash (``isolate`` metadata), the file is first loaded and queried once in a subprocess; the verdict is
    cached by sha256 for the life of the process. Every error is a one-line
    :class:`~toolkit.errors.ArtifactError` / :class:`~toolkit.errors.DataError` naming the file.
    """
    from device_tests.detect import detect_format
    from device_tests.isolate import check_isolated
    from toolkit.errors import ArtifactError
    from toolkit.io import check_input_file

    if int(batch_size) < 1:
        raise ArtifactError(f"batch_size must be >= 1, got {batch_size}")
    p = check_input_file(path, "artifact", ArtifactError)
    content = p.read_bytes()
    fmt = detect_format(content, p.name)
    if RUNTIMES.meta(fmt).get("isolate"):
        check_isolated(p, content, fmt)
    return open_artifact(p, content, fmt, batch_size=int(batch_size), threads=threads)
