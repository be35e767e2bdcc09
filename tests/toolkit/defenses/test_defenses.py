"""The DEFENSES registry: each defense trains a digits model (torch and Keras) and does what it claims."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from toolkit.defenses import DEFENSES, REGULARIZERS, make_defense
from toolkit.errors import ConfigError, UnknownNameError

FRAMEWORKS = ("torch", "keras")


@pytest.fixture(scope="module")
def recipe():
    from toolkit.models import TrainRecipe

    return TrainRecipe(epochs=2, batch_size=64, lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def ddata(digits_parts, trained):
    """members + population reference + a trained teacher per framework."""
    from toolkit.defenses.base import DefenseData

    mem, pop = digits_parts["members"], digits_parts["population"]
    return {fw: DefenseData(mem.x, mem.y, reference=pop, teacher=trained(fw, "mlp")) for fw in FRAMEWORKS}


def _fresh(digits_spec, fw, arch="mlp", seed=1):
    from toolkit.models import build_model

    return build_model(digits_spec(arch), fw, seed=seed)


def _weights(model):
    from toolkit.models import backend, framework_of

    return backend(framework_of(model)).weight_arrays(model)


def test_registry_lists_every_defense_and_imports_no_framework():
    assert set(DEFENSES) >= {"none", "dp", "advreg", "dmp", "kd", "re1", "re2", "label_smoothing", "early_stopping"}
    code = ("import sys, toolkit.defenses as d; d.DEFENSES.meta('dp'); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_names_and_keys_are_one_line_errors(ddata):
    with pytest.raises(UnknownNameError, match="known: none, dp"):
        make_defense("dpp")
    with pytest.raises(ConfigError, match="unknown key 'sigma'.*noise_multiplier"):
        make_defense("dp", {"sigma": 1.0})
    with pytest.raises(ConfigError, match="not both"):
        make_defense("dp", {"noise_multiplier": 1.0, "target_epsilon": 3.0})


def test_needs_and_task_loss_are_checked(digits_parts, digits_spec, recipe):
    from toolkit.defenses.losses import CrossEntropy

    mem = digits_parts["members"]
    model = _fresh(digits_spec, "torch")
    with pytest.raises(ConfigError, match="dmp.*needs DefenseData.reference.*never the audit non-members"):
        make_defense("dmp").fit(model, (mem.x, mem.y), recipe)
    with pytest.raises(ConfigError, match="kd.*needs DefenseData.teacher"):
        make_defense("kd").fit(model, (mem.x, mem.y), recipe)
    with pytest.raises(ConfigError, match="label_smoothing.*own loss"):
        make_defense("label_smoothing").fit(model, (mem.x, mem.y), recipe, task_loss=CrossEntropy())


def test_reference_overlapping_members_is_refused(digits_parts):
    from toolkit.data.split import SplitArrays
    from toolkit.defenses.base import DefenseData
    from toolkit.errors import DataError

    mem = digits_parts["members"]
    with pytest.raises(DataError, match="both the reference set and the training members"):
        DefenseData(mem.x, mem.y, reference=SplitArrays(mem.x[:5], mem.y[:5]))


@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("name", ["none", "label_smoothing", "re1", "re2", "kd", "advreg", "early_stopping", "dmp"])
def test_each_defense_trains(name, fw, ddata, digits_parts, digits_spec, recipe):
    from toolkit.models import accuracy

    model = _fresh(digits_spec, fw)
    before = _weights(model)
    report = make_defense(name, {"seed": 3}).fit(model, ddata[fw], recipe, epochs=3)
    non = digits_parts["nonmembers"]
    assert report.defense == name and report.framework == fw and report.epochs >= 1 and report.steps >= 1
    assert report.config["seed"] == 3
    assert any(not np.array_equal(before[k], v) for k, v in _weights(model).items())
    assert accuracy(model, non.x, non.y) > 0.3  # chance is 0.1
    assert isinstance(report.to_dict()["details"], dict)


# ------------------------------------------------------------------------------------------------ DP-SGD
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_dp_reports_finite_epsilon_for_the_delta_used(fw, ddata, digits_spec, recipe):
    from opacus.accountants import RDPAccountant

    model = _fresh(digits_spec, fw)
    rep = make_defense("dp", {"noise_multiplier": 1.1}).fit(model, ddata[fw], recipe, epochs=2)
    d = rep.details
    n = len(ddata[fw].y)
    assert d["delta"] == min(1e-5, 1 / n)
    assert np.isfinite(d["epsilon"]) and 0 < d["epsilon"] < 20
    assert d["sample_rate"] == pytest.approx(1 / np.ceil(n / recipe.batch_size))
    # The same accountant, driven by hand, gives the same epsilon for the steps taken.
    acc = RDPAccountant()
    steps = 2 * int(np.ceil(n / recipe.batch_size))
    acc.history = [(1.1, d["sample_rate"], steps)]
    from toolkit.defenses.dp import RDP_ALPHAS

    assert d["epsilon"] == pytest.approx(acc.get_epsilon(d["delta"], alphas=RDP_ALPHAS), rel=0.15)
    # More noise, less epsilon; a target epsilon is met.
    more = make_defense("dp", {"noise_multiplier": 3.0}).fit(_fresh(digits_spec, fw), ddata[fw], recipe, epochs=2)
    assert more.details["epsilon"] < d["epsilon"]
    target = make_defense("dp", {"target_epsilon": 2.0}).fit(_fresh(digits_spec, fw), ddata[fw], recipe, epochs=2)
    assert target.details["epsilon"] <= 2.0 + 0.05


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_dp_clips_per_sample_gradients(fw, ddata, digits_spec):
    """No noise, plain SGD at lr 1: each step moves the weights by the mean *clipped* gradient, whose norm is at
    most C x (batch size / expected batch size). Without clipping the same run moves them far more."""
    from toolkit.models import TrainRecipe

    recipe = TrainRecipe(epochs=1, batch_size=64, optimizer="sgd", lr=1.0, momentum=0.0, seed=0)
    C = 1e-3

    def moved(params):
        model = _fresh(digits_spec, fw)
        w0 = np.concatenate([v.ravel() for v in _params(model)])
        rep = make_defense("dp", params).fit(model, ddata[fw], recipe, epochs=1)
        return np.linalg.norm(np.concatenate([v.ravel() for v in _params(model)]) - w0), rep

    small, rep = moved({"noise_multiplier": 0.0, "max_grad_norm": C})
    # Poisson batches: at most ~1.6x the expected size for these rates; steps x C x 1.6 bounds the total move.
    assert small <= rep.steps * C * 1.6
    large, _ = moved({"noise_multiplier": 0.0, "max_grad_norm": 1e6})
    assert large > 20 * small


def _params(model):
    from toolkit.models import framework_of

    if framework_of(model) == "torch":
        return [p.detach().numpy().copy() for p in model.parameters()]
    return [np.asarray(v) for v in model.trainable_variables]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_dp_keeps_pruning_masks_and_leaves_a_plain_model(fw, ddata, digits_spec, recipe):
    model = _fresh(digits_spec, fw)
    rng = np.random.default_rng(0)
    masks = {k: rng.random(v.shape) < 0.3 for k, v in _weights(model).items()}
    make_defense("dp").fit(model, ddata[fw], recipe, epochs=1, masks=masks)
    for k, v in _weights(model).items():
        assert not np.any(v[~masks[k]]), k
        assert np.count_nonzero(v[masks[k]]) > 0.9 * masks[k].sum()
    if fw == "torch":  # Opacus hooks and per-sample attributes are gone
        assert not any(hasattr(p, "grad_sample") for p in model.parameters())
        assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


# ------------------------------------------------------------------------------------------------ DMP / KD
def test_dmp_student_learns_only_from_selected_low_entropy_references(ddata, digits_parts, digits_spec, recipe):
    from toolkit.defenses.base import DefenseData
    from toolkit.defenses.dmp import entropy
    from toolkit.models import predict_proba

    data = ddata["torch"]
    model = _fresh(digits_spec, "torch")
    rep = make_defense("dmp", {"keep_fraction": 0.4}).fit(model, data, recipe, epochs=3)
    sel = rep.arrays["selected"]
    ent = entropy(predict_proba(data.teacher, data.reference.x))
    assert len(sel) == round(0.4 * len(ent)) == rep.details["n_selected"]
    assert ent[sel].max() <= np.delete(ent, sel).min()
    # The members never enter the student's training: other members, same teacher -> identical student.
    other = digits_parts["nonmembers"]
    model2 = _fresh(digits_spec, "torch")
    make_defense("dmp", {"keep_fraction": 0.4}).fit(
        model2, DefenseData(other.x, other.y, reference=data.reference, teacher=data.teacher), recipe, epochs=3)
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, _weights(model2)[k])
    # ... and it learned the teacher's labels of the selected references.
    agree = np.argmax(predict_proba(model, data.reference.x[sel]), 1) == np.argmax(
        predict_proba(data.teacher, data.reference.x[sel]), 1)
    assert agree.mean() > 0.6


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_kd_student_matches_the_teacher(fw, ddata, digits_parts, digits_spec, recipe):
    from toolkit.models import predict_proba

    non = digits_parts["nonmembers"]
    model = _fresh(digits_spec, fw)
    make_defense("kd", {"temperature": 2.0, "alpha": 1.0}).fit(model, ddata[fw], recipe, epochs=3)
    agree = np.mean(np.argmax(predict_proba(model, non.x), 1) == np.argmax(predict_proba(ddata[fw].teacher, non.x), 1))
    assert agree > 0.6  # chance agreement ~0.1


def test_distillation_loss_matches_the_formula():
    import torch

    from toolkit.defenses.losses import SoftTargets, soften

    rng = np.random.default_rng(0)
    teacher = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    T, a = 3.0, 0.7
    pt = soften(teacher, T)
    fn = SoftTargets(pt, T, a).torch(np.zeros((4, 1)), y)
    got = fn(torch.from_numpy(logits), torch.from_numpy(y), torch.arange(4)).numpy()
    from scipy.special import log_softmax

    kl = (pt * (np.log(pt) - log_softmax(logits / T, axis=1))).sum(1) * T * T
    ce = -log_softmax(logits, axis=1)[np.arange(4), y]
    np.testing.assert_allclose(got, (1 - a) * ce + a * kl, rtol=1e-4)
    # soften(p, T) is softmax(z / T) for the logits z behind p
    z = rng.normal(size=(3, 5))
    from scipy.special import softmax

    np.testing.assert_allclose(soften(softmax(z, axis=1), T), softmax(z / T, axis=1), rtol=1e-4)


# ------------------------------------------------------------------------------------------------ label smoothing
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_label_smoothing_trains_towards_smoothed_targets(fw, digits_parts):
    from scipy.special import log_softmax

    from toolkit.defenses.losses import CrossEntropy, smoothed_targets

    logits = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    y = np.arange(6)
    target = smoothed_targets(y, 10, 0.2)
    assert target[0, 0] == pytest.approx(0.82) and target[0, 1] == pytest.approx(0.02)
    want = -(target * log_softmax(logits, axis=1)).sum(1)
    loss = CrossEntropy(0.2)
    if fw == "torch":
        import torch

        got = loss.torch(None, y)(torch.from_numpy(logits), torch.from_numpy(y), None).numpy()
    else:
        got = np.asarray(loss.keras(None, y)(np.arange(6), logits))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, -log_softmax(logits, axis=1)[np.arange(6), y])


def test_label_smoothing_lowers_member_confidence(ddata, digits_spec, recipe):
    from toolkit.models import predict_proba

    conf = {}
    for name in ("none", "label_smoothing"):
        model = _fresh(digits_spec, "torch")
        make_defense(name, {"smoothing": 0.3} if name != "none" else {}).fit(model, ddata["torch"], recipe, epochs=6)
        conf[name] = predict_proba(model, ddata["torch"].x).max(1).mean()
    assert conf["label_smoothing"] < conf["none"] - 0.05


def test_re1_re2_defenses_are_the_registered_regularizers(ddata, digits_spec, recipe):
    from toolkit.models.torch_nets import train

    for name in ("re1", "re2"):
        a, b = _fresh(digits_spec, "torch"), _fresh(digits_spec, "torch")
        make_defense(name, {"beta": 0.5, "seed": 4}).fit(a, ddata["torch"], recipe, epochs=2)
        train(b, ddata["torch"].x, ddata["torch"].y, recipe.model_copy(update={"seed": 4}), epochs=2,
              loss_fn=REGULARIZERS.get(name).torch_loss(0.5))
        for k, v in _weights(a).items():
            np.testing.assert_allclose(v, _weights(b)[k], atol=1e-6)


# ------------------------------------------------------------------------------------------------ early stopping
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_early_stopping_stops_and_keeps_the_best_epoch(fw, ddata, digits_spec):
    from toolkit.models import TrainRecipe

    recipe = TrainRecipe(epochs=60, batch_size=32, lr=0.02, seed=0)  # overfits within a few epochs
    model = _fresh(digits_spec, fw)
    rep = make_defense("early_stopping", {"patience": 2, "holdout": 0.3}).fit(model, ddata[fw], recipe)
    d = rep.details
    assert d["stopped_early"] and rep.epochs < 60
    assert rep.epochs == d["best_epoch"] + 1 + 2  # patience epochs after the best one
    n = len(ddata[fw].y)
    assert len(rep.arrays["trained_on"]) == n - round(0.3 * n) == d["n_train"]
    if fw == "torch":  # the best weights were restored: the validation loss is the best one seen
        from toolkit.attacks.signals import loss
        from toolkit.models import predict_proba

        val = np.setdiff1d(np.arange(n), rep.arrays["trained_on"])
        data = ddata[fw]
        got = loss(predict_proba(model, data.x[val]), data.y[val]).mean()
        assert got == pytest.approx(d["best_val_loss"], rel=1e-3)


def test_early_stopping_on_the_population(ddata, digits_spec, recipe):
    model = _fresh(digits_spec, "torch")
    rep = make_defense("early_stopping", {"source": "reference", "patience": 1}).fit(model, ddata["torch"], recipe,
                                                                                    epochs=3)
    assert rep.details["n_validation"] == len(ddata["torch"].reference.y)
    assert rep.details["n_train"] == len(ddata["torch"].y)


# ------------------------------------------------------------------------------------------------ AdvReg
def test_advreg_min_max_game(ddata, digits_spec, recipe):
    """lam = 0: the attacker's steps leave the target's training untouched (same weights as plain training);
    lam > 0 changes it, and the report carries the attacker's state."""
    plain, zero, reg = (_fresh(digits_spec, "torch") for _ in range(3))
    make_defense("none").fit(plain, ddata["torch"], recipe, epochs=2)
    make_defense("advreg", {"lam": 0.0}).fit(zero, ddata["torch"], recipe, epochs=2)
    rep = make_defense("advreg", {"lam": 3.0}).fit(reg, ddata["torch"], recipe, epochs=2)
    for k, v in _weights(plain).items():
        np.testing.assert_allclose(v, _weights(zero)[k], atol=1e-6)
    assert any(not np.allclose(v, _weights(reg)[k]) for k, v in _weights(plain).items())
    d = rep.details
    assert 0.0 <= d["final_attack_accuracy"] <= 1.0 and d["final_gain"] < 0


@pytest.mark.parametrize("name", ["none", "label_smoothing", "kd", "advreg", "dmp", "early_stopping"])
def test_masks_keep_pruned_weights_zero(name, ddata, digits_spec, recipe):
    fw = "keras" if name in ("advreg", "early_stopping") else "torch"  # one framework each keeps this quick
    model = _fresh(digits_spec, fw, "cnn")
    rng = np.random.default_rng(1)
    masks = {k: rng.random(v.shape) < 0.2 for k, v in _weights(model).items()}
    from toolkit.defenses.base import DefenseData

    data = ddata["torch"]
    teacher = data.teacher if fw == "torch" else ddata["keras"].teacher
    make_defense(name).fit(model, DefenseData(data.x, data.y, data.reference, teacher), recipe, epochs=1, masks=masks)
    for k, v in _weights(model).items():
        assert not np.any(v[~masks[k]]), k
