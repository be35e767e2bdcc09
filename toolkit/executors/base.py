"""The executor contract: jobs, what a job returns, the body every worker runs, and the shared driver logic.

* A :class:`Job` is a top-level function named ``"package.module:function"`` plus keyword arguments that
  pickle (numpy arrays, pydantic configs, paths) and a ``key`` (its stable identity: checkpoint name, log
  label). Job functions must be deterministic given their arguments: seeds travel *in* the kwargs, so the
  result is the same whichever executor (and whichever worker) runs the job.
* A job that produces files writes them into :func:`job_output_dir` (a private scratch directory of this
  attempt) and returns a :class:`JobResult`. The worker sends the bytes back with their sha256; the driver
  checks every digest and moves the files into place with an atomic rename. A job that dies half-way leaves
  its scratch directory behind, which is never read: partial files never enter the results.
* :meth:`Executor.map` returns the results in job order. With ``checkpoint_dir`` each finished job is stored
  under its key as soon as it finishes (JSON + ``.npy`` + files, never pickle) and reused on rerun.
* A worker that *dies* (``os._exit``, SIGKILL, the OOM killer, a lost node) is retried up to ``retries``
  times, then :class:`ExecutorError` names the job. An exception *raised* by the job is deterministic and is
  not retried: it propagates unchanged (a :class:`~toolkit.errors.SafeCompressError` keeps its one-line
  message), with the worker's traceback attached as ``__cause__``.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import os
import re
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ConfigError, SafeCompressError


class ExecutorError(SafeCompressError):
    """A job could not be run to completion: its worker kept dying, its result could not travel back, its
    files failed their sha256 check, or the cluster could not be reached."""


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised in a worker (attached as ``__cause__``)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@dataclass(frozen=True)
class Job:
    fn: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Stable identity of the job (checkpoint key, log label).
    key: str = ""


@dataclass(eq=False)
class JobResult:
    """What a job returns when it produces files.

    Inside the job: ``return JobResult(value)`` after writing files into :func:`job_output_dir`; every
    regular file there comes back. In the caller: ``files`` maps each name (relative, ``/``-separated) to
    its final path and ``sha256`` to its checked digest. Without a ``checkpoint_dir`` the files live in the
    executor's temporary directory until :meth:`Executor.close`; with one they stay in the checkpoint.
    """

    value: Any = None
    files: dict[str, Path] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        try:
            return self.files[name]
        except KeyError:
            raise ExecutorError(f"the job result has no file {name!r}; it has: {', '.join(self.files) or 'none'}") from None


@dataclass(eq=False)
class Envelope:
    """What travels back from a worker: the value, whether it was a JobResult, file bytes and digests."""

    value: Any
    wrapped: bool
    files: dict[str, bytes]
    sha256: dict[str, str]
    seconds: float


_OUTPUT_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("safecompress_job_dir", default=None)


def job_output_dir() -> Path:
    """The private scratch directory of the running job (files written here come back via :class:`JobResult`)."""
    d = _OUTPUT_DIR.get()
    if d is None:
        raise ExecutorError("job_output_dir() is only available inside a job run by an executor")
    return d


def resolve(fn: str):
    """``"package.module:attr"`` -> the object; a clear :class:`ConfigError` when it does not exist."""
    module_name, sep, attr = fn.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"job function {fn!r} must be given as 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"job function {fn!r} cannot be imported: {exc}") from None
    if not callable(obj):
        raise ConfigError(f"job function {fn!r} is not callable")
    return obj


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int) -> None:
    """Pin this (worker) process to ``threads`` threads: ``SAFECOMPRESS_THREADS`` (read by
    :func:`toolkit.frameworks.thread_count` when a framework is first imported), the OpenMP/BLAS variables,
    and torch if it is already loaded. Only ever called in worker processes, never in the caller's."""
    n = str(max(1, int(threads)))
    os.environ["SAFECOMPRESS_THREADS"] = n
    for var in _THREAD_VARS:
        os.environ[var] = n
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))


def _collect(root: Path, label: str) -> tuple[dict[str, bytes], dict[str, str]]:
    files: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            raise ExecutorError(f"job {label!r} left a symbolic link {p.name} in job_output_dir(); write regular files")
        if p.is_file():
            name = p.relative_to(root).as_posix()
            files[name] = p.read_bytes()
    return files, {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}


def _node_scratch() -> Path:
    """A scratch directory in this node's temp dir, for workers the driver cannot reach (Ray).

    Named after this process id; directories of processes that no longer exist (workers that died
    mid-job) are removed first, so crashed attempts do not pile up on a node.
    """
    root = Path(tempfile.gettempdir()) / f"safecompress-jobs-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    for d in root.iterdir():
        pid = d.name.partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_job(job: Job, scratch: str | os.PathLike | None = None) -> Envelope:
    """Execute one job in this process (the body every executor runs) and pack its result.

    ``scratch`` is this attempt's private directory (created empty; removed afterwards whatever happens).
    """
    label = job.key or job.fn
    fn = resolve(job.fn)
    if scratch is None:
        work = _node_scratch()
    else:
        work = Path(scratch)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    token = _OUTPUT_DIR.set(work)
    start = time.perf_counter()
    try:
        out = fn(**job.kwargs)
        files, digests = _collect(work, label)
        if isinstance(out, JobResult):
            return Envelope(out.value, True, files, digests, time.perf_counter() - start)
        if files:
            raise ExecutorError(f"job {label!r} wrote {len(files)} file(s) into job_output_dir() but returned a "
                                f"{type(out).__name__}; return JobResult(value) so the files come back")
        return Envelope(out, False, {}, {}, time.perf_counter() - start)
    finally:
        _OUTPUT_DIR.reset(token)
        shutil.rmtree(work, ignore_errors=True)


def safe_name(key: str) -> str:
    """A file-system-safe, collision-free directory name for a job key."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", key)[:80].lstrip(".") or "job"
    if clean != key:
        clean += "-" + hashlib.sha256(key.encode()).hexdigest()[:10]
    return clean


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Item:
    """One pending job as the executors see it."""

    index: int
    job: Job
    label: str
    safe: str


class Executor:
    """The one executor interface: ``map(jobs) -> results in job order``; ``close()`` (or ``with``).

    Subclasses implement :meth:`_run`, a generator that yields ``(index, Envelope)`` as jobs finish (in any
    order), retrying dead workers up to ``self.retries`` times and raising :class:`ExecutorError` beyond.
    After each map, ``computed`` and ``reused`` list the keys that ran and those served from checkpoints,
    and ``job_seconds`` maps each computed key to the seconds its function ran in the worker (start-up of
    workers and transfers excluded).
    """

    name = "base"

    def __init__(self, workers: int | None = None, threads_per_worker: int | None = None,
                 address: str | None = None, retries: int = 1, checkpoint_dir: str | os.PathLike | None = None):
        if workers is not None and int(workers) < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if threads_per_worker is not None and int(threads_per_worker) < 1:
            raise ConfigError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        if int(retries) < 0:
            raise ConfigError(f"retries must be >= 0, got {retries}")
        if address is not None and not self.accepts_address:
            raise ConfigError(f"an address applies to the ray executor only, not to {self.name!r}")
        self.workers = None if workers is None else int(workers)
        self.threads_per_worker = None if threads_per_worker is None else int(threads_per_worker)
        self.address = address
        self.retries = int(retries)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.job_seconds: dict[str, float] = {}
        self._tmp: Path | None = None
        self._finalizer: weakref.finalize | None = None

    accepts_address = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def tmp(self) -> Path:
        """This executor's temporary directory (scratch of local attempts, returned files without checkpoints)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="safecompress-exec-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._tmp), True)
        return self._tmp

    def close(self) -> None:
        """Release workers/cluster connections and delete the temporary directory (files of results
        returned without a ``checkpoint_dir`` go with it)."""
        if self._finalizer is not None:
            self._finalizer()
        self._tmp = None
        self._finalizer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads_per_worker,
                "address": self.address, "retries": self.retries,
                "checkpoint_dir": str(self.checkpoint_dir) if self.checkpoint_dir else None}

    # ------------------------------------------------------------------ map
    def map(self, jobs: Sequence[Job]) -> list[Any]:
        """Run ``jobs`` and return their results in job order (reusing checkpoints of finished jobs)."""
        from toolkit.executors.store import CheckpointStore, job_fingerprint

        jobs = list(jobs)
        items = self._items(jobs)
        store = CheckpointStore(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        results: list[Any] = [None] * len(jobs)
        fingerprints: dict[int, str] = {}
        pending: list[Item] = []
        self.computed, self.reused, self.job_seconds = [], [], {}
        for it in items:
            if store is not None:
                store.discard_partials(it)
                fingerprints[it.index] = job_fingerprint(it.job)
                hit, value = store.load(it, fingerprints[it.index])
                if hit:
                    results[it.index] = value
                    self.reused.append(it.label)
                    continue
            pending.append(it)
        if not pending:
            return results
        gen = self._run(pending)
        try:
            for index, env in gen:
                it = items[index]
                _verify(it, env)
                if store is not None:
                    results[index] = store.save(it, fingerprints[index], env)
                else:
                    results[index] = self._materialize(it, env)
                self.computed.append(it.label)
                self.job_seconds[it.label] = env.seconds
        finally:
            gen.close()
        return results

    def _items(self, jobs: list[Job]) -> list[Item]:
        items, seen = [], set()
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise ConfigError(f"executor jobs must be Job objects; item {i} is a {type(job).__name__}")
            if job.key:
                if job.key in seen:
                    raise ConfigError(f"job key {job.key!r} is used twice; every job needs its own key")
                seen.add(job.key)
            elif self.checkpoint_dir is not None:
                raise ConfigError(f"checkpointing needs a key for every job; job {i} ({job.fn}) has none")
            label = job.key or f"job-{i}"
            items.append(Item(i, job, label, safe_name(label)))
        return items

    def _materialize(self, it: Item, env: Envelope) -> Any:
        if not env.wrapped:
            return env.value
        from toolkit.executors.store import write_dir_atomically

        final = self.tmp / "results" / it.safe
        write_dir_atomically(final, {f"files/{n}": b for n, b in env.files.items()})
        return JobResult(env.value, {n: final / "files" / n for n in env.files}, dict(env.sha256))

    def _run(self, items: list[Item]) -> Iterator[tuple[int, Envelope]]:  # pragma: no cover - abstract
        raise NotImplementedError


def _verify(it: Item, env: Envelope) -> None:
    """Check every file that came back against the digest its worker computed."""
    if set(env.files) != set(env.sha256):
        raise ExecutorError(f"job {it.label!r}: the files that came back do not match their digest list")
    for name, data in env.files.items():
        got = hashlib.sha256(data).hexdigest()
        if got != env.sha256[name]:
            raise ExecutorError(f"job {it.label!r}: file {name} came back with sha256 {got[:16]}..., the worker "
                                f"wrote {env.sha256[name][:16]}...; refusing the corrupted result")


def remote_failure(exc: BaseException, tb: str | None) -> BaseException:
    """An exception raised in a worker, with the worker's traceback as its cause."""
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc
