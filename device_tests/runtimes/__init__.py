"""Runtimes that answer ``predict_proba`` for artifacts, one per format, registered lazily.

``RUNTIMES`` maps a format name (what :func:`device_tests.detect.detect_format` returns) to a
:class:`~device_tests.runtimes.base.Runtime` subclass. Entry metadata: ``suffix`` (conventional file extension),
``runtime`` (the engine that runs it). These classes run the artifact in the calling process: for anything this
process did not produce itself, :func:`load_artifact` runs them inside the sandbox (:mod:`device_tests.sandbox`).
"""

from __future__ import annotations


from toolkit.registry import Registry

RUNTIMES = Registry("artifact runtime")
RUNTIMES.register("tflite", "device_tests.runtimes.litert:LiteRTRuntime", suffix=".tflite",
                  runtime="LiteRT (ai_edge_litert)")
RUNTIMES.register("onnx", "device_tests.runtimes.onnxrt:OnnxRuntime", suffix=".onnx",
                  runtime="ONNX Runtime (CPUExecutionProvider)")
RUNTIMES.register("ptl", "device_tests.runtimes.lite:LiteInterpreterRuntime", suffix=".ptl",
                  runtime="PyTorch lite interpreter")
RUNTIMES.register("pte", "device_tests.runtimes.executorch_rt:ExecuTorchRuntime", suffix=".pte",
                  runtime="ExecuTorch runtime (XNNPACK)")


def load_artifact(path, batch_size: int = 256, threads: int | None = None, *, sandbox: bool | None = None):
    """Open the artifact at ``path`` and return a runtime answering ``predict_proba``.

    The file is read once; its format comes from the content (pickles are refused). Unless the bytes were
    produced by this process (:func:`device_tests.sandbox.trust`), the artifact is loaded and run only in a
    sandbox child (:class:`~device_tests.sandbox.client.SandboxedRuntime`); ``sandbox=True`` forces that for
    trusted bytes too (benchmarks, tests), ``sandbox=False`` refuses untrusted bytes rather than run them here.
    Every error is a one-line :class:`~toolkit.errors.ArtifactError` / :class:`~toolkit.errors.DataError`
    naming the file.
    """
    from device_tests.detect import detect_format
    from device_tests.sandbox import is_trusted
    from toolkit.errors import ArtifactError
    from toolkit.io import check_input_file, sha256_bytes

    if int(batch_size) < 1:
        raise ArtifactError(f"batch_size must be >= 1, got {batch_size}")
    p = check_input_file(path, "artifact", ArtifactError)
    content = p.read_bytes()
    fmt = detect_format(content, p.name)
    trusted = is_trusted(sha256_bytes(content))
    if sandbox is False and not trusted:
        raise ArtifactError(f"{p.name}: not produced by this process; it can only be opened in the sandbox")
    if sandbox is None:
        sandbox = not trusted
    if sandbox:
        from device_tests.sandbox.client import SandboxedRuntime

        return SandboxedRuntime(p, content, fmt, batch_size=int(batch_size), threads=threads)
    return RUNTIMES.get(fmt)(p, content, batch_size=int(batch_size), threads=threads)
