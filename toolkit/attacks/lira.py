"""LiRA, the likelihood-ratio attack of Carlini et al. (2022), from reference-model outputs.

For every evaluation point ``(x, y)`` the statistic is the logit-scaled confidence
``phi = log p_y - log sum_{j != y} p_j`` (:func:`~toolkit.attacks.signals.scaled_logit`). Reference models
trained with the target's recipe give samples of ``phi`` for models that were trained on ``x`` ("in") and that
were not ("out"); each side is modelled as a Gaussian.

* **online** (``lira``, ``lira_pe``): score = ``log N(phi_t; mu_in, s_in) - log N(phi_t; mu_out, s_out)``.
  Needs reference models whose training halves include the audit points.
* **offline** (``lira_offline``, ``lira_offline_pe``): only out-models; score = ``(phi_t - mu_out) / s_out``,
  the one-sided test ``Pr[Z < phi_t]`` of the paper expressed by its z-value (same ranking, no saturation of
  the normal CDF for the most exposed points).
* **variance**: ``"global"`` (the ``lira``/``lira_offline`` names) pools one within-point variance over all
  points per side, which the paper finds better below ~64 reference models; ``"per_example"`` (the ``_pe``
  names) estimates it per point, falling back to the global one where a point has fewer than 2 observations.

With random halves some points have no in- (or no out-) model; their missing mean is the other side's mean
shifted by the average in-minus-out gap of the points that have both. The paper's query augmentations
(flips, shifts) are not used: artifacts are queried on the points as given.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.attacks.signals import scaled_logit
from toolkit.errors import AttackError

#: Lower bound of any standard deviation (identical saturated outputs would otherwise give 0).
MIN_STD = 1e-6


def reference_statistics(ref_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(k, n)`` scaled logits of ``k`` reference models' outputs ``(k, n, C)``."""
    return np.stack([scaled_logit(p, labels) for p in ref_probs])


def gaussian_fit(obs: np.ndarray, mask: np.ndarray, variance: Literal["global", "per_example"]):
    """Per-point mean and std of ``obs`` (k, n) over the references where ``mask`` (k, n) is True.

    Returns ``(mu, sd, count)``; ``mu`` is NaN where a point has no observation.
    """
    count = mask.sum(axis=0)
    w = mask.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (obs * w).sum(axis=0) / count
        var = (((obs - mu) ** 2) * w).sum(axis=0) / count
    several = count >= 2
    if several.any():
        # Pooled within-point variance: the common spread of one point's statistic across retrainings.
        pooled = float(np.sqrt((var[several] * count[several]).sum() / count[several].sum()))
    else:
        # One observation per point (a single reference model): only the spread across points is left.
        pooled = float(np.std(obs[mask])) if mask.any() else 1.0
    pooled = max(pooled, MIN_STD)
    if variance == "global":
        sd = np.full(obs.shape[1], pooled)
    elif variance == "per_example":
        sd = np.where(several, np.sqrt(np.where(several, var, 0.0)), pooled)
        sd = np.maximum(sd, MIN_STD)
    else:
        raise AttackError(f"unknown LiRA variance {variance!r}; known: global, per_example")
    return mu, sd, count


def _fill(mu_a: np.ndarray, mu_b: np.ndarray, what: str) -> np.ndarray:
    """Fill NaNs of ``mu_a`` with ``mu_b`` + the mean (a - b) gap over points that have both."""
    both = np.isfinite(mu_a) & np.isfinite(mu_b)
    missing = ~np.isfinite(mu_a)
    if not missing.any():
        return mu_a
    if not both.any():
        raise AttackError(f"online LiRA: no evaluation point has both in- and out-reference models ({what}); "
                          "train more reference models")
    gap = float(np.mean(mu_a[both] - mu_b[both]))
    return np.where(missing, mu_b + gap, mu_a)


def scores(phi_target: np.ndarray, phi_refs: np.ndarray, ref_in: np.ndarray, *, online: bool,
           variance: Literal["global", "per_example"] = "global") -> tuple[np.ndarray, dict]:
    """LiRA scores (higher = member) from target statistics ``(n,)``, reference statistics ``(k, n)`` and the
    in-mask ``(k, n)``. Returns ``(scores, details)``."""
    from scipy.stats import norm

    ref_in = np.asarray(ref_in, dtype=bool)
    out = ~ref_in
    mu_out, sd_out, n_out = gaussian_fit(phi_refs, out, variance)
    details = {"reference_models": int(phi_refs.shape[0]), "variance": variance, "online": online,
               "min_out_models_per_point": int(n_out.min())}
    if not online:
        if (n_out == 0).all():
            raise AttackError("offline LiRA needs reference models that were not trained on the audit points")
        if (n_out == 0).any():
            # Only possible with online pools: fall back to the global out-mean for those points.
            mu_out = np.where(n_out == 0, np.nanmean(mu_out), mu_out)
        return (phi_target - mu_out) / sd_out, details
    if phi_refs.shape[0] < 2:
        raise AttackError("online LiRA needs at least 2 reference models (some trained on each point, some not)")
    mu_in, sd_in, n_in = gaussian_fit(phi_refs, ref_in, variance)
    mu_in, mu_out = _fill(mu_in, mu_out, "in"), _fill(mu_out, mu_in, "out")
    details["min_in_models_per_point"] = int(n_in.min())
    details["points_without_in_model"] = int((n_in == 0).sum())
    s = norm.logpdf(phi_target, mu_in, sd_in) - norm.logpdf(phi_target, mu_out, sd_out)
    return s, details


def run(inp: AttackInput, *, online: bool = True, variance: Literal["global", "per_example"] = "global") -> AttackResult:
    phi_t = scaled_logit(inp.probs, inp.labels)
    phi_r = reference_statistics(inp.ref_probs, inp.labels)
    s, details = scores(phi_t, phi_r, inp.ref_in, online=online, variance=variance)
    return AttackResult("lira", s, np.ones(inp.n, dtype=bool), details=details)
