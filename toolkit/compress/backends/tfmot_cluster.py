"""tfmot weight clustering: ``cluster_weights`` + fine-tuning + ``strip_clustering``.

Every Dense/Conv kernel with more distinct values than ``n_clusters`` is wrapped (a kernel that already has
at most that many values meets the target as it is and is left alone, which also makes
``n_clusters >= distinct values`` a true no-op). After stripping, each clustered kernel must hold at most
``n_clusters`` distinct values, or :class:`~toolkit.errors.CompressionError` is raised.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.compress.backends import tfmot_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import ConfigError

#: Config name -> tfmot ``CentroidInitialization`` member.
INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
#: tfmot assigns weights to centroids through a (weights x clusters) distance matrix: refuse sizes that
#: would not fit in memory (2**28 float32 = 1 GiB) instead of crashing.
MAX_DISTANCE_ENTRIES = 2**28


class ClusterConfig(MethodConfig):
    """Weight sharing: every clustered kernel keeps at most ``n_clusters`` distinct values."""

    method: Literal["tfmot_cluster"] = "tfmot_cluster"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning the centroids on the members "
                                                       "(0 = snap the weights to the initial centroids)")
    n_clusters: int = Field(16, ge=2, le=65536, description="Clusters (distinct values) per kernel")
    init: Literal["kmeans++", "linear", "density", "random"] = Field(
        "kmeans++", description="Centroid initialization: kmeans++, linear (evenly spaced between min and max), "
                                "density (by the weights' CDF) or random (uniform, seeded)")


def cluster(model, config: ClusterConfig, data, what: str = "tfmot_cluster"):
    """Cluster a clone of ``model``; returns ``(stripped model, seconds, epochs, clustered kernel names)``."""
    from toolkit.frameworks import keras

    clustering = common.tfmot().clustering.keras
    init = getattr(clustering.CentroidInitialization, INITS[config.init])
    k = config.n_clusters
    clustered: list[str] = []

    def wrap(layer):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(np.unique(kernel.numpy())) <= k:
            return layer
        if kernel.shape.num_elements() * k > MAX_DISTANCE_ENTRIES:
            raise ConfigError(f"n_clusters={k} is too many for layer {layer.name} with {kernel.shape.num_elements()} "
                              f"weights (tfmot needs a weights x clusters matrix); use fewer clusters")
        clustered.append(f"{layer.name}.kernel")
        return clustering.cluster_weights(layer, number_of_clusters=k, cluster_centroids_init=init)

    # clone_function receives the clone's own layer objects: wrapping them leaves the caller's model intact.
    wrapped = keras().models.clone_model(common.clone(model), clone_function=wrap)
    seconds, epochs = common.fine_tune(wrapped, data, config)
    stripped = clustering.strip_clustering(wrapped)
    common.check_clusters(stripped, k, clustered, what)
    return stripped, seconds, epochs, clustered


def _apply(model, config: ClusterConfig, data) -> MethodOutput:
    clustered_model, seconds, epochs, layers = cluster(model, config, data)
    notes = [] if layers else [f"no kernel had more than {config.n_clusters} distinct values: nothing clustered"]
    return MethodOutput(model=clustered_model, framework="keras", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"clustered_layers": layers, "n_clusters": config.n_clusters}, notes=notes)


CLUSTER = Method(
    name="tfmot_cluster", backend="tfmot", kind="cluster", framework="keras", config_cls=ClusterConfig, apply=_apply,
    exports=("tflite", "onnx"),
    description="Weight clustering with tfmot cluster_weights (k-means++, linear, density or random centroid "
                "init), fine-tuning of the centroids on the members, strip_clustering.",
    targets=lambda c: {"max_distinct_values": c.n_clusters},
    example={"n_clusters": 16, "fine_tune_epochs": 1},
    noop={"n_clusters": 65536, "fine_tune_epochs": 0},
)
