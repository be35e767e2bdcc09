"""The parent side of the sandbox: one child process per opened artifact, behind the ``Runtime`` protocol.

:class:`SandboxedRuntime` is a :class:`~device_tests.runtimes.base.Runtime` whose ``run_adapted`` sends the
(already adapted and validated) inputs to a child that holds the real runtime. The parent never loads, parses
beyond format detection, or runs the artifact; the child never sees a path, only the bytes the parent read once.

Transport: requests and replies are JSON frames over two pipes (:mod:`device_tests.sandbox.wire`); inputs go
through a shared memory file (``memfd``, sealed against shrinking, so a hostile child cannot make the parent's
mapping fault), outputs come back as a raw float32 payload whose size the parent checks. The child reports
after every batch, and the timeout (``SAFECOMPRESS_SANDBOX_TIMEOUT``) applies to each batch: a hanging model is
stopped without cutting an honest large query short.

Lifetime: the child dies with the parent (``PR_SET_PDEATHSIG``), on :meth:`SandboxedRuntime.close`, when the
object is collected, at interpreter exit, and on any timeout or protocol violation (it is then killed and the
runtime refuses further calls). Its stdout/stderr go to an unlinked file of the parent's, capped at 1 MB by the
child's ``RLIMIT_FSIZE``, and are never relayed: a model that prints cannot forge the CLI's output. The last
line of that log is quoted (sanitised) when the child fails.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device_tests.runtimes.base import Runtime
from device_tests.sandbox import wire
from device_tests.sandbox.limits import Protections, SandboxLimits
from toolkit.errors import ArtifactError, DataError

ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from device_tests.sandbox.child import main; "
         "sys.exit(main(sys.argv[2:]))")
#: Seconds a child may take to start and import its runtime (trusted work, but slow on a loaded machine).
START_TIMEOUT_S = 180.0
#: Largest chunk of inputs sent through shared memory in one request.
MAX_CHUNK_BYTES = 64 * 1024**2
#: Largest fixed batch a model may declare: padding every call to it must stay affordable.
MAX_FIXED_BATCH = 1 << 16
MAX_OUTPUT_BYTES = 1 << 30
_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
_LIVE: "weakref.WeakSet[_Child]" = weakref.WeakSet()
_WARNED: set[str] = set()


class ArtifactDescription(BaseModel):
    """What the child says about the artifact it opened: untrusted, so every field is typed and bounded."""

    model_config = ConfigDict(extra="forbid")

    ok: Literal[True]
    input_shape: list[int | None] | None = Field(max_length=8)
    input_dtype: Literal[_DTYPES]  # type: ignore[valid-type]
    n_classes: int | None = Field(None, ge=1, le=1 << 24)
    max_seq_len: int | None = Field(None, ge=1, le=1 << 24)
    quantized_input: bool
    max_batch: int | None = Field(None, ge=1)
    fixed_batch: bool
    output_atol: float = Field(ge=0, le=1)
    details: dict


def clean_line(text: str, limit: int = 400) -> str:
    """``text`` as one printable line: control characters (terminal escapes, newlines) dropped, length capped.
    Whatever a hostile artifact makes its runtime say ends up here before it reaches a terminal or a log."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(text.split())[:limit]


class _Child:
    """One sandbox process: start, request/reply with deadlines, kill."""

    def __init__(self, fmt: str, name: str, limits: SandboxLimits):
        self.fmt, self.name, self.limits = fmt, name, limits
        self.dead: str | None = None
        self.workdir = tempfile.mkdtemp(prefix="safecompress-sandbox-")
        self.log = tempfile.TemporaryFile(prefix="safecompress-sandbox-log-")
        self.shared_fd = os.memfd_create("safecompress-inputs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fcntl.fcntl(self.shared_fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        self.shared: mmap.mmap | None = None
        req_r, self.req = os.pipe()
        self.rep, rep_w = os.pipe()
        args = {"requests": req_r, "replies": rep_w, "shared": self.shared_fd, "format": fmt, "parent": os.getpid(),
                "workdir": os.path.realpath(self.workdir), "limits": limits.model_dump()}
        env = {"PATH": os.defpath, "HOME": self.workdir, "TMPDIR": self.workdir, "LC_ALL": "C.UTF-8",
               "SAFECOMPRESS_SANDBOX_MEMORY": str(limits.memory_bytes),  # the runtimes size their checks by it
               **{k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "SAFECOMPRESS_DEBUG"))},
               "OPENBLAS_NUM_THREADS": "1"}  # numpy's BLAS starts no threads on import (see confine)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, ROOT, json.dumps(args)], stdin=subprocess.DEVNULL,
                stdout=self.log, stderr=self.log, pass_fds=(req_r, rep_w, self.shared_fd), cwd=self.workdir,
                env=env, start_new_session=True)
        except OSError as exc:
            self._release()
            raise ArtifactError(f"{name}: cannot start the sandbox process: {exc}") from None
        finally:
            os.close(req_r)
            os.close(rep_w)
        _LIVE.add(self)
        ready = self.call(None, timeout=START_TIMEOUT_S)
        try:
            self.protections = Protections.model_validate(ready.get("protections"))
        except ValidationError:
            self.kill(f"{name}: the sandbox process sent a malformed start-up report")
            raise ArtifactError(self.dead) from None

    # ------------------------------------------------------------------ transport
    def _ensure_shared(self, nbytes: int) -> None:
        size = max(1 << 20, 1 << max(0, int(nbytes) - 1).bit_length())
        if self.shared is None or len(self.shared) < nbytes:
            if self.shared is not None:
                self.shared.close()
                self.shared = None
            try:
                os.ftruncate(self.shared_fd, max(size, os.fstat(self.shared_fd).st_size))
                self.shared = mmap.mmap(self.shared_fd, size)
            except OSError as exc:  # EFBIG under a small `ulimit -f`, ENOMEM...
                raise ArtifactError(f"{self.name}: cannot pass {nbytes} bytes of inputs to the sandbox: "
                                    f"{exc.strerror or exc} (a smaller --batch-size or `ulimit -f` may help)") from None

    def call(self, request: dict | None, payload: bytes = b"", *, timeout: float | None = None,
             max_payload: int = 0, max_beats: int = 0) -> tuple[dict, bytearray] | dict:
        """Send ``request`` (None: just wait for the start-up report) and return the reply (header, or header and
        payload when ``max_payload``). The timeout runs from the request and from each of at most ``max_beats``
        progress reports. Timeouts, crashes and malformed replies kill the child and raise."""
        if self.dead:
            raise ArtifactError(f"{self.dead} (the sandbox was closed after that failure)")
        limit = self.limits.call_timeout_s if timeout is None else timeout
        try:
            if request is not None:
                wire.send(self.req, request, payload)
            beats = 0
            while True:
                header, body = wire.recv(self.rep, time.monotonic() + limit, max_payload=max_payload)
                if "progress" not in header:
                    break
                beats += 1  # a batch finished: the next one gets a full timeout
                if beats > max_beats:
                    raise wire.WireError(f"more progress reports ({beats}) than batches")
        except wire.WireTimeout:
            self.kill(f"{self.name}: the {self.fmt} runtime did not answer within {limit:g} s and was stopped (the "
                      "model hangs or is too slow; SAFECOMPRESS_SANDBOX_TIMEOUT sets the limit per call)")
            raise ArtifactError(self.dead) from None
        except (wire.WireClosed, BrokenPipeError):
            self.kill(self._death_message())
            raise ArtifactError(self.dead) from None
        except wire.WireError as exc:
            self.kill(f"{self.name}: the {self.fmt} sandbox process broke the protocol ({exc})")
            raise ArtifactError(self.dead) from None
        if header.get("ok") is not True:
            message = clean_line(header.get("error") or "failed without a message")
            if not message.startswith(self.name):
                message = f"{self.name}: the {self.fmt} runtime failed: {message}"
            raise (DataError if header.get("kind") == "data" else ArtifactError)(message)
        return (header, body) if max_payload else header

    def _death_message(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        why = {signal.SIGXCPU: "it used up its CPU time limit (SAFECOMPRESS_SANDBOX_CPU)",
               signal.SIGXFSZ: "it wrote more than the 1 MB of output a sandboxed runtime may print",
               signal.SIGKILL: "it was killed (memory exhausted, or its CPU hard limit)",
               signal.SIGSEGV: "it crashed (segmentation fault)", signal.SIGABRT: "it aborted",
               signal.SIGBUS: "it crashed (bus error)", signal.SIGSYS: "it made a forbidden system call"}
        if code is not None and code < 0:
            sig = -code
            what = why.get(sig, f"it was ended by signal {sig}")
        else:
            what = f"it exited (code {code})"
        tail = self._log_tail()
        return (f"{self.name}: the {self.fmt} runtime stopped in the sandbox: {what}; the artifact is corrupt, "
                f"hostile or too large for the sandbox limits (SAFECOMPRESS_SANDBOX_MEMORY)"
                + (f"; it said: {tail}" if tail else ""))

    def _log_tail(self) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - 2000))
            lines = [ln for ln in self.log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return clean_line(lines[-1], 200) if lines else ""

    # ------------------------------------------------------------------ requests
    def open(self, content: bytes, batch_size: int, threads: int) -> dict:
        return self.call({"op": "open", "name": self.name, "batch_size": batch_size, "threads": threads},
                         content, timeout=max(self.limits.call_timeout_s, 60.0))

    def run(self, x: np.ndarray, n_classes: int | None) -> np.ndarray:
        if self.dead:
            raise ArtifactError(f"{self.dead} (the sandbox was closed after that failure)")
        # Inputs at the start of the shared file; once the class count is known, room for the outputs after them
        # (64-byte aligned), so that they need not come back through the pipe.
        out_offset = -(-x.nbytes // 64) * 64
        self._ensure_shared(out_offset + (4 * n_classes * len(x) if n_classes else 0))
        np.frombuffer(self.shared, dtype=x.dtype, count=x.size).reshape(x.shape)[...] = x
        per_row = 4 * (n_classes or 1 << 16)
        header, body = self.call({"op": "run", "shape": list(x.shape), "dtype": str(x.dtype),
                                  "shared_size": len(self.shared), "out_offset": out_offset},
                                 max_payload=min(MAX_OUTPUT_BYTES, per_row * len(x)), max_beats=len(x))
        shape, where = header.get("shape"), header.get("out_offset")
        if where is None:
            fits = isinstance(shape, list) and len(shape) == 2 and len(body) == 4 * _product(shape)
        else:  # written into the shared file: where we asked, within it, nothing else sent
            fits = (where == out_offset and not body and isinstance(shape, list) and len(shape) == 2
                    and out_offset + 4 * _product(shape) <= len(self.shared))
        if not fits or not all(type(d) is int for d in shape) or shape[0] != len(x) or shape[1] < 1:
            self.kill(f"{self.name}: the {self.fmt} sandbox process returned outputs of the wrong size")
            raise ArtifactError(self.dead)
        if where is None:
            return np.frombuffer(body, dtype=np.float32).reshape(shape)
        return np.frombuffer(self.shared, dtype=np.float32, count=shape[0] * shape[1], offset=out_offset).reshape(
            shape).copy()  # the next request overwrites the shared file

    # ------------------------------------------------------------------ end
    def kill(self, reason: str = "closed") -> None:
        if self.dead is None:
            self.dead = reason
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it might have left behind
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._release()

    def close(self) -> None:
        if self.dead is None and getattr(self, "proc", None) is not None and self.proc.poll() is None:
            try:
                wire.send(self.req, {"op": "close"})
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill("closed")

    def _release(self) -> None:
        for fd in ("req", "rep", "shared_fd"):
            value = getattr(self, fd, None)
            if value is not None:
                try:
                    os.close(value)
                except OSError:
                    pass
                setattr(self, fd, None)
        if self.shared is not None:
            try:
                self.shared.close()
            except BufferError:  # a caller still holds a view: the map goes when it does
                pass
            self.shared = None
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __del__(self):
        try:
            self.kill("closed")
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


@atexit.register
def _kill_all() -> None:
    for child in list(_LIVE):
        child.kill("closed")


def _warn_once(protections: Protections) -> None:
    for missing in protections.missing:
        if missing not in _WARNED:
            _WARNED.add(missing)
            print(f"warning: sandbox: {missing}; artifacts run with weaker isolation (see `safecompress doctor`)",
                  file=sys.stderr, flush=True)


def _product(shape: list) -> int:
    """The number of elements of ``shape`` from a reply; -1 (matching no size) unless it is non-negative ints."""
    if not all(type(d) is int and d >= 0 for d in shape):
        return -1
    return int(np.prod(shape, dtype=object))


class SandboxedRuntime(Runtime):
    """An artifact opened in a sandbox child; same attributes and ``predict_proba`` as the in-process runtimes."""

    def __init__(self, path, content: bytes, fmt: str, batch_size: int = 256, threads: int | None = None,
                 limits: SandboxLimits | None = None):
        super().__init__(path, content, batch_size, threads)
        self.format = fmt
        self._child = _Child(fmt, self.name, limits or SandboxLimits.from_env())
        _warn_once(self._child.protections)
        reply = self._child.open(content, self.batch_size, self.threads)
        fixed = reply.get("max_batch") if reply.get("fixed_batch") else None
        if isinstance(fixed, int) and fixed > MAX_FIXED_BATCH:
            self._child.kill(f"{self.name}: declares a fixed batch of {reply['max_batch']} samples; at most "
                             f"{MAX_FIXED_BATCH} can be served (every call is padded to it)")
            raise ArtifactError(self._child.dead)
        try:
            desc = ArtifactDescription.model_validate(reply)
        except ValidationError as exc:
            self._child.kill(f"{self.name}: the {fmt} runtime described the artifact in a form safecompress cannot "
                             f"use ({clean_line(exc.errors()[0].get('msg', ''), 120)})")
            raise ArtifactError(self._child.dead) from None
        self.input_shape = None if desc.input_shape is None else tuple(desc.input_shape)
        self.input_dtype = np.dtype(desc.input_dtype)
        self.quantized_input = desc.quantized_input
        self.n_classes, self.max_seq_len = desc.n_classes, desc.max_seq_len
        self.max_batch, self.fixed_batch = desc.max_batch, desc.fixed_batch
        self.output_atol = desc.output_atol
        self.details = dict(desc.details)

    @property
    def protections(self) -> Protections:
        return self._child.protections

    def run_adapted(self, x: np.ndarray) -> np.ndarray:
        """The child runs ``x`` in chunks of at most :data:`MAX_CHUNK_BYTES` of shared memory (whole batches)."""
        step = max(1, int(self.max_batch) if self.fixed_batch else self.batch_size)
        rows = max(step, MAX_CHUNK_BYTES // max(1, x[:1].nbytes) // step * step)
        outs = [self._child.run(np.ascontiguousarray(x[i:i + rows]), self.n_classes) for i in range(0, len(x), rows)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def describe(self) -> dict:
        return {**super().describe(), "sandbox": self.protections.model_dump(), "details": self.details}

    def close(self) -> None:
        self._child.close()


def probe_protections(fmt: str = "onnx") -> Protections:
    """Start a child for ``fmt`` and return what confinement it achieved (``safecompress doctor``)."""
    child = _Child(fmt, "probe", SandboxLimits.from_env())
    try:
        return child.protections
    finally:
        child.close()
