"""Threshold evaluation, metric names, policy validation and the shared config loader (in process, fast).

The report dicts here are written out by hand: the tests check the gate's arithmetic and bookkeeping on
known inputs; the CLI tests check it on real audits.
"""

import re
from pathlib import Path

import pytest

from toolkit.attacks.config import AuditConfig
from toolkit.config_io import load_config, parse_config
from toolkit.errors import ConfigError, DataError
from toolkit.gate import GatePolicy, Threshold, evaluate, get_metric
from toolkit.gate.metrics import KINDS, METRICS, canonical
from toolkit.gate.policy import merge, parse_flag_items
from toolkit.models.spec import ModelSpec, TrainRecipe

REPO = Path(__file__).resolve().parents[3]


def _row(name, auc, tpr3, tpr2=0.02, bacc=0.5, n_non=500, kind="score"):
    return {"name": name, "kind": kind, "auc": auc, "balanced_accuracy": bacc, "n_members": 500,
            "n_nonmembers": n_non, "tpr_at_fpr": {"0.001": tpr3, "0.01": tpr2}, "under_resolved": n_non < 1000}


def _report(rows, members=1.0, nonmembers=0.9, data="a"):
    return {"schema": "safecompress.audit/1", "attacks": rows,
            "accuracy": {"members": members, "nonmembers": nonmembers},
            "data": {"members_sha256": data, "nonmembers_sha256": data}}


def test_metric_names_follow_the_audit_fprs():
    from toolkit.attacks.metrics import FPR_TARGETS

    assert [m for m in METRICS if m.startswith("tpr@")] == [f"tpr@{f}" for f in FPR_TARGETS]
    assert canonical("TPR@1e-3") == canonical("tpr@0.1%") == "tpr@0.001"
    assert get_metric(" auc ").name == "auc"
    with pytest.raises(ConfigError, match=r"unknown gate metric 'tpr@0.002'.*known: auc, balanced_accuracy"):
        get_metric("tpr@0.002")


def test_worst_attack_and_one_check_per_attack():
    rep = _report([_row("loss", 0.58, 0.01), _row("lira", 0.66, 0.09, n_non=2000), _row("nn", 0.61, 0.0)])
    th = parse_flag_items("max", ["auc=0.6", "tpr@0.001=0.05"]) + parse_flag_items("min", ["accuracy=0.85"])
    res = evaluate(rep, th)
    assert len(res.checks) == 3 + 3 + 1 and res.verdict == "fail"
    assert {(c.metric, c.attack) for c in res.violations} == {("auc", "lira"), ("auc", "nn"), ("tpr@0.001", "lira")}
    worst = {w["metric"]: w for w in res.worst()}
    assert (worst["auc"]["attack"], worst["auc"]["value"], worst["auc"]["violations"]) == ("lira", 0.66, 2)
    assert worst["accuracy"]["attack"] == "model" and worst["accuracy"]["passed"]
    # lira has 2,000 non-members: only the others are under-resolved at 0.1% FPR
    assert [w for w in res.warnings if "under-resolved" in w] == [
        "tpr@0.001 is under-resolved for attack(s) loss, nn: evaluated on 500 non-members (< 1,000), so TPR at "
        "0.1% FPR rests on less than one false positive; audit with >= 1,000 non-members"]
    line = res.violations[0].line()
    assert line == "FAIL auc attack=lira value=0.6600 limit: max=0.6"


def test_accuracy_metrics_and_boundaries():
    rep = _report([_row("loss", 0.6, 0.05)], members=0.99, nonmembers=0.85)
    res = evaluate(rep, parse_flag_items("max", ["auc=0.6", "tpr@0.001=0.05", "accuracy_gap=0.14"])
                   + parse_flag_items("min", ["accuracy=0.85"]))
    gap = next(c for c in res.checks if c.metric == "accuracy_gap")
    assert gap.value == pytest.approx(0.14) and gap.passed  # limits are inclusive (0.99 - 0.85 is 0.14 + 1e-16)
    assert res.passed
    assert not evaluate(rep, parse_flag_items("min", ["accuracy=0.86"])).passed


def test_baseline_deltas_per_attack():
    base = _report([_row("loss", 0.60, 0.01), _row("entropy", 0.55, 0.01)], nonmembers=0.90)
    now = _report([_row("loss", 0.62, 0.01), _row("entropy", 0.58, 0.01), _row("rmia", 0.7, 0.1)],
                  nonmembers=0.885, data="b")
    th = parse_flag_items("max_increase", ["auc=0.02"]) + parse_flag_items("max_decrease", ["accuracy=0.02"])
    res = evaluate(now, th, base)
    by = {(c.metric, c.attack): c for c in res.checks}
    assert by[("auc", "loss")].passed and by[("auc", "loss")].delta == pytest.approx(0.02)  # 0.62 - 0.60: float noise
    assert not by[("auc", "entropy")].passed and by[("auc", "entropy")].delta == pytest.approx(0.03)
    assert by[("accuracy", "model")].passed and by[("accuracy", "model")].delta == pytest.approx(-0.015)
    assert not evaluate(now, parse_flag_items("max_decrease", ["accuracy=0.01"]), base).passed
    assert ("auc", "rmia") not in by
    assert any("no baseline for attack(s) rmia" in w for w in res.warnings)
    assert any("other member/non-member data" in w for w in res.warnings)
    assert res.violations[0].line() == ("FAIL auc attack=entropy value=0.5800 baseline=0.5500 increase=0.0300 "
                                        "limit: max_increase=0.02")
    with pytest.raises(DataError, match="ran none of the attacks run now"):
        evaluate(_report([_row("lira", 0.7, 0.1)]), th, base)
    with pytest.raises(ConfigError, match="needs a baseline"):
        evaluate(now, th)
    with pytest.raises(ConfigError, match="no thresholds"):
        evaluate(now, [])


def test_flags_override_policy_per_metric_and_kind():
    pol = parse_config({"max": {"auc": 0.6, "tpr@1e-3": 0.05}, "min": {"accuracy": 0.8}}, GatePolicy, "policy")
    merged = merge(pol, parse_flag_items("max", ["auc=0.55"]) + parse_flag_items("max_increase", ["auc=0.01"]))
    assert merged == [Threshold("auc", "max", 0.55, "flag"), Threshold("tpr@0.001", "max", 0.05, "policy"),
                      Threshold("accuracy", "min", 0.8, "policy"), Threshold("auc", "max_increase", 0.01, "flag")]
    with pytest.raises(ConfigError, match="--max auc is given twice"):
        parse_flag_items("max", ["auc=0.5", "AUC=0.6"])
    with pytest.raises(ConfigError, match=r"--max-decrease does not apply to auc"):
        parse_flag_items("max_decrease", ["auc=0.1"])
    with pytest.raises(ConfigError, match="must be a number"):
        parse_flag_items("min", ["accuracy=high"])
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\]"):
        parse_flag_items("max", ["auc=nan"])


@pytest.mark.parametrize("text,needle", [
    ("max: {auc: 0.6}\nmax_increse: {auc: 0.1}\n",
     "unknown key 'max_increse' (allowed: max, min, max_increase, max_decrease, baseline, attacks, audit_config, "
     "seed); did you mean 'max_increase'?"),
    ("max: {aucc: 0.6}\n", "max: unknown gate metric 'aucc' (did you mean 'auc'?); known: auc"),
    ("min: {auc: 0.5}\n", "min: min does not apply to auc (higher is worse); use max or max_increase"),
    ("max: [auc, 0.6]\n", "max: expected a mapping metric: limit"),
    ("attacks: [lirra]\n", "attacks: unknown attack 'lirra'"),
    ("seed: abc\n", "seed: Input should be a valid integer"),
    ("- max\n", "must be a mapping of keys to values, got list"),
])
def test_policy_errors_are_one_line(tmp_path, text, needle):
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p, GatePolicy, f"gate policy {p}")
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg.startswith(("invalid gate policy", "gate policy"))


def test_nested_unknown_keys_name_their_section(tmp_path):
    p = tmp_path / "audit.yaml"
    p.write_text("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10, hiden: [64]}\npopulation: p.npz\n"
                 "recipe: {epoch: 3}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, AuditConfig, "audit config")
    msg = str(exc.value)
    assert ("unknown key 'model.hiden' (allowed: arch, input_shape, n_classes, hidden, channels, dense); "
            "did you mean 'hidden'?") in msg
    assert "unknown key 'recipe.epoch' (allowed: epochs, batch_size" in msg and "did you mean 'epochs'?" in msg


def test_example_policy_loads_and_readme_documents_every_key():
    pol = load_config(REPO / "configs" / "gate.example.yaml", GatePolicy)
    assert pol.max and pol.min and pol.baseline is None
    readme = (REPO / "configs" / "README.md").read_text()
    for model in (GatePolicy, AuditConfig, ModelSpec, TrainRecipe):
        for key in model.model_fields:
            assert re.search(rf"^\| `{re.escape(key)}` \|", readme, re.M), f"README lacks {model.__name__}.{key}"
    for metric in METRICS:
        assert f"`{metric}`" in readme
    for kind in KINDS:
        assert f"`{kind}`" in readme
