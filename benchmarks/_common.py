"""Helpers shared by the ``make bench`` benchmarks (``benchmarks/<key>.py``, aggregated by ``benchmarks/run.py``).

* :func:`best_of`: the best (smallest) wall time of ``repeats`` calls, plus every time measured.
* :func:`figure`: one row of the results table: a measured value, its goal, whether it is met and, when it is
  not, a one-line reason the benchmark found (never a tuned-away miss).
* :func:`fashion_split`: Fashion-MNIST members / non-members / population (``toolkit.data``), the data most
  benchmarks use; ``limit`` keeps quick runs small.
* :func:`machine`: platform, cores, thread setting and library versions (read from package metadata, so nothing
  heavy is imported).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np

#: Packages whose versions are recorded with every run.
PACKAGES = ("numpy", "scikit-learn", "torch", "tensorflow", "tf-keras", "tensorflow-model-optimization",
            "onnx", "onnxruntime", "ai-edge-litert", "executorch", "nni")


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """``(best seconds, [seconds of every call])`` over ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(max(1, int(repeats))):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), [round(t, 4) for t in times]


def figure(name: str, value: float | None, goal: str | None = None, why: str | None = None, **extra) -> dict:
    """A table row. ``goal`` is ``"<= 1.2"``, ``">= 1"``, ``"< 50"`` or None (reported, no goal).

    ``why`` is kept only when the goal is missed (the benchmark passes the reason it measured).
    """
    met = None
    if goal is not None and value is not None and np.isfinite(value):
        op, target = goal.split()
        target = float(goal_number(target))
        met = {"<=": value <= target, ">=": value >= target, "<": value < target, ">": value > target}[op]
    return {"name": name, "value": None if value is None else round(float(value), 4), "goal": goal,
            "met": None if met is None else bool(met), "why": why if met is False else None, **extra}


def goal_number(text: str) -> float:
    """``"1/8"`` -> 0.125, ``"1.2"`` -> 1.2 (goals are written as the issue writes them)."""
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def threads() -> int:
    from toolkit.frameworks import thread_count

    return thread_count()


def pin_torch_threads() -> None:
    """torch intra-op threads = ``thread_count()`` (toolkit.frameworks.torch() does it on first import)."""
    from toolkit.frameworks import torch

    torch().set_num_threads(threads())


def fashion_split(members: int, nonmembers: int, population: int = 0, seed: int = 0, limit: int | None = None):
    """``(dataset, {"members": SplitArrays, "nonmembers": ..., "population": ...})`` of Fashion-MNIST."""
    from toolkit.data import load_dataset, make_split

    ds = load_dataset("fashion_mnist", limit=limit)
    split = make_split(ds, members=members, nonmembers=nonmembers, population=population, seed=seed)
    parts = {p: split.take(ds, p) for p in ("members", "nonmembers", "population")}
    return ds, parts


def jitter_copies(x: np.ndarray, n: int, seed: int, scale: float = 0.02) -> np.ndarray:
    """``n`` samples made of ``x`` tiled, each copy after the first with small seeded noise (clipped to [0, 1]),
    so tiled samples stay distinct by content (the audit refuses members that equal non-members)."""
    reps = int(np.ceil(n / len(x)))
    rng = np.random.default_rng(seed)
    out = np.empty((reps * len(x), *x.shape[1:]), dtype=np.float32)
    for r in range(reps):
        block = out[r * len(x):(r + 1) * len(x)]
        block[...] = x
        if r or seed:
            block += rng.normal(0.0, scale, size=x.shape).astype(np.float32)
            np.clip(block, 0.0, 1.0, out=block)
    return out[:n]


def machine() -> dict:
    from importlib import metadata

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as fh:
            cpu_model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        pass
    mem_total = None
    try:
        with open("/proc/meminfo") as fh:
            mem_total = next((int(line.split()[1]) // 1024 for line in fh if line.startswith("MemTotal")), None)
    except OSError:
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": cpu_model,
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "cpu_affinity": affinity,
            "memory_mb": mem_total, "threads": threads(),
            "SAFECOMPRESS_THREADS": os.environ.get("SAFECOMPRESS_THREADS"),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "versions": versions}


def quiet_warnings() -> None:
    """torch.ao / tfmot deprecation notices would bury the benchmark log."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
