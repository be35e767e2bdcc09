"""The Ray executor: the same jobs as Ray tasks, on a local Ray instance or an existing cluster.

``ray`` is imported only when a map runs (``import toolkit.cli`` must stay light).

* ``address=None``: use ``RAY_ADDRESS`` if it is set, else start a private local Ray instance with
  ``workers * threads_per_worker`` CPUs (shut down by :meth:`close`). ``address="HOST:PORT"``: connect to
  the cluster whose head was started with ``ray start --head --port=PORT``.
* Each job becomes one task requesting ``threads_per_worker`` CPUs (default 1), so Ray never places more
  threads on a node than it has cores; inside the task the threads are pinned (``SAFECOMPRESS_THREADS``).
  ``workers``, when given, caps the number of tasks in flight.
* What travels: the function name, the key and the keyword arguments (numpy arrays, configs, manifests).
  Arrays of 1 MiB or more are put into the object store once per map and shared by every task that
  receives the same array object. Every node needs the same environment (safecompress and its frameworks
  installed) and, for arguments that are paths, the same files.
* What comes back: the job's value and its files as bytes with sha256 digests computed on the worker; the
  driver checks every digest before the files enter a result or checkpoint.
* A task whose worker process or node dies is retried by Ray (``max_retries=retries``); an exception raised
  by the job is not retried (``retry_exceptions=False``) and is re-raised here as the job's own exception.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from toolkit.errors import ConfigError, MissingDependencyError
from toolkit.executors.base import (Envelope, Executor, ExecutorError, Item, Job, RemoteTraceback, cpu_count,
                                    pin_threads, run_job)

#: Arrays at least this large are shared through the object store instead of being copied into each task.
SHARE_BYTES = 1 << 20


def ray_entry(fn: str, key: str, names: list[str], threads: int, *values: Any) -> Envelope:
    """The body of a Ray task (top level, so workers import it by reference)."""
    os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
    pin_threads(threads)
    # Ray hands large arrays over as read-only views of the object store; a local process would own a
    # writable copy. Copy them so a job behaves (and computes) the same on every executor.
    kwargs = {n: (np.array(v) if isinstance(v, np.ndarray) and not v.flags.writeable else v)
              for n, v in zip(names, values)}
    return run_job(Job(fn, kwargs, key))


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message instead of Ray's long reconnect loop when nothing listens at ADDR."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} must be HOST:PORT (the head's `ray start --head --port`)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start its head with "
                            "`ray start --head --port=PORT` or fix --address") from None


def _same(a: str, b: str) -> bool:
    """Whether two HOST:PORT addresses may name the same Ray head (host names resolved; Ray reports a
    head given as 127.0.0.1 under the node's own IP, so a loopback host matches any host on the same port)."""

    def norm(addr: str) -> tuple[str, str]:
        host, _, port = addr.rpartition(":")
        try:
            host = socket.gethostbyname(host.strip("[]"))
        except OSError:
            pass
        return host, port

    (ha, pa), (hb, pb) = norm(a), norm(b)
    return pa == pb and (ha == hb or ha.startswith("127.") or hb.startswith("127."))


class RayExecutor(Executor):
    name = "ray"
    accepts_address = True

    def __init__(self, workers: int | None = None, threads_per_worker: int | None = None, **options: Any):
        super().__init__(workers, threads_per_worker, **options)
        self.threads_per_worker = self.threads_per_worker or 1
        self._owns_ray = False
        self._remote = None

    def _ray(self):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - install problem
            raise MissingDependencyError(f"the ray executor needs the ray package: {exc}") from None
        if ray.is_initialized():
            # A caller (or an earlier map) already connected this process: use that cluster, unless it is
            # a different one from the address asked for (a process holds one Ray connection).
            current = ray.get_runtime_context().gcs_address
            if (not self._owns_ray and self.address and "://" not in self.address and self.address != "auto"
                    and not _same(current, self.address)):
                raise ExecutorError(f"this process is already connected to Ray at {current}; cannot also use "
                                    f"{self.address} (one Ray cluster per process)")
            return ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address is None:
            kwargs["num_cpus"] = (self.workers or cpu_count()) * self.threads_per_worker
        elif address != "auto" and "://" not in address:
            _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a failed connection is a user-facing condition
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                    "(or ~/.ray/auth_token) for this process" if address and not os.environ.get("RAY_AUTH_MODE") else "")
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ExecutorError(f"cannot start or connect to {where}: {type(exc).__name__}: {first}{hint}") from None
        self._owns_ray = True
        return ray

    def _run(self, items: list[Item]) -> Iterator[tuple[int, Envelope]]:
        ray = self._ray()
        if self._remote is None:
            self._remote = ray.remote(ray_entry)
        shared: dict[int, Any] = {}

        def arg(v: Any) -> Any:
            if isinstance(v, np.ndarray) and v.nbytes >= SHARE_BYTES:
                if id(v) not in shared:
                    shared[id(v)] = ray.put(v)
                return shared[id(v)]
            return v

        queue = deque(items)
        limit = self.workers or len(items)
        inflight: dict[Any, Item] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    it = queue.popleft()
                    names = list(it.job.kwargs)
                    ref = self._remote.options(
                        num_cpus=self.threads_per_worker, max_retries=self.retries, retry_exceptions=False,
                        name=f"safecompress:{it.label}",
                    ).remote(it.job.fn, it.label, names, self.threads_per_worker,
                             *[arg(it.job.kwargs[n]) for n in names])
                    inflight[ref] = it
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    it = inflight.pop(ref)
                    try:
                        env = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        exc = _job_exception(err, it)  # carries the worker's traceback as __cause__
                        raise exc  # noqa: B904
                    except ray.exceptions.RayError as err:
                        first = (str(err).strip().splitlines() or [""])[0]
                        raise ExecutorError(
                            f"job {it.label!r} ({it.job.fn}) failed on Ray after {self.retries + 1} attempt(s): "
                            f"{type(err).__name__}: {first}") from None
                    yield it.index, env
        finally:
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort: the task may have finished meanwhile
                    pass

    def close(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
        self._remote = None
        super().close()


def _job_exception(err, it: Item) -> BaseException:
    """The job's own exception out of Ray's wrapper, with the worker's traceback as its cause."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and not type(cause).__module__.startswith("ray."):
        cause.__cause__ = RemoteTraceback(str(err))
        return cause
    first = (str(err).strip().splitlines() or [""])[0]
    return ExecutorError(f"job {it.label!r} ({it.job.fn}) raised on a Ray worker: {first}")
