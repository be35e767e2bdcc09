"""The compression interface's errors, and the tfmot / TFLite-converter backends' own guarantees."""

from __future__ import annotations


import numpy as np
import pytest

from toolkit.compress import METHODS, CompressData, as_config, compress, get_method
from toolkit.errors import CompressionError, ConfigError, ModelError

OTHER_FRAMEWORK = {"keras": "torch", "torch": "keras"}


@pytest.fixture(scope="module")
def data(digits_parts, quick_recipe):
    tr, te = digits_parts["members"], digits_parts["nonmembers"]
    return CompressData(tr.x, tr.y, te.x, te.y, quick_recipe)


# ----------------------------------------------------------------------------- interface errors, every method
@pytest.mark.parametrize("name", METHODS.names())
def test_wrong_framework_model_is_refused_naming_the_methods_framework(name, trained, data):
    fw = METHODS.meta(name)["framework"]
    with pytest.raises(ModelError, match=rf"{name}.*compresses {fw} models.*given a {OTHER_FRAMEWORK[fw]} model"):
        compress(trained(OTHER_FRAMEWORK[fw], "mlp"), {"method": name}, data)


@pytest.mark.parametrize("name", METHODS.names())
def test_unknown_config_key_is_named_with_the_allowed_ones(name):
    with pytest.raises(ConfigError) as info:
        as_config({"method": name, "sparsity_typo": 0.5})
    msg = str(info.value)
    assert "'sparsity_typo'" in msg and "allowed:" in msg and "\n" not in msg
    for field in get_method(name).config_cls.model_fields:
        if field != "method":
            assert field in msg.split("allowed:")[1]


def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown compression method 'tfmot_prun'.*tfmot_prune"):
        as_config({"method": "tfmot_prun"})


@pytest.mark.parametrize("config,needle", [
    ({"method": "tfmot_prune", "sparsity": 1.0}, "sparsity"),
    ({"method": "tfmot_prune", "schedule": "cubic"}, "schedule"),
    ({"method": "tfmot_prune", "initial_sparsity": 0.6, "sparsity": 0.5}, "initial_sparsity 0.6 exceeds"),
    ({"method": "tfmot_cluster", "n_clusters": 1}, "n_clusters"),
    ({"method": "tfmot_cluster", "init": "kmeans"}, "init"),
    ({"method": "tfmot_cqat", "n_clusters": 2048}, "n_clusters"),
    ({"method": "tflite_int8", "fine_tune_epochs": 1}, "fine_tune_epochs"),
])
def test_bad_config_values_are_one_line_config_errors(config, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        as_config(config)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- tfmot pruning schedule
@pytest.mark.parametrize("steps", [1, 2, 10, 11, 95, 1000, 20000])
@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
def test_pruning_schedule_fits_the_fine_tuning_steps(steps, schedule):
    from toolkit.compress.backends.tfmot_prune import FIRST_STEP, PruneConfig, fit_schedule

    s = fit_schedule(PruneConfig(schedule=schedule), steps)
    assert s["begin_step"] == FIRST_STEP and 1 <= s["frequency"] <= 100
    assert (s["end_step"] - s["begin_step"]) % s["frequency"] == 0 and s["end_step"] > s["begin_step"]
    if steps >= 3:  # the target is reached while fine-tuning, with steps left to recover
        assert s["end_step"] <= steps
        assert (s["end_step"] - s["begin_step"]) // s["frequency"] >= min(10, steps // 2)


@pytest.mark.parametrize("overrides", [
    {"frequency": 100},        # tfmot's default frequency: 10 steps per epoch never reach a mask update
    {"fine_tune_epochs": 0},   # tfmot prunes only while training
])
def test_pruning_that_misses_its_target_raises(overrides, trained, data):
    model = trained("keras", "mlp")
    config = {"method": "tfmot_prune", "sparsity": 0.5, "schedule": "polynomial", "fine_tune_epochs": 1, **overrides}
    with pytest.raises(CompressionError, match=r"tfmot_prune reached sparsity 0\.0\d\d in .* instead of 0\.5"):
        compress(model, config, data)


def test_constant_schedule_and_polynomial_reach_the_same_target(trained, data):
    model = trained("keras", "mlp")
    for schedule in ("constant", "polynomial"):
        res = compress(model, {"method": "tfmot_prune", "sparsity": 0.8, "schedule": schedule,
                               "fine_tune_epochs": 1}, data)
        assert all(layer.zero_fraction >= 0.8 - 1e-3 for layer in res.stats.layers), res.stats.layers
        assert res.stats.extra["fine_tune_steps"] == 10 and res.stats.extra["end_step"] <= 10


def test_pqat_keeps_sparsity_through_quantization(trained, data):
    """The QAT stage must keep every pruned zero (Default8BitPrunePreserveQuantizeScheme)."""
    res = compress(trained("keras", "mlp"), {"method": "tfmot_pqat", "sparsity": 0.6, "fine_tune_epochs": 1}, data)
    assert type(res.model.layers[-1]).__name__.startswith("QuantizeWrapper")
    assert min(layer.zero_fraction for layer in res.stats.layers) >= 0.6 - 1e-3
    assert res.fine_tune_epochs == 2 and set(res.stats.bits.values()) == {8}


def test_clustering_linear_init_and_cqat_keep_the_clusters(trained, data):
    model = trained("keras", "cnn")
    res = compress(model, {"method": "tfmot_cluster", "n_clusters": 8, "init": "linear", "fine_tune_epochs": 1}, data)
    assert [layer.distinct_values <= 8 for layer in res.stats.layers] == [True] * 3
    res = compress(model, {"method": "tfmot_cqat", "n_clusters": 8, "fine_tune_epochs": 1}, data)
    assert max(layer.distinct_values for layer in res.stats.layers) <= 8


# ----------------------------------------------------------------------------- TFLite converter output
def test_weight_arrays_reads_the_float_kernels_of_a_flatbuffer(trained):
    """An unquantized conversion stores each Dense kernel transposed: the reader must give exactly those."""
    from toolkit.compress.backends.tflite_ptq import convert
    from toolkit.models import keras_nets
    from toolkit.models.tflite_model import TFLiteModel, weight_arrays

    model = trained("keras", "mlp")
    arrays = list(weight_arrays(TFLiteModel(convert(model, lambda converter: None))).values())
    kernels = list(keras_nets.weight_arrays(model).values())
    assert len(arrays) == len(kernels)
    for stored, kernel in zip(arrays, kernels):
        assert stored.dtype == np.float32 and np.array_equal(stored, kernel.T)


@pytest.mark.parametrize("name,dtype", [("tflite_dynamic", "int8"), ("tflite_float16", "float16"),
                                        ("tflite_int8", "int8")])
def test_converted_models_answer_any_batch_size(name, dtype, trained, data):
    from toolkit.models.tflite_model import TFLiteModel

    res = compress(trained("keras", "cnn"), {"method": name}, data)
    tfl = res.model
    assert tfl.input_details["shape_signature"][0] == -1
    assert dtype in {layer.dtype for layer in res.stats.layers}
    x = data.x_eval[:37]
    one_by_one = TFLiteModel(tfl.content, batch_size=1).predict_proba(x)
    np.testing.assert_allclose(TFLiteModel(tfl.content, batch_size=16).predict_proba(x), one_by_one, atol=1e-6)
    np.testing.assert_allclose(tfl.predict_proba(x), one_by_one, atol=1e-6)
    assert res.stats.extra["tflite_bytes"] == len(tfl.content)


def test_int8_conversion_has_int8_input_and_output(trained, data):
    res = compress(trained("keras", "mlp"), {"method": "tflite_int8", "calibration_samples": 50}, data)
    assert res.model.input_dtype == np.int8 and np.dtype(res.model.output_details["dtype"]) == np.int8
    assert {layer.dtype for layer in res.stats.layers} == {"int8"}


def test_qat_output_converts_to_int8_tflite_keeping_its_sparsity(trained, data):
    """QAT models (tfmot layers) can be cloned and compressed again: the PQAT -> full-int8 TFLite path."""
    from toolkit.models import clone_model, predict_proba

    pqat = compress(trained("keras", "mlp"), {"method": "tfmot_pqat", "sparsity": 0.5, "fine_tune_epochs": 1}, data)
    x = data.x_eval[:64]
    np.testing.assert_allclose(predict_proba(clone_model(pqat.model), x), predict_proba(pqat.model, x), atol=1e-6)
    tfl = compress(pqat.model, {"method": "tflite_int8", "calibration_samples": 50}, data)
    assert {layer.dtype for layer in tfl.stats.layers} == {"int8"}
    assert tfl.stats.sparsity >= 0.5 - 0.01
    assert tfl.accuracy >= pqat.accuracy - 0.05


def test_fine_tuning_is_seeded(trained, data):
    model = trained("keras", "mlp")
    config = {"method": "tfmot_prune", "sparsity": 0.5, "fine_tune_epochs": 1, "seed": 3}
    a, b = compress(model, config, data), compress(model, config, data)
    c = compress(model, {**config, "seed": 4}, data)
    wa, wb, wc = (r.model.get_weights() for r in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))


def test_weight_arrays_of_a_corrupt_flatbuffer_is_an_artifact_error(trained):
    from toolkit.compress.backends.tflite_ptq import convert
    from toolkit.errors import ArtifactError
    from toolkit.models.tflite_model import TFLiteModel, weight_arrays

    content = convert(trained("keras", "mlp"), lambda converter: None)
    for broken in (content[:64], content[:8] + bytes(len(content) - 8)):
        with pytest.raises(ArtifactError, match="cannot read the TFLite flatbuffer"):
            weight_arrays(TFLiteModel(broken))
