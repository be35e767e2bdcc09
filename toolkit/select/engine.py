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
    DIR/.checkpoints/references/        cached reference-model outputs (ref-<hash>.npz + .mac seal)
    DIR/.safecompress-run               marker: this directory is a safecompress run directory

The run directory is ours alone, and only our layout in it: a non-empty directory without the marker is
refused unless ``--force`` (then the marker is written and other files are left as they are); on start the
run removes only the temporary files of its *own* interrupted atomic writes, by exact name pattern, in the
directories of this layout (never recursively, never elsewhere). Config and data are validated before the
directory is touched. Checkpoints are verified on resume (:mod:`toolkit.executors.store`: digests and a
keyed MAC); every sha256 the report records is computed from the file as installed in the run directory.

The safety test follows SafeCompress (Sec. 4.3.2): one simulated ``nn`` attacker per framework is trained on
the *dense artifact's* outputs on the known member/non-member halves, then a copy is fine-tuned a few epochs
on each candidate artifact's outputs; MIA accuracy is its balanced accuracy on the unknown halves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ConfigError
from toolkit.select.config import CandidateSection, RunConfig

SCHEMA = "safecompress.run/1"
WEIGHTS_SUFFIX = {"torch": ".safetensors", "keras": ".weights.h5"}

#: The file that makes a directory a safecompress run directory (written when the run claims it).
RUN_MARKER = ".safecompress-run"
MARKER_SCHEMA = "safecompress.rundir/1"

#: Where the run writes files atomically (relative glob of the directory -> regex of the final names it
#: writes there). Only temporary files of *these* names, in *these* directories, are removed on start.
_OWN_FILES = {
    ".": r"split\.json|report\.json|report\.html|summary\.md|" + re.escape(RUN_MARKER),
    "dense/*": r"model\.[A-Za-z0-9_.]+",
    "candidates/*": r"model\.[A-Za-z0-9_.]+",
    "final_audit": r"report\.json|roc\.png|risk\.csv",
    ".checkpoints/references": r"ref-[0-9a-f]{32}\.npz(?:\.mac)?",
}
#: The temporary names toolkit.io gives a target NAME: ``atomic_write_bytes`` -> ``.NAME.XXXXXXXX.tmp``,
#: ``atomic_path`` -> ``.tmp-XXXXXXXX-NAME`` (tempfile.mkstemp adds 8 characters of [a-z0-9_]).
_TEMP_OF = r"\.tmp-[a-z0-9_]{{8}}-(?:{0})|\.(?:{0})\.[a-z0-9_]{{8}}\.tmp"


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
def run(config: RunConfig, out_dir: str | Path, *, command: list[str] | None = None, force: bool = False) -> dict:
    """Run the whole pipeline into ``out_dir`` and return the report dict (also written there).

    Rerunning the same command resumes: finished dense models and candidates are reused from
    ``out_dir/.checkpoints`` once verified. ``out_dir`` must be new, empty or a run directory (its marker
    file), else :class:`ConfigError` -- unless ``force``. It is created and marked only after the config and
    data have been validated.
    """
    out = Path(out_dir)
    check_out_dir(out, force)  # before anything slow: a wrong --out fails at once
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
    seed = config.seed
    seed_everything(seed)
    timings: dict[str, float] = {}

    # ---- data and split
    dataset = _load_dataset(config, resolve_dataset)
    d = config.data
    count = (lambda v: v if v is None or v < 1 else int(v))
    split = make_split(dataset, count(d.members), count(d.nonmembers), count(d.population), seed=seed)
    data = MembershipData.from_split(dataset, split)

    # ---- plan: which dense frameworks the candidates need (fails fast on unknown methods / frameworks)
    plan = expand_candidates(config)
    needs = {name: input_framework(section.method, section.framework) for name, section, _ in plan}
    frameworks = sorted(set(needs.values()))
    spec_kw = {k: v for k, v in config.model.model_dump().items() if v is not None}
    spec = ModelSpec(input_shape=dataset.input_shape, n_classes=dataset.n_classes, **spec_kw)
    recipe = config.train.model_copy(update={"seed": seed})

    # ---- everything validated: only now is the directory created, marked and tidied
    claim_run_dir(out, force)
    split.save(out / "split.json", dataset)
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
        dense_sha: dict[str, str] = {}
        for fw, res in zip(frameworks, executor.map(dense_jobs)):
            target = out / "dense" / fw
            dense_sha[fw] = _install(res, target)[res.value["weights"]]
            dense_weights[fw] = target / res.value["weights"]
            dense_info[fw] = {"train_seconds": round(res.value["train_seconds"], 3)}
        timings["dense_training"] = time.perf_counter() - t0

        sample_x = members.x[:config.export.sample]
        export_jobs = [Job("toolkit.select.jobs:export_dense",
                           {"dense_weights": str(dense_weights[fw]), "fmt": getattr(config.export, fw), "mode": "float",
                            "sample_x": sample_x, "threads": threads},
                           # Keyed by the weights' content, not by when or how fast they were trained: a
                           # recomputed (identical) dense model finds its export's entry again.
                           key=f"dense-export-{fw}-{_fingerprint(dense_sha[fw], str(dense_weights[fw]), getattr(config.export, fw), data_fp, spec.model_dump(mode='json'), recipe.model_dump(mode='json'))}")
                       for fw in frameworks]
        dense: dict[str, dict] = {}
        attackers: dict[str, Any] = {}
        for fw, res in zip(frameworks, executor.map(export_jobs)):
            target = out / "dense" / fw
            shipped = _install(res, target)
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
                         "bytes": artifact.stat().st_size, "gzip_bytes": res.value["export"]["gzip_bytes"],
                         "sha256": shipped[artifact.name],
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
            shipped = _install(res, target)
            rec = dict(res.value)
            artifact = target / rec.pop("artifact_file")
            outputs = _outputs(artifact, data)
            test = safety_test(attackers[fw_in], outputs, seed)
            acc = outputs.task_accuracy()
            export = rec.pop("export")
            candidates.append({
                **rec, "framework_in": fw_in, "accuracy": acc, "train_accuracy": _member_accuracy(outputs),
                "mia_accuracy": test["mia_accuracy"], "tm_score": tm_score(acc, test["mia_accuracy"], config.selection.lam),
                # Size and digest of the file that ships, not the job's record of what it wrote.
                "bytes": artifact.stat().st_size, "gzip_bytes": export["gzip_bytes"], "format": export["format"],
                "mode": export.get("mode"), "sha256": shipped[artifact.name], "parity": export.get("parity"),
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


def _install(res, target: Path) -> dict[str, str]:
    """Copy a job's returned files (a :class:`~toolkit.executors.JobResult`) into the run directory,
    atomically per file, and return ``name -> sha256`` of each file as installed.

    Each copy is hashed while it is written and must equal the digest the job's result was verified against
    (:class:`ExecutorError` otherwise, nothing installed under that name): what ships is exactly what was
    verified, even if the checkpoint file is swapped after its verification.
    """
    from toolkit.executors import ExecutorError
    from toolkit.executors.store import open_regular
    from toolkit.io import atomic_path

    target.mkdir(parents=True, exist_ok=True)
    shipped = {}
    for name, src in res.files.items():
        h = hashlib.sha256()
        with open_regular(src) as fin, atomic_path(target / name) as tmp, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                h.update(chunk)
                fout.write(chunk)
            if h.hexdigest() != res.sha256.get(name):
                raise ExecutorError(f"file {name} of a job's result changed after it was verified (sha256 "
                                    f"{h.hexdigest()[:16]}...); rerun to recompute it")
        shipped[name] = h.hexdigest()
    return shipped


# ----------------------------------------------------------------------------------------------- run directory
def check_out_dir(out: Path, force: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``out`` may hold this run: absent, an empty directory, a run
    directory (valid marker), or -- with ``force`` -- any directory. Reads only; creates nothing."""
    if not os.path.lexists(out):
        return
    try:
        st = out.stat()  # follows a symlink: a link to a directory is a fine place for a run
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be used: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"--out {out} exists and is not a directory; give a new or empty directory for the run")
    if force or _is_run_dir(out):
        return
    try:
        empty = next(os.scandir(out), None) is None
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be read: {exc.strerror or exc}") from None
    if not empty:
        raise ConfigError(f"--out {out} is a non-empty directory that is not a safecompress run directory (no "
                          f"{RUN_MARKER}); use a new or empty directory, or pass --force to write the run's files "
                          "into it (nothing else there is touched)")


def _is_run_dir(out: Path) -> bool:
    """Whether ``out`` holds a valid run marker (a small regular file naming our schema)."""
    marker = out / RUN_MARKER
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode) or marker.stat().st_size > 4096:
            return False
        return json.loads(marker.read_text(encoding="utf-8")).get("schema") == MARKER_SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def claim_run_dir(out: Path, force: bool = False) -> None:
    """Create and mark ``out`` (after :func:`check_out_dir` passes again: it may have changed meanwhile),
    then remove what interrupted earlier runs left of their own atomic writes."""
    from toolkit.io import atomic_write_json

    check_out_dir(out, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {out}: {exc.strerror or exc}") from None
    if not _is_run_dir(out):
        atomic_write_json(out / RUN_MARKER, {"schema": MARKER_SCHEMA,
                                             "note": "written by `safecompress run`; see configs/README.md"})
    _remove_own_leftovers(out)


def _remove_own_leftovers(out: Path) -> None:
    """Delete temporary files of the run's own interrupted atomic writes: regular files whose exact name is
    a temporary name of a file the run writes in that directory (:data:`_OWN_FILES`). Nothing is recursed
    into, no symlink is followed, no directory outside the layout is looked at."""
    for where, names in _OWN_FILES.items():
        pattern = re.compile(_TEMP_OF.format(names))
        for d in _own_dirs(out, where):
            with os.scandir(d) as entries:
                for e in entries:
                    # Leftovers were never renamed into place, so nothing reads them; only tidiness is lost.
                    if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                        Path(e.path).unlink(missing_ok=True)


def _own_dirs(out: Path, where: str) -> list[Path]:
    """The real (non-symlink) directories of the layout matching ``where`` (``"."``, ``"a/b"`` or ``"a/*"``)."""
    def real_dir(p: Path) -> bool:
        return p.is_dir() and not p.is_symlink()

    if where == ".":
        return [out]
    parent, _, last = where.rpartition("/")
    base = out / parent if parent else out
    if last != "*":
        return [base / last] if real_dir(base) and real_dir(base / last) else []
    if not real_dir(base):
        return []
    return sorted(p for p in base.iterdir() if real_dir(p))


# ----------------------------------------------------------------------------------------------- reference cache
def _drop_unsealed_references(cache: Path) -> None:
    """Before the reference pool reads its cache: delete every cached output without a valid seal (and say
    so), so the pool recomputes it. The pool writes the cache itself; :func:`_seal_references` seals what it
    wrote once the audit is done (an output left by a run killed before that is recomputed once)."""
    from toolkit.executors.store import seal_matches, warn

    if not (cache.is_dir() and not cache.is_symlink()):
        return
    for p in sorted(cache.glob("ref-*.npz")):
        if not re.fullmatch(r"ref-[0-9a-f]{32}\.npz", p.name):
            continue
        mac_path = p.with_name(p.name + ".mac")
        try:
            ok = (stat.S_ISREG(os.lstat(p).st_mode) and stat.S_ISREG(os.lstat(mac_path).st_mode)
                  and seal_matches(p.read_bytes(), f"reference:{p.name}", mac_path.read_text(encoding="ascii")))
        except (OSError, ValueError):
            ok = False
        if not ok:
            warn(f"cached reference outputs {p} have no valid seal (modified, written under another checkpoint "
                 "key, or left by an interrupted run); not used, recomputing them")
            p.unlink(missing_ok=True)
            mac_path.unlink(missing_ok=True)


def _seal_references(cache: Path) -> None:
    """Seal every cached reference output that has no valid seal yet (those this run's pool just wrote)."""
    from toolkit.executors.store import seal, seal_matches
    from toolkit.io import atomic_write_text

    if not (cache.is_dir() and not cache.is_symlink()):
        return
    for p in sorted(cache.glob("ref-*.npz")):
        if not re.fullmatch(r"ref-[0-9a-f]{32}\.npz", p.name) or not stat.S_ISREG(os.lstat(p).st_mode):
            continue
        data = p.read_bytes()
        mac_path = p.with_name(p.name + ".mac")
        try:
            if seal_matches(data, f"reference:{p.name}", mac_path.read_text(encoding="ascii")):
                continue
        except (OSError, ValueError):
            pass
        atomic_write_text(mac_path, seal(data, f"reference:{p.name}") + "\n")


def _final_audit(config: RunConfig, out: Path, chosen: dict, dense: dict, data, dataset, split, spec, recipe,
                 seed: int) -> dict:
    from device_tests.leakage import audit

    attacks = list(config.final_audit.attacks)
    pool = None
    population = None
    if config.final_audit.reference_models:
        from toolkit.models.references import ReferencePool

        pop = split.take(dataset, "population")
        cache = out / ".checkpoints" / "references"
        _drop_unsealed_references(cache)
        pool = ReferencePool(spec, recipe, (pop.x, pop.y), framework=chosen["framework_in"],
                             n_models=config.final_audit.reference_models, seed=seed, cache_dir=cache)
        for name in ("lira_offline", "rmia"):
            if name not in attacks:
                attacks.append(name)
    references = {dense["name"]: out / dense["artifact"]} if any(a.startswith("compleak") for a in attacks) else {}
    members, nonmembers = data.members, data.nonmembers
    report = audit(out / chosen["artifact"], (members.x, members.y), (nonmembers.x, nonmembers.y),
                   references=references, attacks=attacks, reference_pool=pool, population=population, seed=seed,
                   out_dir=out / "final_audit", n_bootstrap=config.final_audit.n_bootstrap)
    if pool is not None:
        _seal_references(out / ".checkpoints" / "references")
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
