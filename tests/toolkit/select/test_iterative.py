"""Iterative magnitude pruning with per-round memorization and WeMem-style defenses (torch, digits)."""

import pytest

from toolkit.errors import ConfigError
from toolkit.select.iterative import ITERATIVE_METHODS


@pytest.fixture(scope="module")
def mdata(digits_parts):
    from toolkit.select.safecompress import MembershipData

    return MembershipData.from_parts(digits_parts, n_classes=10)


@pytest.fixture(scope="module")
def dense(mdata, digits_spec):
    from toolkit.models import TrainRecipe, train_reference_model

    return train_reference_model(digits_spec("mlp"), "torch", mdata.members.x, mdata.members.y,
                                 TrainRecipe(epochs=20, batch_size=64, optimizer="sgd", lr=0.05, seed=0))


BASE = {"density": 0.1, "rounds": 3, "fine_tune_epochs": 2, "n_reference_models": 2,
        "reference_recipe": {"epochs": 20, "batch_size": 64, "optimizer": "sgd", "lr": 0.05},
        "attacks": ["loss", "lira_offline"]}


def test_vanilla_iterative_pruning_measures_every_round(dense, mdata):
    res = ITERATIVE_METHODS.get("iterative_prune").apply(dense, mdata, BASE)
    assert res.density == pytest.approx(0.1, abs=1e-5)
    assert res.stats.sparsity == pytest.approx(0.9, abs=1e-4)
    assert [r["round"] for r in res.rounds] == [0, 1, 2, 3]
    dens = [r["density"] for r in res.rounds]
    assert dens[0] == 1.0 and all(a > b for a, b in zip(dens, dens[1:]))
    n = len(mdata.members.y)
    assert (res.uses == 3 * 2).all() and not res.flagged.any()  # every member in every round: maximal reuse
    for r in res.rounds:
        assert r["loss_gap"] == pytest.approx(r["nonmember_loss"] - r["member_loss"])
        for name in ("loss", "lira_offline"):
            assert set(r["attacks"][name]["tpr_at_fpr"]) == {"0.001", "0.01"}
            assert 0 <= r["attacks"][name]["auc"] <= 1
    assert res.rounds[0]["n_train"] == 0 and res.rounds[1]["n_train"] == n
    assert res.to_dict()["uses"]["max"] == 6


def test_wemem_limits_reuse_and_holds_out_memorable_members(dense, mdata):
    res = ITERATIVE_METHODS.get("wemem").apply(dense, mdata, {**BASE, "memorable_fraction": 0.1})
    n = len(mdata.members.y)
    assert res.flagged.sum() == round(0.1 * n)
    assert (res.uses[res.flagged] == 0).all()  # held out of every fine-tuning round
    eligible = res.uses[~res.flagged]
    assert eligible.max() == 2 and eligible.min() == 2  # least_used, 1/rounds per round: each used once (2 epochs)
    assert all(r["n_train"] == round((n - res.flagged.sum()) / 3) for r in res.rounds[1:])
    assert res.density == pytest.approx(0.1, abs=1e-5)


def test_downweighting_and_disjoint_schedule(dense, mdata):
    res = ITERATIVE_METHODS.get("iterative_prune").apply(
        dense, mdata, {**BASE, "schedule": "disjoint", "memorable": "downweight", "score": "loss", "attacks": ["loss"]})
    assert (res.uses == 2).all()  # disjoint parts: one round each
    assert res.flagged.any()


def test_errors_are_one_line(dense, mdata, trained):
    with pytest.raises(ConfigError, match="unknown key 'round'"):
        ITERATIVE_METHODS.get("wemem").apply(dense, mdata, {"round": 2})
    with pytest.raises(ConfigError, match="torch models, not keras"):
        ITERATIVE_METHODS.get("wemem").apply(trained("keras"), mdata, {**BASE, "score": "loss", "attacks": ["loss"]})
    no_pop = type(mdata)(mdata.member_known, mdata.member_unknown, mdata.nonmember_known, mdata.nonmember_unknown)
    with pytest.raises(ConfigError, match="population"):
        ITERATIVE_METHODS.get("wemem").apply(dense, no_pop, BASE)
