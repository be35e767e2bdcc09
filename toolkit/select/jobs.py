"""The two kinds of independent job in a run, executable by any executor (in-process, process pool, Ray).

Both take plain, picklable arguments (arrays, configs, paths) and write their outputs into the executor's
:func:`~toolkit.executors.job_output_dir`; files come back sha256-checked and, with a checkpoint directory,
a finished job is reused on rerun instead of recomputed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _start_job(threads: int | None) -> None:
    """Make a job's results independent of where and after what it runs.

    Threads: the same count whatever executor runs the job (:func:`toolkit.executors.base.pin_threads`, torch
    included), so trained weights do not depend on the worker. Keras names: tf_keras numbers layers per
    process (``sequential_2/dense_5``...), and the names end up in exported artifacts (TFLite tensor names,
    hence their bytes and sha256) and in reports; resetting the counters keeps a resumed run (which skips
    finished jobs) or another executor writing the same artifacts as an uninterrupted in-process run.
    """
    import sys

    if threads:
        from toolkit.executors.base import pin_threads

        pin_threads(threads)
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].backend.clear_session()


def train_dense(spec: dict, framework: str, recipe: dict, x: np.ndarray, y: np.ndarray, threads: int | None = None):
    """Train the dense reference model; files: ``model.<weights>`` + its JSON spec sidecar."""
    from toolkit.executors import JobResult, job_output_dir
    from toolkit.frameworks import seed_everything
    from toolkit.models import ModelSpec, TrainRecipe, save_model, train_reference_model

    _start_job(threads)
    spec_o, recipe_o = ModelSpec(**spec), TrainRecipe(**recipe)
    seed_everything(recipe_o.seed)
    t0 = time.perf_counter()
    model = train_reference_model(spec_o, framework, x, y, recipe_o)
    seconds = time.perf_counter() - t0
    weights = save_model(model, spec_o, job_output_dir(), "model")
    return JobResult({"weights": weights.name, "train_seconds": seconds})


def make_candidate(name: str, source: str, params: dict, dense_weights: str, data, recipe: dict, fmt: str | None,
                   mode: str, sample: int, default_formats: dict, threads: int | None = None):
    """Compress the dense model with ``source``/``params``, export the result, validate the artifact.

    Files: ``model.<fmt>`` and its sidecar ``model.<fmt>.json``. The value is the candidate's record (without
    the safety test, which the caller runs on the artifact through its runtime).
    """
    import exporters
    from toolkit.executors import JobResult, job_output_dir
    from toolkit.frameworks import seed_everything
    from toolkit.models import TrainRecipe, load_model
    from toolkit.select.sources import make_candidate as produce

    _start_job(threads)
    dense, _spec = load_model(dense_weights)
    recipe_o = TrainRecipe(**recipe)
    seed_everything(recipe_o.seed)
    produced = produce(source, dense, data, params, recipe_o)
    out = job_output_dir()
    fmt = fmt or default_formats[produced.framework]
    sample_x = data.members.x[:sample]
    info = exporters.export(produced.model, fmt, out / f"model.{fmt}", sample_x, mode=mode,
                            representative=data.members.x)
    record = {
        "name": name, "backend": produced.backend, "method": source, "kind": produced.kind,
        "framework": produced.framework, "params": produced.params, "stats": produced.stats,
        "framework_accuracy": produced.framework_accuracy, "compress_seconds": round(produced.seconds, 3),
        "extra": json.loads(json.dumps(produced.extra, default=str)),
        "export": {k: v for k, v in info.to_dict().items() if k != "path"}, "artifact_file": Path(info.path).name,
    }
    return JobResult(record)


def export_dense(dense_weights: str, fmt: str, mode: str, sample_x: np.ndarray, threads: int | None = None):
    """Export the dense model (the uncompressed original) like a candidate."""
    import exporters
    from toolkit.executors import JobResult, job_output_dir
    from toolkit.models import load_model

    _start_job(threads)
    dense, _ = load_model(dense_weights)
    info = exporters.export(dense, fmt, job_output_dir() / f"model.{fmt}", sample_x, mode=mode)
    return JobResult({"export": {k: v for k, v in info.to_dict().items() if k != "path"},
                      "artifact_file": Path(info.path).name})


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
