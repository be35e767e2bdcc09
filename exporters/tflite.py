"""TFLite flatbuffers from tf_keras models through the TFLite converter (``tflite_ptq.convert``).

The Keras model gets a softmax head and is converted from a concrete function with a free batch dimension
(``[None, *input_shape]``), so the artifact answers batched queries (``resize_tensor_input``). Modes:
``float``, ``dynamic`` (int8 kernels, float I/O), ``float16`` (float16 kernels), ``int8`` (full integer,
int8 input and output, calibrated on ``representative`` or ``sample_x``). A tfmot QAT/PQAT/CQAT model is
int8 already (mode ``int8`` is recorded): it is converted with ``Optimize.DEFAULT`` so its learned
fake-quant becomes int8 kernels (float input/output). tfmot models (pruned, clustered,
QAT...) are stripped of their wrappers by the compression methods already. A
:class:`~toolkit.models.tflite_model.TFLiteModel` (output of the ``tflite_*`` methods) is written as is.
"""

from __future__ import annotations

import numpy as np

from exporters.base import Built, Exporter, Source


def _dynamic(converter, rep) -> None:
    from toolkit.frameworks import tf

    converter.optimizations = [tf().lite.Optimize.DEFAULT]


def _float16(converter, rep) -> None:
    from toolkit.frameworks import tf

    converter.optimizations = [tf().lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf().float16]


def _int8(converter, rep) -> None:
    from toolkit.frameworks import tf

    T = tf()

    def representative():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    converter.optimizations = [T.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = T.int8
    converter.inference_output_type = T.int8


SETUPS = {"float": lambda converter, rep: None, "dynamic": _dynamic, "float16": _float16, "int8": _int8,
          # tfmot QAT models: the converter realizes their fake-quant as int8 ops (scales learned in training)
          "qat": _dynamic}


def with_softmax(model):
    """A functional tf_keras model: ``model`` then a softmax layer."""
    from toolkit.frameworks import keras

    k = keras()
    inp = k.Input(shape=tuple(model.input_shape[1:]), dtype="float32")
    out = k.layers.Softmax(name="probabilities")(model(inp, training=False))
    return k.Model(inp, out)


def build(source: Source, sample: np.ndarray, mode: str, representative, options: dict) -> Built:
    if source.framework == "tflite":
        return Built(bytes(source.model.content), {"converter": "written as made by " + (source.method or "its maker")},
                     outputs="logits")
    from toolkit.compress.backends.tflite_ptq import convert

    rep = representative if representative is not None else sample
    samples = int(options.get("calibration_samples", 200))
    rep = np.asarray(rep, np.float32)[:samples]
    setup = SETUPS["qat" if source.mode == "int8" else mode]
    content = convert(with_softmax(source.model), lambda c: setup(c, rep))
    details = {"converter": "tf.lite.TFLiteConverter (concrete function, dynamic batch)"}
    if source.mode == "int8":
        details["quantization"] = "tfmot quantization-aware model converted with Optimize.DEFAULT (float I/O)"
    if mode == "int8":
        details["calibration_samples"] = len(rep)
    return Built(content, details)


EXPORTER = Exporter("tflite", build, options=("calibration_samples",))
