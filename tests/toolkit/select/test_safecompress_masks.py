"""SafeCompress mask mechanics (numpy only): ERK initialization (Eq. 5) and the 2x2 dynamic sparse update."""

import numpy as np
import pytest

from toolkit.errors import ConfigError
from toolkit.select.safecompress import SafeCompressConfig, parse_config, tm_score
from toolkit.select.safecompress import masks as M

# The digits reference MLP (torch layout: out x in) and the Fashion-MNIST CNN (conv 32x1x3x3, dense, head).
MLP = {"1.weight": (256, 64), "3.weight": (128, 256), "5.weight": (10, 128)}
CNN = {"1.weight": (32, 1, 3, 3), "5.weight": (128, 6272), "7.weight": (10, 128)}


def _total(shapes):
    return sum(int(np.prod(s)) for s in shapes.values())


@pytest.mark.parametrize("shapes", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.5])
def test_erk_densities_sum_to_the_target(shapes, density):
    dens = M.erk_densities(shapes, density)
    kept = sum(dens[n] * np.prod(s) for n, s in shapes.items())
    assert kept == pytest.approx(density * _total(shapes), rel=1e-9)
    assert all(0 < d <= 1 for d in dens.values())
    counts = M.kept_counts(shapes, density)
    assert sum(counts.values()) == round(density * _total(shapes))
    for n, s in shapes.items():
        assert abs(counts[n] - dens[n] * np.prod(s)) <= len(shapes)  # rounding only


def test_erk_follows_eq5_bigger_layers_are_sparser():
    dens = M.erk_densities(MLP, 0.05)
    # Eq. 5: density = eps (n_in + n_out) / (n_in n_out) with one eps for every (non-dense) layer.
    eps = {n: dens[n] * np.prod(s) / sum(s) for n, s in MLP.items()}
    assert len({round(v, 9) for v in eps.values()}) == 1
    # 256x128 (32,768 weights) sparser than 64x256 (16,384), sparser than the 10x128 head.
    assert dens["3.weight"] < dens["1.weight"] < dens["5.weight"]


def test_erk_makes_overflowing_layers_dense_and_resolves():
    dens = M.erk_densities(CNN, 0.1)
    # At 0.1, eps * score would exceed 1 for the 288-weight conv and the 1,280-weight head: both dense,
    # and the 802,816-weight dense layer takes the rest of the budget.
    assert dens["1.weight"] == dens["7.weight"] == 1.0
    assert dens["5.weight"] == pytest.approx((0.1 * _total(CNN) - 288 - 1280) / 802816)
    low = M.erk_densities(CNN, 0.05)
    assert low["5.weight"] < low["7.weight"] < low["1.weight"] < 1.0
    # The conv form: (n_in + n_out + kh + kw) / (n_in n_out kh kw), layout-free (Keras kh, kw, in, out).
    keras = {"conv.kernel": (3, 3, 1, 32), "dense.kernel": (6272, 128), "head.kernel": (128, 10)}
    assert list(M.erk_densities(keras, 0.05).values()) == pytest.approx(list(low.values()))
    assert M.erk_densities(MLP, 1.0) == {n: 1.0 for n in MLP}


def test_erk_refuses_bad_input():
    with pytest.raises(ConfigError, match="density"):
        M.erk_densities(MLP, 0.0)
    with pytest.raises(Exception, match="cannot sparsify"):
        M.erk_densities({"bias": (10,)}, 0.5)


def test_random_masks_are_exact_and_seeded():
    a = M.random_masks(MLP, 0.05, seed=1)
    b = M.random_masks(MLP, 0.05, seed=1)
    c = M.random_masks(MLP, 0.05, seed=2)
    counts = M.kept_counts(MLP, 0.05)
    for n, s in MLP.items():
        assert a[n].shape == s and a[n].dtype == bool
        assert int(a[n].sum()) == counts[n]
        assert np.array_equal(a[n], b[n])
    assert not np.array_equal(a["3.weight"], c["3.weight"])
    assert M.density_of(a) == pytest.approx(0.05, abs=0.5 / _total(MLP))


def _state(seed=0, shapes=None):
    shapes = shapes or {"a": (40, 30), "b": (20, 40)}
    rng = np.random.default_rng(seed)
    masks = M.random_masks(shapes, 0.2, seed)
    weights = {n: rng.normal(size=s) * masks[n] for n, s in shapes.items()}
    grads = {n: rng.normal(size=s) for n, s in shapes.items()}
    return weights, masks, grads


@pytest.mark.parametrize("prune", ["magnitude", "threshold"])
@pytest.mark.parametrize("grow", ["gradient", "random"])
def test_every_update_keeps_each_layer_density(prune, grow):
    weights, masks, grads = _state()
    params = M.UpdateParams(fraction=0.3, threshold_quality=0.5)
    new, report = M.update_masks(weights, masks, prune, grow, params, grads, seed=3)
    for n in masks:
        assert new[n].shape == masks[n].shape
        assert new[n].sum() == masks[n].sum()
        removed = masks[n] & ~new[n]
        grown = new[n] & ~masks[n]
        assert removed.sum() == grown.sum() == report.moved[n] > 0
        # Grown connections were inactive before the update: a pruned one is not regrown at once.
        assert not (grown & masks[n]).any()
    again, _ = M.update_masks(weights, masks, prune, grow, params, grads, seed=3)
    assert all(np.array_equal(again[n], new[n]) for n in masks)


def test_magnitude_pruning_removes_the_smallest_active_weights():
    weights, masks, grads = _state(1)
    new, report = M.update_masks(weights, masks, "magnitude", "random", M.UpdateParams(0.25, 0.5), grads)
    for n, w in weights.items():
        active = np.abs(w[masks[n]])
        k = int(round(0.25 * masks[n].sum()))
        assert report.moved[n] == k
        removed = np.abs(w[masks[n] & ~new[n]])
        kept = np.abs(w[masks[n] & new[n]])
        assert len(removed) == k and removed.max() <= kept.min()
        assert np.allclose(np.sort(removed), np.sort(active)[:k])


def test_threshold_pruning_removes_weights_below_q_std_with_a_cap():
    weights, masks, grads = _state(2)
    q = 0.5
    new, report = M.update_masks(weights, masks, "threshold", "gradient", M.UpdateParams(0.3, q), grads)
    for n, w in weights.items():
        active = w[masks[n]]
        tau = q * active.std()
        removed = masks[n] & ~new[n]
        assert np.array_equal(removed & masks[n], masks[n] & (np.abs(w) < tau))
    # A huge q would remove everything: capped at half the active weights (the smallest ones).
    new, report = M.update_masks(weights, masks, "threshold", "random", M.UpdateParams(0.3, 100.0), grads)
    for n in masks:
        assert report.moved[n] == int(np.floor(M.THRESHOLD_MAX_FRACTION * masks[n].sum()))


def test_gradient_growth_reactivates_the_largest_gradient_inactive_positions():
    weights, masks, grads = _state(3)
    new, report = M.update_masks(weights, masks, "magnitude", "gradient", M.UpdateParams(0.3, 0.5), grads)
    for n, g in grads.items():
        grown = new[n] & ~masks[n]
        k = report.moved[n]
        inactive = np.abs(g[~masks[n]])
        assert np.allclose(np.sort(np.abs(g[grown]))[::-1], np.sort(inactive)[::-1][:k])


def test_random_growth_is_uniform_over_inactive_positions():
    weights, masks, grads = _state(4, {"a": (60, 50)})
    hits = np.zeros((60, 50))
    for seed in range(60):
        new, _ = M.update_masks(weights, masks, "magnitude", "random", M.UpdateParams(0.3, 0.5), None, seed=seed)
        hits += new["a"] & ~masks["a"]
    inactive = hits[~masks["a"]]
    # Each inactive position is drawn with p = k / n_inactive per update: a flat histogram, none favoured.
    expected = 60 * round(0.3 * masks["a"].sum()) / (~masks["a"]).sum()
    assert inactive.mean() == pytest.approx(expected)
    assert inactive.max() < expected + 6 * np.sqrt(expected)
    assert hits[masks["a"]].sum() == 0


def test_dense_layers_do_not_change_and_growth_needs_a_gradient():
    w = {"a": np.random.default_rng(0).normal(size=(5, 4))}
    m = {"a": np.ones((5, 4), bool)}
    new, report = M.update_masks(w, m, "magnitude", "gradient", M.UpdateParams(0.5, 0.5), {"a": np.ones((5, 4))})
    assert report.total == 0 and new["a"].all()
    weights, masks, _ = _state(5)
    with pytest.raises(Exception, match="gradient"):
        M.update_masks(weights, masks, "magnitude", "gradient", M.UpdateParams(0.5, 0.5), None)


def test_config_validation_is_one_line():
    with pytest.raises(ConfigError, match="unknown key 'densty'.*allowed: density"):
        parse_config({"densty": 0.1})
    with pytest.raises(ConfigError, match="unknown pruning strategy 'l1'; known: magnitude, threshold"):
        parse_config(prune=("l1",))
    with pytest.raises(ConfigError, match="density"):
        parse_config(density=1.5)
    with pytest.raises(ConfigError, match="regularizer"):
        parse_config(regularizer="re3")


def test_schedules_and_tm_score():
    cfg = SafeCompressConfig(rounds=4, lr=0.1, lr_milestones=(0.5, 0.75), lr_gamma=0.1, prune_fraction=0.4)
    assert [round(cfg.lr_at(r), 6) for r in range(4)] == [0.1, 0.1, 0.01, 0.001]
    assert cfg.prune_fraction_at(0) == pytest.approx(0.4)
    assert cfg.prune_fraction_at(2) == pytest.approx(0.2)
    assert cfg.candidates == [("magnitude", "gradient"), ("magnitude", "random"), ("threshold", "gradient"),
                              ("threshold", "random")]
    assert tm_score(0.9, 0.5) == pytest.approx(1.8)
    assert tm_score(0.9, 0.5, lam=2) == pytest.approx(0.81 / 0.5)


def test_gradient_growth_takes_the_largest_gradients_ties_by_position():
    from toolkit.select.safecompress.masks import grow_gradient

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        eligible = np.sort(rng.choice(1000, n, replace=False))
        grad = np.round(rng.normal(size=1000), 1)  # one decimal: many ties
        k = int(rng.integers(1, n + 1))
        g = np.abs(grad[eligible])
        expected = eligible[np.lexsort((np.arange(n), -g))[:k]]  # a full stable descending sort
        assert np.array_equal(grow_gradient(eligible, k, grad, rng), np.sort(expected))
