"""PyTorch lite interpreter for ``.ptl`` files (``torch.jit.mobile._load_for_lite_interpreter``).

The lite interpreter does not expose input shapes. Our exporter stores them in the archive as the extra
file ``extra/safecompress.json`` (read with :mod:`zipfile` as JSON: nothing is unpickled by us); a foreign
``.ptl`` without it gets ``input_shape = None`` (data passes as given) and float32 input.

A ``.ptl`` is a program: its operators are listed from the bytecode *before* the module is loaded (loading runs
``__setstate__`` methods) and checked against the inference-operator allowlist (:mod:`device_tests.runtimes.ops`),
then checked again on the loaded module, before any ``forward``. ``details()`` reports them (``inspect --json``).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from device_tests.runtimes.base import Runtime, one_line
from toolkit.errors import ArtifactError

META_FILE = "safecompress.json"


def read_meta(content: bytes) -> dict:
    """The ``extra/safecompress.json`` our exporter embeds, or ``{}``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        name = next((n for n in zf.namelist() if n.endswith(f"/extra/{META_FILE}")), None)
        if name is None or zf.getinfo(name).file_size > 1 << 20:
            return {}
        meta = json.loads(zf.read(name).decode("utf-8"))
        return meta if isinstance(meta, dict) else {}
    except Exception:  # a damaged archive: the loader will say so
        return {}


class LiteInterpreterRuntime(Runtime):
    format = "ptl"

    @classmethod
    def preload(cls) -> None:
        from toolkit.frameworks import torch

        torch()
        import torch.jit.mobile  # noqa: F401

    def __init__(self, path, content: bytes, batch_size: int = 256, threads: int | None = None):
        from toolkit.frameworks import _quiet_native_stderr, torch

        super().__init__(path, content, batch_size, threads)
        self._torch = torch()
        from torch.jit.mobile import _export_operator_list, _load_for_lite_interpreter

        from device_tests.runtimes.ops import (check_forward, check_ops, check_types, ptl_forward_arguments,
                                               ptl_ops_before_load)

        try:
            with _quiet_native_stderr():
                ops, types = ptl_ops_before_load(content)
        except Exception as exc:  # RuntimeError from the C++ reader for a malformed archive
            raise ArtifactError(f"{self.name}: the lite interpreter cannot load it (its operator list is unreadable: "
                                f"{one_line(exc, 200)})") from None
        check_types(self.name, types)
        check_ops(self.name, ops, "ptl")  # before loading: loading runs the program's __setstate__ methods
        try:
            arguments = ptl_forward_arguments(content)
        except Exception:  # noqa: BLE001 - an unreadable schema: the loader below says what is wrong
            arguments = None
        check_forward(self.name, arguments)
        try:
            with _quiet_native_stderr():
                self.module = _load_for_lite_interpreter(io.BytesIO(content))
                loaded_ops = _export_operator_list(self.module)
        except Exception as exc:  # RuntimeError from the C++ loader for any malformed archive
            raise ArtifactError(f"{self.name}: the lite interpreter cannot load it: {one_line(exc, 200)}") from None
        #: The program's operators, every one on the allowlist (checked again on what was actually loaded).
        self.operators = check_ops(self.name, {*ops, *loaded_ops}, "ptl")
        meta = read_meta(content)
        try:
            if "input_shape" in meta:
                self.input_shape = tuple(None if d is None else int(d) for d in meta["input_shape"])
            if "input_dtype" in meta:
                self.input_dtype = np.dtype(str(meta["input_dtype"]))
            if meta.get("n_classes"):
                self.n_classes = int(meta["n_classes"])
            if meta.get("max_seq_len"):
                self.max_seq_len = int(meta["max_seq_len"])
        except (TypeError, ValueError):
            raise ArtifactError(f"{self.name}: malformed {META_FILE} metadata") from None

    def details(self) -> dict:
        return {"operators": list(self.operators)}

    def _run(self, xb: np.ndarray) -> np.ndarray:
        t = self._torch
        # The lite interpreter shares torch's process-wide thread pool: pin it for this call only, so a
        # runtime opened with threads=k does not change the numerics of later torch work in this process.
        before = t.get_num_threads()
        t.set_num_threads(self.threads)
        try:
            with t.no_grad():
                out = self.module(t.from_numpy(xb))
        finally:
            t.set_num_threads(before)
        if not isinstance(out, t.Tensor):
            raise ArtifactError(f"{self.name}: forward returned {type(out).__name__}, not a tensor")
        return out.detach().float().numpy()
