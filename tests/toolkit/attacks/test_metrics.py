"""Metrics on ROCs whose values are known by hand."""

import numpy as np
import pytest

from toolkit.attacks import metrics
from toolkit.errors import AttackError


def test_hand_computed_auc_and_roc():
    # members 0.9, 0.8, 0.4; non-members 0.7, 0.3, 0.2, 0.1: of 12 pairs the member wins 11 (0.4 < 0.7).
    s = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    m = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    assert metrics.auc(s, m) == pytest.approx(11 / 12)
    assert metrics.tpr_at_fpr(s, m, 0.0) == pytest.approx(2 / 3)
    assert metrics.tpr_at_fpr(s, m, 0.25) == pytest.approx(1.0)
    # halfway between the ROC points (0, 2/3) and (0.25, 2/3) -> (0.25, 1): linear interpolation
    assert metrics.tpr_at_fpr(s, m, 0.125) == pytest.approx(2 / 3)


def test_interpolation_between_roc_points():
    fpr = np.array([0.0, 0.5, 1.0])
    tpr = np.array([0.0, 0.8, 1.0])
    assert metrics.tpr_at(fpr, tpr, 0.25) == pytest.approx(0.4)
    assert metrics.tpr_at(fpr, tpr, 0.25, interpolate=False) == 0.0
    assert metrics.tpr_at(fpr, tpr, 0.5) == pytest.approx(0.8)
    assert metrics.tpr_at(fpr, tpr, 0.75) == pytest.approx(0.9)


def test_ties_between_members_and_non_members_interpolate_as_random_tie_breaking():
    s = np.array([1.0, 1.0, 1.0, 1.0])
    m = np.array([1, 1, 0, 0], bool)
    assert metrics.auc(s, m) == 0.5
    assert metrics.tpr_at_fpr(s, m, 0.01) == pytest.approx(0.01)


def test_perfect_and_inverted_attacks():
    s = np.arange(10.0)
    m = s >= 5
    assert metrics.auc(s, m) == 1.0 and metrics.tpr_at_fpr(s, m, 0.001) == 1.0
    assert metrics.auc(-s, m) == 0.0 and metrics.tpr_at_fpr(-s, m, 0.01) == 0.0


def test_balanced_accuracy_threshold_is_chosen_on_the_known_half():
    # Known half: members score >= 2, non-members <= 1 -> threshold 2. Unknown half: one member scores 1.5.
    s = np.array([2, 3, 0, 1, 1.5, 4, 0.5, 0.2])
    m = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    known = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    ev = metrics.evaluate(s, m, known, seed=0, n_bootstrap=20)
    assert ev["threshold"] == 2
    assert ev["balanced_accuracy"] == pytest.approx(0.75)  # 1 of 2 members, 2 of 2 non-members on the unknown half
    assert ev["auc"] == 1.0


def test_evaluate_reports_counts_ci_and_resolution():
    rng = np.random.default_rng(0)
    m = np.r_[np.ones(300, bool), np.zeros(1200, bool)]
    s = rng.normal(size=1500) + m
    known = np.zeros(1500, bool)
    known[::2] = True
    ev = metrics.evaluate(s, m, known, seed=3, n_bootstrap=50)
    assert ev["n_members"] == 300 and ev["n_nonmembers"] == 1200 and not ev["under_resolved"]
    lo, hi = ev["ci95"]["auc"]
    assert lo < ev["auc"] < hi
    assert set(ev["tpr_at_fpr"]) == {"0.001", "0.01"}
    assert ev == metrics.evaluate(s, m, known, seed=3, n_bootstrap=50)  # seeded
    # evaluated on a subset with fewer than 1,000 non-members: flagged
    ev2 = metrics.evaluate(s, m, known, ~known, seed=3, n_bootstrap=10)
    assert ev2["n_nonmembers"] == 600 and ev2["under_resolved"]


def test_metrics_refuse_one_sided_or_non_finite_scores():
    with pytest.raises(AttackError, match="both members and non-members"):
        metrics.auc(np.ones(3), np.ones(3, bool))
    with pytest.raises(AttackError, match="non-finite"):
        metrics.auc(np.array([np.nan, 1.0]), np.array([True, False]))


def test_weighted_roc_equals_the_resample_it_stands_for():
    """The bootstrap passes resample multiplicities as sklearn sample weights: same AUC and TPRs as the resample."""
    from toolkit.attacks.metrics import _point

    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=400), 1)  # rounded: many ties between members and non-members
    m = rng.random(400) < 0.5
    for _ in range(5):
        idx = rng.integers(0, 400, 400)
        weight = np.bincount(idx, minlength=400).astype(float)
        direct, weighted = _point(s[idx], m[idx]), _point(s, m, weight)
        assert abs(direct[0] - weighted[0]) < 1e-12
        np.testing.assert_allclose(direct[1], weighted[1], atol=1e-12)
