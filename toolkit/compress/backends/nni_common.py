"""Plumbing shared by the NNI backends: the lazy, quiet NNI import and NNI's ``TorchEvaluator`` over the members.

``import nni.compression`` pulls in transformers, which imports TensorFlow: TensorFlow is imported first
through :func:`toolkit.frameworks.tf` so it is configured like everywhere else in the toolkit (legacy Keras,
pinned threads, quiet native logs). NNI's stdout log handler is removed (``nni.runtime.log.silence_stdout``).

NNI drives training-aware compressors (Taylor, QAT) and calibration (PTQ) through an *evaluator*: a training
function NNI calls with the wrapped model, an optimizer it re-creates from an ``nni.trace``-d one, and the
number of steps/epochs it needs. Here the training function is :func:`toolkit.models.torch_nets.train` on the
**members** with the target's recipe and the method's seed, so NNI's training is the same seeded loop as every
other fine-tuning in the toolkit.
"""

from __future__ import annotations

import time

import numpy as np

from toolkit.compress.backends import _torch_common as common
from toolkit.errors import CompressionError


def nni():
    """The ``nni`` package with ``nni.compression`` loaded, TensorFlow configured first, stdout logging off."""
    from toolkit.frameworks import tf

    tf()
    common.torch()
    with common.quiet():
        import nni as nni_mod
        import nni.compression.pruning  # noqa: F401
        import nni.compression.quantization  # noqa: F401
        import nni.compression.speedup  # noqa: F401
        import nni.compression.utils  # noqa: F401
        import nni.runtime.log

    nni.runtime.log.silence_stdout()
    return nni_mod


def cross_entropy_step(batch, model):
    """NNI's ``training_step``: the loss of one ``(x, y)`` batch."""
    x, y = batch
    return common.torch().nn.functional.cross_entropy(model(x), y)


def traced_optimizer(model, recipe):
    """The recipe's optimizer, ``nni.trace``-d so NNI can re-create it for the wrapped model."""
    torch, trace = common.torch(), nni().trace
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.effective_optimizer == "sgd":
        return trace(torch.optim.SGD)(params, lr=recipe.effective_lr, momentum=recipe.momentum,
                                      weight_decay=recipe.effective_weight_decay)
    return trace(torch.optim.Adam)(params, lr=recipe.effective_lr, weight_decay=recipe.effective_weight_decay)


class MemberTraining:
    """A ``TorchEvaluator`` whose training function trains on the members; it records epochs and seconds.

    NNI passes either ``max_epochs`` or ``max_steps``; steps must be whole epochs here (the callers ask for
    ``epochs * steps_per_epoch``), so the data order is exactly that of :func:`torch_nets.train`.
    """

    def __init__(self, model, data, config, what: str):
        from nni.compression.utils import TorchEvaluator

        self.data, self.config, self.what = data, config, what
        self.recipe = common.fine_tune_recipe(data, config)
        self.steps_per_epoch = common.steps_per_epoch(data, config)
        self.epochs = 0
        self.seconds = 0.0
        self.evaluator = TorchEvaluator(self._train, traced_optimizer(model, self.recipe), cross_entropy_step,
                                        dummy_input=common.calibration_batch(data, 8, config.seed))

    def _train(self, model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None,
               *args, **kwargs):
        from toolkit.models import torch_nets

        if training_step is not cross_entropy_step:
            raise CompressionError(f"{self.what}: NNI patched the training loss, which this backend does not support")
        if max_epochs is None:
            if not max_steps or max_steps % self.steps_per_epoch:
                raise CompressionError(f"{self.what}: NNI asked for {max_steps} training steps, not whole epochs of "
                                       f"{self.steps_per_epoch} steps")
            max_epochs = max_steps // self.steps_per_epoch
        t0 = time.perf_counter()
        torch_nets.train(model, self.data.x, self.data.y, self.recipe, epochs=int(max_epochs), optimizer=optimizers)
        self.seconds += time.perf_counter() - t0
        self.epochs += int(max_epochs)


class Calibration:
    """A ``TorchEvaluator`` for post-training quantization: its "training" only runs the calibration members
    forward (no optimizer step), so NNI's observers see activation ranges and the weights stay as trained."""

    def __init__(self, model, data, config, samples: int):
        from nni.compression.utils import TorchEvaluator

        torch = common.torch()
        idx = common.calibration_indices(data, samples, config.seed)
        self.x = torch.from_numpy(np.ascontiguousarray(data.x[idx], dtype=np.float32))
        self.y = torch.from_numpy(np.asarray(data.y[idx], dtype=np.int64))
        recipe = common.fine_tune_recipe(data, config)
        self.evaluator = TorchEvaluator(self._calibrate, traced_optimizer(model, recipe), cross_entropy_step,
                                        dummy_input=self.x[:8], evaluating_func=self._evaluate)

    def _forward(self, model):
        torch = common.torch()
        model.eval()
        with torch.no_grad():
            return torch.cat([model(self.x[i:i + 256]) for i in range(0, len(self.x), 256)])

    def _calibrate(self, model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None,
                   *args, **kwargs):
        self._forward(model)

    def _evaluate(self, model) -> float:
        # PtqQuantizer evaluates once more before computing scales: the same members again (ranges unchanged).
        return float((self._forward(model).argmax(1) == self.y).float().mean())
