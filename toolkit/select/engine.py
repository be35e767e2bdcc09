"""The selection engine behind ``safecompress run CONFIG``.

data and split -> dense model per framework -> candidates (compression methods with parameter grids,
SafeCompress variants, baselines) -> export each candidate -> **safety test on the exported artifact
through its runtime** -> selection (TM-score or constrained) -> final audit of the winner with attacks not
used during selection -> ``report.json`` / ``report.html`` / ``summary.md``.

Run directory (``--out DIR``)::

    DIR/split.json                      membership split manifest (indices + hashes)
    DIR/dense/<framework>/              dense model weights + its exported artifact
    DIR/candidates/<name>/model.<fmt>   each candidate's artifact + sidecar (format, sha256, parity)
    DIR/final_audit/                    report.json, roc.png, risk.csv of the winner's audit
    DIR/report.json, report.html, summary.md
    DIR/.checkpoints/                   finished jobs (dense training, candidates), reused on rerun

The safety test follows SafeCompress (Sec. 4.3.2): one simulated ``nn`` attacker per framework is trained on
the *dense artifact's* outputs on the known member/non-member halves, then a copy is fine-tuned a few epochs
on each candidate artifact's outputs; MIA accuracy is its balanced accuracy on the unknown halves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ConfigError
from toolkit.select.config import CandidateSection, RunConfig

SCHEMA = "safecompress.run/1"
WEIGHTS_SUFFIX = {"torch": ".safetensors", "keras": ".weights.h5"}


# ----------------------------------------------------------------------------------------------- planning
def expand_candidates(config: RunConfig) -> list[tuple[str, CandidateSection, dict[str, Any]]]:
    """Every (name, section, params) of the config's candidate grids; names are unique."""
    out, seen = [], set()
    for section in config.candidates:
        keys = list(section.grid)
        for values in product(*(section.grid[k] for k in keys)) if keys else [()]:
            params = {**section.params, **dict(zip(keys, values))}
            suffix = "-".join(f"{k}{v}" for k, v in zip(keys, values))
            name = section.name or section.method
            if suffix:
                name = f"{name}-{suffix}"
            if name in seen:
                raise ConfigError(f"two candidates are named {name!r}: give one a distinct 'name'")
            seen.add(name)
            out.append((name, section, params))
    return out


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    from toolkit.executors.base import safe_name

    return safe_name(name)


# ----------------------------------------------------------------------------------------------- safety test
def _outputs(artifact: Path, data):
    """The artifact's probability vectors on the four membership halves, through its own runtime."""
    from device_tests import load_artifact

    runtime = load_artifact(artifact)
    return data.outputs(runtime.predict_proba)


def safety_test(attacker, outputs, seed: int) -> dict:
    """Fine-tune a copy of the simulated attacker on ``outputs`` and measure it (SafeCompress Stage 3)."""
    from toolkit.attacks.metrics import evaluate

    tuned = attacker.fine_tuned(outputs)
    kp, ky, km = outputs.attack_set(known=True)
    up, uy, um = outputs.attack_set(known=False)
    scores = np.concatenate([tuned.attack.score(kp, ky), tuned.attack.score(up, uy)])
    membership = np.concatenate([km, um])
    known = np.r_[np.ones(len(km), bool), np.zeros(len(um), bool)]
    row = evaluate(scores, membership, known, eval_mask=~known, seed=seed, n_bootstrap=50)
    return {"mia_accuracy": float(tuned.mia_accuracy(outputs)), "row": {"name": "nn", **row}}


# ----------------------------------------------------------------------------------------------- selection
def select(candidates: list[dict], dense: dict[str, dict], config: RunConfig) -> tuple[str | None, list[str]]:
    """``(winner name, reasons for infeasible candidates)`` by the configured objective."""
    sel = config.selection
    reasons = []
    feasible = []
    for c in candidates:
        base = dense[c["framework_in"]]["accuracy"]
        why = []
        if sel.max_accuracy_drop is not None and c["accuracy"] < base - sel.max_accuracy_drop:
            why.append(f"accuracy {c['accuracy']:.4f} < dense {base:.4f} - {sel.max_accuracy_drop}")
        if sel.max_bytes is not None and c["bytes"] > sel.max_bytes:
            why.append(f"{c['bytes']} bytes > {sel.max_bytes}")
        c["feasible"] = not why
        if why:
            reasons.append(f"{c['name']}: {'; '.join(why)}")
        else:
            feasible.append(c)
    if not feasible:
        return None, reasons
    best = max(feasible, key=_OBJECTIVES[sel.objective])
    return best["name"], reasons


#: objective -> sort key of a feasible candidate (higher is better; ties broken by accuracy, then size).
_OBJECTIVES = {
    "tm_score": lambda c: (c["tm_score"], c["accuracy"], -c["bytes"]),
    "constrained": lambda c: (-c["mia_accuracy"], c["accuracy"], -c["bytes"]),
}


# ----------------------------------------------------------------------------------------------- the run
def run(config: RunConfig, out_dir: str | Path, *, command: list[str] | None = None) -> dict:
    """Run the whole pipeline into ``out_dir`` and return the report dict (also written there).

    Rerunning the same command resumes: finished dense models and candidates are reused from
    ``out_dir/.checkpoints``.
    """
    from toolkit import progress
    from toolkit.attacks.metrics import choose_threshold  # noqa: F401  (fail early if attacks are broken)
    from toolkit.data.cli import resolve_dataset
    from toolkit.data import make_split
    from toolkit.executors import Job, get_executor
    from toolkit.frameworks import seed_everything
    from toolkit.io import atomic_write_json
    from toolkit.models import ModelSpec
    from toolkit.select.safecompress import MembershipData, SimulatedAttacker, tm_score
    from toolkit.select.sources import input_framework

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p in [*out.rglob(".tmp-*"), *out.rglob(".*.tmp")]:
        if p.is_file():  # temp files of atomic writes that a killed earlier run left behind; never read
            p.unlink(missing_ok=True)
    seed = config.seed
    seed_everything(seed)
    timings: dict[str, float] = {}

    # ---- data and split
    dataset = _load_dataset(config, resolve_dataset)
    d = config.data
    count = (lambda v: v if v is None or v < 1 else int(v))
    split = make_split(dataset, count(d.members), count(d.nonmembers), count(d.population), seed=seed)
    split.save(out / "split.json", dataset)
    data = MembershipData.from_split(dataset, split)

    # ---- plan: which dense frameworks the candidates need (fails fast on unknown methods / frameworks)
    plan = expand_candidates(config)
    needs = {name: input_framework(section.method, section.framework) for name, section, _ in plan}
    frameworks = sorted(set(needs.values()))
    spec_kw = {k: v for k, v in config.model.model_dump().items() if v is not None}
    spec = ModelSpec(input_shape=dataset.input_shape, n_classes=dataset.n_classes, **spec_kw)
    recipe = config.train.model_copy(update={"seed": seed})
    ex = config.executor
    threads = ex.threads_per_worker or 1
    executor = get_executor(ex.name, workers=ex.workers, threads_per_worker=threads, address=ex.address,
                            retries=ex.retries, checkpoint_dir=out / ".checkpoints")
    data_fp = _fingerprint(dataset.sha256, split.to_manifest()["manifest_sha256"])

    try:
        # ---- dense models (one per framework), then their artifacts
        t0 = time.perf_counter()
        members = data.members
        dense_jobs = [Job("toolkit.select.jobs:train_dense",
                          {"spec": spec.model_dump(mode="json"), "framework": fw,
                           "recipe": recipe.model_dump(mode="json"), "x": members.x, "y": members.y,
                           "threads": threads},
                          key=f"dense-{fw}-{_fingerprint(spec.model_dump(mode='json'), recipe.model_dump(mode='json'), data_fp, fw)}")
                      for fw in frameworks]
        dense_weights: dict[str, Path] = {}
        dense_info: dict[str, dict] = {}
        for fw, res in zip(frameworks, executor.map(dense_jobs)):
            target = out / "dense" / fw
            _install(res.files, target)
            dense_weights[fw] = target / res.value["weights"]
            dense_info[fw] = {"train_seconds": round(res.value["train_seconds"], 3)}
        timings["dense_training"] = time.perf_counter() - t0

        sample_x = members.x[:config.export.sample]
        export_jobs = [Job("toolkit.select.jobs:export_dense",
                           {"dense_weights": str(dense_weights[fw]), "fmt": getattr(config.export, fw), "mode": "float",
                            "sample_x": sample_x, "threads": threads},
                           key=f"dense-export-{fw}-{_fingerprint(dense_info[fw], str(dense_weights[fw]), getattr(config.export, fw), data_fp, spec.model_dump(mode='json'), recipe.model_dump(mode='json'))}")
                       for fw in frameworks]
        dense: dict[str, dict] = {}
        attackers: dict[str, Any] = {}
        for fw, res in zip(frameworks, executor.map(export_jobs)):
            target = out / "dense" / fw
            _install(res.files, target)
            artifact = target / res.value["artifact_file"]
            outputs = _outputs(artifact, data)
            attacker = SimulatedAttacker(dataset.n_classes, config.selection.attack_epochs,
                                         config.selection.attack_fine_tune_epochs, seed).fit(outputs)
            attackers[fw] = attacker
            test = safety_test(attacker, outputs, seed)
            acc = outputs.task_accuracy()
            dense[fw] = {"name": f"dense-{fw}", "framework": fw, "accuracy": acc,
                         "train_accuracy": _member_accuracy(outputs), "mia_accuracy": test["mia_accuracy"],
                         "tm_score": tm_score(acc, test["mia_accuracy"], config.selection.lam),
                         "bytes": res.value["export"]["bytes"], "gzip_bytes": res.value["export"]["gzip_bytes"],
                         "artifact": str(artifact.relative_to(out)), "format": res.value["export"]["format"],
                         "attacks": [test["row"]], "params": spec.model_dump(mode="json"), **dense_info[fw]}
        timings["dense_export_and_attacker"] = time.perf_counter() - t0 - timings["dense_training"]

        # ---- candidates: compress + export in jobs, safety test here on each artifact
        t1 = time.perf_counter()
        cand_jobs = []
        for name, section, params in plan:
            fw = needs[name]
            fmt = section.export or None
            key_parts = (name, section.method, params, section.export, section.export_mode, fw, data_fp,
                         spec.model_dump(mode="json"), recipe.model_dump(mode="json"), config.export.model_dump())
            cand_jobs.append(Job("toolkit.select.jobs:make_candidate", {
                "name": name, "source": section.method, "params": params, "dense_weights": str(dense_weights[fw]),
                "data": data, "recipe": recipe.model_dump(mode="json"), "fmt": fmt, "mode": section.export_mode,
                "sample": config.export.sample, "threads": threads,
                "default_formats": config.export.model_dump()}, key=f"candidate-{_fingerprint(*key_parts)}"))
        results = executor.map(cand_jobs)
        timings["candidates"] = time.perf_counter() - t1

        candidates = []
        for (name, section, params), res in progress.track(list(zip(plan, results)), "safety tests"):
            fw_in = needs[name]
            target = out / "candidates" / _safe(name)
            _install(res.files, target)
            rec = dict(res.value)
            artifact = target / rec.pop("artifact_file")
            outputs = _outputs(artifact, data)
            test = safety_test(attackers[fw_in], outputs, seed)
            acc = outputs.task_accuracy()
            export = rec.pop("export")
            candidates.append({
                **rec, "framework_in": fw_in, "accuracy": acc, "train_accuracy": _member_accuracy(outputs),
                "mia_accuracy": test["mia_accuracy"], "tm_score": tm_score(acc, test["mia_accuracy"], config.selection.lam),
                "bytes": export["bytes"], "gzip_bytes": export["gzip_bytes"], "format": export["format"],
                "mode": export.get("mode"), "sha256": export["sha256"], "parity": export.get("parity"),
                "artifact": str(artifact.relative_to(out)), "attacks": [test["row"]],
                "accuracy_drop": dense[fw_in]["accuracy"] - acc,
            })
        timings["safety_tests"] = time.perf_counter() - t1 - timings["candidates"]

        # ---- selection and Pareto front
        from toolkit.report.pareto import pareto_mask

        winner, infeasible = select(candidates, dense, config)
        for c, on in zip(candidates, pareto_mask(candidates)):
            c["pareto"] = bool(on)

        # ---- final audit of the winner with attacks the selection did not use
        final = None
        if winner is not None:
            t2 = time.perf_counter()
            chosen = next(c for c in candidates if c["name"] == winner)
            final = _final_audit(config, out, chosen, dense[chosen["framework_in"]], data, dataset, split, spec,
                                 recipe, seed)
            timings["final_audit"] = time.perf_counter() - t2
    finally:
        executor.close()

    timings["total"] = time.perf_counter() - t_start
    report = {
        "schema": SCHEMA,
        "seed": seed,
        "config": config.model_dump(mode="json"),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256, "n": len(dataset),
                    "input_shape": list(dataset.input_shape), "n_classes": dataset.n_classes},
        "split": {"manifest": "split.json", "sizes": split.sizes()},
        "objective": {"name": config.selection.objective, "lam": config.selection.lam,
                      "max_accuracy_drop": config.selection.max_accuracy_drop,
                      "max_bytes": config.selection.max_bytes, "safety_attack": "nn"},
        "dense": dense[frameworks[0]] if len(frameworks) == 1 else dense.get("torch") or dense[frameworks[0]],
        "dense_models": dense,
        "candidates": candidates,
        "selected": winner,
        "infeasible": infeasible,
        "final_audit": final,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    report["provenance"] = _provenance(command, seed)
    from toolkit.report import write_reports

    write_reports(report, out)
    atomic_write_json(out / "report.json", report)
    return report


# ----------------------------------------------------------------------------------------------- pieces
def _load_dataset(config: RunConfig, resolve):
    d = config.data
    if d.dataset in ("npz", "csv"):
        if not d.path:
            raise ConfigError(f"data.dataset {d.dataset!r} needs data.path")
        from toolkit.data import load_dataset

        ds = load_dataset(d.dataset, path=d.path)
        if d.limit:
            ds = ds.subset(np.arange(min(d.limit, len(ds))))
        return ds
    return resolve(d.dataset, d.limit)


def _member_accuracy(outputs) -> float:
    d = outputs.data
    probs = np.concatenate([outputs.probs["member_known"], outputs.probs["member_unknown"]])
    return float(np.mean(np.argmax(probs, axis=1) == d.members.y))


def _install(files: dict[str, Path], target: Path) -> None:
    """Copy a job's returned files into the run directory (atomically per file)."""
    from toolkit.io import atomic_path

    target.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        dest = target / name
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)


def _final_audit(config: RunConfig, out: Path, chosen: dict, dense: dict, data, dataset, split, spec, recipe,
                 seed: int) -> dict:
    from device_tests.leakage import audit

    attacks = list(config.final_audit.attacks)
    pool = None
    population = None
    if config.final_audit.reference_models:
        from toolkit.models.references import ReferencePool

        pop = split.take(dataset, "population")
        pool = ReferencePool(spec, recipe, (pop.x, pop.y), framework=chosen["framework_in"],
                             n_models=config.final_audit.reference_models, seed=seed,
                             cache_dir=out / ".checkpoints" / "references")
        for name in ("lira_offline", "rmia"):
            if name not in attacks:
                attacks.append(name)
    references = {dense["name"]: out / dense["artifact"]} if any(a.startswith("compleak") for a in attacks) else {}
    members, nonmembers = data.members, data.nonmembers
    report = audit(out / chosen["artifact"], (members.x, members.y), (nonmembers.x, nonmembers.y),
                   references=references, attacks=attacks, reference_pool=pool, population=population, seed=seed,
                   out_dir=out / "final_audit", n_bootstrap=config.final_audit.n_bootstrap)
    # Paths inside the nested report are made relative to the run directory: the report does not depend on
    # where the run directory lives (a moved or resumed run gives the same report).
    for entry in (report["artifact"], *report["references"]):
        if entry.get("path"):
            entry["path"] = str(Path(entry["path"]).resolve().relative_to(out.resolve()))
    report["files"] = {k: str(Path(v).resolve().relative_to(out.resolve())) for k, v in (report.get("files") or {}).items()}
    report["roc_png"] = "final_audit/roc.png"
    return report


def _provenance(command: list[str] | None, seed: int) -> dict:
    from toolkit.report.provenance import provenance

    return provenance(command, seed)
