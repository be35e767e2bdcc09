"""The leakage audit on in-memory models (anything with predict_proba) and the `safecompress audit` CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from device_tests.leakage import audit
from toolkit.errors import ArtifactError, AttackError, DataError


class Proba:
    def __init__(self, model, fn=None):
        self.model, self.fn = model, fn

    def predict_proba(self, x):
        from toolkit.models import predict_proba

        p = predict_proba(self.model, x)
        return self.fn(p) if self.fn else p


@pytest.fixture(scope="module")
def data(digits):
    from toolkit.data import make_split

    split = make_split(digits, members=200, nonmembers=200, seed=1)
    return {p: split.take(digits, p) for p in ("members", "nonmembers", "population")}


@pytest.fixture(scope="module")
def recipe():
    from toolkit.models import TrainRecipe

    return TrainRecipe(overfit=True, overfit_epochs=200, seed=0)


@pytest.fixture(scope="module")
def target(data, digits_spec, recipe):
    from toolkit.models import train_reference_model

    m = data["members"]
    return train_reference_model(digits_spec("mlp"), "torch", m.x, m.y, recipe)


@pytest.fixture(scope="module")
def pruned(target):
    import copy

    import torch
    import torch.nn.utils.prune as prune

    out = []
    for amount in (0.5, 0.8):
        m = copy.deepcopy(target)
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                prune.l1_unstructured(mod, "weight", amount=amount)
                prune.remove(mod, "weight")
        out.append(m)
    return out


def _pairs(data):
    m, n = data["members"], data["nonmembers"]
    return (m.x, m.y), (n.x, n.y)


REQUIRED = {"name", "auc", "balanced_accuracy", "tpr_at_fpr", "n_members", "n_nonmembers", "ci95", "under_resolved"}


def test_audit_report_schema_and_files(tmp_path, data, target, pruned):
    mem, non = _pairs(data)
    rep = audit(Proba(pruned[0]), mem, non, references=[Proba(target), Proba(pruned[1])], seed=0,
                out_dir=tmp_path, attack_options={"nn": {"epochs": 30}, "compleak_sr": {"epochs": 30},
                                                  "compleak_mr": {"epochs": 30}})
    names = [a["name"] for a in rep["attacks"]]
    assert names == ["loss", "confidence", "entropy", "modified_entropy", "correctness", "nn", "compleak_nr",
                     "compleak_sr", "compleak_mr"]
    assert set(rep) >= {"artifact", "accuracy", "attacks", "references", "data", "summary"}
    assert set(rep["artifact"]) >= {"path", "format", "sha256", "bytes"}
    assert rep["accuracy"]["members"] > rep["accuracy"]["nonmembers"]
    for a in rep["attacks"]:
        assert REQUIRED <= set(a) and set(a["tpr_at_fpr"]) == {"0.001", "0.01"}
        assert a["under_resolved"]  # 200 non-members < 1,000
        if a["kind"] == "learned":
            assert (a["n_members"], a["n_nonmembers"]) == (100, 100)
        else:
            assert (a["n_members"], a["n_nonmembers"]) == (200, 200)
    loss = rep["attacks"][0]
    assert loss["auc"] > 0.57 and loss["ci95"]["auc"][0] < loss["auc"] < loss["ci95"]["auc"][1]
    assert [(r["name"], r["role"]) for r in rep["references"]] == [("original", "original"), ("version1", "version")]

    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["attacks"][0]["auc"] == loss["auc"]
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "risk.csv").read_text().splitlines()
    assert rows[0].split(",") == ["index", "member", "label", "known", *names]
    assert len(rows) == 401 and sum(int(r.split(",")[1]) for r in rows[1:]) == 200
    # same seed, same report (timings aside)
    again = audit(Proba(pruned[0]), mem, non, attacks="loss,compleak_nr", seed=0, original_first=False,
                  references={"pruned80": Proba(pruned[1])})
    assert again["attacks"][0]["auc"] == loss["auc"]
    table = again["attacks"][1]["details"]["per_version"]
    assert {r["version"] for r in table} == {"target", "pruned80"}


def test_audit_with_reference_models(tmp_path, data, target, digits_spec, recipe):
    from toolkit.models.references import ReferencePool

    mem, non = _pairs(data)
    pop = data["population"]
    pool = ReferencePool(digits_spec("mlp"), recipe, (pop.x, pop.y), n_models=4, online=True,
                         cache_dir=tmp_path / "cache")
    rep = audit(Proba(target), mem, non, attacks=["loss", "lira", "lira_offline", "rmia"], reference_pool=pool,
                population_z=500, n_bootstrap=50)
    by = {a["name"]: a for a in rep["attacks"]}
    assert by["lira"]["details"]["reference_models"] == 4 and by["rmia"]["details"]["population_z"] == 500
    assert all(a["auc"] > 0.57 for a in rep["attacks"])
    assert rep["reference_models"]["online"] and rep["reference_models"]["trained_now"] == 4
    pool2 = ReferencePool(digits_spec("mlp"), recipe, (pop.x, pop.y), n_models=4, online=True,
                          cache_dir=tmp_path / "cache")
    audit(Proba(target), mem, non, attacks="rmia", reference_pool=pool2, population_z=500, n_bootstrap=5)
    assert pool2.trained == 0  # reused across candidates of a run


def test_queries_are_batched(data, target):
    from device_tests.leakage import query

    calls = []

    class Counting(Proba):
        def predict_proba(self, x):
            calls.append(len(x))
            return super().predict_proba(x)

    x = np.concatenate([data["members"].x, data["nonmembers"].x])
    whole = Proba(target).predict_proba(x)
    np.testing.assert_allclose(query(Counting(target), x, "target", 10, batch_size=64), whole, atol=1e-6)
    assert max(calls) == 64 and sum(calls) == len(x)


def test_audit_of_a_keras_model(data, trained):
    mem, non = _pairs(data)
    model = trained("keras", "mlp")  # trained on another split's members: membership here is near chance
    rep = audit(Proba(model), mem, non, attacks="loss,entropy", n_bootstrap=20)
    assert 0.3 < rep["attacks"][0]["auc"] < 0.8 and rep["accuracy"]["members"] > 0.8


def test_data_hygiene(data, target):
    mem, non = _pairs(data)
    t = Proba(target)
    with pytest.raises(DataError, match="occur in both members and non-members"):
        audit(t, mem, (np.concatenate([non[0], mem[0][:3]]), np.concatenate([non[1], mem[1][:3]])), attacks="loss")
    bad = non[0].copy()
    bad[5, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        audit(t, mem, (bad, non[1]), attacks="loss")
    with pytest.raises(DataError, match="outside the model's 10 classes"):
        audit(t, mem, (non[0], np.where(np.arange(len(non[1])) == 0, 12, non[1])), attacks="loss")
    with pytest.raises(DataError, match="sample shape"):
        audit(t, mem, (non[0].reshape(len(non[0]), -1), non[1]), attacks="loss")
    with pytest.raises(ArtifactError, match="NaN or inf"):
        audit(Proba(target, lambda p: np.where(p > 0.5, np.nan, p)), mem, non, attacks="loss")
    with pytest.raises(ArtifactError, match="not probability vectors"):
        audit(Proba(target, lambda p: np.log(p + 1e-9)), mem, non, attacks="loss")
    with pytest.raises(ArtifactError, match="predict_proba"):
        audit(object(), mem, non, attacks="loss")


def test_missing_side_information_is_a_clear_error(data, target):
    mem, non = _pairs(data)
    with pytest.raises(AttackError, match="'compleak_sr' needs a second version"):
        audit(Proba(target), mem, non, attacks="loss,compleak_sr")
    with pytest.raises(AttackError, match="attack 'lira' needs reference models"):
        audit(Proba(target), mem, non, attacks="lira")


# ------------------------------------------------------------------------------------------------ CLI
def run_cli(*args, cwd=None):
    env = dict(os.environ, SAFECOMPRESS_QUIET="1")
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("audit-cli")
    m, n = data["members"], data["nonmembers"]
    np.savez(d / "members.npz", x=m.x, y=m.y)
    np.savez(d / "nonmembers.npz", x=n.x, y=n.y)
    np.savez(d / "overlap.npz", x=np.concatenate([n.x, m.x[:2]]), y=np.concatenate([n.y, m.y[:2]]))
    nan = n.x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=nan, y=n.y)
    (d / "model.tflite").write_bytes(b"never opened: every error below is found before the artifact is loaded")
    (d / "bad.yaml").write_text("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\npopulation: p.npz\n"
                                "n_refs: 3\n")
    return d


@pytest.mark.parametrize("extra,needle", [
    (("--nonmembers", "overlap.npz"), "2 sample(s) occur in both members and non-members"),
    (("--nonmembers", "nan.npz"), "contain NaN or inf"),
    (("--nonmembers", "nonmembers.npz", "--attacks", "loss,lirra"), "unknown attack 'lirra' (did you mean 'lira'?)"),
    (("--nonmembers", "nonmembers.npz", "--attacks", "compleak_sr"), "needs a second version of the model"),
    (("--nonmembers", "nonmembers.npz", "--attacks", "rmia"), "pass --config"),
    (("--nonmembers", "nonmembers.npz", "--config", "bad.yaml"), "unknown key 'n_refs'"),
    (("--nonmembers", "missing.npz"), "data file not found"),
])
def test_cli_errors_are_one_line_exit_2(npz_files, extra, needle):
    r = run_cli("audit", "model.tflite", "--members", "members.npz", *extra, cwd=npz_files)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_help_lists_audit():
    r = run_cli("audit", "--help")
    assert r.returncode == 0 and "--reference" in r.stdout and "--config" in r.stdout
