"""Real artifacts and data files for the gate CLI tests.

* ``model.tflite``: the ``trained("keras", "mlp")`` model (15 epochs on the 600 digits members: little
  leakage) converted with the real TFLite converter;
* ``leaky.onnx``: a PyTorch MLP overfit on the first 150 members (the overfit recipe: leaks measurably),
  exported with ``torch.onnx.export`` (TorchScript exporter, dynamic batch axis);
* ``members.npz``/``nonmembers.npz`` (600 each) and ``members150.npz``/``nonmembers150.npz`` (their first 150).

Both artifacts end in a softmax, so they output probability vectors whatever the runtime adds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, cwd=...)``: ``python -m toolkit.cli ARGS`` in a subprocess (stdout is a pipe)."""

    def run(*args, cwd=None, timeout=300):
        env = dict(os.environ, SAFECOMPRESS_THREADS="2")
        env.pop("SAFECOMPRESS_QUIET", None)  # off a TTY the CLI must print no progress by itself
        return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=cwd, env=env, timeout=timeout)

    return run


def export_tflite(keras_model, path):
    from toolkit.frameworks import keras, tf

    k = keras()
    wrapped = k.Sequential([k.Input(shape=keras_model.input_shape[1:]), keras_model, k.layers.Softmax()])
    converter = tf().lite.TFLiteConverter.from_keras_model(wrapped)
    path.write_bytes(converter.convert())
    return path


def export_onnx(torch_model, path, sample_x):
    from toolkit.frameworks import torch

    t = torch()
    wrapped = t.nn.Sequential(torch_model, t.nn.Softmax(dim=1)).eval()
    t.onnx.export(wrapped, (t.from_numpy(sample_x[:2]),), str(path), dynamo=False, input_names=["x"],
                  output_names=["probs"], dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}})
    return path


@pytest.fixture(scope="session")
def gate_files(tmp_path_factory, trained, digits_parts, digits_spec):
    from toolkit.models import TrainRecipe, train_reference_model

    d = tmp_path_factory.mktemp("gate")
    m, n = digits_parts["members"], digits_parts["nonmembers"]
    np.savez(d / "members.npz", x=m.x, y=m.y)
    np.savez(d / "nonmembers.npz", x=n.x, y=n.y)
    np.savez(d / "members150.npz", x=m.x[:150], y=m.y[:150])
    np.savez(d / "nonmembers150.npz", x=n.x[:150], y=n.y[:150])
    np.savez(d / "overlap.npz", x=np.concatenate([n.x, m.x[:3]]), y=np.concatenate([n.y, m.y[:3]]))
    np.savez(d / "flat.npz", x=n.x.reshape(len(n.x), -1), y=n.y)  # (n, 64): does not fit the (8, 8, 1) model
    export_tflite(trained("keras", "mlp"), d / "model.tflite")
    leaky = train_reference_model(digits_spec("mlp"), "torch", m.x[:150], m.y[:150],
                                  TrainRecipe(overfit=True, overfit_epochs=100, seed=0))
    export_onnx(leaky, d / "leaky.onnx", m.x)
    (d / "corrupt.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 8)
    return d
