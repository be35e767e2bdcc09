"""tfmot quantization-aware training: QAT and the collaborative PQAT / CQAT.

* ``tfmot_qat``: ``quantize_model`` (8-bit fake quantization of weights and activations) + fine-tuning.
* ``tfmot_pqat``: prune (:func:`tfmot_prune.prune`), then QAT with ``Default8BitPrunePreserveQuantizeScheme``,
  which multiplies each kernel by its sparsity mask before fake-quantizing it.
* ``tfmot_cqat``: cluster (:func:`tfmot_cluster.cluster`), then QAT with
  ``Default8BitClusterPreserveQuantizeScheme``, which trains the centroids and keeps the cluster assignment;
  ``strip_clustering_cqat`` removes its helper variables afterwards.

The output stays a tf_keras model with fake-quant wrappers (the TFLite converter turns it into int8). Each
quantized kernel's fake-quantized values are measured: at most 2**8 levels per tensor (per output channel for
convolutions) or :class:`~toolkit.errors.CompressionError`. PQAT/CQAT re-check sparsity / clusters after QAT.
Each stage fine-tunes ``fine_tune_epochs`` epochs, so PQAT/CQAT report twice that many.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.compress.backends import tfmot_common as common
from toolkit.compress.backends.tfmot_cluster import ClusterConfig, cluster
from toolkit.compress.backends.tfmot_prune import PruneConfig, prune
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError

BITS = 8


class QATConfig(MethodConfig):
    """8-bit quantization-aware training."""

    method: Literal["tfmot_qat"] = "tfmot_qat"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of quantization-aware fine-tuning on the members")


class PQATConfig(PruneConfig):
    """Pruning, then sparsity-preserving QAT (each stage fine-tunes ``fine_tune_epochs``)."""

    method: Literal["tfmot_pqat"] = "tfmot_pqat"


class CQATConfig(ClusterConfig):
    """Clustering, then cluster-preserving QAT (each stage fine-tunes ``fine_tune_epochs``)."""

    method: Literal["tfmot_cqat"] = "tfmot_cqat"
    # Default8BitClusterPreserveQuantizeScheme does not preserve layers with more than 1024 centroids.
    n_clusters: int = Field(16, ge=2, le=1024, description="Clusters (distinct values) per kernel")


def quantize(model, config, data, scheme=None, what: str = "tfmot_qat"):
    """QAT on a clone of ``model``; returns ``(qat model, seconds, epochs, bits per quantized kernel)``."""
    quant = common.tfmot().quantization.keras
    annotated = quant.quantize_annotate_model(common.clone(model))
    qat = quant.quantize_apply(annotated, scheme) if scheme is not None else quant.quantize_apply(annotated)
    seconds, epochs = common.fine_tune(qat, data, config)
    return qat, seconds, epochs, check_bits(qat, what)


def check_bits(model, what: str) -> dict[str, int]:
    """Fake-quantize every wrapped kernel as inference does and count its levels; ``{kernel: bits}``."""
    bits = {}
    for layer in model.layers:
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", None) or []:
            if not weight.name.split(":")[0].endswith(f"{layer.layer.name}/kernel"):
                continue
            name = f"{layer.layer.name}.kernel"
            q = np.asarray(quantizer(weight, training=False, weights=qvars))
            per_channel = q.reshape(-1, q.shape[-1]).T if getattr(quantizer, "per_axis", False) else q.reshape(1, -1)
            levels = max(len(np.unique(ch)) for ch in per_channel)
            if levels > 2**BITS:
                raise CompressionError(f"{what}: {name} has {levels} fake-quantized levels, more than {BITS} bits hold")
            bits[name] = BITS
    if not bits:
        raise CompressionError(f"{what} quantized no Dense/Conv kernel")
    return bits


def _apply_qat(model, config: QATConfig, data) -> MethodOutput:
    qat, seconds, epochs, bits = quantize(model, config, data)
    return MethodOutput(model=qat, framework="keras", fine_tune_epochs=epochs, fine_tune_seconds=seconds, bits=bits)


def _apply_pqat(model, config: PQATConfig, data) -> MethodOutput:
    combine = common.tfmot().experimental.combine
    pruned, s1, e1, steps = prune(model, config, data, what="tfmot_pqat (pruning stage)")
    qat, s2, e2, bits = quantize(pruned, config, data, combine.Default8BitPrunePreserveQuantizeScheme(),
                                 what="tfmot_pqat")
    common.check_sparsity(qat, config.sparsity, "tfmot_pqat", "sparsity lost during prune-preserving QAT")
    return MethodOutput(model=qat, framework="keras", fine_tune_epochs=e1 + e2, fine_tune_seconds=s1 + s2, bits=bits,
                        extra={"pruning_schedule": config.schedule, **steps})


def _apply_cqat(model, config: CQATConfig, data) -> MethodOutput:
    combine = common.tfmot().experimental.combine
    clustered, s1, e1, layers = cluster(model, config, data, what="tfmot_cqat (clustering stage)")
    qat, s2, e2, bits = quantize(clustered, config, data,
                                 combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
                                 what="tfmot_cqat")
    qat = combine.strip_clustering_cqat(qat)
    common.check_clusters(qat, config.n_clusters, layers, "tfmot_cqat (after QAT)")
    return MethodOutput(model=qat, framework="keras", fine_tune_epochs=e1 + e2, fine_tune_seconds=s1 + s2, bits=bits,
                        extra={"clustered_layers": layers, "n_clusters": config.n_clusters})


_EXPORTS = ("tflite", "onnx")

QAT = Method(
    name="tfmot_qat", backend="tfmot", kind="quantize", framework="keras", config_cls=QATConfig, apply=_apply_qat,
    exports=_EXPORTS,
    description="8-bit quantization-aware training with tfmot quantize_model, fine-tuned on the members; the "
                "output is a fake-quant tf_keras model (int8 once converted to TFLite).",
    targets=lambda c: {"bits": BITS},
    example={"fine_tune_epochs": 1},
)

PQAT = Method(
    name="tfmot_pqat", backend="tfmot", kind="prune+quantize", framework="keras", config_cls=PQATConfig,
    apply=_apply_pqat, exports=_EXPORTS,
    description="Prune-preserving QAT: tfmot magnitude pruning, then quantize_apply with "
                "Default8BitPrunePreserveQuantizeScheme so the zeros survive 8-bit QAT.",
    targets=lambda c: {"sparsity": c.sparsity, "bits": BITS},
    example={"sparsity": 0.5, "fine_tune_epochs": 1},
)

CQAT = Method(
    name="tfmot_cqat", backend="tfmot", kind="cluster+quantize", framework="keras", config_cls=CQATConfig,
    apply=_apply_cqat, exports=_EXPORTS,
    description="Cluster-preserving QAT: tfmot weight clustering, then quantize_apply with "
                "Default8BitClusterPreserveQuantizeScheme (centroids trained, assignments kept), "
                "strip_clustering_cqat.",
    targets=lambda c: {"max_distinct_values": c.n_clusters, "bits": BITS},
    example={"n_clusters": 16, "fine_tune_epochs": 1},
)
