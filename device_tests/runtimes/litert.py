"""LiteRT (``ai_edge_litert``) runtime for ``.tflite`` files: a :class:`~toolkit.models.tflite_model.TFLiteModel`
over the file's bytes (batching by ``resize_tensor_input``, last batch padded, int8/uint8 inputs quantized and
outputs dequantized with the tensors' scale and zero point)."""

from __future__ import annotations

import numpy as np

from device_tests.runtimes.base import Runtime
from toolkit.errors import ArtifactError


class LiteRTRuntime(Runtime):
    format = "tflite"

    @classmethod
    def preload(cls) -> None:
        from ai_edge_litert import interpreter  # noqa: F401

    def __init__(self, path, content: bytes, batch_size: int = 256, threads: int | None = None):
        from toolkit.models.tflite_model import TFLiteModel

        super().__init__(path, content, batch_size, threads)
        self.model = TFLiteModel(content, batch_size=self.batch_size, threads=self.threads, name=self.name)
        det = self.model.input_details  # loads the interpreter: errors name the file
        sig = det.get("shape_signature", det["shape"])
        self.input_shape = tuple(None if int(s) < 0 else int(d) for s, d in zip(sig[1:], det["shape"][1:]))
        self.input_dtype = np.dtype(det["dtype"])
        scale = det.get("quantization", (0.0, 0))[0]
        self.quantized_input = bool(np.issubdtype(self.input_dtype, np.integer) and scale)
        out = self.model.output_details
        if len(out["shape"]) < 1:
            raise ArtifactError(f"{self.name}: the model's output is a scalar, not class scores")
        self.n_classes = int(out["shape"][-1]) if int(out["shape"][-1]) > 0 else None
        self.output_atol = self.model.output_atol
        if len(sig) and int(sig[0]) > 0:  # a fixed batch: every call is padded to it (by TFLiteModel), so the
            self.fixed_batch, self.max_batch = True, int(sig[0])  # sandbox's parent can refuse an absurd one

    def run_adapted(self, x: np.ndarray) -> np.ndarray:  # TFLiteModel batches (and pads) itself
        from device_tests.runtimes.base import one_line
        from toolkit.errors import DataError

        try:
            return self.model.predict_raw(x)
        except (ArtifactError, DataError):
            raise
        except Exception as exc:
            raise ArtifactError(f"{self.name}: LiteRT failed on inputs of shape {x.shape}: {one_line(exc)}") from None
