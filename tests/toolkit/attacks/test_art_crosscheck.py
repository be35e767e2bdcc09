"""Cross-check of the threshold attacks' TPR@FPR and AUC against IBM ART (an independent implementation) on
the same outputs of a real trained model.

ART 1.20 offers, for membership inference: ``art.metrics.privacy.get_roc_for_fpr`` / ``get_roc_for_multi_fprs``
(worst-case TPR at a target FPR: the ROC point with the largest FPR <= target), the rule-based black-box attack
(member iff the model is correct) and learned black-box/shadow attacks; it computes no AUC, so AUC is checked
as the area under ART's ROC points and against the Mann-Whitney U statistic (scipy).
"""

import numpy as np
import pytest
from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased
from art.estimators.classification import BlackBoxClassifier
from art.metrics.privacy import get_roc_for_fpr, get_roc_for_multi_fprs
from scipy.stats import mannwhitneyu

from toolkit.attacks import METRIC_ATTACKS, metrics, threshold
from toolkit.models import predict_proba

FPRS = (0.001, 0.005, 0.01, 0.05, 0.1)


@pytest.fixture(scope="module")
def outputs(leak_model, eval_points):
    x, y, membership = eval_points
    return x, predict_proba(leak_model, x), y, membership


def test_the_compared_scores_carry_signal(outputs):
    _, p, y, m = outputs
    # the model leaks: the comparisons below are not between chance-level curves
    assert metrics.auc(threshold.score(p, y, "loss"), m) > 0.55


@pytest.mark.parametrize("attack", METRIC_ATTACKS)
def test_tpr_at_fpr_agrees_with_art(outputs, attack):
    _, p, y, m = outputs
    s = threshold.score(p, y, attack)
    fpr, tpr, _ = metrics.roc(s, m)
    for target in FPRS:
        ((art_fpr, art_tpr, _),) = get_roc_for_fpr(s, m.astype(int), targeted_fpr=target)
        assert metrics.tpr_at(fpr, tpr, target, interpolate=False) == pytest.approx(art_tpr, abs=1e-12)
        ours = metrics.tpr_at_fpr(s, m, target)
        if np.isclose(fpr, target, rtol=0, atol=1e-15).any():
            assert ours == pytest.approx(art_tpr, abs=1e-12)  # the ROC has a point exactly at the target
        else:
            # Interpolated: between ART's conservative point and the next ROC point.
            nxt = tpr[np.searchsorted(fpr, target, side="right")]
            assert art_tpr - 1e-12 <= ours <= nxt + 1e-12
            assert art_fpr <= target


@pytest.mark.parametrize("attack", METRIC_ATTACKS)
def test_auc_agrees_with_the_area_under_arts_roc_and_mann_whitney(outputs, attack):
    _, p, y, m = outputs
    s = threshold.score(p, y, attack)
    fpr, _, _ = metrics.roc(s, m)
    levels = np.unique(fpr)
    _, art_tpr, _ = get_roc_for_multi_fprs(s, m.astype(int), targeted_fprs=levels)
    # ART's TPR at each FPR level is the highest TPR reached at that level: the ROC staircase is the step
    # function through these points (its area is the AUC when no member ties with a non-member).
    art_steps = float(np.sum(np.diff(levels) * np.asarray(art_tpr)[:-1]))
    art_upper = float(np.sum(np.diff(levels) * np.asarray(art_tpr)[1:]))
    ours = metrics.auc(s, m)
    if len(np.intersect1d(s[m], s[~m])) == 0:
        assert ours == pytest.approx(art_steps, abs=1e-12)
    else:
        # Ties give diagonal ROC segments (counted one half, as in Mann-Whitney): between the two areas.
        assert art_steps - 1e-12 <= ours <= art_upper + 1e-12
    u = mannwhitneyu(s[m], s[~m]).statistic
    assert ours == pytest.approx(u / (m.sum() * (~m).sum()), abs=1e-12)


def test_correctness_equals_arts_rule_based_attack(outputs):
    x, p, y, m = outputs
    clf = BlackBoxClassifier((x, p), input_shape=x.shape[1:], nb_classes=p.shape[1])
    art_pred = MembershipInferenceBlackBoxRuleBased(clf).infer(x, y).ravel()
    np.testing.assert_array_equal(threshold.score(p, y, "correctness"), art_pred.astype(float))
