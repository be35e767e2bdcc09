"""The paper's baselines as pipelines: each produces a model at its density / parameter budget."""

import json

import numpy as np
import pytest

from toolkit.errors import ConfigError
from toolkit.select.baselines import BASELINES, PAPER_BASELINES, infer_spec, spec_params, student_spec


@pytest.fixture(scope="module")
def mdata(digits_parts):
    from toolkit.select.safecompress import MembershipData

    return MembershipData.from_parts(digits_parts, n_classes=10)


def test_registry_has_the_paper_baselines_with_one_calling_convention():
    from toolkit.select.safecompress import SAFECOMPRESS_METHODS

    assert set(PAPER_BASELINES) <= set(BASELINES)
    assert PAPER_BASELINES == ("pr_dp", "pr_advreg", "pr_dmp", "kd_dp", "kd_advreg", "kd_dmp", "mia_pr")
    for name in BASELINES:
        m = BASELINES.get(name)
        assert m.config(m.example).density == m.example["density"]
        assert set(m.targets(m.config())) & {"density", "params_ratio"}
    assert BASELINES.get("kd_dp").config({}).lr == 0.5 and BASELINES.get("kd_dmp").config({}).epochs == 20
    sc = SAFECOMPRESS_METHODS.get("safecompress")
    assert sc.apply.__code__.co_varnames[:5] == BASELINES.get("pr_dp").apply.__code__.co_varnames[:5]


@pytest.mark.parametrize("name", ["pr_dp", "pr_advreg", "pr_dmp", "mia_pr"])
def test_pruning_baselines_reach_the_density(name, mdata, trained):
    dense = trained("torch", "mlp")
    res = BASELINES.get(name).apply(dense, mdata, {**BASELINES.get(name).example, "density": 0.1,
                                                   "attack_epochs": 2})
    assert res.density <= 0.1 + 1e-5 and res.stats.sparsity >= 0.9 - 1e-5
    assert res.params_ratio == 1.0  # zeros baked into the same architecture
    assert res.accuracy > 0.3 and 0 <= res.mia_accuracy <= 1
    assert res.tm_score == pytest.approx(res.accuracy / res.mia_accuracy)
    json.dumps(res.to_dict())
    if name == "pr_dp":
        assert np.isfinite(res.defense["details"]["epsilon"])
    for p in dense.parameters():  # the input model is never changed
        assert np.count_nonzero(p.detach().numpy()) > 0.9 * p.numel()


@pytest.mark.parametrize("name,fw,arch", [("kd_dp", "torch", "mlp"), ("kd_advreg", "torch", "cnn"),
                                          ("kd_dmp", "torch", "mlp"), ("kd_dmp", "keras", "mlp")])
def test_kd_baselines_train_a_student_of_the_budget(name, fw, arch, mdata, trained):
    from toolkit.models import n_params

    teacher = trained(fw, arch)
    res = BASELINES.get(name).apply(teacher, mdata, {"density": 0.1, "epochs": 10})
    assert res.framework == fw
    assert abs(n_params(res.model) - 0.1 * n_params(teacher)) <= 0.1 * 0.1 * n_params(teacher)
    assert res.params_ratio == pytest.approx(n_params(res.model) / n_params(teacher))
    assert res.details["student"]["arch"] == arch
    assert res.mia_accuracy is None  # attack_epochs=0: no own MIA figure
    assert res.accuracy > 0.15


def test_explicit_student_must_meet_the_budget(mdata, trained):
    from toolkit.errors import CompressionError

    teacher = trained("torch", "mlp")  # 50,826 parameters: the budget at density 0.1 is 5,083
    res = BASELINES.get("kd_none").apply(teacher, mdata, {"density": 0.1, "epochs": 1, "student": {"hidden": [70]}})
    assert res.details["student_params"] == 64 * 70 + 70 + 70 * 10 + 10
    with pytest.raises(CompressionError, match="not 5083 .* within 10%"):
        BASELINES.get("kd_none").apply(teacher, mdata, {"density": 0.1, "epochs": 1, "student": {"hidden": [8]}})


def test_kd_none_student_learns_from_the_teacher(mdata, trained):
    from toolkit.models import predict_proba

    teacher = trained("torch", "mlp")
    res = BASELINES.get("kd_none").apply(teacher, mdata, {"density": 0.2, "epochs": 10})
    x = mdata.nonmembers.x
    assert np.mean(np.argmax(res.predict_proba(x), 1) == np.argmax(predict_proba(teacher, x), 1)) > 0.7


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_student_sizing_and_spec_inference(fw, arch, trained, digits):
    from toolkit.models import build_model, n_params

    model = trained(fw, arch)
    spec = infer_spec(model, digits.input_shape)
    assert spec_params(spec) == n_params(model)
    for density in (0.05, 0.1, 0.3):
        s = student_spec(spec, density * n_params(model))
        assert abs(n_params(build_model(s, fw)) - density * n_params(model)) <= 0.1 * density * n_params(model)


def test_mia_pr_selects_on_the_known_halves_only(mdata, trained, digits_parts):
    """Replacing the unknown non-members (never trained on, never used for selection) keeps the choice."""
    from toolkit.select.safecompress import MembershipData

    dense = trained("torch", "mlp")
    params = {"density": 0.1, "epochs": 1, "allocations": ["global", "layerwise"], "density_factors": [1.0, 0.5],
              "selection_attack_epochs": 5}
    res = BASELINES.get("mia_pr").apply(dense, mdata, params)
    cands = res.details["candidates"]
    assert len(cands) == 4 and sum(c["selected"] for c in cands) == 1
    best = max(c["known_task_accuracy"] for c in cands)
    win = res.details["selected"]
    assert win["known_task_accuracy"] >= best - 0.02
    assert all(c["known_mia_accuracy"] >= win["known_mia_accuracy"] for c in cands
               if c["known_task_accuracy"] >= best - 0.02)
    assert all(c["density"] <= 0.1 + 1e-5 for c in cands)
    pop = digits_parts["population"]
    swapped = MembershipData(mdata.member_known, mdata.member_unknown, mdata.nonmember_known,
                             type(pop)(pop.x[:300], pop.y[:300]))
    again = BASELINES.get("mia_pr").apply(dense, swapped, params)
    def strip(cs):
        return [{k: v for k, v in c.items() if k != "seconds"} for c in cs]

    assert strip(again.details["candidates"]) == strip(cands)


def test_errors_are_one_line(mdata, trained):
    with pytest.raises(ConfigError, match="unknown key 'sparsity'"):
        BASELINES.get("pr_dp").apply(trained("torch"), mdata, {"sparsity": 0.9})
    with pytest.raises(ConfigError, match="torch models, not keras"):
        BASELINES.get("pr_advreg").apply(trained("keras"), mdata, {"density": 0.1, "epochs": 1})
    no_pop = type(mdata)(mdata.member_known, mdata.member_unknown, mdata.nonmember_known, mdata.nonmember_unknown)
    with pytest.raises(ConfigError, match="population pool"):
        BASELINES.get("kd_dmp").apply(trained("torch"), no_pop, {"density": 0.1})
    with pytest.raises(ConfigError, match="unknown key 'lamda'"):
        BASELINES.get("pr_advreg").apply(trained("torch"), mdata, {"density": 0.1, "defense": {"lam": 1.0, "lamda": 1}})


@pytest.mark.slow
def test_defenses_benchmark_quick_run():
    """benchmarks/defenses_repro.py end to end at its quick size (about a minute): every row, every round."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "defenses_repro.py"
    spec = importlib.util.spec_from_file_location("defenses_repro", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.run(quick=True)
    methods = [r["method"] for r in result["rows"]]
    assert methods == ["dense", *PAPER_BASELINES, "safecompress", "safecompress_re2"]
    for r in result["rows"][1:]:
        assert r["density"] <= r["target_density"] + 1e-4 or r["params_ratio"] <= r["target_density"] * 1.1
        assert 0 < r["task_acc"] <= 1 and 0 <= r["mia_acc"] <= 1
    assert len(result["iterative"]) == 4 and all(len(v["rounds"]) == 3 for v in result["iterative"])
    md = mod._markdown(result)
    assert "Does the paper's shape hold?" in md and "memorization per round" in md
    json.dumps(result)
