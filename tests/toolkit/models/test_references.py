"""ReferencePool: seeded halves, online/offline design, on-disk cache, executors, both frameworks."""

import numpy as np
import pytest

from toolkit.errors import DataError
from toolkit.models import TrainRecipe
from toolkit.models.references import ReferencePool

RECIPE = TrainRecipe(epochs=3, seed=0)


@pytest.fixture(scope="module")
def parts(digits_parts):
    pop = digits_parts["population"]
    q = digits_parts["member_unknown"]
    return (pop.x[:300], pop.y[:300]), (q.x[:60], q.y[:60])


def test_offline_pool_never_trains_on_queries_and_caches(tmp_path, parts, digits_spec):
    pop, (xq, yq) = parts
    pool = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=3, cache_dir=tmp_path, seed=4)
    out = pool.query(xq, yq)
    assert pool.trained == 3
    assert out.probs.shape == (3, 60, 10) and out.pop_probs.shape == (3, 300, 10)
    assert not out.in_mask.any()
    assert (out.pop_in.sum(axis=1) == 150).all()  # each model trains on a seeded half of the population
    assert not np.array_equal(out.pop_in[0], out.pop_in[1])
    np.testing.assert_allclose(out.probs.sum(axis=2), 1, atol=1e-5)
    assert len(list(tmp_path.glob("ref-*.npz"))) == 3

    again = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=3, cache_dir=tmp_path, seed=4)
    out2 = again.query(xq, yq)
    assert again.trained == 0
    np.testing.assert_array_equal(out2.probs, out.probs)
    # model i does not depend on the pool size: a pool of 2 is served from the cache of the pool of 3
    two = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=2, cache_dir=tmp_path, seed=4)
    np.testing.assert_array_equal(two.query(xq, yq).probs, out.take(2).probs)
    assert two.trained == 0
    # another recipe is another cache entry
    other = ReferencePool(digits_spec("mlp"), RECIPE.model_copy(update={"lr": 2e-3}), pop, n_models=1,
                          cache_dir=tmp_path, seed=4)
    other.query(xq, yq)
    assert other.trained == 1


def test_a_corrupt_cache_entry_is_retrained(tmp_path, parts, digits_spec):
    pop, (xq, yq) = parts
    pool = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=1, cache_dir=tmp_path)
    first = pool.query(xq, yq)
    (entry,) = tmp_path.glob("ref-*.npz")
    entry.write_bytes(b"not a zip")
    assert np.array_equal(pool.query(xq, yq).probs, first.probs) and pool.trained == 1


def test_online_pool_puts_each_query_in_about_half_the_models(parts, digits_spec):
    pop, (xq, yq) = parts
    out = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=4, online=True, seed=1).query(xq, yq)
    frac = out.in_mask.mean()
    assert 0.35 < frac < 0.65
    assert out.in_mask.any(axis=0).mean() > 0.8


def test_queries_overlapping_the_population_are_refused(parts, digits_spec):
    pop, _ = parts
    pool = ReferencePool(digits_spec("mlp"), RECIPE, pop, n_models=1)
    with pytest.raises(DataError, match="occur in both the audited points and the population pool"):
        pool.query(pop[0][:10], pop[1][:10])


def test_process_executor_gives_the_inprocess_results(parts, digits_spec):
    pop, (xq, yq) = parts
    kw = dict(n_models=2, seed=2)
    a = ReferencePool(digits_spec("mlp"), RECIPE, pop, executor="inprocess", **kw).query(xq, yq)
    b = ReferencePool(digits_spec("mlp"), RECIPE, pop, executor="process", workers=2, threads_per_worker=1,
                      **kw).query(xq, yq)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_keras_reference_models(parts, digits_spec):
    pop, (xq, yq) = parts
    out = ReferencePool(digits_spec("mlp"), TrainRecipe(epochs=2), pop, framework="keras", n_models=1).query(xq, yq)
    assert out.probs.shape == (1, 60, 10) and np.isfinite(out.probs).all()
    np.testing.assert_allclose(out.probs.sum(axis=2), 1, atol=1e-4)
