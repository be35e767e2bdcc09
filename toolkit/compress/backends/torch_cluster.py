"""Weight clustering (k-means weight sharing) for PyTorch models, fine-tuned with the centroids tied.

For every Linear/Conv weight with more distinct values than ``n_clusters``, scikit-learn's ``KMeans``
clusters the values (1-D, seeded). The weight is then reparametrized with
``torch.nn.utils.parametrize``: the trainable tensor becomes the ``(n_clusters,)`` centroid vector and the
layer computes ``weight = centroids[labels]``. Autograd therefore sums the gradients of all weights of a
cluster onto its shared centroid, and the optimizer moves the centroids, never single weights: weight sharing
holds through fine-tuning by construction. ``remove_parametrizations`` finally bakes ``centroids[labels]``
into a plain weight, which is measured: a clustered layer with more than ``n_clusters`` distinct values
raises :class:`~toolkit.errors.CompressionError`.

A weight that already has at most ``n_clusters`` distinct values is left alone (it meets the target), which
also makes ``n_clusters >= distinct values`` a true no-op. Biases are not clustered.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError, ConfigError

#: KMeans holds a (weights x clusters) distance block per iteration: refuse sizes that would not fit
#: (2**28 float64 entries = 2 GiB) instead of exhausting memory.
MAX_DISTANCE_ENTRIES = 2**28


class ClusterConfig(MethodConfig):
    """Weight sharing: every clustered weight keeps at most ``n_clusters`` distinct values."""

    method: Literal["torch_cluster"] = "torch_cluster"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning the shared centroids on the members "
                                                       "(0 = snap the weights to the k-means centroids)")
    n_clusters: int = Field(16, ge=2, le=65536, description="Clusters (distinct values) per Linear/Conv weight")
    init: Literal["kmeans++", "random", "linear"] = Field(
        "kmeans++", description="KMeans initialization: kmeans++ (sklearn 'k-means++'), random (sklearn 'random', "
                                "seeded) or linear (centroids evenly spaced between the weight's min and max)")
    max_iter: int = Field(300, ge=1, description="KMeans iterations at most (sklearn max_iter)")


@cache
def _tie_cls():
    torch = common.torch()

    class SharedWeights(torch.nn.Module):
        """Parametrization ``centroids (k,) -> centroids[labels].reshape(shape)``: weights tied per cluster."""

        def __init__(self, labels, n_clusters: int, shape):
            super().__init__()
            self.register_buffer("labels", labels)
            self.n_clusters = int(n_clusters)
            self.shape = tuple(shape)

        def forward(self, centroids):
            # index_select, not centroids[labels]: its backward (index_add) sums each cluster's gradients in a
            # fixed order, while advanced indexing accumulates them nondeterministically across threads.
            return torch.index_select(centroids, 0, self.labels).reshape(self.shape)

        def right_inverse(self, weight):
            # Centroid = mean of the weights assigned to it (what k-means converged to).
            flat = weight.detach().reshape(-1)
            sums = torch.zeros(self.n_clusters, dtype=flat.dtype).index_add_(0, self.labels, flat)
            counts = torch.bincount(self.labels, minlength=self.n_clusters).clamp_min(1).to(flat.dtype)
            return sums / counts

    return SharedWeights


def _kmeans(values: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, centroids)`` of 1-D ``values`` with scikit-learn's KMeans, seeded, on the pinned threads."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from toolkit.frameworks import thread_count

    k = config.n_clusters
    column = values.reshape(-1, 1).astype(np.float64)
    if config.init == "linear":
        init = np.linspace(column.min(), column.max(), k).reshape(-1, 1)
    else:
        init = {"kmeans++": "k-means++", "random": "random"}[config.init]
    with threadpool_limits(thread_count()):
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=config.max_iter, random_state=config.seed).fit(column)
    return km.labels_.astype(np.int64), km.cluster_centers_.reshape(-1)


def _apply(model, config: ClusterConfig, data) -> MethodOutput:
    torch = common.torch()
    import torch.nn.utils.parametrize as parametrize
    tie = _tie_cls()
    k = config.n_clusters
    clustered: list[tuple[str, object]] = []
    for name, mod in common.prunable_layers(model):
        w = mod.weight.detach().cpu().numpy()
        if len(np.unique(w)) <= k:
            continue
        if w.size * k > MAX_DISTANCE_ENTRIES:
            raise ConfigError(f"n_clusters={k} is too many for layer {name} with {w.size} weights "
                              f"(k-means needs a weights x clusters matrix); use fewer clusters")
        labels, centers = _kmeans(w, config)
        param = tie(torch.from_numpy(labels), k, w.shape)
        parametrize.register_parametrization(mod, "weight", param, unsafe=True)
        with torch.no_grad():
            mod.parametrizations.weight.original.copy_(torch.from_numpy(centers).to(mod.weight.dtype))
        clustered.append((name, mod))
    seconds, epochs = common.fine_tune(model, data, config)
    counts = {}
    for name, mod in clustered:
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
        counts[f"{name}.weight"] = n = int(torch.unique(mod.weight.detach()).numel())
        if n > k:
            raise CompressionError(f"torch_cluster left {n} distinct values in {name}.weight, "
                                   f"more than the {k} clusters asked for")
    notes = [] if clustered else [f"no weight had more than {k} distinct values: nothing clustered"]
    return MethodOutput(model=model, framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"clustered_layers": list(counts), "distinct_values": counts, "n_clusters": k},
                        notes=notes)


CLUSTER = Method(
    name="torch_cluster", backend="torch", kind="cluster", framework="torch", config_cls=ClusterConfig, apply=_apply,
    exports=("onnx", "ptl", "pte"),
    description="k-means weight sharing per Linear/Conv weight with scikit-learn KMeans (k-means++, random or "
                "linear init), fine-tuned on the members with the weights tied to their centroid through a "
                "torch.nn.utils.parametrize parametrization (gradients summed per cluster), then baked in.",
    targets=lambda c: {"max_distinct_values": c.n_clusters},
    example={"n_clusters": 16, "fine_tune_epochs": 1},
    noop={"n_clusters": 65536, "fine_tune_epochs": 0},
)
