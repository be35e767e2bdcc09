"""Every registered attack on a real overfit digits model, its compressed versions and real reference models,
plus exact checks of LiRA and RMIA on synthetic statistics whose answer is known."""

import numpy as np
import pytest
from scipy.stats import norm

from toolkit.attacks import (ATTACKS, METRIC_ATTACKS, AttackInput, check_needs, default_attacks, metrics,
                             parse_attack_names, run_attack)
from toolkit.attacks import lira, rmia
from toolkit.attacks.nn_attack import NNAttack
from toolkit.errors import AttackError, UnknownNameError

ALL = ("loss", "confidence", "entropy", "modified_entropy", "correctness", "nn", "shadow", "lira", "lira_pe",
       "lira_offline", "lira_offline_pe", "rmia", "rmia_online", "compleak_nr", "compleak_sr", "compleak_mr")


def test_registry_holds_the_documented_names_lazily():
    assert tuple(ATTACKS.names()) == ALL
    assert ATTACKS.meta("lira")["needs"] == ("references", "references_in")
    assert ATTACKS.meta("compleak_sr")["needs"] == ("versions",)
    with pytest.raises(UnknownNameError, match="did you mean 'lira'"):
        parse_attack_names("lira,lirra")


def test_missing_needs_name_the_fix():
    with pytest.raises(AttackError, match="attack 'lira' needs reference models.*--config"):
        check_needs(["loss", "lira"], set())
    with pytest.raises(AttackError, match="online attack"):
        check_needs(["lira"], {"references", "population"})
    with pytest.raises(AttackError, match="'compleak_sr' needs a second version.*--reference"):
        check_needs(["compleak_sr"], set())
    with pytest.raises(AttackError, match="at least 2 other versions"):
        check_needs(["compleak_mr"], {"versions"})
    check_needs(["lira_offline", "rmia"], {"references", "population"})


def test_default_attacks():
    assert default_attacks() == [*METRIC_ATTACKS, "nn"]
    assert "compleak_sr" in default_attacks(1) and "compleak_mr" not in default_attacks(1)
    assert {"lira", "lira_offline", "rmia"} <= set(default_attacks(2, references=True, online=True))
    assert "lira" not in default_attacks(references=True, online=False)


def _auc(res, inp):
    return metrics.auc(res.scores[res.eval_mask], inp.membership[res.eval_mask])


@pytest.mark.parametrize("name", METRIC_ATTACKS)
def test_metric_attacks_find_leakage(full_input, name):
    res = run_attack(name, full_input)
    assert res.eval_mask.all() and not res.learned
    assert _auc(res, full_input) > (0.53 if name == "correctness" else 0.57)


def test_every_attack_runs_on_the_full_input(full_input):
    for name in ALL:
        opts = {"epochs": 20} if name in ("nn", "compleak_sr", "compleak_mr") else {}
        res = run_attack(name, full_input, **({"epochs": 5} if name == "shadow" else opts))
        assert res.name == name and res.scores.shape == (full_input.n,) and np.isfinite(res.scores).all()
        assert res.learned == ATTACKS.meta(name)["learned"]
        if res.learned:
            assert (res.eval_mask == ~full_input.known).all()


def test_nn_attacker_learns_fits_deterministically_and_fine_tunes(full_input):
    inp, k = full_input, full_input.known
    a = NNAttack(inp.n_classes, epochs=100, seed=0)
    assert a.fit(inp.probs[k], inp.labels[k], inp.membership[k]) is a
    s = a.score(inp.probs, inp.labels)
    assert metrics.auc(s[~k], inp.membership[~k]) > 0.57
    b = NNAttack(inp.n_classes, epochs=100, seed=0).fit(inp.probs[k], inp.labels[k], inp.membership[k])
    np.testing.assert_allclose(b.score(inp.probs, inp.labels), s, rtol=1e-5, atol=1e-6)
    # SafeCompress: fine-tune the same attacker for a few epochs on another version's outputs.
    other = inp.versions[1]
    assert a.fine_tune(other[k], inp.labels[k], inp.membership[k], epochs=3) is a
    assert len(a.history) == 103
    assert not np.allclose(a.score(inp.probs, inp.labels), s)
    with pytest.raises(AttackError, match="call fit first"):
        NNAttack(10).fine_tune(other[k], inp.labels[k], inp.membership[k])


def test_nn_attacker_pickles_with_its_weights_and_optimizer_state(full_input):
    import pickle

    inp, k = full_input, full_input.known
    assert pickle.loads(pickle.dumps(NNAttack(inp.n_classes))).net is None
    a = NNAttack(inp.n_classes, epochs=5, seed=0).fit(inp.probs[k], inp.labels[k], inp.membership[k])
    b = pickle.loads(pickle.dumps(a))
    assert np.array_equal(a.score(inp.probs, inp.labels), b.score(inp.probs, inp.labels))
    # Fine-tuning the copy continues exactly where the original would (Adam moments and the data order too).
    other = inp.versions[1]
    for att in (a, b):
        att.fine_tune(other[k], inp.labels[k], inp.membership[k], epochs=2)
    assert a.history == b.history
    assert np.array_equal(a.score(inp.probs, inp.labels), b.score(inp.probs, inp.labels))


def test_reference_attacks_beat_chance(full_input):
    for name in ("lira", "lira_offline", "rmia", "rmia_online", "shadow"):
        res = run_attack(name, full_input, **({"epochs": 10} if name == "shadow" else {}))
        assert _auc(res, full_input) > 0.57, name
    res = run_attack("rmia", full_input)
    assert 0.0 <= res.details["a"] <= 1.0 and res.details["population_z"] == len(full_input.pop_labels)


def test_compleak_details(full_input):
    nr = run_attack("compleak_nr", full_input)
    versions = {row["version"] for row in nr.details["per_version"]}
    assert versions == {"target", "pruned50", "pruned80"}  # compressed versions only, not the original
    assert len(nr.details["per_version"]) == 3 * len(METRIC_ATTACKS)
    assert nr.details["selected"]["attack"] in METRIC_ATTACKS
    mr = run_attack("compleak_mr", full_input, epochs=20)
    assert mr.details["anchor"] == "original" and mr.details["versions"][0] == "target"
    # without the original, the anchor is the target and every version is compressed
    inp = AttackInput(full_input.probs, full_input.labels, full_input.membership, versions=full_input.versions[1:],
                      version_names=("pruned50", "pruned80"), original_first=False)
    nr2 = run_attack("compleak_nr", inp)
    assert {row["version"] for row in nr2.details["per_version"]} == {"target", "pruned50", "pruned80"}
    assert run_attack("compleak_mr", inp, epochs=5).details["anchor"] == "target"


def test_attack_input_validation(full_input):
    inp = full_input
    with pytest.raises(AttackError, match="labels must lie"):
        AttackInput(inp.probs, inp.labels + 10, inp.membership)
    with pytest.raises(AttackError, match="reference outputs must have shape"):
        AttackInput(inp.probs, inp.labels, inp.membership, ref_probs=inp.ref_probs[:, :5], ref_in=inp.ref_in)
    with pytest.raises(AttackError, match="at least 2 members and 2 non-members"):
        AttackInput(inp.probs[:3], inp.labels[:3], inp.membership[:3])
    with pytest.raises(AttackError, match="needs reference models"):
        run_attack("lira_offline", AttackInput(inp.probs, inp.labels, inp.membership))


# ---------------------------------------------------------------------------------------- exact checks
def test_lira_online_is_the_gaussian_log_likelihood_ratio():
    phi_refs = np.array([[1.0, 0.0], [3.0, 1.0], [-1.0, 5.0], [0.0, 6.0]])  # (k=4, n=2)
    ref_in = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    phi_t = np.array([1.5, 2.0])
    s, _ = lira.scores(phi_t, phi_refs, ref_in, online=True, variance="per_example")
    # point 0: in {1, 3} -> mean 2, sd 1; out {-1, 0} -> mean -0.5, sd 0.5
    e0 = norm.logpdf(1.5, 2, 1) - norm.logpdf(1.5, -0.5, 0.5)
    # point 1: in {5, 6} -> 5.5, 0.5; out {0, 1} -> 0.5, 0.5
    e1 = norm.logpdf(2.0, 5.5, 0.5) - norm.logpdf(2.0, 0.5, 0.5)
    np.testing.assert_allclose(s, [e0, e1])
    g, _ = lira.scores(phi_t, phi_refs, ref_in, online=True, variance="global")
    pooled_in = np.sqrt((1.0 + 0.25) / 2)  # within-point variances 1 and 0.25, pooled
    assert g[0] == pytest.approx(norm.logpdf(1.5, 2, pooled_in) - norm.logpdf(1.5, -0.5, 0.5))
    off, _ = lira.scores(phi_t, phi_refs, ref_in, online=False, variance="per_example")
    np.testing.assert_allclose(off, [(1.5 + 0.5) / 0.5, (2.0 - 0.5) / 0.5])


def test_lira_separates_synthetic_members_with_known_distributions():
    rng = np.random.default_rng(0)
    k, n = 16, 2000
    mu = rng.normal(0, 2, n)  # per-example difficulty
    ref_in = rng.random((k, n)) < 0.5
    phi_refs = mu + 1.0 * ref_in + rng.normal(0, 0.5, (k, n))
    member = np.arange(n) < n // 2
    phi_t = mu + 1.0 * member + rng.normal(0, 0.5, n)
    for online in (True, False):
        s, _ = lira.scores(phi_t, phi_refs, ref_in, online=online)
        assert metrics.auc(s, member) > 0.85
    # without calibration to each example the same statistic is far weaker
    assert metrics.auc(phi_t, member) < 0.7


def test_rmia_score_is_the_fraction_of_dominated_population_samples():
    rng = np.random.default_rng(1)
    k, n, m = 3, 50, 80
    p_ref_x, p_ref_z = rng.uniform(0.05, 1, (k, n)), rng.uniform(0.05, 1, (k, m))
    in_z = rng.random((k, m)) < 0.5
    p_t_x, p_t_z = rng.uniform(0.05, 1, n), rng.uniform(0.05, 1, m)
    a, gamma = 0.4, 1.5
    s = rmia.scores(p_t_x, p_ref_x, np.zeros((k, n), bool), p_t_z, p_ref_z, in_z, online=False, a=a, gamma=gamma)
    px = 0.5 * ((1 + a) * p_ref_x.mean(axis=0) + (1 - a))
    pz = rmia.marginal_px(p_ref_z, in_z, a)
    brute = np.array([np.mean((p_t_x[i] / px[i]) / (p_t_z / pz) > gamma) for i in range(n)])
    np.testing.assert_allclose(np.floor(s * m + 1e-9) / m, brute)  # the fraction, plus a sub-step tie-break
    assert np.array_equal(np.argsort(s), np.argsort(p_t_x / px))  # ranking = the likelihood ratio's


def test_attack_modules_import_no_framework():
    import subprocess
    import sys

    code = ("import sys, toolkit.attacks, toolkit.attacks.config, device_tests.leakage, device_tests.audit_cli, "
            "toolkit.models.references\n"
            "from toolkit.attacks import ATTACKS\n"
            "import importlib\n"
            "for n in ATTACKS: importlib.import_module(ATTACKS._entries[n].target.partition(':')[0])\n"
            "print([m for m in ('torch', 'tensorflow', 'tf_keras', 'onnxruntime') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
