"""Job functions that live with the executors.

* :func:`train_and_save`: train one model with the one seeded routine, save its weights into the job's
  output directory (safetensors / .weights.h5 + JSON sidecar) and return its probabilities on query
  points: a real job whose artifact travels back as a file with its sha256 checked.
* :func:`probe`: a diagnostic job for checking an executor or a cluster end to end: it records every
  execution as a file (so retries and checkpoint reuse can be counted), can write files, die like a crashed
  worker (``os._exit``) a given number of times, or raise. The tests use it on every executor; run it
  against a new cluster to see that workers import safecompress and that retries work there.

(The reference-model job ``toolkit.models.references:train_and_predict`` lives with the reference pool.)
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.executors.base import JobResult, job_output_dir


def train_and_save(spec, framework: str, recipe, x_train: np.ndarray, y_train: np.ndarray,
                   x_query: np.ndarray) -> JobResult:
    """Train a model (seeded by ``recipe.seed``), save it as ``model.<weights suffix>`` (+ ``.json`` sidecar)
    and return ``JobResult(probabilities on x_query as float32)``."""
    from toolkit.models import predict_proba, save_model, train_reference_model

    model = train_reference_model(spec, framework, x_train, y_train, recipe)
    save_model(model, spec, job_output_dir(), "model")
    return JobResult(np.asarray(predict_proba(model, x_query), dtype=np.float32))


def executions(marker_dir: str | os.PathLike, tag: str) -> list[dict]:
    """The execution records :func:`probe` left for ``tag`` (one dict per execution, oldest first)."""
    records = []
    for p in Path(marker_dir).glob(f"{tag}.*.run"):
        records.append(json.loads(p.read_text()))
    return sorted(records, key=lambda r: r["time"])


def probe(marker_dir: str, tag: str, value: Any = None, die_times: int = 0, fail: str | None = None,
          files: dict[str, str] | None = None, sleep: float = 0.0) -> Any:
    """Record this execution under ``marker_dir``, then behave as asked.

    * ``files``: written into :func:`job_output_dir` (name -> text) *before* anything else happens, so a
      death or failure below leaves partial files behind, as a real crashed job would;
    * ``die_times``: the first ``die_times`` executions of ``tag`` write a ``partial-<pid>.bin`` file and end
      the process with ``os._exit(17)``;
    * ``fail``: raise :class:`~toolkit.errors.DataError` with this message (a deterministic job error);
    * ``sleep``: seconds to wait before returning (to make completion order differ from job order).

    Returns ``value`` (``JobResult(value)`` when ``files`` were written).
    """
    from toolkit.errors import DataError
    from toolkit.frameworks import thread_count

    out = job_output_dir()
    for name, text in (files or {}).items():
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    marker = Path(marker_dir) / f"{tag}.{uuid.uuid4().hex}.run"
    record = {"time": time.time_ns(), "pid": os.getpid(), "threads": thread_count(),
              "omp": os.environ.get("OMP_NUM_THREADS")}
    marker.write_text(json.dumps(record))
    if len(executions(marker_dir, tag)) <= die_times:
        (out / f"partial-{os.getpid()}.bin").write_bytes(b"half a model")  # what a crashed writer leaves
        os._exit(17)
    if fail is not None:
        raise DataError(fail)
    if sleep:
        time.sleep(sleep)
    return JobResult(value) if files else value
