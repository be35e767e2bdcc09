"""Conformance of every registered compression method, generated from the registry.

For each method (its input framework read from the registry) on the digits MLP and CNN: ``compress`` with
the method's ``example`` config leaves the input model untouched, meets ``method.targets(config)`` as
*measured* by ``compress``, keeps held-out accuracy within ACCURACY_DROP of the dense model, and the
method's ``noop`` config (if any) leaves predictions unchanged. Only the architectures a method declares
(registry meta ``archs``) are generated: text-only methods are covered in tests/toolkit/text.
"""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.compress import METHODS, CompressData, as_config, compress, get_method

ARCHS = ("mlp", "cnn")
#: Overall measured sparsity may fall short of the per-layer target by rounding to whole weights only.
SPARSITY_TOLERANCE = 0.01
#: Largest allowed held-out accuracy drop after a 1-epoch example compression on digits.
ACCURACY_DROP = 0.15
TARGET_KEYS = {"sparsity", "params_ratio", "max_distinct_values", "bits"}
CASES = [(name, arch) for name in METHODS for arch in ARCHS if arch in METHODS.meta(name)["archs"]]


def snapshot(model) -> dict[str, np.ndarray]:
    """Every weight/buffer of a torch or keras model by name (the structure counts too: wrappers add some)."""
    from toolkit.models import framework_of

    if framework_of(model) == "keras":
        return {f"{i}:{w.name}": np.array(w.numpy()) for i, w in enumerate(model.weights)}
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys(), "the input model's structure changed"
    for k in before:
        assert np.array_equal(before[k], after[k]), f"the input model's {k} changed"


def check_targets(result, targets: dict) -> None:
    st = result.stats
    assert targets and set(targets) <= TARGET_KEYS, targets
    for key, want in targets.items():
        if key == "sparsity":
            assert st.sparsity >= want - SPARSITY_TOLERANCE, f"sparsity {st.sparsity:.4f} < target {want}"
        elif key == "params_ratio":
            assert st.params_after / st.params_before <= want + 1e-9, (st.params_after, st.params_before, want)
        elif key == "max_distinct_values":
            assert st.max_distinct_values is not None and st.max_distinct_values <= want, st.max_distinct_values
        elif key == "bits":
            assert st.bits and set(st.bits.values()) == {want}, f"bits {st.bits} != {want}"


@pytest.fixture(scope="module")
def data(digits_parts, quick_recipe):
    tr, te = digits_parts["members"], digits_parts["nonmembers"]
    return CompressData(tr.x, tr.y, te.x, te.y, quick_recipe)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_object_matches_its_registry_entry(name):
    method, meta = get_method(name), METHODS.meta(name)
    assert (method.name, method.backend, method.kind, method.framework) == (
        name, meta["backend"], meta["kind"], meta["framework"])
    assert method.config_cls.model_fields["method"].default == name
    assert method.exports and method.description and method.targets is not None and method.example is not None
    for cfg in (method.example, method.noop):
        if cfg is not None:
            parsed = as_config({"method": name, **cfg})
            assert set(method.targets(parsed)) <= TARGET_KEYS
    for key, field in method.config_cls.model_fields.items():
        assert key == "method" or field.description, f"{name}: config field {key!r} needs a description"


@pytest.mark.parametrize("name,arch", CASES)
def test_method_conforms(name, arch, trained, data):
    from toolkit.models import framework_of, predict_proba

    method = get_method(name)
    model = trained(METHODS.meta(name)["framework"], arch)
    x = data.x_eval[:200]
    before, proba_before = snapshot(model), predict_proba(model, x)

    result = compress(model, {"method": name, **method.example}, data)

    assert_same(before, snapshot(model))
    assert framework_of(result.model) == result.framework
    check_targets(result, method.targets(result.config))
    assert result.accuracy >= result.base_accuracy - ACCURACY_DROP, (result.accuracy, result.base_accuracy)
    proba = result.predict_proba(x)
    assert proba.shape == proba_before.shape and np.allclose(proba.sum(axis=1), 1, atol=1e-3)
    if result.fine_tune_epochs:
        assert result.seconds_per_epoch and result.seconds_per_epoch > 0

    if method.noop is not None:
        noop = compress(model, {"method": name, **method.noop}, data)
        np.testing.assert_allclose(noop.predict_proba(x), proba_before, atol=1e-5)
        assert_same(before, snapshot(model))
