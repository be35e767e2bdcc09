"""Plumbing shared by the PyTorch and NNI backends: prunable layers, seeded fine-tuning on the members, checks.

Nothing here imports torch at module import time (``safecompress methods`` must stay light); torch comes
from :func:`toolkit.frameworks.torch` (pinned threads).

The reference models are ``nn.Sequential`` stacks: the prunable layers are their ``Linear``/``Conv`` modules
in execution order, and the last of them is the classifier, whose outputs are the classes (structured
pruners never remove them).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
import warnings

import numpy as np

from toolkit.errors import CompressionError, ModelError


def torch():
    from toolkit.frameworks import torch as _torch

    return _torch()


def prune():
    """``torch.nn.utils.prune`` (a submodule torch does not import by itself)."""
    torch()
    import torch.nn.utils.prune as prune_mod

    return prune_mod


def prunable_types():
    nn = torch().nn
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model) -> list[tuple[str, object]]:
    """``[(name, module)]`` of every Linear/Conv layer, in registration (= execution, for Sequential) order."""
    layers = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, prunable_types())]
    if not layers:
        raise ModelError("the torch model has no Linear or Conv layer to compress")
    return layers


def classifier_name(model) -> str:
    """Name of the last Linear/Conv layer: it produces the logits, so its outputs must all stay."""
    return prunable_layers(model)[-1][0]


def fine_tune_recipe(data, config, epochs: int | None = None):
    """The target's recipe (optimizer, lr, batch size) with the method's seed and epochs."""
    n = config.fine_tune_epochs if epochs is None else epochs
    return data.recipe.model_copy(update={"seed": config.seed, "epochs": max(1, int(n))})


def steps_per_epoch(data, config) -> int:
    return math.ceil(len(data.x) / fine_tune_recipe(data, config).batch_size)


def fine_tune(model, data, config, epochs: int | None = None, **train_kw) -> tuple[float, int]:
    """Train ``model`` in place on the members only (seeded by ``config.seed``); ``(seconds, epochs)``.

    ``epochs`` defaults to ``config.fine_tune_epochs``; 0 trains nothing. Extra keywords go to
    :func:`toolkit.models.torch_nets.train` (``optimizer=``, ``loss_fn=``...).
    """
    from toolkit.models import torch_nets

    n = int(config.fine_tune_epochs if epochs is None else epochs)
    if n == 0:
        return 0.0, 0
    t0 = time.perf_counter()
    torch_nets.train(model, data.x, data.y, fine_tune_recipe(data, config, n), epochs=n, **train_kw)
    return time.perf_counter() - t0, n


def calibration_indices(data, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``n`` members (all of them if fewer)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(data.x), size=min(n, len(data.x)), replace=False))


def calibration_batch(data, n: int, seed: int):
    """A seeded sample of ``n`` members (all of them if fewer) as a float tensor."""
    idx = calibration_indices(data, n, seed)
    return torch().from_numpy(np.ascontiguousarray(data.x[idx], dtype=np.float32))


def zero_fraction(t) -> float:
    return float((t.detach() == 0).float().mean())


def check_zeros(what: str, name: str, weight, want: int) -> int:
    """Raise :class:`CompressionError` unless ``weight`` has at least ``want`` exact zeros; the count."""
    zeros = int((weight.detach() == 0).sum())
    if zeros < want:
        raise CompressionError(f"{what} left {zeros} zeros in {name} instead of at least {want} of {weight.numel()}")
    return zeros


@contextlib.contextmanager
def quiet():
    """Silence library chatter during a compression call.

    torch.ao warns that it is deprecated on every call, and NNI prints to stdout (``print`` calls in its
    speedup code and an INFO-level stdout log handler): both would break ``--json`` output and the
    one-line-error contract. Exceptions still propagate.
    """
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        nni_logger = logging.getLogger("nni")
        level = nni_logger.level
        nni_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            nni_logger.setLevel(level)


def one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]
