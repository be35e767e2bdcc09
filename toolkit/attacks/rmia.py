"""RMIA, the relative membership inference attack of Zarifzadeh et al. (ICML 2024).

For a candidate ``x`` and population samples ``z`` (never in the target's training set), with
``p(.|theta)`` the probability a model gives to the true label:

    ratio(x) = p(x | target) / p(x),   p(x) = mean over reference models of p(x | theta_ref)
    LR(x, z) = ratio(x) / ratio(z),   score(x) = fraction of z with LR(x, z) > gamma

``p(x)`` is the probability of ``x`` under a model trained on random population data, which includes ``x``
half of the time. **Online** (``rmia_online``) averages in- and out-models. **Offline** (``rmia``) has
out-models only and uses the paper's linear approximation ``p(x) = ((1 + a) p_OUT(x) + (1 - a)) / 2``. ``a``
is tuned as the paper suggests, from reference models alone: each of up to 4 reference models plays the
target on the population (where its in/out membership is known), the others are its out-references, and the
``a`` in 0, 0.1, ..., 1 with the best mean AUC is kept (with one reference model, ``a = 0.3``). ``p(z)`` needs
no approximation where it can be avoided: population samples are in about half of the references, so it is
the mean of the in-mean and the out-mean (:func:`marginal_px`); online ``p(x)`` is computed the same way.

For a fixed set of ``z`` the score is a non-decreasing step function of ``ratio(x)``; ties between steps are
broken by ``ratio(x)`` itself (adding less than one step), so the full ranking of the likelihood ratio is kept
for TPR at low FPR while the values stay RMIA's fractions. ``gamma`` therefore moves only those fractions.
"""

from __future__ import annotations

import numpy as np

from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.attacks.signals import FLOOR, true_class_probability
from toolkit.errors import AttackError

A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
A_DEFAULT = 0.3


def _true_probs(ref_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([true_class_probability(p, labels) for p in ref_probs])  # (k, n)


def _side_mean(p_ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-point mean over the references where ``mask`` is True; NaN where there are none."""
    count = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (p_ref * mask).sum(axis=0) / np.maximum(count, 1), np.nan)


def offline_px(p_ref: np.ndarray, ref_in: np.ndarray, a: float) -> np.ndarray:
    """``p(x)`` from out-models with the offline approximation; points without out-models use all models."""
    px = 0.5 * ((1.0 + a) * _side_mean(p_ref, ~ref_in) + (1.0 - a))
    return np.where(np.isfinite(px), px, p_ref.mean(axis=0))


def marginal_px(p_ref: np.ndarray, ref_in: np.ndarray, a: float) -> np.ndarray:
    """``p(x)`` as the mean of the in-mean and the out-mean where a point has both kinds of models (the balanced
    half-in design of the paper, also when random halves give unequal counts); the offline approximation where
    it has only out-models; the in-mean where it has only in-models."""
    m_in, m_out = _side_mean(p_ref, ref_in), _side_mean(p_ref, ~ref_in)
    balanced = 0.5 * (m_in + m_out)
    approx = 0.5 * ((1.0 + a) * m_out + (1.0 - a))
    return np.where(np.isfinite(balanced), balanced, np.where(np.isfinite(approx), approx, m_in))


def tune_a(pop_ref_p: np.ndarray, pop_ref_in: np.ndarray, max_targets: int = 4) -> tuple[float, dict]:
    """Choose ``a`` with reference models only (see the module docstring). ``(a, {a: mean AUC})``."""
    from sklearn.metrics import roc_auc_score

    k = pop_ref_p.shape[0]
    if k < 2:
        return A_DEFAULT, {}
    aucs = {a: [] for a in A_GRID}
    for j in range(min(k, max_targets)):
        others = [i for i in range(k) if i != j]
        o_in = pop_ref_in[others]
        usable = (~o_in).any(axis=0)  # points with at least one other out-model
        member = pop_ref_in[j][usable]
        if member.all() or not member.any():
            continue
        for a in A_GRID:
            px = offline_px(pop_ref_p[others][:, usable], o_in[:, usable], a)
            ratio = pop_ref_p[j][usable] / np.maximum(px, FLOOR)
            aucs[a].append(roc_auc_score(member, ratio))
    means = {a: float(np.mean(v)) for a, v in aucs.items() if v}
    if not means:
        return A_DEFAULT, {}
    return float(max(means, key=means.get)), {str(a): round(v, 4) for a, v in means.items()}


def scores(p_target_x, p_ref_x, ref_in_x, p_target_z, p_ref_z, ref_in_z, *, online: bool, a: float,
           gamma: float = 1.0) -> np.ndarray:
    """RMIA scores (higher = member) from true-label probabilities ``(n,)``/``(m,)``, reference ones
    ``(k, n)``/``(k, m)`` and in-masks. See the module docstring."""
    ref_in_x = np.asarray(ref_in_x, dtype=bool)
    if online:
        if not ref_in_x.any():
            raise AttackError("online RMIA needs reference models trained on the audit points")
        px = marginal_px(p_ref_x, ref_in_x, a)
    else:
        px = offline_px(p_ref_x, ref_in_x, a)
    pz = marginal_px(p_ref_z, np.asarray(ref_in_z, dtype=bool), a)
    log_ratio_x = np.log(np.maximum(p_target_x, FLOOR)) - np.log(np.maximum(px, FLOOR))
    log_ratio_z = np.sort(np.log(np.maximum(p_target_z, FLOOR)) - np.log(np.maximum(pz, FLOOR)))
    m = len(log_ratio_z)
    # LR(x, z) > gamma  <=>  log ratio(z) < log ratio(x) - log gamma
    frac = np.searchsorted(log_ratio_z, log_ratio_x - np.log(gamma), side="left") / m
    from scipy.stats import rankdata

    # Average ranks in [0, 1): equal ratios keep equal scores (an index-order tie-break would favour one side).
    order = (rankdata(log_ratio_x, method="average") - 1.0) / len(log_ratio_x)
    return frac + order / (m + 1.0)


def run(inp: AttackInput, *, online: bool = False, gamma: float = 1.0, a: float | str = "auto") -> AttackResult:
    if gamma <= 0:
        raise AttackError(f"RMIA gamma must be positive, got {gamma}")
    p_t_x = true_class_probability(inp.probs, inp.labels)
    p_r_x = _true_probs(inp.ref_probs, inp.labels)
    p_t_z = true_class_probability(inp.pop_probs, inp.pop_labels)
    p_r_z = _true_probs(inp.pop_ref_probs, inp.pop_labels)
    details: dict = {"reference_models": int(len(p_r_x)), "population_z": int(len(p_t_z)), "gamma": gamma,
                     "online": online}
    if isinstance(a, str) and a == "auto":
        a, table = tune_a(p_r_z, inp.pop_ref_in)
        details["a_auc"] = table
    elif isinstance(a, str) or not 0.0 <= float(a) <= 1.0:
        raise AttackError(f"RMIA 'a' must lie in [0, 1] or be 'auto', got {a!r}")
    details["a"] = float(a)
    s = scores(p_t_x, p_r_x, inp.ref_in, p_t_z, p_r_z, inp.pop_ref_in, online=online, a=float(a), gamma=gamma)
    return AttackResult("rmia", s, np.ones(inp.n, dtype=bool), details=details)
