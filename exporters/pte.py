"""ExecuTorch ``.pte`` programs from torch models, delegated to XNNPACK.

``torch.export`` (softmax head appended, dynamic batch ``1..max_batch``; default 1024: the program is
memory-planned for that upper bound) -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``
-> ``to_executorch()``. Mode ``int8`` quantizes with PT2E (``torchao.quantization.pt2e``:
``prepare_pt2e`` with ExecuTorch's ``XNNPACKQuantizer`` (symmetric, per-channel weights), calibration on
``representative`` or ``sample_x``, ``convert_pt2e``) before lowering. torch.ao quantized models
(torch_*_int8) are refused: ``torch.export`` rejects their packed parameters.
"""

from __future__ import annotations

import numpy as np

from exporters._torch import frozen_copy, example, one_line, probabilities_module, quiet
from exporters.base import Built, Exporter, Source
from toolkit.errors import ExportError

MAX_BATCH = 1024


def _imports():
    from toolkit.frameworks import quiet_import

    with quiet(), quiet_import():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    return XnnpackPartitioner, to_edge_transform_and_lower


def _quantize(exported, rep: np.ndarray, shapes, x):
    torch = __import__("torch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported.module(), quantizer)
    with torch.no_grad():
        for i in range(0, len(rep), 64):
            prepared(torch.from_numpy(rep[i:i + 64].copy()))
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (x,), dynamic_shapes=shapes)


def build(source: Source, sample: np.ndarray, mode: str, representative, options: dict) -> Built:
    torch = __import__("torch")
    max_batch = int(options.get("max_batch", MAX_BATCH))
    if max_batch < 2:
        raise ExportError(f"max_batch must be >= 2, got {max_batch}")
    XnnpackPartitioner, lower = _imports()
    x = example(sample)
    if len(x) < 2:
        x = torch.cat([x, x])  # a batch of 1 would be specialized as a constant by torch.export
    shapes = ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    details = {"backend": "XNNPACK", "max_batch": max_batch}
    try:
        with frozen_copy(source.model) as model, quiet():
            wrapped = probabilities_module(model)
            exported = torch.export.export(wrapped, (x,), dynamic_shapes=shapes)
            if mode == "int8":
                rep = representative if representative is not None else sample
                rep = np.asarray(rep, np.float32)[: int(options.get("calibration_samples", 200))]
                exported = _quantize(exported, rep, shapes, x)
                details.update(quantization="PT2E XNNPACKQuantizer (symmetric, per-channel)",
                               calibration_samples=len(rep))
            program = lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
            content = bytes(program.buffer)
    except ExportError:
        raise
    except Exception as exc:  # torch.export / lowering errors name the unsupported construct
        raise ExportError(f"ExecuTorch export failed: {one_line(exc)}") from None
    return Built(content, details)


EXPORTER = Exporter("pte", build, options=("max_batch", "calibration_samples"))
