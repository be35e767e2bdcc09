"""MIA-SafeCompress end to end on digits: torch MLP, Keras MLP and torch CNN, two rounds each."""

import numpy as np
import pytest

from toolkit.errors import ConfigError, DataError
from toolkit.select.safecompress import (SAFECOMPRESS_METHODS, MembershipData, SafeCompress, SafeCompressConfig,
                                         safecompress)

#: Two short rounds: enough to train the sparse digits models well past chance, a few seconds each.
TINY = dict(density=0.1, rounds=2, epochs_per_round=8.0, fine_tune_epochs=0.5, attack_epochs=4,
            attack_fine_tune_epochs=1, seed=3)


@pytest.fixture(scope="module")
def data(digits_parts):
    return MembershipData.from_parts(digits_parts, n_classes=10)


@pytest.fixture(scope="module")
def runs(data, digits_spec):
    """Results of the three tiny runs, computed once (the Keras one through SAFECOMPRESS_METHODS + re2)."""
    cache = {}

    def get(framework, arch):
        if (framework, arch) not in cache:
            spec = digits_spec(arch)
            if framework == "keras":
                cache[(framework, arch)] = SAFECOMPRESS_METHODS.get("safecompress_re2").apply(spec, data, TINY, framework)
            else:
                cache[(framework, arch)] = SafeCompress(TINY).fit(spec, data, framework=framework).result_
        return cache[(framework, arch)]

    return get


CASES = [("torch", "mlp"), ("keras", "mlp"), ("torch", "cnn")]


@pytest.mark.parametrize("framework,arch", CASES)
def test_result_has_the_target_density_and_an_ordinary_model(runs, digits_parts, framework, arch):
    from toolkit.models import backend, framework_of, predict_proba

    res = runs(framework, arch)
    assert framework_of(res.model) == framework == res.framework
    total = sum(m.size for m in res.masks.values())
    assert abs(res.density - 0.1) <= 0.5 / total
    assert sum(int(m.sum()) for m in res.masks.values()) == round(0.1 * total)
    # Masks are baked into the model: its prunable tensors are zero outside them (measured independently).
    weights = backend(framework).weight_arrays(res.model)
    assert set(weights) == set(res.masks)
    for name, w in weights.items():
        assert not np.any(w[~res.masks[name]])
    assert 1 - res.stats.sparsity <= res.density + 1e-12
    assert res.stats.extra["density"] == res.density
    # It trains: well above chance on held-out digits (10 classes).
    te = digits_parts["nonmembers"]
    acc = float(np.mean(np.argmax(predict_proba(res.model, te.x), 1) == te.y))
    assert acc > 0.6, f"{framework}/{arch} accuracy {acc:.3f}"
    assert acc == pytest.approx(res.accuracy)


@pytest.mark.parametrize("framework,arch", CASES)
def test_history_has_four_candidates_per_round_and_the_winner_is_the_best(runs, framework, arch):
    res = runs(framework, arch)
    assert len(res.history) == 2
    for r in res.history:
        assert [c.name for c in r.candidates] == ["magnitude+gradient", "magnitude+random", "threshold+gradient",
                                                   "threshold+random"]
        scores = [c.tm_score for c in r.candidates]
        assert r.winner.tm_score == max(scores)
        assert r.selected == r.candidates[int(np.argmax(scores))].name
        for c in r.candidates:
            assert c.tm_score == pytest.approx(c.task_accuracy / c.mia_accuracy)
            assert 0 <= c.task_accuracy <= 1 and 0 <= c.mia_accuracy <= 1
            assert c.moved > 0 and np.isfinite(c.loss)
        assert np.isfinite(r.loss) and r.steps == int(np.ceil(8.0 * 600 / 128))
    assert res.tm_score == res.history[-1].winner.tm_score
    assert res.accuracy == res.history[-1].winner.task_accuracy
    rows = res.history_rows()
    assert len(rows) == 8 and sum(r["selected"] for r in rows) == 2
    d = res.to_dict()
    assert d["config"]["density"] == 0.1 and len(d["history"][0]["candidates"]) == 4


def test_keras_run_used_re2(runs):
    assert runs("keras", "mlp").config.regularizer == "re2"


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_same_seed_same_model_and_history_with_the_attacker_in_a_helper_process(data, digits_parts, digits_spec,
                                                                               runs, framework):
    from toolkit.models import predict_proba

    first = runs(framework, "mlp")
    assert not first.config.attacker_process
    config = first.config.model_copy(update={"attacker_process": True})  # Keras: the config carries re2
    again = safecompress(digits_spec("mlp"), data, config, framework=framework)
    assert [r.mia_accuracy for r in first.history] == [r.mia_accuracy for r in again.history]
    x = digits_parts["nonmembers"].x
    assert np.array_equal(predict_proba(first.model, x), predict_proba(again.model, x))
    assert [c.tm_score for r in first.history for c in r.candidates] == \
           [c.tm_score for r in again.history for c in r.candidates]
    # (Keras names layers per session, so masks are compared in layer order.)
    assert all(np.array_equal(a, b) for a, b in zip(first.masks.values(), again.masks.values()))


def test_init_keep_keeps_the_big_models_weights_and_random_rescales(trained):
    from toolkit.models import clone_model
    from toolkit.models.torch_nets import weight_arrays
    from toolkit.select.safecompress.engine import sparse_init
    from toolkit.select.safecompress.torch_adapter import TorchAdapter

    big = trained("torch", "mlp")
    before = weight_arrays(big)
    keep = TorchAdapter(clone_model(big), SafeCompressConfig(density=0.2, init="keep"))
    masks = sparse_init(keep, keep.config)
    for n, w in keep.weights().items():
        assert np.array_equal(w, before[n] * masks[n])
    fresh = TorchAdapter(clone_model(big), SafeCompressConfig(density=0.2, init="random"))
    masks = sparse_init(fresh, fresh.config)
    for n, w in fresh.weights().items():
        assert not np.any(w[~masks[n]])
        assert not np.allclose(w[masks[n]], before[n][masks[n]])
    assert np.array_equal(weight_arrays(big)["1.weight"], before["1.weight"])  # input never mutated


def test_a_trained_model_is_compressed_without_being_mutated(trained, data):
    from toolkit.models.torch_nets import weight_arrays

    big = trained("torch", "mlp")
    before = weight_arrays(big)
    res = SafeCompress(TINY, rounds=1, epochs_per_round=1.0, init="keep", prune=("magnitude",),
                       grow=("random",)).fit(big, data)
    assert len(res.history_[0].candidates) == 1
    assert all(np.array_equal(before[n], w) for n, w in weight_arrays(big).items())
    assert res.model_ is not big


def test_saved_and_reloaded_model_keeps_its_zeros(runs, tmp_path, digits_spec):
    from toolkit.models import load_model, save_model
    from toolkit.models.torch_nets import weight_arrays

    res = runs("torch", "cnn")
    loaded, _ = load_model(save_model(res.model, digits_spec("cnn"), tmp_path, "sc"))
    for name, w in weight_arrays(loaded).items():
        assert np.array_equal(w == 0, weight_arrays(res.model)[name] == 0)


def test_bad_inputs_get_one_line_errors(digits_parts, digits_spec, data):
    parts = dict(digits_parts)
    parts["nonmember_known"] = digits_parts["member_known"]
    with pytest.raises(DataError, match="occur in both members and non-members"):
        MembershipData.from_parts(parts)
    with pytest.raises(DataError, match="lacks part"):
        MembershipData.from_parts({"member_known": digits_parts["member_known"]})
    with pytest.raises(ConfigError, match="needs framework"):
        SafeCompress(TINY).fit(digits_spec("mlp"), data)
    with pytest.raises(ConfigError, match="MembershipData"):
        SafeCompress(TINY).fit(digits_spec("mlp"), digits_parts, framework="torch")
    with pytest.raises(ConfigError, match="unknown key 'epochs'"):
        SafeCompress(epochs=3)


def test_methods_table_for_the_selection_engine():
    assert SAFECOMPRESS_METHODS.names() == ["safecompress", "safecompress_re1", "safecompress_re2"]
    for name in SAFECOMPRESS_METHODS:
        m = SAFECOMPRESS_METHODS.get(name)
        assert m.name.startswith("safecompress") and m.backend == "safecompress"
        assert SAFECOMPRESS_METHODS.meta(name)["frameworks"] == ("torch", "keras")
        cfg = m.config({"method": name, **m.example})
        assert m.targets(cfg) == {"density": 0.1}
    assert SAFECOMPRESS_METHODS.get("safecompress_re2").config({}).regularizer == "re2"
    with pytest.raises(ConfigError, match="fixes regularizer='re2'"):
        SAFECOMPRESS_METHODS.get("safecompress_re2").config({"regularizer": "re1"})
    with pytest.raises(ConfigError, match="fixes regularizer"):
        SAFECOMPRESS_METHODS.get("safecompress").config(SafeCompressConfig(regularizer="re1"))
    with pytest.raises(ConfigError, match="method 'safecompress_re1'"):
        SAFECOMPRESS_METHODS.get("safecompress").config({"method": "safecompress_re1"})


def test_history_plot_is_written(runs, tmp_path):
    path = runs("torch", "mlp").plot_history(tmp_path / "fig3.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
