"""Implementation of ``safecompress train``."""

from __future__ import annotations

import time
from pathlib import Path

from toolkit.data.cli import resolve_dataset, split_command
from toolkit.data import make_split
from toolkit.io import atomic_write_json
from toolkit.models import ModelSpec, TrainRecipe, accuracy, n_params, save_model, train_reference_model
from toolkit.frameworks import seed_everything


def train_command(dataset, arch, framework, epochs, overfit, members, limit, seed, out: Path) -> dict:
    from toolkit.models import FRAMEWORKS

    FRAMEWORKS.meta(framework)  # unknown framework -> one-line error before any work
    ds = resolve_dataset(dataset, limit)
    split = make_split(ds, members if members < 1 else int(members), seed=seed)
    out = Path(out)
    split.save(out / "split.json", ds)
    tr, te = split.take(ds, "members"), split.take(ds, "nonmembers")
    spec = ModelSpec(arch=arch, input_shape=ds.input_shape, n_classes=ds.n_classes)
    recipe = TrainRecipe(epochs=epochs, overfit=overfit, seed=seed)
    seed_everything(seed)
    t0 = time.perf_counter()
    model = train_reference_model(spec, framework, tr.x, tr.y, recipe)
    seconds = time.perf_counter() - t0
    weights = save_model(model, spec, out, "model")
    metrics = {
        "dataset": ds.name, "dataset_sha256": ds.sha256, "framework": framework, "spec": spec.model_dump(mode="json"),
        "recipe": recipe.model_dump(mode="json"), "params": n_params(model),
        "train_accuracy": accuracy(model, tr.x, tr.y), "test_accuracy": accuracy(model, te.x, te.y),
        "train_seconds": round(seconds, 3), "weights": str(weights), "split": str(out / "split.json"),
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
