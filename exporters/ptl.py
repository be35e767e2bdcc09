"""PyTorch Mobile lite-interpreter ``.ptl`` from torch models.

The model gets a softmax head and is compiled with ``torch.jit.script`` (``torch.jit.trace`` on the sample
when scripting fails, e.g. for code TorchScript cannot compile), then saved with
``_save_for_lite_interpreter``. ``optimize_for_mobile`` runs when this torch build has XNNPACK; otherwise it
is skipped with a warning (this project's CPU wheel has none). torch.ao int8 models (``torch_dynamic_int8``,
``torch_static_int8``) are carried as they are. The archive embeds ``extra/safecompress.json`` (input
shape and dtype, classes): the lite interpreter itself does not expose input shapes.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from exporters._torch import frozen_copy, example, one_line, probabilities_module, quiet
from exporters.base import Built, Exporter, Source
from toolkit.errors import ExportError


def _compile(wrapped, x):
    torch = __import__("torch")
    try:
        with quiet():
            return torch.jit.script(wrapped), "script"
    except Exception as first:
        try:
            with quiet():
                return torch.jit.trace(wrapped, (x,), check_trace=False), "trace"
        except Exception as exc:
            raise ExportError(f"TorchScript cannot compile the model: script: {one_line(first, 150)}; "
                              f"trace: {one_line(exc, 150)}") from None


def _optimize(module) -> tuple[object, str]:
    import torch.backends.xnnpack as xnnpack

    if not xnnpack.enabled:
        warnings.warn("optimize_for_mobile skipped: this torch build has no XNNPACK", stacklevel=3)
        return module, "skipped (no XNNPACK in this torch build)"
    from torch.utils.mobile_optimizer import optimize_for_mobile

    try:
        with quiet():
            return optimize_for_mobile(module), "applied"
    except Exception as exc:
        warnings.warn(f"optimize_for_mobile failed and was skipped: {one_line(exc, 150)}", stacklevel=3)
        return module, "failed, skipped"


def build(source: Source, sample: np.ndarray, mode: str, representative, options: dict) -> Built:
    from toolkit.models import predict_proba

    n_classes = int(predict_proba(source.model, sample[:1]).shape[1])
    x = example(sample)
    with frozen_copy(source.model) as model:
        module, how = _compile(probabilities_module(model), x)
        module, optimized = _optimize(module)
        spec = getattr(source.model, "spec", None)
        meta = {"input_shape": [None] if source.integer_input else list(sample.shape[1:]),
                "input_dtype": str(sample.dtype), "n_classes": n_classes, "outputs": "probabilities"}
        if source.integer_input and getattr(spec, "seq_len", None):
            meta["max_seq_len"] = int(spec.seq_len)
        with tempfile.TemporaryDirectory(prefix="sc-ptl-") as d:
            path = Path(d) / "model.ptl"
            try:
                with quiet():
                    module._save_for_lite_interpreter(str(path), _extra_files={"safecompress.json": json.dumps(meta)})
            except Exception as exc:
                raise ExportError(f"saving for the lite interpreter failed: {one_line(exc)}") from None
            content = path.read_bytes()
    return Built(content, {"torchscript": how, "optimize_for_mobile": optimized})


EXPORTER = Exporter("ptl", build)
