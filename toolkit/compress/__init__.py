"""One verb over every compressor: ``compress(model, config, data) -> CompressedModel``.

Methods are registered by name in :data:`METHODS` with static metadata (backend, kind, input framework),
pointing lazily at a :class:`~toolkit.compress.method.Method` object in a backend module, so listing
methods imports no framework. ``compress``:

1. resolves the config (a config object, or a dict with ``method``) and validates it;
2. refuses a model of the wrong framework with an error naming the method's framework;
3. clones the model (the input is never mutated — tfmot wrappers break models wrapped before);
4. runs the backend on the clone with the members-only fine-tuning data;
5. measures the achieved compression and the held-out accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.compress.config import MethodConfig, describe_fields, parse_config
from toolkit.compress.method import Method, MethodOutput
from toolkit.compress.result import CompressedModel, CompressionStats, LayerStats
from toolkit.errors import ConfigError, ModelError
from toolkit.models.spec import TrainRecipe
from toolkit.registry import Registry

METHODS = Registry("compression method")

_B = "toolkit.compress.backends"
# name, target, backend, kind, input framework
_TABLE = [
    ("tfmot_prune", f"{_B}.tfmot_prune:PRUNE", "tfmot", "prune", "keras"),
    ("tfmot_cluster", f"{_B}.tfmot_cluster:CLUSTER", "tfmot", "cluster", "keras"),
    ("tfmot_qat", f"{_B}.tfmot_qat:QAT", "tfmot", "quantize", "keras"),
    ("tfmot_pqat", f"{_B}.tfmot_qat:PQAT", "tfmot", "prune+quantize", "keras"),
    ("tfmot_cqat", f"{_B}.tfmot_qat:CQAT", "tfmot", "cluster+quantize", "keras"),
    ("tflite_dynamic", f"{_B}.tflite_ptq:DYNAMIC", "tflite", "quantize", "keras"),
    ("tflite_float16", f"{_B}.tflite_ptq:FLOAT16", "tflite", "quantize", "keras"),
    ("tflite_int8", f"{_B}.tflite_ptq:INT8", "tflite", "quantize", "keras"),
    ("torch_l1_unstructured", f"{_B}.torch_prune:L1_UNSTRUCTURED", "torch", "prune", "torch"),
    ("torch_global_unstructured", f"{_B}.torch_prune:GLOBAL_UNSTRUCTURED", "torch", "prune", "torch"),
    ("torch_ln_structured", f"{_B}.torch_prune:LN_STRUCTURED", "torch", "prune", "torch"),
    ("torch_dynamic_int8", f"{_B}.torch_quant:DYNAMIC_INT8", "torch", "quantize", "torch"),
    ("torch_static_int8", f"{_B}.torch_quant:STATIC_INT8", "torch", "quantize", "torch"),
    ("torch_cluster", f"{_B}.torch_cluster:CLUSTER", "torch", "cluster", "torch"),
    ("torch_prune_heads", f"{_B}.text_heads:PRUNE_HEADS", "torch", "prune", "torch"),
    ("nni_level", f"{_B}.nni_prune:LEVEL", "nni", "prune", "torch"),
    ("nni_l1norm", f"{_B}.nni_prune:L1NORM", "nni", "prune", "torch"),
    ("nni_l2norm", f"{_B}.nni_prune:L2NORM", "nni", "prune", "torch"),
    ("nni_fpgm", f"{_B}.nni_prune:FPGM", "nni", "prune", "torch"),
    ("nni_taylor", f"{_B}.nni_prune:TAYLOR", "nni", "prune", "torch"),
    ("nni_qat", f"{_B}.nni_quant:QAT", "nni", "quantize", "torch"),
    ("nni_ptq", f"{_B}.nni_quant:PTQ", "nni", "quantize", "torch"),
]
#: Architectures a method applies to when not the image/tabular reference models (``archs`` registry meta).
_ARCHS = {"torch_prune_heads": ("bert", "gpt2")}
for _name, _target, _backend, _kind, _fw in _TABLE:
    METHODS.register(_name, _target, backend=_backend, kind=_kind, framework=_fw,
                     archs=_ARCHS.get(_name, ("mlp", "cnn")))


@dataclass
class CompressData:
    """Data a method may use.

    ``x``/``y`` are the target's **members only** (fine-tuning, calibration, representative data);
    ``x_eval``/``y_eval`` are held-out samples used only to report accuracy. ``recipe`` gives the
    fine-tuning optimizer settings (its ``epochs`` are overridden by the method's ``fine_tune_epochs``).
    """

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)

    @classmethod
    def from_split(cls, dataset, split, recipe: TrainRecipe | None = None) -> "CompressData":
        tr, te = split.take(dataset, "members"), split.take(dataset, "nonmembers")
        return cls(tr.x, tr.y, te.x, te.y, recipe or TrainRecipe())


def get_method(name: str) -> Method:
    return METHODS.get(name)


def as_config(config: MethodConfig | dict[str, Any]) -> MethodConfig:
    """A validated config object from a config object or a ``{"method": name, ...}`` dict."""
    if isinstance(config, MethodConfig):
        METHODS.meta(config.method)
        return config
    if not isinstance(config, dict) or "method" not in config:
        raise ConfigError("a compression config needs a 'method' key naming a registered method")
    method = get_method(str(config["method"]))
    return parse_config(method.config_cls, dict(config), f"config of method {method.name!r}")


def describe_methods(names: list[str] | None = None) -> list[dict[str, Any]]:
    """The registry (or the given ``names`` of it) as JSON-ready records (``safecompress methods --json``)."""
    out = []
    for name in METHODS if names is None else names:
        m = get_method(name)
        out.append({"name": name, "backend": m.backend, "kind": m.kind, "framework": m.framework,
                    "exports": list(m.exports), "description": m.description,
                    "config": describe_fields(m.config_cls), "example": m.example})
    return out


def measure(model, framework: str, params_before: int) -> CompressionStats:
    """Measure zeros, distinct values and dtypes of every prunable weight tensor of ``model``."""
    from toolkit.models import backend

    fw = backend(framework)
    arrays: dict[str, np.ndarray] = fw.weight_arrays(model)
    layers = []
    zeros = total = 0
    for name, w in arrays.items():
        w = np.asarray(w)
        nz = int(np.count_nonzero(w == 0))
        layers.append(LayerStats(name=name, size=int(w.size), zero_fraction=nz / max(1, w.size),
                                 distinct_values=int(len(np.unique(w))), dtype=str(w.dtype)))
        zeros += nz
        total += int(w.size)
    params_after = fw.n_params(model) if framework != "tflite" else sum(int(np.asarray(w).size) for w in arrays.values())
    return CompressionStats(sparsity=zeros / max(1, total), params_before=params_before, params_after=params_after,
                            layers=layers)


def compress(model, config: MethodConfig | dict[str, Any], data: CompressData) -> CompressedModel:
    """Compress a copy of ``model`` with ``config``; the input model is left untouched."""
    from toolkit.frameworks import seed_everything
    from toolkit.models import accuracy, clone_model, framework_of, n_params

    cfg = as_config(config)
    method = get_method(cfg.method)
    fw = framework_of(model)
    if fw != method.framework:
        raise ModelError(f"method {method.name!r} ({method.backend}) compresses {method.framework} models; "
                         f"it was given a {fw} model")
    base_acc = accuracy(model, data.x_eval, data.y_eval) if data.x_eval is not None else None
    params_before = n_params(model)
    work = clone_model(model)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    out: MethodOutput = method.apply(work, cfg, data)
    seconds = time.perf_counter() - t0
    stats = measure(out.model, out.framework, params_before)
    if out.bits:
        stats.bits = dict(out.bits)
    if out.extra:
        stats.extra = dict(out.extra)
    distinct = [l.distinct_values for l in stats.layers]
    stats.max_distinct_values = max(distinct) if distinct else None
    result = CompressedModel(
        model=out.model, method=method.name, backend=method.backend, kind=method.kind, framework=out.framework,
        config=cfg, stats=stats, base_accuracy=base_acc, seconds=seconds, fine_tune_epochs=out.fine_tune_epochs,
        seconds_per_epoch=(out.fine_tune_seconds / out.fine_tune_epochs) if out.fine_tune_epochs else None,
        notes=list(out.notes or []),
    )
    if data.x_eval is not None:
        result.accuracy = accuracy(out.model, data.x_eval, data.y_eval)
    return result


__all__ = ["METHODS", "CompressData", "CompressedModel", "CompressionStats", "Method", "MethodConfig", "MethodOutput",
           "as_config", "compress", "describe_methods", "get_method", "measure"]
