"""Metrics of a membership attack: ROC, AUC, TPR at low FPR, balanced accuracy, bootstrap intervals.

Conventions (every attack follows them): a score is a float per sample, **higher means "more likely a
member"**; ``membership`` is the ground truth (True = member).

* ROC and AUC come from scikit-learn (``roc_curve`` with all thresholds kept, ``roc_auc_score``).
* **TPR at a target FPR** is read off the ROC by linear interpolation between the two ROC points whose FPRs
  bracket the target. Every point on that segment is achievable (randomize between the two thresholds), and
  ties between members and non-members give diagonal segments whose interpolation is the expected value of
  random tie-breaking. The conservative reading used by IBM ART (``get_roc_for_fpr``: the ROC point with the
  largest FPR <= target) is available as ``interpolate=False``; both agree whenever the ROC has a point at the
  target FPR, i.e. ``target x n_nonmembers`` is a whole number and no member ties with a non-member at that
  threshold (the stable loss of :mod:`~toolkit.attacks.signals` exists to avoid such ties).
* **Balanced accuracy** (the SafeCompress paper's "MIA Acc" on a balanced evaluation set) uses the threshold
  that maximizes balanced accuracy (equivalently TPR - FPR) on the attacker's *known* half and is evaluated on
  the *unknown* half, so the threshold is never fitted on the points it is scored on.
* **TPR at 0.1% FPR** rests on the top 0.1% of non-member scores: with fewer than 1,000 non-members it is
  decided by less than one false positive and is flagged ``under_resolved``.
* 95% intervals: percentile bootstrap, resampling members and non-members separately (stratified), seeded.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import AttackError

#: The FPRs at which TPR is reported (keys "0.001" and "0.01" in reports).
FPR_TARGETS = (0.001, 0.01)
#: Below this many evaluated non-members TPR@0.1%FPR is flagged as under-resolved.
MIN_NONMEMBERS_LOW_FPR = 1000
N_BOOTSTRAP = 200


def _check(scores: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    m = np.asarray(membership).astype(bool).ravel()
    if s.shape != m.shape:
        raise AttackError(f"{len(s)} scores for {len(m)} membership labels")
    if not np.isfinite(s).all():
        raise AttackError(f"attack produced {int((~np.isfinite(s)).sum())} non-finite score(s)")
    if m.all() or not m.any():
        raise AttackError("metrics need both members and non-members among the evaluated points")
    return s, m


def roc(scores: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` from ``sklearn.metrics.roc_curve`` keeping every threshold."""
    from sklearn.metrics import roc_curve

    s, m = _check(scores, membership)
    return roc_curve(m, s, drop_intermediate=False)


def auc(scores: np.ndarray, membership: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    s, m = _check(scores, membership)
    return float(roc_auc_score(m, s))


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float, interpolate: bool = True) -> float:
    """TPR at FPR ``target`` on a ROC given as (non-decreasing) ``fpr``/``tpr`` arrays. See the module docstring."""
    i = int(np.searchsorted(fpr, target, side="right")) - 1  # last point with fpr <= target
    if i < 0:
        return 0.0
    if not interpolate or i + 1 >= len(fpr) or fpr[i] == target:
        return float(tpr[i])
    f0, f1, t0, t1 = fpr[i], fpr[i + 1], tpr[i], tpr[i + 1]
    return float(t0 + (target - f0) * (t1 - t0) / (f1 - f0))


def tpr_at_fpr(scores: np.ndarray, membership: np.ndarray, target: float, interpolate: bool = True) -> float:
    fpr, tpr, _ = roc(scores, membership)
    return tpr_at(fpr, tpr, target, interpolate)


def choose_threshold(scores: np.ndarray, membership: np.ndarray) -> float:
    """The score threshold (member iff ``score >= threshold``) maximizing balanced accuracy on these points."""
    fpr, tpr, thr = roc(scores, membership)
    best = int(np.argmax(tpr - fpr))
    return float(thr[best]) if np.isfinite(thr[best]) else float(np.max(scores)) + 1.0


def balanced_accuracy(scores: np.ndarray, membership: np.ndarray, threshold: float) -> float:
    from sklearn.metrics import balanced_accuracy_score

    s, m = _check(scores, membership)
    return float(balanced_accuracy_score(m, s >= threshold))


def _point(s: np.ndarray, m: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, list[float]]:
    """AUC and TPR at :data:`FPR_TARGETS` from one sklearn ROC (the trapezoidal area of the full ROC is
    ``roc_auc_score``). ``weight``: per-point multiplicities (a bootstrap resample)."""
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(m, s, sample_weight=weight, drop_intermediate=False)
    return float(area(fpr, tpr)), [tpr_at(fpr, tpr, t) for t in FPR_TARGETS]


def evaluate(scores: np.ndarray, membership: np.ndarray, known: np.ndarray, eval_mask: np.ndarray | None = None,
             *, seed: int = 0, n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """All report metrics of one attack's scores.

    ``eval_mask`` selects the points AUC/TPR are computed on (all points for score-based attacks, the unknown
    half for learned ones). The balanced-accuracy threshold is chosen on ``known`` points and evaluated on the
    others. Returns a JSON-ready dict (see ``docs/attacks.md``).
    """
    s, m = _check(scores, membership)
    known = np.asarray(known, dtype=bool)
    ev = np.ones_like(m) if eval_mask is None else np.asarray(eval_mask, dtype=bool)
    se, me = _check(s[ev], m[ev])
    threshold = choose_threshold(s[known], m[known])
    unknown = ~known
    su, mu = _check(s[unknown], m[unknown])
    bacc = balanced_accuracy(su, mu, threshold)
    auc_value, tprs = _point(se, me)

    rng = np.random.default_rng(seed)
    # A resample is the evaluated points with multiplicities; passing those to sklearn as sample weights on
    # scores sorted once (ascending, stable) gives the same ROC as the resample itself, and sklearn's stable
    # sort of already-sorted scores is linear: the bootstrap costs O(n) per resample instead of two sorts.
    order = np.argsort(se, kind="stable")
    se_sorted, me_sorted = se[order], me[order]
    pos, neg = np.flatnonzero(me_sorted), np.flatnonzero(~me_sorted)
    upos, uneg = np.flatnonzero(mu), np.flatnonzero(~mu)
    boot_auc, boot_tpr, boot_bacc = [], [], []
    for _ in range(n_bootstrap):
        weight = np.bincount(np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]),
                             minlength=len(se_sorted)).astype(np.float64)
        a, t = _point(se_sorted, me_sorted, weight)
        boot_auc.append(a)
        boot_tpr.append(t)
        uidx = np.concatenate([rng.choice(upos, len(upos)), rng.choice(uneg, len(uneg))])
        pred = su[uidx] >= threshold
        truth = mu[uidx]
        boot_bacc.append(0.5 * (pred[truth].mean() + (~pred[~truth]).mean()))

    def ci(values) -> list[float]:
        if not len(values):
            return [float("nan"), float("nan")]
        lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [2.5, 97.5], axis=0)
        return [float(lo), float(hi)]

    tpr_ci = np.asarray(boot_tpr).reshape(-1, len(FPR_TARGETS))
    n_non = int((~me).sum())
    return {
        "auc": auc_value,
        "balanced_accuracy": bacc,
        "threshold": threshold,
        "tpr_at_fpr": {str(t): v for t, v in zip(FPR_TARGETS, tprs)},
        "n_members": int(me.sum()),
        "n_nonmembers": n_non,
        "ci95": {
            "auc": ci(boot_auc),
            "balanced_accuracy": ci(boot_bacc),
            "tpr_at_fpr": {str(t): ci(tpr_ci[:, i]) if len(tpr_ci) else ci([]) for i, t in enumerate(FPR_TARGETS)},
            "n_bootstrap": int(n_bootstrap),
        },
        "under_resolved": n_non < MIN_NONMEMBERS_LOW_FPR,
    }
