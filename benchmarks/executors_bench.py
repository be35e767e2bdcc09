"""Wall time of 16 reference models on 1 vs 2 local workers and on a local Ray cluster (issue 12).

Run: ``.venv/bin/python -m benchmarks.executors_bench [--quick]`` -> ``benchmarks/results/executors[_quick].json``
and ``.md``; ``run(quick) -> dict`` for ``benchmarks/run.py``.

Setting (real, no shortcuts): sklearn digits; 200 query points; the other 1,597 digits are the pool; each of
the 16 reference models is the digits MLP (64-256-128-10, torch) trained with Adam for 40 epochs on its own
seeded half of the pool (like :class:`~toolkit.models.references.ReferencePool`), and returns its probabilities
on the query points and the pool: the job ``toolkit.models.references:train_and_predict``. 40 epochs: a model
then takes about half a second of compute, still less than what starting a worker costs (spawning Python and
importing torch: 3-8 s on this machine), so the wall times show both; ``job_seconds`` is the compute alone
(the sum over models of the time their job function ran in a worker).

Configurations (each a fresh executor, so wall times include starting workers and importing torch in
them, as a real run pays):

* ``process_1w_1t``: 1 worker process, 1 thread: the baseline of the speedups;
* ``process_2w_1t``: 2 worker processes, 1 thread each;
* ``ray_2cpu_1t``: a local Ray cluster (``ray start --head --num-cpus=2`` on 127.0.0.1), one task per model
  with 1 CPU / 1 thread; the time to start the cluster is reported separately, connecting is included.

Every configuration must return the same probabilities, bit for bit (same seeds, 1 thread per job): checked
below. (One worker with 2 intra-op threads is left out: a different thread count changes float summation
order, and on these shared cores 2 OpenMP threads per process were pathologically slow, 78 s against 6 s in
a first run.)
The machine has 2 cores that are shared with other work, so the timings are noisy: read the speedups as
"about", and rerun before drawing conclusions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
JOB = "toolkit.models.references:train_and_predict"


def _jobs(n_models: int, epochs: int):
    from toolkit.data import load_dataset
    from toolkit.executors import Job
    from toolkit.models import ModelSpec, TrainRecipe

    ds = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(ds.y))
    q, pool = order[:200], order[200:]
    x_query = np.concatenate([ds.x[q], ds.x[pool]])
    spec = ModelSpec(arch="mlp", input_shape=ds.input_shape, n_classes=ds.n_classes)
    jobs = []
    for i in range(n_models):
        rng = np.random.default_rng([0, i])
        rows = np.sort(rng.permutation(pool)[: len(pool) // 2])
        recipe = TrainRecipe(epochs=epochs, batch_size=64, seed=int(rng.integers(2**31 - 1)))
        jobs.append(Job(JOB, {"spec": spec, "framework": "torch", "recipe": recipe, "x_train": ds.x[rows],
                              "y_train": ds.y[rows], "x_query": x_query}, key=f"reference-{i}"))
    return jobs, {"pool": int(len(pool)), "train_rows": int(len(pool) // 2), "query_rows": int(len(x_query))}


def _timed(name: str, jobs, **options) -> tuple[float, float, list[np.ndarray]]:
    """(wall seconds of a fresh executor's map, summed job seconds, outputs)."""
    from toolkit.executors import get_executor

    start = time.perf_counter()
    with get_executor(name, **options) as ex:
        out = ex.map(jobs)
        job_seconds = sum(ex.job_seconds.values())
    return time.perf_counter() - start, job_seconds, [np.asarray(o) for o in out]


def run(quick: bool = False, log=print) -> dict:
    """Time the configurations; returns ``{"timings_s": ..., "speedup_vs_1_worker": ..., ...}``."""
    from toolkit.executors.ray_cluster import LocalRayCluster

    n_models, epochs = (4, 3) if quick else (16, 40)
    jobs, sizes = _jobs(n_models, epochs)
    timings: dict[str, float] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    compute: dict[str, float] = {}
    for label, options in [("process_1w_1t", {"workers": 1, "threads_per_worker": 1}),
                           ("process_2w_1t", {"workers": 2, "threads_per_worker": 1})]:
        timings[label], compute[label], outputs[label] = _timed("process", jobs, **options)
        log(f"{label}: {timings[label]:.1f} s (job compute {compute[label]:.1f} s)")
    start = time.perf_counter()
    with LocalRayCluster(num_cpus=2) as address:
        cluster_start = time.perf_counter() - start
        log(f"ray cluster started in {cluster_start:.1f} s at {address}")
        label = "ray_2cpu_1t"
        timings[label], compute[label], outputs[label] = _timed("ray", jobs, address=address, threads_per_worker=1)
        log(f"{label}: {timings[label]:.1f} s (job compute {compute[label]:.1f} s)")

    base = outputs["process_1w_1t"]
    identical = {k: all(np.array_equal(a, b) for a, b in zip(base, v)) for k, v in outputs.items()}
    max_diff = {k: float(max(np.abs(a - b).max() for a, b in zip(base, v))) for k, v in outputs.items()}
    if not all(identical.values()):
        raise AssertionError(f"executors disagree: identical={identical} max_abs_diff={max_diff}")
    return {
        "benchmark": "executors", "quick": quick,
        "setting": {"models": n_models, "epochs": epochs, "arch": "mlp (256, 128)", "framework": "torch",
                    "job": JOB, **sizes},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "note": "2 cores shared with other processes: timings are noisy"},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "job_seconds": {k: round(v, 2) for k, v in compute.items()},
        "ray_cluster_start_s": round(cluster_start, 2),
        "speedup_vs_1_worker": {k: round(timings["process_1w_1t"] / v, 2) for k, v in timings.items()},
        "identical_to_1_worker": identical, "max_abs_diff_vs_1_worker": max_diff,
    }


def _markdown(r: dict) -> str:
    s = r["setting"]
    lines = [f"# Executors: {s['models']} reference models (digits {s['arch']}, {s['epochs']} epochs)", "",
             "| configuration | wall time (s) | speedup vs 1 worker | job compute (s) | identical to 1 worker |",
             "|---|---|---|---|---|"]
    for k, t in r["timings_s"].items():
        lines.append(f"| {k} | {t} | {r['speedup_vs_1_worker'][k]} | {r['job_seconds'][k]} | "
                     f"{r['identical_to_1_worker'][k]} (max diff {r['max_abs_diff_vs_1_worker'][k]:.1e}) |")
    lines += ["", f"Ray cluster start (not included above): {r['ray_cluster_start_s']} s.",
              f"Machine: {r['machine']['cores']} cores; {r['machine']['note']}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 models of 3 epochs (a smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
    result = run(args.quick)
    from toolkit.io import atomic_write_json, atomic_write_text

    stem = "executors_quick" if args.quick else "executors"
    atomic_write_json(args.out / f"{stem}.json", result)
    atomic_write_text(args.out / f"{stem}.md", _markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
