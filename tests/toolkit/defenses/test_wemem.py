"""WeMem-style primitives: data scheduling limits reuse; memorable samples are flagged and held out."""

import numpy as np
import pytest

from toolkit.defenses.wemem import DataScheduler, flag_memorable, memorability_scores, round_weights
from toolkit.errors import ConfigError


def _run(scheduler, rounds, epochs=2):
    for r in range(rounds):
        scheduler.record(scheduler.indices(r), epochs)
    return scheduler.uses


def test_full_schedule_reuses_every_sample_every_round():
    uses = _run(DataScheduler(100, 4, "full"), 4)
    assert (uses == 8).all()


def test_disjoint_schedule_uses_each_sample_once():
    s = DataScheduler(103, 4, "disjoint", seed=1)
    parts = [s.indices(r) for r in range(4)]
    assert sorted(np.concatenate(parts)) == list(range(103))
    assert (_run(DataScheduler(103, 4, "disjoint", seed=1), 4) == 2).all()


def test_least_used_schedule_balances_uses():
    s = DataScheduler(100, 6, "least_used", fraction=0.3, seed=0)
    uses = _run(s, 6, epochs=1)
    assert uses.sum() == 6 * 30
    assert uses.max() - uses.min() <= 1  # no sample is reused before every other has had its turn
    assert uses.max() == 2  # vs 6 under the full schedule


def test_excluded_samples_are_never_scheduled():
    exclude = np.zeros(50, bool)
    exclude[[3, 7, 11]] = True
    for mode in ("full", "disjoint", "least_used"):
        uses = _run(DataScheduler(50, 3, mode, seed=2, exclude=exclude), 3)
        assert (uses[exclude] == 0).all() and (uses[~exclude] > 0).all(), mode


def test_scheduler_is_seeded():
    a, b = DataScheduler(40, 4, "least_used", 0.25, seed=5), DataScheduler(40, 4, "least_used", 0.25, seed=5)
    assert all(np.array_equal(a.indices(r), b.indices(r)) for r in range(4))
    assert not np.array_equal(a.indices(0), DataScheduler(40, 4, "least_used", 0.25, seed=6).indices(0))
    with pytest.raises(ConfigError, match="unknown schedule"):
        DataScheduler(10, 2, "random")


def test_lira_offline_memorability_flags_the_exposed_samples():
    rng = np.random.default_rng(0)
    n, k, c = 200, 4, 10
    labels = rng.integers(0, c, n)
    ref = rng.dirichlet(np.full(c, 20.0), size=(k, n))
    target = ref.mean(0).copy()
    exposed = np.array([5, 50, 150])
    target[exposed] = 0.001 / (c - 1)
    target[exposed, labels[exposed]] = 0.999  # the model is far more confident on these than its references
    scores = memorability_scores("lira_offline", target, labels, ref)
    flags = flag_memorable(scores, 3 / n)
    assert set(np.flatnonzero(flags)) == set(exposed)
    calibrated = memorability_scores("calibrated_loss", target, labels, ref)
    assert set(np.argsort(-calibrated)[:3]) == set(exposed)
    with pytest.raises(ConfigError, match="needs reference-model outputs"):
        memorability_scores("lira_offline", target, labels)


def test_round_weights_hold_out_or_downweight_flagged():
    flags = np.array([True, False, True, False])
    np.testing.assert_array_equal(round_weights(flags, "holdout"), [0, 1, 0, 1])
    np.testing.assert_array_equal(round_weights(flags, "downweight", 0.25), [0.25, 1, 0.25, 1])
    np.testing.assert_array_equal(round_weights(flags, "none"), [1, 1, 1, 1])
    assert flag_memorable(np.arange(10.0), 0.0).sum() == 0
