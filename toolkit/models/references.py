"""Reference (shadow) models for LiRA, RMIA and shadow-model attacks, trained with the target's recipe.

A :class:`ReferencePool` trains ``n_models`` models with the target's :class:`ModelSpec` + :class:`TrainRecipe`
+ framework, each on its own seeded random half (``fraction``) of a training pool:

* **offline** (default): the pool is the population data only, so the evaluation points are never in any
  reference model (checked by content hash);
* **online**: the pool is population ∪ the queried evaluation points, the standard LiRA design in which every
  reference model trains on a random half of both, so about half of the models include each audit point.

Each model is independent of ``n_models`` (model ``i`` depends only on the pool, the recipe, ``seed`` and
``i``), so a pool of 2 is the first 2 models of a pool of 8 and the cache serves both.

The pool returns numpy arrays only (:class:`ReferenceOutputs`): every model's probabilities on the queried
points and on the population, and the in/out masks. Each model's outputs are cached on disk as one ``.npz``
keyed by (recipe + spec fingerprint, framework, sha256 of its training pool, sha256 of the queried points,
seed, index, fraction), written atomically, so all candidates of a run (which query the same points) reuse
them and an interrupted run resumes. Trainings run as :class:`~toolkit.executors.Job` s through
:func:`toolkit.executors.get_executor`, so they can go to worker processes or a cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import DataError, ModelError
from toolkit.models.spec import ModelSpec, TrainRecipe

CACHE_VERSION = 1


@dataclass(eq=False)
class ReferenceOutputs:
    """``probs`` (k, n, C) and ``in_mask`` (k, n) on the queried points; ``pop_probs`` (k, m, C) and ``pop_in``
    (k, m) on the population. ``in_mask[j, i]`` is True when reference ``j`` was trained on point ``i``."""

    probs: np.ndarray
    in_mask: np.ndarray
    pop_probs: np.ndarray
    pop_in: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.probs.shape[0])

    def take(self, k: int) -> "ReferenceOutputs":
        """The first ``k`` models (a smaller pool with the same seed)."""
        if not 1 <= k <= self.n_models:
            raise ModelError(f"cannot take {k} of {self.n_models} reference models")
        return ReferenceOutputs(self.probs[:k], self.in_mask[:k], self.pop_probs[:k], self.pop_in[:k])


def train_and_predict(spec: ModelSpec, framework: str, recipe: TrainRecipe, x_train: np.ndarray,
                      y_train: np.ndarray, x_query: np.ndarray) -> np.ndarray:
    """Executor job: train one reference model and return its probabilities on ``x_query`` (float32)."""
    from toolkit.models import predict_proba, train_reference_model

    model = train_reference_model(spec, framework, x_train, y_train, recipe)
    return np.asarray(predict_proba(model, x_query), dtype=np.float32)


def _sha(x: np.ndarray, y: np.ndarray) -> str:
    from toolkit.data import content_sha256

    return content_sha256(x, y)


class ReferencePool:
    """``ReferencePool(spec, recipe, (x_pop, y_pop), framework=..., n_models=..., online=...).query(x, y)``."""

    def __init__(self, spec: ModelSpec, recipe: TrainRecipe, population: tuple[np.ndarray, np.ndarray], *,
                 framework: str = "torch", n_models: int = 8, online: bool = False, fraction: float = 0.5,
                 seed: int = 0, cache_dir: str | Path | None = None, executor: str = "inprocess",
                 workers: int | None = None, threads_per_worker: int | None = None):
        from toolkit.data import validate_arrays
        from toolkit.models import FRAMEWORKS

        if not FRAMEWORKS.meta(framework).get("trainable"):
            raise ModelError(f"reference models must be trainable; framework {framework!r} is not")
        if n_models < 1:
            raise ModelError(f"n_models must be >= 1, got {n_models}")
        if not 0.0 < fraction < 1.0:
            raise ModelError(f"fraction must lie in (0, 1), got {fraction}")
        x, y = validate_arrays(population[0], population[1], "population", spec.n_classes)
        if tuple(x.shape[1:]) != tuple(spec.input_shape):
            raise DataError(f"population samples have shape {x.shape[1:]}, the model spec expects {spec.input_shape}")
        self.spec, self.recipe, self.framework = spec, recipe, framework
        self.x_pop, self.y_pop = x, y
        self.n_models, self.online, self.fraction, self.seed = int(n_models), bool(online), float(fraction), int(seed)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.executor, self.workers, self.threads_per_worker = executor, workers, threads_per_worker
        self.trained = 0  # models trained (not loaded from cache) by the last query, for reports and tests

    @property
    def population(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_pop, self.y_pop

    def describe(self) -> dict:
        return {"n_models": self.n_models, "online": self.online, "fraction": self.fraction, "seed": self.seed,
                "framework": self.framework, "recipe_fingerprint": self.recipe.fingerprint(self.spec),
                "population": int(len(self.y_pop)), "trained_now": self.trained}

    # ------------------------------------------------------------------ design
    def _member_rows(self, index: int, pool_size: int) -> np.ndarray:
        """Sorted indices into the training pool that model ``index`` trains on (a seeded random subset)."""
        rng = np.random.default_rng([self.seed, index, 0x5245])
        return np.sort(rng.permutation(pool_size)[: int(round(self.fraction * pool_size))])

    def _recipe(self, index: int) -> TrainRecipe:
        # Each model has its own initialization and data order, derived from (seed, index).
        model_seed = int(np.random.default_rng([self.seed, index, 0x5345]).integers(2**31 - 1))
        return self.recipe.model_copy(update={"seed": model_seed})

    def _key(self, index: int, pool_sha: str, query_sha: str) -> str:
        body = {"v": CACHE_VERSION, "fingerprint": self.recipe.fingerprint(self.spec), "framework": self.framework,
                "pool": pool_sha, "query": query_sha, "seed": self.seed, "index": index, "fraction": self.fraction}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]

    def _load(self, path: Path, rows: int) -> np.ndarray | None:
        from toolkit.io import load_npz

        if not path.is_file():
            return None
        try:
            probs = load_npz(path, keys=("probs",))["probs"]
        except DataError:
            return None  # unreadable cache entry: retrain and overwrite it
        if probs.shape != (rows, self.spec.n_classes) or not np.isfinite(probs).all():
            return None
        return probs

    def _save(self, path: Path, probs: np.ndarray) -> None:
        from toolkit.io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, probs=probs)

    # ------------------------------------------------------------------ query
    def query(self, x: np.ndarray, y: np.ndarray) -> ReferenceOutputs:
        """Outputs of every reference model on ``(x, y)`` and on the population, training what is not cached."""
        from toolkit.data import assert_disjoint, validate_arrays
        from toolkit.executors import Job, get_executor

        x, y = validate_arrays(x, y, "reference queries", self.spec.n_classes)
        if tuple(x.shape[1:]) != tuple(self.spec.input_shape):
            raise DataError(f"queried samples have shape {x.shape[1:]}, the model spec expects {self.spec.input_shape}")
        assert_disjoint(x, self.x_pop, "the audited points", "the population pool")
        n, m = len(y), len(self.y_pop)
        if self.online:
            pool_x, pool_y = np.concatenate([self.x_pop, x]), np.concatenate([self.y_pop, y])
        else:
            pool_x, pool_y = self.x_pop, self.y_pop
        pool_sha, query_sha = _sha(pool_x, pool_y), _sha(x, y)
        x_query = np.concatenate([x, self.x_pop])

        rows = [self._member_rows(i, len(pool_y)) for i in range(self.n_models)]
        probs: list[np.ndarray | None] = [None] * self.n_models
        paths: list[Path | None] = [None] * self.n_models
        jobs, todo = [], []
        for i in range(self.n_models):
            if self.cache_dir is not None:
                paths[i] = self.cache_dir / f"ref-{self._key(i, pool_sha, query_sha)}.npz"
                probs[i] = self._load(paths[i], n + m)
            if probs[i] is None:
                todo.append(i)
                jobs.append(Job("toolkit.models.references:train_and_predict",
                                {"spec": self.spec, "framework": self.framework, "recipe": self._recipe(i),
                                 "x_train": pool_x[rows[i]], "y_train": pool_y[rows[i]], "x_query": x_query},
                                key=f"reference-{i}"))
        if jobs:
            from toolkit.progress import track

            ex = get_executor(self.executor, workers=self.workers, threads_per_worker=self.threads_per_worker)
            # The bar advances per map: a sequential executor gets one job per map (same work, per-model
            # progress); a parallel one gets all jobs in one map, so its workers stay busy.
            batches = [[job] for job in jobs] if ex.name == "inprocess" else [jobs]
            try:
                results = [r for batch in track(batches, f"training {len(jobs)} reference model(s)")
                           for r in ex.map(batch)]
            finally:
                ex.close()
            for i, out in zip(todo, results):
                out = np.asarray(out, dtype=np.float32)
                if out.shape != (n + m, self.spec.n_classes):
                    raise ModelError(f"reference model {i} returned outputs of shape {out.shape}")
                probs[i] = out
                if paths[i] is not None:
                    self._save(paths[i], out)
        self.trained = len(jobs)

        in_pool = np.zeros((self.n_models, len(pool_y)), dtype=bool)
        for i, r in enumerate(rows):
            in_pool[i, r] = True
        # Pool layout: population first, then (online only) the queried points.
        pop_in = in_pool[:, :m]
        in_mask = in_pool[:, m:] if self.online else np.zeros((self.n_models, n), dtype=bool)
        stacked = np.stack(probs)
        return ReferenceOutputs(stacked[:, :n], in_mask, stacked[:, n:], pop_in)
