"""Model -> artifact on disk, each export validating itself in the artifact's own runtime.

``export(model, fmt, path, sample_x, *, mode="float", representative=None, **options) -> ArtifactInfo``

* ``model``: a torch ``nn.Module``, a tf_keras ``Model``, a :class:`~toolkit.models.tflite_model.TFLiteModel`
  or a :class:`~toolkit.compress.CompressedModel` (its ``.model`` is exported and ``.method`` recorded; a
  format outside the method's ``exports`` is refused).
* ``fmt``: a :data:`FORMATS` name: ``tflite``, ``onnx``, ``ptl``, ``pte``.
* ``mode``: ``float`` (no quantization added at export), ``dynamic``, ``float16`` or ``int8`` where the
  format supports it (see ``FORMATS.meta(fmt)["modes"]``). A source that is already quantized (a tflite_*
  flatbuffer, a torch.ao int8 model) keeps its own quantization: its mode is detected and recorded.
* ``sample_x``: inputs the model takes; used for tracing, parity validation and, for int8, calibration
  unless ``representative`` is given.

Every artifact emits **probabilities**: the exporters append a softmax to the graph (the toolkit's models
output logits). The exception is a flatbuffer made by a ``tflite_*`` compression method, written as is (it
emits logits); runtimes apply a softmax to rows that are not distributions, so queries still answer
probabilities.

The artifact is written to a temporary file next to ``path``, loaded with
:func:`device_tests.load_artifact` and compared with ``toolkit.models.predict_proba`` on ``sample_x``
(:mod:`exporters.validate`); only if it agrees within the tolerance of its format and mode is it renamed
onto ``path`` and the ``<path>.json`` sidecar written. Otherwise :class:`~toolkit.errors.ExportError` and no
file is left behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.registry import Registry

if TYPE_CHECKING:
    from exporters.base import ArtifactInfo

__all__ = ["FORMATS", "export", "ArtifactInfo"]

MODES = ("float", "dynamic", "float16", "int8")

FORMATS = Registry("export format")
# modes: quantization the exporter can apply to a float source; carries: quantized sources it can carry.
FORMATS.register("tflite", "exporters.tflite:EXPORTER", suffix=".tflite", sources=("keras", "tflite"),
                 modes=("float", "dynamic", "float16", "int8"), carries=("dynamic", "float16", "int8"),
                 runtime="LiteRT")
FORMATS.register("onnx", "exporters.onnx:EXPORTER", suffix=".onnx", sources=("torch", "keras"),
                 modes=("float", "dynamic"), carries=("int8",), runtime="ONNX Runtime")
FORMATS.register("ptl", "exporters.ptl:EXPORTER", suffix=".ptl", sources=("torch",),
                 modes=("float",), carries=("dynamic", "int8"), runtime="PyTorch lite interpreter")
FORMATS.register("pte", "exporters.pte:EXPORTER", suffix=".pte", sources=("torch",),
                 modes=("float", "int8"), carries=(), runtime="ExecuTorch (XNNPACK)")


def export(model, fmt: str, path, sample_x, *, mode: str = "float", representative=None, **options) -> ArtifactInfo:
    """Export ``model`` to ``path`` in format ``fmt``; see the module docstring."""
    from exporters.base import run_export

    return run_export(model, fmt, path, sample_x, mode=mode, representative=representative, **options)


def __getattr__(name: str):
    if name == "ArtifactInfo":
        from exporters.base import ArtifactInfo

        return ArtifactInfo
    raise AttributeError(f"module 'exporters' has no attribute {name!r}")
