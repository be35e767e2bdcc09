"""Per-sample membership signals from probability vectors and labels (numpy only).

Every function takes ``probs`` of shape ``(n, C)`` (one probability vector per sample, as an artifact's
``predict_proba`` returns it) and integer ``labels`` of shape ``(n,)``, and returns one float64 value per
sample. Work is done in float64 after :func:`as_probabilities` validates and renormalizes the rows:
quantized (int8/fp16) artifacts return rows that sum to 1 only up to their output precision.

Numerical care matters here because membership is decided in the tail: for a memorized member ``p_y`` is
``1 - 1e-7`` or closer, which float32 rounds to exactly 1.0, so ``-log(p_y)`` would tie at 0 for every
confident sample. The sum of the *other* classes' probabilities keeps that information (``1e-7`` is
representable), so the loss is computed as ``-log1p(-sum_{j != y} p_j)`` where ``p_y > 1/2`` and as
``-log(p_y)`` elsewhere. LiRA's logit scaling ``log p_y - log sum_{j != y} p_j`` uses the same two sums.

A probability of exactly 0 is treated as :data:`FLOOR` (1e-45, below every positive float32), so
saturated outputs give large finite signals instead of infinities.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import AttackError

#: Stand-in for probabilities that are exactly 0 (smaller than the smallest positive float32 denormal).
FLOOR = 1e-45


def as_probabilities(probs: np.ndarray, labels: np.ndarray | None = None, what: str = "outputs") -> np.ndarray:
    """Validate ``(n, C)`` probability rows (finite, >= 0, positive sums) and return them renormalized, float64.

    With ``labels`` also checks they are integer indices ``0..C-1`` of matching length.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 2:
        raise AttackError(f"{what}: expected probability vectors of shape (n, n_classes>=2), got shape {p.shape}")
    p = p.astype(np.float64, copy=False)
    if not np.isfinite(p).all():
        raise AttackError(f"{what}: {int((~np.isfinite(p)).any(axis=1).sum())} output row(s) contain NaN or inf")
    if (p < 0).any():
        raise AttackError(f"{what}: negative values; attacks need probability vectors, not logits")
    sums = p.sum(axis=1)
    if (sums <= 0).any():
        raise AttackError(f"{what}: {int((sums <= 0).sum())} output row(s) are all zero")
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (len(p),):
            raise AttackError(f"{what}: {len(p)} output rows but labels of shape {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
            raise AttackError(f"{what}: labels must lie in 0..{p.shape[1] - 1}")
    return p / sums[:, None]


def _split(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalized probs, p_y, sum of the other classes' probabilities), all float64."""
    p = as_probabilities(probs, labels)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(p))
    p_y = p[rows, y]
    others = p.copy()
    others[rows, y] = 0.0
    # Summed directly, not as 1 - p_y: that difference is 0 in float32/float64 once p_y rounds to 1.
    return p, p_y, others.sum(axis=1)


def _log_py(p_y: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """log p_y, via log1p(-rest) where p_y > 1/2 (precise near 1), via log(p_y) elsewhere (precise near 0)."""
    near_one = p_y > 0.5
    out = np.empty_like(p_y)
    out[near_one] = np.log1p(-rest[near_one])
    out[~near_one] = np.log(np.maximum(p_y[~near_one], FLOOR))
    return out


def true_class_probability(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_y``: the probability given to the true label."""
    return _split(probs, labels)[1]


def loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy ``-log p_y``, stable near ``p_y = 1`` (see the module docstring). Members: lower."""
    _, p_y, rest = _split(probs, labels)
    return -_log_py(p_y, rest)


def confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's prediction confidence: ``p_y``. Members: higher."""
    return true_class_probability(probs, labels)


def entropy(probs: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Shannon entropy of the output vector (label not used). Members: lower."""
    p = as_probabilities(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.maximum(p, FLOOR)), 0.0)
    return terms.sum(axis=1)


def modified_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal (2021) modified entropy. Members: lower.

    ``Mentr = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)``: it falls with ``p_y`` and rises when the
    probability mass goes to a wrong class, unlike plain entropy, which is low for confident mistakes too.
    """
    p, p_y, rest = _split(probs, labels)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(p))
    first = -rest * _log_py(p_y, rest)
    # log(1 - p_j): log1p is exact for p_j <= 1/2. Only a row's top class can exceed 1/2 (a confident
    # mistake when it is not y); there 1 - p_j is summed from the other entries, as for the loss.
    log_one_minus = np.log1p(-np.minimum(p, 0.5))
    top = np.argmax(p, axis=1)
    big = p[rows, top] > 0.5
    others = p.copy()
    others[rows, top] = 0.0
    log_one_minus[rows[big], top[big]] = np.log(np.maximum(others.sum(axis=1)[big], FLOOR))
    second = -(p * log_one_minus)
    second[rows, y] = 0.0
    return first + second.sum(axis=1)


def correctness(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the top class is the true label, else 0.0 (the gap attack's signal). Members: 1."""
    p = as_probabilities(probs, labels)
    return (np.argmax(p, axis=1) == np.asarray(labels)).astype(np.float64)


def scaled_logit(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's logit scaling ``log p_y - log sum_{j != y} p_j`` (Carlini et al. 2022), stable at both ends.

    The transform makes a model's confidence on one example approximately Gaussian across retrainings,
    which is what LiRA's parametric test assumes. Members: higher.
    """
    _, p_y, rest = _split(probs, labels)
    return _log_py(p_y, rest) - np.log(np.maximum(rest, FLOOR))


def sorted_probabilities(probs: np.ndarray) -> np.ndarray:
    """Each row sorted in descending order (label-free, as the SafeCompress attacker's probability stream)."""
    p = as_probabilities(probs)
    return -np.sort(-p, axis=1)


def aligned_sorted(anchor: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``anchor`` sorted descending, and ``other`` reordered by *the anchor's* sort permutation (CompLeak SR).

    Comparing the two aligned vectors class by class shows how compression moved probability mass between
    the classes the original ranked first, second, ...
    """
    a = as_probabilities(anchor)
    b = as_probabilities(other)
    if a.shape != b.shape:
        raise AttackError(f"cannot align outputs of shapes {a.shape} and {b.shape}")
    order = np.argsort(-a, axis=1, kind="stable")
    return np.take_along_axis(a, order, axis=1), np.take_along_axis(b, order, axis=1)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), n_classes), dtype=np.float64)
    out[np.arange(len(y)), y] = 1.0
    return out
