"""ExecuTorch runtime for ``.pte`` programs (``executorch.runtime.Runtime``, XNNPACK delegate).

The program is loaded with ``Verification.InternalConsistency`` (the flatbuffer is verified before use).
Input shape and dtype come from the ``forward`` method's tensor metadata; for a program exported with a
dynamic batch the first dimension is the upper bound it was memory-planned for, which caps each call's
batch. A program whose batch is static is served by padding to that batch.

A ``.pte`` is a program: after the flatbuffer is verified and before any method is loaded (delegate init) or
run, the operator table and the delegate backends of every execution plan are checked against the allowlists
of :mod:`device_tests.runtimes.ops`; ``details()`` reports them (``inspect --json``).
"""

from __future__ import annotations

import numpy as np

from device_tests.runtimes.base import Runtime, one_line
from toolkit.errors import ArtifactError

#: ExecuTorch ScalarType codes -> numpy dtypes (c10 numbering).
_DTYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
           7: np.float64}


def _quiet_imports():
    """Import ExecuTorch's runtime with its native start-up chatter (cpuinfo lines on fd 2) silenced."""
    from toolkit.frameworks import quiet_import, torch

    torch()
    with quiet_import():
        from executorch.runtime import Runtime as ETRuntime, Verification
    return ETRuntime, Verification


class ExecuTorchRuntime(Runtime):
    format = "pte"

    @classmethod
    def preload(cls) -> None:
        _quiet_imports()

    def __init__(self, path, content: bytes, batch_size: int = 256, threads: int | None = None):
        from toolkit.frameworks import _quiet_native_stderr, torch

        super().__init__(path, content, batch_size, threads)
        self._torch = torch()
        ETRuntime, Verification = _quiet_imports()
        try:
            with _quiet_native_stderr():
                _set_threads(self.threads)
                program = ETRuntime.get().load_program(content, verification=Verification.InternalConsistency)
                self.operators, self.delegates = _checked_program(self.name, content)
                if "forward" not in program.method_names:
                    raise ArtifactError(f"{self.name}: the program has no 'forward' method "
                                        f"(methods: {sorted(program.method_names)})")
                self.method = program.load_method("forward")
                meta = self.method.metadata
                if meta.num_inputs() != 1 or meta.num_outputs() < 1:
                    raise ArtifactError(f"{self.name}: expected 1 input and an output, got {meta.num_inputs()} "
                                        f"inputs and {meta.num_outputs()} outputs")
                tin, tout = meta.input_tensor_meta(0), meta.output_tensor_meta(0)
                sizes, dtype, out_sizes = list(tin.sizes()), int(tin.dtype()), list(tout.sizes())
        except ArtifactError:
            raise
        except Exception as exc:  # RuntimeError / ValueError from the loader for malformed programs
            raise ArtifactError(f"{self.name}: the ExecuTorch runtime cannot load it: {one_line(exc, 200)}") from None
        if dtype not in _DTYPES or not sizes:
            raise ArtifactError(f"{self.name}: unsupported input tensor (dtype code {dtype}, sizes {sizes})")
        self._program = program  # keeps the method's program alive
        self.input_dtype = np.dtype(_DTYPES[dtype])
        self.input_shape = tuple(int(d) for d in sizes[1:])
        self.max_batch = int(sizes[0])
        self.n_classes = int(out_sizes[-1]) if out_sizes else None
        # Dynamic batch (memory-planned up to max_batch) or static: try a batch of 1 once.
        if self.max_batch > 1:
            try:
                with _quiet_native_stderr():
                    self.method.execute([self._torch.zeros((1, *self.input_shape),
                                                           dtype=_torch_dtype(self._torch, self.input_dtype))])
            except Exception:
                self.fixed_batch = True

    def details(self) -> dict:
        return {"operators": list(self.operators), "delegates": list(self.delegates)}

    def _run(self, xb: np.ndarray) -> np.ndarray:
        out = self.method.execute([self._torch.from_numpy(xb)])
        return out[0].detach().float().numpy() if hasattr(out[0], "detach") else np.asarray(out[0])


def _checked_program(name: str, content: bytes) -> tuple[list[str], list[str]]:
    """The operators and delegate backends of every method of the (already verified) program, each on its
    allowlist; otherwise :class:`ArtifactError` naming the first one refused."""
    from device_tests.runtimes.ops import check_delegates, check_ops, pte_program_ops

    try:
        plans = pte_program_ops(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{name}: the ExecuTorch runtime cannot load it (its operator table is unreadable: "
                            f"{one_line(exc, 200)})") from None
    ops = check_ops(name, [op for plan in plans.values() for op in plan["operators"]], "pte")
    backends = check_delegates(name, [d for plan in plans.values() for d in plan["delegates"]])
    return ops, backends


def _torch_dtype(torch, dtype: np.dtype):
    return torch.from_numpy(np.zeros(1, dtype=dtype)).dtype


def _set_threads(n: int) -> None:
    try:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != n:
            portable_lib._unsafe_reset_threadpool(n)
    except Exception:  # older/newer builds without the hook keep their default pool
        pass
