"""Framework-neutral sparse masks: Erdős–Rényi initialization and the dynamic sparse update (numpy only).

A *mask set* is ``{weight name: bool array}`` with each array shaped like its weight tensor in the
framework's own layout (torch ``(out, in[, kh, kw])``, Keras ``(in, out)`` / ``(kh, kw, in, out)``).
Nothing here depends on the layout: Eq. 5's score ``sum(shape) / prod(shape)`` is permutation-invariant
and the update works on flattened arrays.

Stage 1 (paper §4.3.1, Eq. 5) — :func:`erk_densities`, :func:`random_masks`:
    density of layer l = ``min(1, eps * sum(shape_l) / prod(shape_l))``; for a dense ``(n_in, n_out)`` matrix
    that is Eq. 5's ``eps (n_in + n_out) / (n_in n_out)``, for a ``kh x kw`` convolution the ERK form of
    Evci et al. (2020) ``eps (n_in + n_out + kh + kw) / (n_in n_out kh kw)``. ``eps`` is solved so that the
    kept weights total exactly ``round(density * N)``; layers whose density would exceed 1 are made dense and
    ``eps`` is solved again over the rest. Each layer then keeps exactly its rounded count of positions
    drawn uniformly at random (the expected count of Eq. 5's Bernoulli draws, so the density is exact).

Stage 2, branch 1 (§4.3.2) — :func:`update_masks`: per layer, prune ``k`` active positions, then grow the same
``k`` among the positions that were inactive *before* pruning (a connection pruned in this update is not
regrown in it), so every layer keeps its count. ``k`` is capped by the number of inactive positions, so a
dense layer never changes. Pruning and growth strategies are :data:`PRUNERS` / :data:`GROWERS` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from toolkit.errors import CompressionError, ConfigError
from toolkit.registry import Registry

Masks = dict[str, np.ndarray]

#: Threshold pruning never removes more than this fraction of a layer's active weights in one update.
THRESHOLD_MAX_FRACTION = 0.5


# ----------------------------------------------------------------------------------------- Stage 1: ERK
def erk_scores(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, float]:
    """Eq. 5's per-layer factor ``sum(shape) / prod(shape)`` (the density is ``eps`` times it)."""
    out = {}
    for name, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise CompressionError(f"cannot sparsify {name!r} of shape {shape}: need a weight matrix or kernel")
        out[name] = float(sum(shape)) / float(np.prod(shape, dtype=np.float64))
    return out


def erk_densities(shapes: Mapping[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Per-layer densities of Eq. 5 whose kept weights total ``density`` of all weights (before rounding).

    Layers whose density would exceed 1 are made dense and ``eps`` is solved again over the others.
    """
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density!r}")
    scores = erk_scores(shapes)
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in scores if n not in dense]
        budget = density * total - sum(sizes[n] for n in dense)
        if not free:
            break
        eps = budget / sum(scores[n] * sizes[n] for n in free)
        over = [n for n in free if eps * scores[n] > 1.0]
        if not over:
            break
        # Make the layer that overflows most dense first, then re-solve: several may fit after that.
        dense.add(max(over, key=lambda n: scores[n]))
    return {n: 1.0 if n in dense else float(eps * scores[n]) for n in scores}


def kept_counts(shapes: Mapping[str, tuple[int, ...]], density: float) -> dict[str, int]:
    """Whole numbers of kept weights per layer summing to exactly ``round(density * N)``.

    Rounds Eq. 5's ``density_l * size_l`` by the largest-remainder method (each layer keeps at least one
    weight, at most all of them).
    """
    dens = erk_densities(shapes, density)
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    target = int(round(density * sum(sizes.values())))
    exact = {n: dens[n] * sizes[n] for n in shapes}
    counts = {n: int(min(sizes[n], max(1, np.floor(exact[n])))) for n in shapes}
    # Distribute the remainder to the largest fractional parts (ties: layer order) without exceeding sizes.
    order = sorted(shapes, key=lambda n: (-(exact[n] - np.floor(exact[n])), list(shapes).index(n)))
    while sum(counts.values()) < target:
        grown = False
        for n in order:
            if sum(counts.values()) >= target:
                break
            if counts[n] < sizes[n]:
                counts[n] += 1
                grown = True
        if not grown:
            break
    while sum(counts.values()) > target:
        shrunk = False
        for n in reversed(order):
            if sum(counts.values()) <= target:
                break
            if counts[n] > 1:
                counts[n] -= 1
                shrunk = True
        if not shrunk:
            break
    return counts


def random_masks(shapes: Mapping[str, tuple[int, ...]], density: float, seed: int) -> Masks:
    """Stage 1: an Erdős–Rényi random mask per layer with :func:`kept_counts` positions kept."""
    rng = np.random.default_rng(seed)
    counts = kept_counts(shapes, density)
    masks = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        flat = np.zeros(size, dtype=bool)
        flat[rng.choice(size, size=counts[name], replace=False)] = True
        masks[name] = flat.reshape(shape)
    return masks


def density_of(masks: Mapping[str, np.ndarray]) -> float:
    """Kept fraction over all masked weights."""
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return kept / max(1, sum(int(m.size) for m in masks.values()))


def layer_densities(masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {n: float(np.count_nonzero(m)) / max(1, m.size) for n, m in masks.items()}


# ------------------------------------------------------------------------- Stage 2: dynamic sparse update
@dataclass(frozen=True)
class UpdateParams:
    """What one dynamic sparse update needs besides the weights and masks.

    ``fraction``: the share of each layer's active weights magnitude pruning removes (and the count threshold
    pruning may not exceed beyond :data:`THRESHOLD_MAX_FRACTION`); ``threshold_quality``: Han et al. (2015)'s
    quality parameter q of threshold pruning, ``tau = q * std(active weights of the layer)``.
    """

    fraction: float
    threshold_quality: float


def _stable_order(values: np.ndarray) -> np.ndarray:
    """Indices sorting ``values`` ascending, ties by position (deterministic)."""
    return np.argsort(values, kind="stable")


def prune_magnitude(weights: np.ndarray, active: np.ndarray, params: UpdateParams) -> np.ndarray:
    """Flat indices of the ``round(fraction * n_active)`` active weights of smallest ``|w|``."""
    idx = np.flatnonzero(active)
    k = int(round(params.fraction * len(idx)))
    if k <= 0:
        return idx[:0]
    mags = np.abs(weights.ravel()[idx])
    return idx[_stable_order(mags)[:k]]


def prune_threshold(weights: np.ndarray, active: np.ndarray, params: UpdateParams) -> np.ndarray:
    """Flat indices of active weights with ``|w| < tau``, ``tau = q * std(active weights)`` (Han et al. 2015).

    At most :data:`THRESHOLD_MAX_FRACTION` of the layer's active weights (the smallest ones) are removed.
    """
    idx = np.flatnonzero(active)
    if len(idx) == 0:
        return idx
    w = weights.ravel()[idx]
    tau = params.threshold_quality * float(np.std(w))
    mags = np.abs(w)
    n = min(int(np.count_nonzero(mags < tau)), int(np.floor(THRESHOLD_MAX_FRACTION * len(idx))))
    return idx[_stable_order(mags)[:n]]


def grow_gradient(eligible: np.ndarray, k: int, gradient: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` eligible flat positions of largest ``|dL/dw|`` (ties: the earliest positions), ascending."""
    if gradient is None:
        raise CompressionError("gradient growth needs the dense gradient of a member batch")
    g = np.abs(gradient.ravel()[eligible])
    if k >= len(g):
        return eligible
    # The set a stable descending sort would take, without sorting every eligible position: all values
    # above the k-th largest, then the earliest positions equal to it.
    kth = np.partition(g, len(g) - k)[len(g) - k]
    above = np.flatnonzero(g > kth)
    ties = np.flatnonzero(g == kth)[:k - len(above)]
    return eligible[np.sort(np.concatenate([above, ties]))]


def grow_random(eligible: np.ndarray, k: int, gradient: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """``k`` eligible flat positions drawn uniformly without replacement."""
    return np.sort(rng.choice(eligible, size=k, replace=False))


#: ``prune(weights, active_flat_bool, params) -> flat indices to remove, smallest |w| first``.
PRUNERS = Registry("pruning strategy")
PRUNERS.register("magnitude", prune_magnitude, description="remove the active weights of smallest magnitude")
PRUNERS.register("threshold", prune_threshold, description="remove active weights with |w| below q x std")
#: ``grow(eligible_flat_indices, k, gradient_or_None, rng) -> k flat indices to reactivate``.
GROWERS = Registry("growth strategy")
GROWERS.register("gradient", grow_gradient, needs_gradient=True,
                 description="reactivate the inactive weights of largest |dL/dw| on a member batch")
GROWERS.register("random", grow_random, needs_gradient=False, description="reactivate inactive weights uniformly")


@dataclass
class UpdateReport:
    """Per-layer numbers of connections moved by one update (pruned == grown in every layer)."""

    moved: dict[str, int]

    @property
    def total(self) -> int:
        return int(sum(self.moved.values()))


def update_masks(weights: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], prune: str, grow: str,
                 params: UpdateParams, gradients: Mapping[str, np.ndarray] | None = None,
                 seed: int = 0) -> tuple[Masks, UpdateReport]:
    """One dynamic sparse update: prune with ``PRUNERS[prune]``, regrow as many with ``GROWERS[grow]``.

    Returns the new masks (same kept count per layer as ``masks``) and how many connections moved per layer.
    The caller zeroes weights outside the new masks; grown weights start at zero because they were inactive.
    """
    pruner = PRUNERS.get(prune)
    grower = GROWERS.get(grow)
    rng = np.random.default_rng(seed)
    new: Masks = {}
    moved: dict[str, int] = {}
    for name, mask in masks.items():
        w = np.asarray(weights[name])
        if w.shape != mask.shape:
            raise CompressionError(f"weight {name!r} has shape {w.shape} but its mask {mask.shape}")
        active = mask.ravel()
        inactive = np.flatnonzero(~active)
        removed = pruner(w, active, params)
        # Regrow only where the layer was inactive before this update, which caps k at that count
        # (pruners list the smallest first, so the cap keeps the least important removals).
        removed = removed[:len(inactive)]
        k = len(removed)
        flat = active.copy()
        if k:
            grad = None if gradients is None else np.asarray(gradients[name])
            grown = grower(inactive, k, grad, rng)
            flat[removed] = False
            flat[grown] = True
        if int(flat.sum()) != int(active.sum()):
            raise CompressionError(f"sparse update changed the kept count of {name!r}: {int(active.sum())} -> "
                                   f"{int(flat.sum())}")
        new[name] = flat.reshape(mask.shape)
        moved[name] = k
    return new, UpdateReport(moved)
