"""Signals: numerically stable loss and LiRA scaling, Song & Mittal's metrics, input validation."""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp, softmax

from toolkit.attacks import signals
from toolkit.errors import AttackError


def _confident_float32(margins):
    """float32 softmax rows whose true class (0) rounds to exactly 1.0 while the others stay > 0."""
    logits = np.zeros((len(margins), 4))
    logits[:, 0] = margins
    return logits, softmax(logits, axis=1).astype(np.float32)


def test_loss_does_not_tie_when_float32_rounds_p_y_to_one():
    logits, p = _confident_float32([20.0, 22.0, 24.0])
    y = np.zeros(3, dtype=np.int64)
    assert (p[:, 0] == 1.0).all()  # the naive -log(p_y) would be 0 for all three
    loss = signals.loss(p, y)
    exact = -log_softmax(logits, axis=1)[:, 0]
    assert (loss > 0).all() and np.all(np.diff(loss) < 0)
    np.testing.assert_allclose(loss, exact, rtol=1e-4)


def test_loss_matches_log_for_unconfident_rows():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=100)
    y = rng.integers(0, 5, 100)
    np.testing.assert_allclose(signals.loss(p, y), -np.log(p[np.arange(100), y]), rtol=1e-12)


def test_loss_of_a_zero_probability_is_large_but_finite():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    loss = signals.loss(p, np.array([0, 0]))
    assert np.isfinite(loss).all() and loss[0] > 100


def test_scaled_logit_equals_the_logit_margin():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 6, size=(200, 10))
    logits[:20, 3] += 25  # very confident rows
    y = np.full(200, 3)
    expected = logits[:, 3] - logsumexp(np.delete(logits, 3, axis=1), axis=1)
    p64 = softmax(logits, axis=1)
    np.testing.assert_allclose(signals.scaled_logit(p64, y), expected, rtol=1e-6, atol=1e-6)
    # float32 outputs keep the ordering and stay close (no saturation at the confident end)
    s32 = signals.scaled_logit(p64.astype(np.float32), y)
    np.testing.assert_allclose(s32, expected, rtol=1e-3, atol=2e-3)


def test_scaled_logit_is_symmetric_around_one_half():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]])
    s = signals.scaled_logit(p, np.zeros(3, dtype=np.int64))
    np.testing.assert_allclose(s, [0.0, np.log(9), -np.log(9)], atol=1e-12)


def test_entropy_and_confidence():
    p = np.array([[0.25] * 4, [1.0, 0, 0, 0], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(signals.entropy(p), [np.log(4), 0.0, -(0.7 * np.log(0.7) + 0.3 * np.log(0.1))])
    np.testing.assert_allclose(signals.confidence(p, np.array([0, 0, 1])), [0.25, 1.0, 0.1])


def test_modified_entropy_matches_the_formula():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(6) * 0.5, size=300)
    y = rng.integers(0, 6, 300)
    rows = np.arange(300)
    py = p[rows, y]
    others = -p * np.log(1 - p)
    others[rows, y] = 0
    expected = -(1 - py) * np.log(py) + others.sum(axis=1)
    np.testing.assert_allclose(signals.modified_entropy(p, y), expected, rtol=1e-9)


def test_modified_entropy_penalizes_confident_mistakes_unlike_entropy():
    p = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    y = np.array([0, 0])
    me = signals.modified_entropy(p, y)
    assert me[1] > 10 * me[0]
    assert signals.entropy(p)[0] == pytest.approx(signals.entropy(p)[1])


def test_correctness():
    p = np.array([[0.6, 0.4], [0.3, 0.7]])
    np.testing.assert_array_equal(signals.correctness(p, np.array([0, 0])), [1.0, 0.0])


def test_rows_are_renormalized_and_bad_rows_refused():
    p = np.array([[0.5, 0.49], [0.2, 0.79]])  # int8 outputs sum to 1 only up to their precision
    np.testing.assert_allclose(signals.confidence(p, np.array([0, 1])), [0.5 / 0.99, 0.79 / 0.99])
    with pytest.raises(AttackError, match="NaN"):
        signals.loss(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(AttackError, match="logits"):
        signals.loss(np.array([[-1.0, 2.0]]), np.array([0]))
    with pytest.raises(AttackError, match="labels must lie"):
        signals.loss(np.array([[0.5, 0.5]]), np.array([2]))


def test_aligned_sorted_uses_the_anchors_permutation():
    a = np.array([[0.1, 0.7, 0.2]])
    b = np.array([[0.3, 0.5, 0.2]])
    sa, sb = signals.aligned_sorted(a, b)
    np.testing.assert_allclose(sa, [[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(sb, [[0.5, 0.2, 0.3]])
