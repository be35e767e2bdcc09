"""PyTorch side of the reference models: build, train, predict, clone, save/load (safetensors)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from toolkit.errors import ModelError
from toolkit.frameworks import torch as _torch
from toolkit.models.spec import ModelSpec, TrainRecipe

NAME = "torch"


def owns(model) -> bool:
    import sys

    mod = sys.modules.get("torch")
    return mod is not None and isinstance(model, mod.nn.Module)


def _nhwc_to_nchw_cls():
    torch = _torch()

    class NHWCtoNCHW(torch.nn.Module):
        """Channels-last input -> NCHW, so one data layout serves TFLite and PyTorch artifacts alike."""

        def forward(self, x):
            return x.permute(0, 3, 1, 2)

    return NHWCtoNCHW


def build(spec: ModelSpec, seed: int = 0):
    """An ``nn.Sequential`` for ``spec`` with weights drawn from ``seed``."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(seed)
    layers: list = []
    if spec.arch == "mlp":
        layers.append(nn.Flatten())
        width = int(np.prod(spec.input_shape))
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, spec.n_classes))
    else:
        h, w, c = spec.input_shape
        layers.append(_nhwc_to_nchw_cls()())
        for ch in spec.channels:
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = ch, h // 2, w // 2
        if h < 1 or w < 1:
            raise ModelError(f"input {spec.input_shape} is too small for {len(spec.channels)} pooling stages")
        layers += [nn.Flatten(), nn.Linear(c * h * w, spec.dense), nn.ReLU(), nn.Linear(spec.dense, spec.n_classes)]
    model = nn.Sequential(*layers)
    model.eval()
    return model


def input_dtype(model) -> np.dtype:
    """What the model's input tensor holds: float32, unless the model declares ``input_dtype`` (text models:
    int64 token ids)."""
    return np.dtype(getattr(model, "input_dtype", np.float32))


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    perm = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def make_optimizer(model, recipe: TrainRecipe):
    torch = _torch()
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.effective_optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.effective_lr, momentum=recipe.momentum, weight_decay=recipe.effective_weight_decay)
    return torch.optim.Adam(params, lr=recipe.effective_lr, weight_decay=recipe.effective_weight_decay)


def train(model, x: np.ndarray, y: np.ndarray, recipe: TrainRecipe, epochs: int | None = None,
          loss_fn=None, optimizer=None, on_epoch=None, sample_weight: np.ndarray | None = None):
    """Train ``model`` in place on (x, y) and return it.

    ``loss_fn(logits, targets, batch_index) -> scalar`` replaces plain cross-entropy (regularizers and
    defenses plug in here); ``on_epoch(epoch, model)`` is called after each epoch. The data order is drawn
    from ``recipe.seed``, so two calls with the same inputs give the same weights.
    """
    torch = _torch()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=input_dtype(model)))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    wt = None if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, dtype=np.float32))
    opt = optimizer or make_optimizer(model, recipe)
    ce = torch.nn.functional.cross_entropy
    n_epochs = recipe.effective_epochs if epochs is None else epochs
    model.train()
    try:
        for epoch in range(n_epochs):
            for idx in _batches(len(xt), recipe.batch_size, rng):
                bi = torch.from_numpy(idx)
                logits = model(xt[bi])
                if loss_fn is not None:
                    loss = loss_fn(logits, yt[bi], bi)
                elif wt is not None:
                    loss = (ce(logits, yt[bi], reduction="none") * wt[bi]).sum() / wt[bi].sum().clamp_min(1e-12)
                else:
                    loss = ce(logits, yt[bi])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if on_epoch is not None:
                model.eval()
                on_epoch(epoch, model)
                model.train()
    finally:
        model.eval()
    return model


def predict_logits(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    torch = _torch()
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=input_dtype(model)))
            out.append(model(xb).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predict_proba(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    from scipy.special import softmax

    return softmax(predict_logits(model, x, batch_size).astype(np.float64), axis=1).astype(np.float32)


def clone(model):
    """An independent deep copy (compression never mutates its input)."""
    return copy.deepcopy(model)


def quantized_layer_types() -> tuple:
    """torch.ao quantized Linear/Conv classes: static, dynamic (``nnqd.Linear``) and fused (``LinearReLU``,
    ``ConvReLU2d``, as made by ``convert_fx``) variants all subclass these. Their weights are packed, not
    parameters, and read through the ``weight()`` / ``bias()`` methods."""
    import torch.ao.nn.quantized as nnq

    return (nnq.Linear, nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)


def n_params(model) -> int:
    """Parameters, plus the weights and biases torch.ao quantized layers keep packed outside ``parameters()``."""
    n = sum(p.numel() for p in model.parameters())
    qtypes = quantized_layer_types()
    for mod in model.modules():
        if isinstance(mod, qtypes):
            bias = mod.bias()
            n += mod.weight().numel() + (0 if bias is None else bias.numel())
    return int(n)


def weight_arrays(model) -> dict[str, np.ndarray]:
    """Named weight tensors of prunable layers (Linear / Conv, float or torch.ao quantized), as float numpy.

    Masks are applied (a ``torch.nn.utils.prune`` reparametrization exposes the masked ``weight``); quantized
    weights are dequantized, so their values (and zeros, distinct values) are what inference uses.
    """
    torch = _torch()
    nn = torch.nn
    qtypes = quantized_layer_types()
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, qtypes):
            w = mod.weight()
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and getattr(mod, "weight", None) is not None:
            w = mod.weight
        else:
            continue
        if w.is_quantized:
            w = w.dequantize()
        out[f"{name}.weight"] = w.detach().float().numpy().copy()
    return out


def save(model, spec: ModelSpec, path: str | Path) -> Path:
    """Save weights as safetensors + the spec as JSON next to it (``<path>.json``). Never pickles."""
    from safetensors.torch import save_file

    from toolkit.io import atomic_path, atomic_write_json

    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(path.with_suffix(path.suffix + ".json"), {"framework": NAME, "spec": spec.model_dump(mode="json")})
    return path


def load(path: str | Path):
    """Rebuild from the JSON spec and load safetensors weights. Returns ``(model, spec)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    try:
        meta = json.loads(meta_path.read_text())
        spec = ModelSpec(**meta["spec"])
    except Exception as exc:
        raise ModelError(f"cannot read model spec {meta_path}: {exc}") from None
    model = build(spec)
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load weights {path}: {' '.join(str(exc).split())[:300]}") from None
    model.eval()
    return model, spec


def timed_train(model, x, y, recipe: TrainRecipe, **kw):
    t0 = time.perf_counter()
    train(model, x, y, recipe, **kw)
    return time.perf_counter() - t0
