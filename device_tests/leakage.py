"""The leakage audit: query a black box on members and non-members, run membership attacks, report.

``audit(target, members=(x, y), nonmembers=(x, y), ...)`` where ``target`` and every ``references`` entry is a
path to an artifact (opened with :func:`device_tests.load_artifact`) or anything with ``predict_proba(x)``
returning probability vectors. Attacks see only what a device user sees: output vectors for chosen inputs,
plus labels (and, for LiRA/RMIA/shadow, reference models the auditor trains itself).

Order of work, cheapest checks first: attack names and their needs; data hygiene (NaN/inf, shapes, labels,
member/non-member overlap by content hash, population overlap); then batched queries (the output matrices are
filled batch by batch, members and non-members separately: without reference models nothing larger than one
batch of inputs is materialized beyond the arrays given);
then reference models (cached), attacks and metrics. With ``out_dir`` it writes ``report.json``, ``roc.png``
(log-log ROC per attack, as in the LiRA paper) and ``risk.csv`` (per-sample scores), each atomically.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ArtifactError, AttackError, DataError

SCHEMA = "safecompress.audit/1"
BATCH = 512


# --------------------------------------------------------------------------- models and data
def _describe(obj: Any, path: Path | None) -> dict:
    from toolkit.io import sha256_file

    info = {"path": str(path) if path else getattr(obj, "path", None) and str(obj.path),
            "format": getattr(obj, "format", None), "sha256": None, "bytes": None}
    p = Path(info["path"]) if info["path"] else None
    if p is not None and p.is_file():
        info["sha256"] = sha256_file(p)
        info["bytes"] = p.stat().st_size
    if info["format"] is None:
        info["format"] = type(obj).__name__
    return info


def open_model(obj: Any, what: str) -> tuple[Any, dict]:
    """``(model with predict_proba, description)`` from a path (loaded as an artifact) or a model object."""
    if isinstance(obj, (str, Path)):
        from toolkit.io import check_input_file

        path = check_input_file(obj, f"{what} artifact", ArtifactError)
        from device_tests import load_artifact

        runtime = load_artifact(path)
        return runtime, _describe(runtime, path)
    if not callable(getattr(obj, "predict_proba", None)):
        raise ArtifactError(f"{what} must be an artifact path or have a predict_proba(x) method, "
                            f"got {type(obj).__name__}")
    return obj, _describe(obj, None)


def _arrays(pair: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.data import validate_arrays

    try:
        x, y = pair
    except (TypeError, ValueError):
        raise DataError(f"{what} must be an (x, y) pair of arrays") from None
    return validate_arrays(x, y, what)


def query(model: Any, x: np.ndarray, what: str, n_classes: int | None = None, batch_size: int = BATCH) -> np.ndarray:
    """``model.predict_proba`` over ``x`` in batches into one ``(n, C)`` float32 array, validating every batch."""
    from toolkit.progress import track

    out: np.ndarray | None = None
    for start in track(range(0, len(x), batch_size), f"querying {what}"):
        chunk = np.asarray(model.predict_proba(x[start:start + batch_size]))
        b = min(batch_size, len(x) - start)
        if chunk.ndim != 2 or chunk.shape[0] != b:
            raise ArtifactError(f"{what}: predict_proba returned shape {chunk.shape} for a batch of {b} samples")
        if out is None:
            c = chunk.shape[1]
            if c < 2 or (n_classes is not None and c != n_classes):
                raise ArtifactError(f"{what}: returns {c} outputs per sample, expected {n_classes or '>= 2'}")
            out = np.empty((len(x), c), dtype=np.float32)
        elif chunk.shape[1] != out.shape[1]:
            raise ArtifactError(f"{what}: output width changed from {out.shape[1]} to {chunk.shape[1]}")
        if not np.isfinite(chunk).all():
            raise ArtifactError(f"{what}: returned NaN or inf for {int((~np.isfinite(chunk)).any(axis=1).sum())} sample(s)")
        sums = chunk.sum(axis=1)
        if (chunk < -1e-6).any() or (np.abs(sums - 1.0) > 0.05).any():
            raise ArtifactError(f"{what}: outputs are not probability vectors (row sums {sums.min():.3g}..{sums.max():.3g}, "
                                f"min {chunk.min():.3g}); predict_proba must return probabilities")
        out[start:start + b] = np.clip(chunk, 0.0, None)
    if out is None:
        raise DataError(f"{what}: nothing to query")
    return out


# --------------------------------------------------------------------------- the audit
def audit(target: Any, members: tuple[np.ndarray, np.ndarray], nonmembers: tuple[np.ndarray, np.ndarray], *,
          references: Sequence[Any] | Mapping[str, Any] = (), attacks: str | Sequence[str] | None = None, reference_pool=None,
          population: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0, out_dir: str | Path | None = None,
          original_first: bool = True, population_z: int = 2000, n_bootstrap: int = 200,
          attack_options: dict[str, dict] | None = None, batch_size: int = BATCH) -> dict:
    """Run membership attacks against ``target`` and return the report dict (see ``docs/attacks.md``).

    ``references``: other versions of the model (a sequence, or a mapping name -> model to name them in the
    report), the first being the uncompressed original when ``original_first`` (CompLeak SR uses it; MR uses
    all). ``reference_pool``: a
    :class:`~toolkit.models.references.ReferencePool` for shadow/LiRA/RMIA. ``population``: samples z for RMIA
    and shadow training; default a seeded subset of ``population_z`` of the pool's own population (on which
    the references' in/out membership is known). ``attacks``: names or "a,b"; default
    :func:`toolkit.attacks.default_attacks`. ``attack_options``: per-attack keyword overrides.
    """
    from toolkit.attacks import (ATTACKS, AttackInput, check_needs, default_attacks, known_mask, parse_attack_names,
                                 run_attack)
    from toolkit.attacks.metrics import evaluate
    from toolkit.data import assert_disjoint, content_sha256

    t_start = time.perf_counter()
    names = parse_attack_names(attacks) or default_attacks(len(references), reference_pool is not None,
                                                           online=bool(getattr(reference_pool, "online", False)))
    available = set()
    if len(references) >= 1:
        available.add("versions")
    if len(references) >= 2:
        available.add("versions2")
    if reference_pool is not None:
        available |= {"references", "population"} | ({"references_in"} if reference_pool.online else set())
    check_needs(names, available)
    if population is not None and reference_pool is None:
        raise AttackError("population samples are used with reference models only: pass reference_pool= as well")

    xm, ym = _arrays(members, "members")
    xn, yn = _arrays(nonmembers, "non-members")
    if xm.shape[1:] != xn.shape[1:]:
        raise DataError(f"members have sample shape {xm.shape[1:]} but non-members {xn.shape[1:]}")
    assert_disjoint(xm, xn, "members", "non-members")
    # Members and non-members are queried separately: no concatenated copy of the inputs (audit memory grows
    # with the outputs, not with a second copy of the data).
    y = np.concatenate([ym, yn])
    membership = np.concatenate([np.ones(len(ym), bool), np.zeros(len(yn), bool)])
    if population is not None:
        xp, yp = _arrays(population, "population")
        if xp.shape[1:] != xm.shape[1:]:
            raise DataError(f"population samples have shape {xp.shape[1:]}, the audited ones {xm.shape[1:]}")
        for part in (xm, xn):
            assert_disjoint(part, xp, "the audited points", "the population")

    if isinstance(references, Mapping):
        ref_names, references = [str(k) for k in references], list(references.values())
    else:
        references = list(references)
        ref_names = [Path(r).name if isinstance(r, (str, Path)) else ("original" if i == 0 and original_first
                                                                     else f"version{i}")
                     for i, r in enumerate(references)]
    if len(set(ref_names)) != len(ref_names) or "target" in ref_names:
        ref_names = [f"{n}#{i}" for i, n in enumerate(ref_names)]
    target_model, target_info = open_model(target, "target")
    ref_models = [open_model(r, f"reference {n}") for n, r in zip(ref_names, references)]
    n_classes = getattr(target_model, "n_classes", None)
    n_classes = int(n_classes) if isinstance(n_classes, (int, np.integer)) else None
    if n_classes is not None and y.max() >= n_classes:
        raise DataError(f"label {int(y.max())} is outside the model's {n_classes} classes (0..{n_classes - 1})")
    _check_input_shape(target_model, xm, "target")

    def query_all(model, what, classes):
        first = query(model, xm, what, classes, batch_size)
        return np.concatenate([first, query(model, xn, what, first.shape[1], batch_size)])

    t_query = time.perf_counter()
    probs = query_all(target_model, "target", n_classes)
    n_classes = probs.shape[1]
    if y.max() >= n_classes:
        raise DataError(f"label {int(y.max())} is outside the model's {n_classes} classes (0..{n_classes - 1})")
    versions = None
    if ref_models:
        for n, (m, _) in zip(ref_names, ref_models):
            _check_input_shape(m, xm, f"reference {n}")
        versions = np.stack([query_all(m, f"reference {n}", n_classes) for n, (m, _) in zip(ref_names, ref_models)])
    query_seconds = time.perf_counter() - t_query

    fields: dict[str, Any] = {}
    t_ref = time.perf_counter()
    if reference_pool is not None:  # reference models train and query on the audited points as one set
        fields = _reference_fields(reference_pool, target_model, np.concatenate([xm, xn]), y, population,
                                   population_z, seed, n_classes, batch_size)
    ref_seconds = time.perf_counter() - t_ref

    known = known_mask(membership, seed)
    inp = AttackInput(probs, y, membership, known, versions=versions, original_first=original_first,
                      version_names=tuple(ref_names), seed=seed, **fields)

    attack_options = attack_options or {}
    rows, results = [], []
    for name in names:
        t0 = time.perf_counter()
        res = run_attack(name, inp, **attack_options.get(name, {}))
        ev = evaluate(res.scores, membership, known, res.eval_mask, seed=seed, n_bootstrap=n_bootstrap)
        rows.append({"name": name, "kind": "learned" if res.learned else "score",
                     "evaluated_on": "unknown half" if res.learned else "all", **ev,
                     "needs": list(ATTACKS.meta(name)["needs"]), "details": res.details,
                     "seconds": round(time.perf_counter() - t0, 3)})
        results.append(res)

    pred = np.argmax(probs, axis=1) == y
    report = {
        "schema": SCHEMA,
        "artifact": target_info,
        "references": [dict(info, name=name, role="original" if i == 0 and original_first else "version")
                       for i, ((_, info), name) in enumerate(zip(ref_models, ref_names))],
        "accuracy": {"members": float(pred[membership].mean()), "nonmembers": float(pred[~membership].mean())},
        "data": {"n_members": int(len(ym)), "n_nonmembers": int(len(yn)), "n_classes": int(n_classes),
                 "known_members": int((known & membership).sum()), "known_nonmembers": int((known & ~membership).sum()),
                 "members_sha256": content_sha256(xm, ym), "nonmembers_sha256": content_sha256(xn, yn)},
        "seed": int(seed),
        "reference_models": reference_pool.describe() if reference_pool is not None else None,
        "attacks": rows,
        "summary": _summary(rows),
        "seconds": {"query": round(query_seconds, 3), "references": round(ref_seconds, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
    }
    if out_dir is not None:
        report["files"] = write_outputs(report, results, inp, Path(out_dir))
    return report


def _check_input_shape(model: Any, x: np.ndarray, what: str) -> None:
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, (tuple, list)) or not shape:
        return
    want = tuple(shape)[1:] if len(shape) == x.ndim else tuple(shape)
    got = x.shape[1:]
    if len(want) != len(got) or any(w not in (None, -1) and int(w) != g for w, g in zip(want, got)):
        raise DataError(f"samples have shape {got} but the {what} expects {want}")


def _reference_fields(pool, target_model, x, y, population, population_z, seed, n_classes, batch_size) -> dict:
    """AttackInput fields from the reference pool: outputs on the audited points and on population samples z."""
    n = len(y)
    if population is None:
        out = pool.query(x, y)
        xp, yp = pool.population
        m = len(yp)
        pick = np.sort(np.random.default_rng([seed, 0x5A]).permutation(m)[:min(population_z, m)])
        z_x, z_y = xp[pick], yp[pick]
        z_probs, z_in = out.pop_probs[:, pick], out.pop_in[:, pick]
        ref_probs, ref_in = out.probs, out.in_mask
    else:
        z_x, z_y = _arrays(population, "population")
        out = pool.query(np.concatenate([x, z_x]), np.concatenate([y, z_y]))
        ref_probs, ref_in = out.probs[:, :n], out.in_mask[:, :n]
        z_probs, z_in = out.probs[:, n:], out.in_mask[:, n:]
    if ref_probs.shape[-1] != n_classes:
        raise AttackError(f"reference models have {ref_probs.shape[-1]} outputs, the target {n_classes}")
    pop_probs = query(target_model, z_x, "target (population)", n_classes, batch_size)
    return {"ref_probs": ref_probs, "ref_in": ref_in, "pop_probs": pop_probs, "pop_labels": z_y,
            "pop_ref_probs": z_probs, "pop_ref_in": z_in}


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    best_auc = max(rows, key=lambda r: r["auc"])
    best_tpr = max(rows, key=lambda r: r["tpr_at_fpr"]["0.001"])
    best_bacc = max(rows, key=lambda r: r["balanced_accuracy"])
    return {"max_auc": {"attack": best_auc["name"], "value": best_auc["auc"]},
            "max_tpr_at_0.001": {"attack": best_tpr["name"], "value": best_tpr["tpr_at_fpr"]["0.001"],
                                 "under_resolved": best_tpr["under_resolved"]},
            "max_balanced_accuracy": {"attack": best_bacc["name"], "value": best_bacc["balanced_accuracy"]}}


# --------------------------------------------------------------------------- outputs
def write_outputs(report: dict, results: list, inp, out_dir: Path) -> dict:
    """Write report.json, roc.png and risk.csv atomically under ``out_dir``; return their paths."""
    from toolkit.io import atomic_write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"report": str(out_dir / "report.json"), "roc": str(out_dir / "roc.png"), "risk": str(out_dir / "risk.csv")}
    write_roc_png(results, inp, out_dir / "roc.png")
    write_risk_csv(results, inp, out_dir / "risk.csv")
    atomic_write_json(out_dir / "report.json", dict(report, files=files))
    return files


def write_roc_png(results: list, inp, path: Path) -> Path:
    """Log-log ROC curves (one per attack, on its evaluated points), chance diagonal, as in the LiRA paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn.metrics import roc_curve

    from toolkit.attacks.metrics import auc, roc, tpr_at
    from toolkit.io import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    n_non = max(int((~inp.membership).sum()), 1)
    lo = 10 ** np.floor(np.log10(1.0 / n_non))
    ax.plot([lo, 1], [lo, 1], ls="--", color="grey", lw=0.8, label="chance")
    for res in results:
        m = res.eval_mask
        fpr, tpr, _ = roc(res.scores[m], inp.membership[m])
        # Plot only the ROC's corners (sklearn's drop_intermediate: the same polyline, far fewer points on
        # large audits); the legend's figures come from the full curve.
        pf, pt, _ = roc_curve(inp.membership[m], res.scores[m], drop_intermediate=True)
        ax.plot(np.maximum(pf, lo), np.maximum(pt, lo), lw=1.2,
                label=f"{res.name} (AUC {auc(res.scores[m], inp.membership[m]):.3f}, "
                      f"TPR@0.1% {tpr_at(fpr, tpr, 0.001):.3f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("Membership inference ROC (log-log)")
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_risk_csv(results: list, inp, path: Path) -> Path:
    """One row per audited sample: index, membership, label, known, then every attack's score. Streamed to a
    temporary file in blocks of rows (no whole-file string for large audits), renamed into place."""
    import csv

    from toolkit.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["index", "member", "label", "known", *[r.name for r in results]])
        for start in range(0, inp.n, 4096):
            stop = min(start + 4096, inp.n)
            scores = [[f"{v:.9g}" for v in r.scores[start:stop]] for r in results]
            w.writerows([i, int(inp.membership[i]), int(inp.labels[i]), int(inp.known[i]),
                         *[col[i - start] for col in scores]] for i in range(start, stop))
    return path
