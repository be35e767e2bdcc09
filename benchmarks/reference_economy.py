"""``reference_economy``: RMIA with 2 reference models vs offline LiRA (global variance) with 16, same target and
queries.

Setting (as ``benchmarks/attacks_repro.py``): Fashion-MNIST, the torch MLP trained with the overfit recipe
(``TrainRecipe(overfit=True)``: 100 epochs of SGD) on 1,000 members, exported to ``.onnx`` and audited through
``device_tests.leakage.audit`` on the 1,000 members + 2,000 non-members (2,000 non-members put 2 false positives
under TPR at 0.1% FPR instead of 1). Reference models: offline ``ReferencePool`` s on a disjoint population of
3,000, each model on as many samples as the target (fraction 1/3), the target's recipe; the 2-model pool and the
16-model pool are trained separately (own caches), so each wall time is its own training. LiRA is the **offline**
variant with **global** variance (``lira_offline``): the paper's recommendation below ~64 models and the variant
that uses the same out-model design as offline RMIA (``rmia``). Quick: 300 members, 1,000 non-members, 1,500
population, 10 epochs.

Figures: TPR@0.1%FPR of RMIA(2) / LiRA(16) (goal >= 1), AUC ratio (reported), reference-training wall time
2 models / 16 models (goal <= 1/8). Training times are one measurement each (minutes of work, not best of 3).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import fashion_split, figure, pin_torch_threads, quiet_warnings, threads


def _row(a: dict) -> dict:
    return {"auc": round(a["auc"], 4), "tpr@0.1%": round(a["tpr_at_fpr"]["0.001"], 4),
            "tpr@1%": round(a["tpr_at_fpr"]["0.01"], 4), "auc_ci95": [round(v, 4) for v in a["ci95"]["auc"]],
            "tpr@0.1%_ci95": [round(v, 4) for v in a["ci95"]["tpr_at_fpr"]["0.001"]],
            "n": [a["n_members"], a["n_nonmembers"]], "under_resolved": a["under_resolved"],
            "details": {k: v for k, v in a["details"].items() if k != "a_auc"}}


def run(quick: bool = False, log=print) -> dict:
    quiet_warnings()
    from device_tests.leakage import audit
    from exporters import export
    from toolkit.models import ModelSpec, TrainRecipe, train_reference_model
    from toolkit.models.references import ReferencePool

    members, nonmembers, population, epochs, limit = (300, 1000, 1500, 10, 5000) if quick else (1000, 2000, 3000, 100, None)
    pin_torch_threads()
    ds, parts = fashion_split(members, nonmembers, population, seed=0, limit=limit)
    mem, non, pop = parts["members"], parts["nonmembers"], parts["population"]
    spec = ModelSpec(arch="mlp", input_shape=ds.input_shape, n_classes=ds.n_classes)
    recipe = TrainRecipe(overfit=True, overfit_epochs=epochs, seed=0)
    t = time.perf_counter()
    target = train_reference_model(spec, "torch", mem.x, mem.y, recipe)
    target_s = time.perf_counter() - t
    x, y = np.concatenate([mem.x, non.x]), np.concatenate([mem.y, non.y])
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="sc-bench-refs-") as tmp:
        path = export(target, "onnx", Path(tmp) / "target.onnx", non.x[:200]).path
        for n_models, attack in ((2, "rmia"), (16, "lira_offline")):
            pool = ReferencePool(spec, recipe, (pop.x, pop.y), framework="torch", n_models=n_models,
                                 fraction=members / population, seed=0, cache_dir=Path(tmp) / f"cache{n_models}")
            t = time.perf_counter()
            pool.query(x, y)  # trains the pool (and caches its outputs for the audit below)
            seconds[n_models] = time.perf_counter() - t
            rep = audit(path, (mem.x, mem.y), (non.x, non.y), reference_pool=pool, attacks=[attack], seed=0)
            results[attack] = _row(rep["attacks"][0])
            log(f"reference_economy {attack} ({n_models} refs): training {seconds[n_models]:.1f}s, "
                f"AUC {results[attack]['auc']}, TPR@0.1% {results[attack]['tpr@0.1%']}")
    rmia, lira = results["rmia"], results["lira_offline"]
    tpr_ratio = rmia["tpr@0.1%"] / lira["tpr@0.1%"] if lira["tpr@0.1%"] > 0 else None
    time_ratio = seconds[2] / seconds[16]
    per_model = (seconds[16] - seconds[2]) / 14  # the slope of wall time in the model count
    fixed = seconds[2] - 2 * per_model  # intercept: per-pool work (hashing, set-up); noise can make it negative
    figures = [
        figure("TPR@0.1%FPR rmia(2)/lira_offline(16)", tpr_ratio, ">= 1",
               f"RMIA(2) TPR@0.1% {rmia['tpr@0.1%']} (CI {rmia['tpr@0.1%_ci95']}) vs offline LiRA(16) "
               f"{lira['tpr@0.1%']} (CI {lira['tpr@0.1%_ci95']}) on {nonmembers} non-members",
               note=None if tpr_ratio is not None else f"LiRA TPR@0.1% is 0 (RMIA {rmia['tpr@0.1%']})"),
        figure("AUC rmia(2)/lira_offline(16)", rmia["auc"] / lira["auc"], None,
               note=f"AUC {rmia['auc']} vs {lira['auc']}"),
        figure("ref. training time 2/16 models", time_ratio, "<= 1/8",
               f"2 models {seconds[2]:.1f}s vs 16 models {seconds[16]:.1f}s: training is linear in the model count "
               f"({per_model:.2f}s per model) with an intercept of {fixed:.2f}s per pool (content hashes of pool and "
               "queries, disjointness check, executor set-up: work that 2 models pay as much as 16), so 2/16 sits "
               "at or just above 1/8; shared-machine noise decides the side of the line"),
    ]
    return {"figures": figures,
            "details": {"setting": {"data": "fashion_mnist", "arch": "mlp", "members": members, "nonmembers": nonmembers,
                                    "population": population, "recipe": recipe.model_dump(mode="json"),
                                    "lira": "offline, global variance (lira_offline)", "rmia": "offline (rmia)",
                                    "reference_fraction": members / population, "threads": threads(),
                                    "artifact": "onnx"},
                        "target_train_s": round(target_s, 2),
                        "reference_train_s": {str(k): round(v, 2) for k, v in seconds.items()},
                        "per_model_s": round(per_model, 3), "fixed_per_pool_s": round(fixed, 3),
                        "attacks": results}}
