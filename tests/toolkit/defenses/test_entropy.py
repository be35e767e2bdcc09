"""SafeCompress's entropy regularizers re1 (Eq. 8) and re2 (Eq. 9) in PyTorch and Keras."""

import numpy as np
import pytest

from toolkit.defenses import REGULARIZERS

# 4 samples, 3 classes. Predictions: 0 (right), 1 (label 2: wrong), 0 by tie (label 1: wrong), 1 (label 0: wrong).
LOGITS = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]], dtype=np.float32)
TARGETS = np.array([0, 2, 1, 0], dtype=np.int64)


def _reference(logits, targets, beta, misclassified_only):
    """Eqs. 7-9 written out with numpy."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ce = -np.mean(np.log(p[np.arange(len(p)), targets]))
    ent = -(p * np.log(p)).sum(1)
    if misclassified_only:
        wrong = np.argmax(z, 1) != targets
        term = ent[wrong].mean() if wrong.any() else 0.0
    else:
        term = ent.mean()
    return ce - beta * term


def _torch_value(name, logits, targets, beta):
    import torch

    fn = REGULARIZERS.get(name).torch_loss(beta)
    return float(fn(torch.from_numpy(logits), torch.from_numpy(targets), None))


def _keras_value(name, logits, targets, beta):
    fn = REGULARIZERS.get(name).keras_loss(beta)
    return float(fn(targets, logits))


BACKENDS = {"torch": _torch_value, "keras": _keras_value}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_two_class_uniform_output_by_hand(framework):
    # p = (1/2, 1/2): CE = ln 2, E = ln 2; argmax ties to class 0, so label 1 is a mistake.
    logits = np.zeros((2, 2), np.float32)
    targets = np.array([0, 1])
    ln2 = np.log(2.0)
    assert BACKENDS[framework]("re1", logits, targets, 0.1) == pytest.approx(ln2 - 0.1 * ln2, abs=1e-6)
    assert BACKENDS[framework]("re2", logits, targets, 0.1) == pytest.approx(ln2 - 0.1 * ln2, abs=1e-6)
    # One right, one wrong with a confident-wrong second row: re2 averages the entropy over the mistake only.
    logits = np.array([[0.0, 0.0], [5.0, 0.0]], np.float32)
    targets = np.array([0, 1])
    p2 = np.array([1, np.exp(-5.0)]) / (1 + np.exp(-5.0))
    e2 = -(p2 * np.log(p2)).sum()
    ce = (ln2 - np.log(p2[1])) / 2
    assert BACKENDS[framework]("re1", logits, targets, 0.5) == pytest.approx(ce - 0.5 * (ln2 + e2) / 2, abs=1e-5)
    assert BACKENDS[framework]("re2", logits, targets, 0.5) == pytest.approx(ce - 0.5 * e2, abs=1e-5)


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("name", ["re1", "re2"])
def test_matches_equations_on_a_small_batch(framework, name):
    got = BACKENDS[framework](name, LOGITS, TARGETS, 0.1)
    assert got == pytest.approx(_reference(LOGITS, TARGETS, 0.1, name == "re2"), abs=1e-5)
    # beta = 0 is plain cross-entropy.
    assert BACKENDS[framework](name, LOGITS, TARGETS, 0.0) == pytest.approx(_reference(LOGITS, TARGETS, 0.0, False), abs=1e-5)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_re2_without_mistakes_is_cross_entropy(framework):
    right = np.array([0, 1, 0, 1])
    assert BACKENDS[framework]("re2", LOGITS, right, 0.3) == pytest.approx(_reference(LOGITS, right, 0.0, False), abs=1e-5)
    assert BACKENDS[framework]("re1", LOGITS, right, 0.3) < BACKENDS[framework]("re2", LOGITS, right, 0.3)


def test_keras_loss_works_in_compile(digits_parts):
    from toolkit.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)
    tr = digits_parts["member_known"]
    model = k.Sequential([k.layers.InputLayer(input_shape=tr.x.shape[1:]), k.layers.Flatten(), k.layers.Dense(10)])
    loss = REGULARIZERS.get("re2").keras_loss(0.1)
    model.compile(optimizer=k.optimizers.SGD(0.1), loss=loss)
    model.fit(tr.x, tr.y, epochs=1, batch_size=64, verbose=0)
    logits = np.asarray(model(tr.x, training=False))
    # evaluate() over one batch reports exactly Eq. 9 on the model's logits.
    got = model.evaluate(tr.x, tr.y, batch_size=len(tr.y), verbose=0)
    assert got == pytest.approx(_reference(logits, tr.y, 0.1, True), abs=1e-4)


def test_torch_loss_plugs_into_train_and_raises_output_entropy(digits_parts, digits_spec):
    """The regularizer does what it is for: a model trained with re1 has higher output entropy."""
    from toolkit.attacks.signals import entropy
    from toolkit.models import TrainRecipe, build_model, predict_proba
    from toolkit.models.torch_nets import train

    tr = digits_parts["members"]
    recipe = TrainRecipe(epochs=6, seed=0)
    ent = {}
    for beta in (0.0, 1.0):
        model = build_model(digits_spec("mlp"), "torch", seed=0)
        train(model, tr.x, tr.y, recipe, loss_fn=REGULARIZERS.get("re1").torch_loss(beta))
        ent[beta] = entropy(predict_proba(model, tr.x)).mean()
    assert ent[1.0] > 1.5 * ent[0.0]
