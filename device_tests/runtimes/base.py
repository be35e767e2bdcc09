"""The runtime protocol shared by every artifact format.

A runtime answers ``predict_proba(x) -> (n, n_classes) float32`` in batches of at most ``batch_size``. It
exposes ``format``, ``path``, ``sha256``, ``bytes``, ``input_shape`` (per sample, ``None`` for a dynamic
axis, or ``None`` when the artifact does not say), ``input_dtype`` (the artifact's input tensor type; a
quantized int8/uint8 TFLite input still takes float data, quantized with the tensor's scale), ``n_classes``.

Input adaptation (:meth:`Runtime.adapt`): data whose per-sample shape differs from the artifact's is
accepted when an NHWC<->NCHW transpose or a reshape of the same size fits; otherwise :class:`DataError`
naming both shapes. Integer (token id) inputs must be integer arrays; float inputs are cast to float32.
Outputs go through :func:`toolkit.models.tflite_model.to_probabilities`: softmax only when rows are not
already probability distributions (our exporters append a softmax; foreign artifacts may emit logits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError, DataError


def one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


class Runtime:
    """Base class: subclasses set the shape/dtype attributes in ``__init__`` and implement :meth:`_run`."""

    format = "?"
    #: How far a row sum may be from 1 and still count as probabilities (see ``to_probabilities``).
    output_atol = 2e-2
    #: Largest batch the artifact accepts in one call (None: any); a fixed batch dimension forces padding.
    max_batch: int | None = None
    fixed_batch: bool = False

    def __init__(self, path: Path, content: bytes, batch_size: int = 256, threads: int | None = None):
        from toolkit.frameworks import thread_count
        from toolkit.io import sha256_bytes

        self.path = Path(path)
        self.name = self.path.name
        self.sha256 = sha256_bytes(content)
        self.bytes = len(content)
        self.batch_size = int(batch_size)
        self.threads = int(threads or thread_count())
        self.input_shape: tuple | None = None
        self.input_dtype = np.dtype(np.float32)
        self.n_classes: int | None = None
        #: For integer (token) inputs with a dynamic sequence axis: the longest sequence accepted, if known.
        self.max_seq_len: int | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, format={self.format}, input_shape={self.input_shape}, "
                f"input_dtype={self.input_dtype}, n_classes={self.n_classes})")

    # ---------------------------------------------------------------- input
    @property
    def feed_dtype(self) -> np.dtype:
        """The dtype inputs are fed in: the declared one (token ids, float16/float64 graphs), except float32 for
        a quantized input, which the runtime quantizes with the tensor's scale and zero point."""
        if self.integer_input or self.input_dtype.kind == "f":
            return self.input_dtype
        return np.dtype(np.float32)

    @property
    def integer_input(self) -> bool:
        return bool(np.issubdtype(self.input_dtype, np.integer)) and not getattr(self, "quantized_input", False)

    def adapt(self, x) -> np.ndarray:
        """``x`` as the artifact wants it: dtype, and per-sample shape (transpose/reshape when they fit)."""
        x = np.asarray(x)
        if x.ndim < 1 or x.dtype.kind not in "biuf":
            raise DataError(f"{self.name}: expected a numeric array of samples, got {x.dtype} {x.shape}")
        if self.integer_input:
            if x.ndim != 2 or x.dtype.kind not in "iu":
                raise DataError(f"{self.name}: takes a 2-D integer array of token ids ({self.input_dtype}), "
                                f"got {x.dtype} {x.shape}")
            if self.max_seq_len is not None and x.shape[1] > self.max_seq_len:
                raise DataError(f"{self.name}: inputs have {x.shape[1]} tokens, the model's position table holds "
                                f"{self.max_seq_len}")
        elif x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{self.name}: input holds NaN or inf")
        x = np.ascontiguousarray(x, dtype=self.feed_dtype)
        want = self.input_shape
        got = tuple(x.shape[1:])
        if want is None or _fits(got, want):
            return x
        if self.integer_input:
            raise DataError(f"{self.name}: samples have shape {got}, the artifact expects {want}")
        if None not in want and int(np.prod(got)) == int(np.prod(want)):
            if len(got) == 3 and len(want) == 3:
                if got == (want[1], want[2], want[0]):  # NHWC data, NCHW model
                    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
                if got == (want[2], want[0], want[1]):  # NCHW data, NHWC model
                    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            return x.reshape(len(x), *want)
        raise DataError(f"{self.name}: samples have shape {got}, the artifact expects {want} "
                        "(no transpose or reshape of the same size fits)")

    # ---------------------------------------------------------------- output
    def _run(self, xb: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _call(self, xb: np.ndarray) -> np.ndarray:
        try:
            return self._run(xb)
        except (ArtifactError, DataError):
            raise
        except Exception as exc:  # the runtimes raise their own types (op not supported, shape mismatch...)
            raise ArtifactError(f"{self.name}: the {self.format} runtime failed on a batch of shape {xb.shape}: "
                                f"{one_line(exc)}") from None

    def predict_raw(self, x) -> np.ndarray:
        """The artifact's outputs, ``(n, k)`` float32: inputs adapted, run in batches, outputs checked."""
        x = self.adapt(x)
        if len(x) == 0:
            raise DataError(f"{self.name}: no samples to query")
        out = self.check_outputs(np.asarray(self.run_adapted(x)).astype(np.float32, copy=False))
        if self.n_classes is not None and out.shape[1] != self.n_classes:
            raise ArtifactError(f"{self.name}: returned {out.shape[1]} outputs per sample, expected {self.n_classes}")
        self.n_classes = out.shape[1]
        return out

    def run_adapted(self, x: np.ndarray) -> np.ndarray:
        """Outputs for already adapted ``x`` (see :meth:`adapt`), in batches of at most ``batch_size`` (the last one
        padded for fixed batches), flattened per sample, as float32. The part of a query that runs the artifact:
        the sandbox child calls this, the parent does the adaptation and the checks."""
        n = len(x)
        bs = min(self.batch_size, self.max_batch or self.batch_size)
        if self.fixed_batch:
            bs = int(self.max_batch)
        bs = max(1, bs if self.fixed_batch else min(bs, n))
        result = None  # (n, width) float32, filled batch by batch (no list of batches to concatenate)
        for i in range(0, n, bs):
            xb = x[i:i + bs]
            k = len(xb)
            if k < bs and self.fixed_batch:  # pad instead of reshaping a fixed graph
                xb = np.concatenate([xb, np.repeat(xb[-1:], bs - k, axis=0)])
            out = np.asarray(self._call(xb))
            if out.size % len(xb):
                raise ArtifactError(f"{self.name}: returned {out.size} output values for a batch of {len(xb)}")
            out = out.reshape(len(xb), -1)[:k]
            if result is None:
                result = np.empty((n, out.shape[1]), dtype=np.float32)
            elif out.shape[1] != result.shape[1]:
                raise ArtifactError(f"{self.name}: returned {out.shape[1]} outputs per sample for one batch and "
                                    f"{result.shape[1]} for another")
            result[i:i + k] = out
        return result

    def check_outputs(self, out: np.ndarray) -> np.ndarray:
        """``out`` if it is a non-empty ``(n, k)`` array of finite numbers, else :class:`ArtifactError`: NaN or
        inf outputs (corrupt weights, an overflowing graph) would otherwise pass on as "probabilities"."""
        if out.ndim != 2 or out.shape[1] < 1:
            raise ArtifactError(f"{self.name}: returned outputs of shape {out.shape}, not one score row per sample")
        bad = ~np.isfinite(out)
        if bad.any():
            raise ArtifactError(f"{self.name}: the {self.format} runtime returned NaN or inf for "
                                f"{int(bad.any(axis=1).sum())} of {len(out)} sample(s); the artifact is corrupt or "
                                "numerically broken")
        return out

    def predict_proba(self, x) -> np.ndarray:
        from toolkit.models.tflite_model import to_probabilities

        return to_probabilities(self.predict_raw(x), self.output_atol)

    @classmethod
    def preload(cls) -> None:
        """Import the runtime's framework (the sandbox child does this before it confines itself)."""

    def details(self) -> dict:
        """Format-specific facts for ``inspect`` (JSON-serialisable; e.g. the operators of a program)."""
        return {}

    def describe(self) -> dict:
        return {"path": str(self.path), "format": self.format, "sha256": self.sha256, "bytes": self.bytes,
                "input_shape": None if self.input_shape is None else list(self.input_shape),
                "input_dtype": str(self.input_dtype), "n_classes": self.n_classes}


def _fits(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or int(w) == g for w, g in zip(want, got))
