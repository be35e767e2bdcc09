"""Executors: run independent jobs (reference models, candidates, shadow models) in-process, in a local
process pool, or on a Ray cluster, with identical results (every job carries its own seed).

    from toolkit.executors import Job, get_executor

    with get_executor("process", workers=2, checkpoint_dir="out/checkpoints") as ex:
        probs = ex.map([Job("toolkit.models.references:train_and_predict", {...}, key="reference-0"), ...])

A job is a top-level function given as ``"package.module:function"`` plus keyword arguments that pickle
(numpy arrays, pydantic configs, paths) and a ``key``. ``Executor.map(jobs)`` returns results in job order.
Files come back through :func:`job_output_dir` + :class:`JobResult` (sha256-checked); dead workers are
retried ``retries`` times; with ``checkpoint_dir`` finished jobs are stored and reused on rerun.
See ``docs/executors.md`` and :mod:`toolkit.executors.base` for the contracts.

Implementations, in :data:`EXECUTORS` (lazy registry: ``ray`` is imported only when a Ray map runs):

* ``inprocess`` — one job after another in this process (debugging);
* ``process`` — the default: a pool of spawned worker processes, threads per worker pinned;
* ``ray`` — Ray tasks on a local Ray instance or on the cluster at ``address``.
"""

from __future__ import annotations

import os
from typing import Any

from toolkit.errors import ConfigError
from toolkit.executors.base import (Executor, ExecutorError, Job, JobResult, RemoteTraceback, job_output_dir,
                                    resolve, run_job)
from toolkit.registry import Registry

EXECUTORS = Registry("executor")
EXECUTORS.register("inprocess", "toolkit.executors.local:InProcessExecutor",
                   description="one job after another in this process (debugging)")
EXECUTORS.register("process", "toolkit.executors.local:ProcessPoolExecutor",
                   description="local pool of spawned worker processes, threads per worker pinned (default)")
EXECUTORS.register("ray", "toolkit.executors.ray_executor:RayExecutor",
                   description="Ray tasks on a local Ray instance or the cluster at --address")

#: The executor a run uses when nothing is configured.
DEFAULT_EXECUTOR = "process"

#: Help texts for the CLI options that select an executor (``safecompress run``).
OPTION_HELP = {
    "executor": f"where independent jobs run: {', '.join(EXECUTORS)} (default {DEFAULT_EXECUTOR})",
    "address": "Ray cluster address HOST:PORT of a head started with `ray start --head --port=PORT` "
               "(--executor ray only; default: a private local Ray instance)",
    "workers": "parallel workers (default: one per core; for ray: cap on tasks in flight)",
}


def get_executor(name: str = DEFAULT_EXECUTOR, workers: int | None = None, threads_per_worker: int | None = None,
                 address: str | None = None, retries: int = 1,
                 checkpoint_dir: str | os.PathLike | None = None) -> Executor:
    """The executor ``name`` (``inprocess``, ``process``, ``ray``); unknown names list the known ones.

    * ``workers``: parallel workers (process: default one per core; ray: cap on tasks in flight);
    * ``threads_per_worker``: threads each worker may use (process: default cores // workers; ray: 1);
    * ``address``: Ray cluster ``HOST:PORT`` (ray only; ``None`` = ``RAY_ADDRESS`` or a local instance);
    * ``retries``: how often a job whose worker *died* is run again before :class:`ExecutorError`;
    * ``checkpoint_dir``: store every finished job there under its key and reuse it on rerun.
    """
    cls = EXECUTORS.get(name)
    return cls(workers=workers, threads_per_worker=threads_per_worker, address=address, retries=retries,
               checkpoint_dir=checkpoint_dir)


def executor_from_options(name: str | None = None, address: str | None = None, workers: int | None = None,
                          **options: Any) -> Executor:
    """The executor for the CLI options ``--executor NAME [--address ADDR] [--workers N]``.

    ``name`` None means :data:`DEFAULT_EXECUTOR`; ``options`` pass on to :func:`get_executor`
    (``threads_per_worker``, ``retries``, ``checkpoint_dir``). Bad combinations are a :class:`ConfigError`
    naming the option.
    """
    name = name or DEFAULT_EXECUTOR
    if name not in EXECUTORS:
        EXECUTORS.get(name)  # raises UnknownNameError listing the executors
    if address is not None and name != "ray":
        raise ConfigError(f"--address applies to --executor ray only (got --executor {name})")
    if address is not None and not str(address).strip():
        raise ConfigError("--address is empty; give the Ray head as HOST:PORT")
    if workers is not None and int(workers) < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return get_executor(name, workers=workers, address=address, **options)


__all__ = ["DEFAULT_EXECUTOR", "EXECUTORS", "Executor", "ExecutorError", "Job", "JobResult", "OPTION_HELP",
           "RemoteTraceback", "executor_from_options", "get_executor", "job_output_dir", "resolve", "run_job"]
