"""What ``compress`` returns: the compressed model plus measured (never assumed) compression figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from toolkit.compress.config import MethodConfig


@dataclass
class LayerStats:
    """Measured figures of one weight tensor."""

    name: str
    size: int
    zero_fraction: float
    distinct_values: int
    dtype: str
    bits: int | None = None


@dataclass
class CompressionStats:
    """Measured compression of a model.

    ``sparsity`` is the fraction of exactly-zero weights over all prunable weight tensors;
    ``params_before``/``params_after`` count parameters (they differ only when a structured pruner really
    removed channels, e.g. NNI ``ModelSpeedup``); ``bits`` maps layer -> bit width for quantized layers;
    ``max_distinct_values`` is the largest number of distinct values in any clustered layer.
    """

    sparsity: float
    params_before: int
    params_after: int
    layers: list[LayerStats] = field(default_factory=list)
    bits: dict[str, int] = field(default_factory=dict)
    max_distinct_values: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompressedModel:
    """The result of ``compress``.

    ``model`` is a framework object (``torch.nn.Module``, ``tf_keras.Model``) or a
    :class:`~toolkit.models.tflite_model.TFLiteModel`; ``framework`` says which. ``accuracy`` is measured
    on the held-out (non-member) evaluation data given to ``compress``; ``base_accuracy`` is the input
    model's on the same data.
    """

    model: Any
    method: str
    backend: str
    kind: str
    framework: str
    config: MethodConfig
    stats: CompressionStats
    accuracy: float | None = None
    base_accuracy: float | None = None
    seconds: float = 0.0
    fine_tune_epochs: int = 0
    seconds_per_epoch: float | None = None
    notes: list[str] = field(default_factory=list)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from toolkit.models import predict_proba

        return predict_proba(self.model, x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (everything but the model object)."""
        return {
            "method": self.method, "backend": self.backend, "kind": self.kind, "framework": self.framework,
            "params": self.config.model_dump(mode="json"), "stats": self.stats.to_dict(),
            "accuracy": self.accuracy, "base_accuracy": self.base_accuracy, "seconds": round(self.seconds, 4),
            "fine_tune_epochs": self.fine_tune_epochs,
            "seconds_per_epoch": None if self.seconds_per_epoch is None else round(self.seconds_per_epoch, 4),
            "notes": list(self.notes),
        }
