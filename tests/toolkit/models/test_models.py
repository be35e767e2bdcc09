import numpy as np
import pytest

from toolkit.errors import ModelError
from toolkit.models import (ModelSpec, TrainRecipe, accuracy, build_model, clone_model, framework_of, load_model,
                            n_params, predict_proba, save_model, train_reference_model)

CASES = [(fw, arch) for fw in ("torch", "keras") for arch in ("mlp", "cnn")]


@pytest.mark.parametrize("framework,arch", CASES)
def test_models_train_to_sane_accuracy_on_digits(trained, digits_parts, framework, arch):
    model = trained(framework, arch)
    assert framework_of(model) == framework
    te = digits_parts["nonmembers"]
    acc = accuracy(model, te.x, te.y)
    assert acc >= 0.85, f"{framework}/{arch} held-out accuracy {acc:.3f}"
    p = predict_proba(model, te.x[:50])
    assert p.shape == (50, 10) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_same_architecture_in_both_frameworks(trained):
    for arch in ("mlp", "cnn"):
        assert n_params(trained("torch", arch)) == n_params(trained("keras", arch))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_training_is_deterministic(digits_parts, digits_spec, framework):
    tr = digits_parts["member_known"]
    recipe = TrainRecipe(epochs=2, seed=5)
    a = train_reference_model(digits_spec("mlp"), framework, tr.x, tr.y, recipe)
    b = train_reference_model(digits_spec("mlp"), framework, tr.x, tr.y, recipe)
    pa, pb = predict_proba(a, tr.x[:64]), predict_proba(b, tr.x[:64])
    assert np.allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("framework,arch", CASES)
def test_save_load_round_trip(tmp_path, trained, digits_parts, digits_spec, framework, arch):
    model = trained(framework, arch)
    path = save_model(model, digits_spec(arch), tmp_path, f"{framework}-{arch}")
    loaded, spec = load_model(path)
    assert spec == digits_spec(arch)
    x = digits_parts["nonmembers"].x[:32]
    assert np.allclose(predict_proba(model, x), predict_proba(loaded, x), atol=1e-6)


def test_load_refuses_unknown_files(tmp_path):
    f = tmp_path / "model.pt"
    f.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="safe formats"):
        load_model(f)


def test_clone_is_independent(trained, digits_parts):
    model = trained("torch", "mlp")
    c = clone_model(model)
    import torch

    with torch.no_grad():
        next(c.parameters()).zero_()
    x = digits_parts["members"].x[:8]
    assert not np.allclose(predict_proba(model, x), predict_proba(c, x))


def test_unknown_model_object():
    with pytest.raises(ModelError, match="unsupported model object"):
        framework_of(object())


def test_spec_validation():
    with pytest.raises(Exception):
        ModelSpec(arch="cnn", input_shape=(64,), n_classes=10)
    with pytest.raises(ModelError, match="too small"):
        build_model(ModelSpec(arch="cnn", input_shape=(1, 1, 1), n_classes=3), "torch")


@pytest.mark.slow
@pytest.mark.parametrize("framework,arch", CASES)
def test_overfit_switch_makes_leakage_measurable(framework, arch):
    """Fashion-MNIST, 1,000 members: the overfit recipe gives a loss-attack AUC of at least 0.6."""
    from sklearn.metrics import roc_auc_score

    from toolkit.data import load_dataset, make_split

    ds = load_dataset("fashion_mnist")
    split = make_split(ds, members=1000, nonmembers=1000, population=0, seed=0)
    tr, te = split.take(ds, "members"), split.take(ds, "nonmembers")
    spec = ModelSpec(arch=arch, input_shape=ds.input_shape, n_classes=10)
    model = train_reference_model(spec, framework, tr.x, tr.y, TrainRecipe(overfit=True, seed=0))

    def loss(x, y):
        p = predict_proba(model, x).astype(np.float64)
        return -np.log(np.clip(p[np.arange(len(y)), y], 1e-300, 1))

    auc = roc_auc_score(np.r_[np.ones(len(tr.y)), np.zeros(len(te.y))], -np.r_[loss(tr.x, tr.y), loss(te.x, te.y)])
    # Measured with seed 0: MLP 0.61 / 0.61, CNN 0.610 / 0.611 (torch / keras); the bar is 0.6.
    assert auc >= 0.6, f"{framework}/{arch} loss-attack AUC {auc:.3f}"
