"""Fixtures of the attack tests: a real digits model trained to overfit, its compressed versions and a small
reference pool, built once per session (a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest


class Proba:
    """The black-box view of an in-memory model: predict_proba only."""

    def __init__(self, model):
        self.model = model

    def predict_proba(self, x):
        from toolkit.models import predict_proba

        return predict_proba(self.model, x)


@pytest.fixture(scope="session")
def leak_data(digits):
    """200 members, 200 non-members, the other 1,397 digits as population."""
    from toolkit.data import make_split

    split = make_split(digits, members=200, nonmembers=200, seed=1)
    return {p: split.take(digits, p) for p in ("members", "nonmembers", "population")}


@pytest.fixture(scope="session")
def leak_recipe():
    from toolkit.models import TrainRecipe

    # SGD without weight decay for 200 epochs on 200 samples: memorizes (train acc 1.0, test ~0.87).
    return TrainRecipe(overfit=True, overfit_epochs=200, seed=0)


@pytest.fixture(scope="session")
def leak_model(leak_data, digits_spec, leak_recipe):
    from toolkit.models import train_reference_model

    m = leak_data["members"]
    return train_reference_model(digits_spec("mlp"), "torch", m.x, m.y, leak_recipe)


@pytest.fixture(scope="session")
def eval_points(leak_data):
    m, n = leak_data["members"], leak_data["nonmembers"]
    x = np.concatenate([m.x, n.x])
    y = np.concatenate([m.y, n.y])
    membership = np.r_[np.ones(len(m.y), bool), np.zeros(len(n.y), bool)]
    return x, y, membership


@pytest.fixture(scope="session")
def versions(leak_model):
    """The original plus three compressed versions made with torch directly: 50% and 80% L1-unstructured
    pruning (torch.nn.utils.prune) and dynamic int8 quantization (torch.ao)."""
    import copy

    import torch
    import torch.nn.utils.prune as prune

    out = {"original": leak_model}
    for amount in (0.5, 0.8):
        m = copy.deepcopy(leak_model)
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                prune.l1_unstructured(mod, "weight", amount=amount)
                prune.remove(mod, "weight")
        out[f"pruned{int(amount * 100)}"] = m
    out["int8"] = torch.ao.quantization.quantize_dynamic(copy.deepcopy(leak_model), {torch.nn.Linear}, dtype=torch.qint8)
    return out


@pytest.fixture(scope="session")
def ref_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("reference-cache")


@pytest.fixture(scope="session")
def online_refs(leak_data, digits_spec, leak_recipe, eval_points, ref_cache):
    """4 online reference models (random halves of population + audit points) queried on the audit points."""
    from toolkit.models.references import ReferencePool

    x, y, _ = eval_points
    pop = leak_data["population"]
    pool = ReferencePool(digits_spec("mlp"), leak_recipe, (pop.x, pop.y), n_models=4, online=True, seed=0,
                         cache_dir=ref_cache)
    return pool.query(x, y)


@pytest.fixture(scope="session")
def full_input(leak_model, eval_points, online_refs, leak_data, versions):
    """An AttackInput with everything: target = int8 version, versions = original, pruned50, pruned80."""
    from toolkit.attacks import AttackInput
    from toolkit.models import predict_proba

    x, y, membership = eval_points
    pop = leak_data["population"]
    names = ("original", "pruned50", "pruned80")
    return AttackInput(predict_proba(versions["int8"], x), y, membership,
                       ref_probs=online_refs.probs, ref_in=online_refs.in_mask,
                       pop_probs=predict_proba(versions["int8"], pop.x), pop_labels=pop.y,
                       pop_ref_probs=online_refs.pop_probs, pop_ref_in=online_refs.pop_in,
                       versions=np.stack([predict_proba(versions[n], x) for n in names]), version_names=names,
                       seed=0)
