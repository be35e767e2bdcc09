"""``make bench``: run the benchmarks and write ``benchmarks/results/latest.json`` and ``latest.md``.

    .venv/bin/python -m benchmarks.run [--quick] [--only KEY[,KEY]] [--threads N] [--out DIR]

Each key is a module ``benchmarks/<key>.py`` with ``run(quick: bool) -> {"figures": [...], "details": {...}}``
(see :func:`benchmarks._common.figure`), run in a fresh subprocess of its own (argv list, no shell): one
benchmark's framework state, thread pools or a native crash cannot affect another's timings. ``--quick`` uses
small sizes (a smoke run of a few minutes) and writes ``latest_quick.*``; ``--only`` runs some keys and merges
them into the existing results file. Threads: ``SAFECOMPRESS_THREADS`` (default here 1: on a shared 2-core
machine one thread per framework gives steadier timings than two fighting for the cores); every runtime is
pinned to it (ONNX Runtime intra-op threads, LiteRT ``num_threads``, ``torch.set_num_threads``). See
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]

#: key -> "module:function" returning {"figures": [...], "details": {...}}.
BENCHMARKS = {
    "audit_overhead": "benchmarks.audit_overhead:run",
    "query_path": "benchmarks.query_path:bench",
    "reference_economy": "benchmarks.reference_economy:run",
    "compleak_cost": "benchmarks.compleak_cost:run",
    "selection_cost": "benchmarks.selection_cost:run",
    "compression_cost": "benchmarks.compression_cost:run",
    "int8_speedup": "benchmarks.int8_speedup:run",
    "audit_memory": "benchmarks.audit_memory:run",
}


def _resolve(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _child(key: str, quick: bool, out: Path) -> int:
    """Run one benchmark in this (fresh) process and write its result JSON to ``out``."""
    from benchmarks._common import machine

    t = time.perf_counter()
    result = _resolve(BENCHMARKS[key])(quick)
    result.update(key=key, seconds=round(time.perf_counter() - t, 1), machine_at_end=machine())
    out.write_text(json.dumps(result, default=float))
    return 0


def _run_key(key: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"sc-bench-{key}-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "benchmarks.run", "--child", key, "--child-out", str(out)] + (["--quick"] if quick else [])
        t = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=os.environ.copy())
        seconds = round(time.perf_counter() - t, 1)
        if proc.returncode != 0 or not out.is_file():
            return {"key": key, "error": f"exit code {proc.returncode}", "seconds": seconds, "figures": []}
        result = json.loads(out.read_text())
        result["wall_seconds"] = seconds
        return result


def to_markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Benchmarks ({'quick' if doc['quick'] else 'full'} run)", "",
             f"Command: `{doc['command']}`  ",
             f"Finished {doc['finished']} in {doc['seconds']:.0f} s on {m['cpu_count']} cores ({m['processor']}), "
             f"{m['threads']} thread(s) per runtime, Python {m['python']}, torch {m['versions'].get('torch')}, "
             f"TensorFlow {m['versions'].get('tensorflow')}, ONNX Runtime {m['versions'].get('onnxruntime')}, "
             f"LiteRT {m['versions'].get('ai-edge-litert')}, ExecuTorch {m['versions'].get('executorch')}.  ",
             "Every figure is a ratio of two measurements taken in the same run (timings: best of 3 unless "
             "`docs/benchmarks.md` says otherwise for a key; quick runs: 1 run, small sizes, not comparable). The "
             "machine is shared with other jobs: timings are noisy. Details: `latest.json`, `docs/benchmarks.md`.",
             "",
             "| key | figure | value | goal | met | why (where missed) |", "|---|---|---|---|---|---|"]
    for key in BENCHMARKS:
        res = doc["results"].get(key)
        if res is None:
            continue
        if res.get("error"):
            lines.append(f"| {key} | — | — | — | error | benchmark failed: {res['error']} (see the log) |")
            continue
        for f in res["figures"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[f["met"]]
            value = "—" if f["value"] is None else f"{f['value']:g}"
            why = (f["why"] or "") if f["met"] is False else (f.get("note") or "")
            lines.append(f"| {key} | {f['name']} | {value} | {f['goal'] or '(reported)'} | {met} | {why} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the safecompress benchmarks (make bench).")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run well under 5 minutes")
    ap.add_argument("--only", default=None, help=f"comma-separated keys: {','.join(BENCHMARKS)}")
    ap.add_argument("--threads", type=int, default=None, help="threads per runtime (default SAFECOMPRESS_THREADS or 1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if args.child:
        return _child(args.child, args.quick, args.child_out)
    if args.threads is not None:
        os.environ["SAFECOMPRESS_THREADS"] = str(args.threads)
    os.environ.setdefault("SAFECOMPRESS_THREADS", "1")
    keys = list(BENCHMARKS) if args.only is None else [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BENCHMARKS]
    if unknown or not keys:
        print(f"error: unknown benchmark key(s) {','.join(unknown) or '(none)'}; known: {','.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2

    from benchmarks._common import machine
    from toolkit.io import atomic_write_json, atomic_write_text

    stem = "latest_quick" if args.quick else "latest"
    path = args.out / f"{stem}.json"
    results = {}
    if args.only is not None and path.is_file():  # merge into the previous run's results
        results = json.loads(path.read_text()).get("results", {})
    command = " ".join([".venv/bin/python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
    t0 = time.perf_counter()
    started = machine()
    for key in keys:
        print(f"== {key} ==", file=sys.stderr, flush=True)
        results[key] = _run_key(key, args.quick)
        for f in results[key]["figures"]:
            print(f"   {f['name']}: {f['value']} (goal {f['goal']}, met {f['met']})", file=sys.stderr, flush=True)
        print(f"   {results[key].get('error') or 'done'} in {results[key]['seconds']} s", file=sys.stderr, flush=True)
    doc = {"schema": "safecompress.bench/1", "quick": args.quick, "command": command, "keys_run": keys,
           "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "seconds": round(time.perf_counter() - t0, 1), "machine": started, "results": results}
    atomic_write_json(path, doc)
    atomic_write_text(args.out / f"{stem}.md", to_markdown(doc))
    print(to_markdown(doc))
    return 1 if any(r.get("error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
