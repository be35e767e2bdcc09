"""Helpers shared by the torch exporters: the softmax head, eval mode, quiet exporters."""

from __future__ import annotations

import contextlib

from toolkit.frameworks import torch as _torch


def probabilities_module(model):
    """``model`` followed by a softmax over the last axis (artifacts emit probabilities, models emit logits)."""
    torch = _torch()

    class Probabilities(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, x):
            return torch.softmax(self.model(x), dim=-1)

    return Probabilities(model).eval()


@contextlib.contextmanager
def frozen_copy(model):
    """A frozen copy of ``model`` to export: eval mode, no gradients, no stale ``.grad`` tensors.

    The caller's model is never touched: the legacy ONNX exporter may flip modules to train mode, and
    ``torch.export`` trips over a ``.grad`` whose shape no longer matches its parameter (left behind by
    ``torch_cluster``'s parametrization). The copy is checked to be in eval mode when the export is done."""
    import copy

    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.grad = None
        p.requires_grad_(False)
    frozen.eval()
    yield frozen
    frozen.eval()


@contextlib.contextmanager
def quiet():
    """Warnings and stdout of the exporters (deprecations, NNI prints) off; errors still propagate."""
    from toolkit.compress.backends._torch_common import quiet as _quiet
    from toolkit.frameworks import _quiet_native_stderr

    with _quiet(), _quiet_native_stderr():
        yield


def one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]


def example(sample):
    torch = _torch()
    return torch.from_numpy(sample[: min(2, len(sample))].copy())
