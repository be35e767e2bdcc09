"""Accuracy and leakage of dense vs compressed text models (issue 10), written to benchmarks/results/.

    .venv/bin/python benchmarks/text_repro.py [--config configs/text-long.yaml] [--out runs/text-long]

Runs :func:`toolkit.text.pipeline.run_text_pipeline` (the same code as ``safecompress text CONFIG --out DIR``)
and writes ``text.json`` (the figures per model and version, the command, the machine, timings) and ``text.md``
(the tables) under ``--results``. Nothing is tuned to the outcome: one fixed config, the numbers are what they
are. Timings on a shared machine are noisy; the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "threads": os.environ.get("SAFECOMPRESS_THREADS"),
            "load_average": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version(),
            "platform": platform.platform()}


def condense(report: dict) -> dict:
    """Per model and version: size, accuracy through ONNX Runtime, and every attack's AUC / TPR."""
    out = {}
    for label, m in report["models"].items():
        out[label] = {"spec": m["spec"], "train_seconds": m["train_seconds"], "samples": m["samples"],
                      "tokenizer": m["tokenizer"], "reference_models": m["reference_models"], "versions": {}}
        for name, v in m["versions"].items():
            out[label]["versions"][name] = {
                "method": v.get("method"), "base": v.get("base"), "onnx_quantize": v.get("onnx_quantize"),
                "params": v["params"], "sparsity": v.get("sparsity"), "onnx_bytes": v["artifact"]["bytes"],
                "onnx_gzip_bytes": v["artifact"]["gzip_bytes"], "accuracy": v["artifact_accuracy"],
                "attacks": v["attacks"], "summary": v["summary"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "text-long.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "text-long")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    from toolkit.io import atomic_write_json, atomic_write_text
    from toolkit.text.config import load_text_config
    from toolkit.text.pipeline import run_text_pipeline

    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/text_repro.py", *(argv or sys.argv[1:])])
    before = _machine()
    t0 = time.perf_counter()
    report = run_text_pipeline(load_text_config(args.config), args.out)
    seconds = round(time.perf_counter() - t0, 1)
    after = _machine()
    cfg_rel = os.path.relpath(args.config, ROOT)
    body = {"command": command, "equivalent_cli": f"safecompress text {cfg_rel} --out {os.path.relpath(args.out, ROOT)}",
            "config": report["config"], "data": report["data"], "seconds": report["seconds"],
            "wall_seconds": seconds, "machine": {"start": before, "end": after}, "models": condense(report)}
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results / "text.json", body)
    md = (args.out / "report.md").read_text(encoding="utf-8")
    header = (f"Command: `{command}` (same as `{body['equivalent_cli']}`), {seconds:.0f} s wall on "
              f"{before['cpus']} CPUs (load average {before['load_average'][0]} at start, "
              f"{after['load_average'][0]} at end; the machine was shared).\n\n"
              "Every figure is measured on the ONNX artifact through ONNX Runtime. AUC / TPR at 1% FPR per attack; "
              "learned attacks (nn, CompLeak) are evaluated on the unknown half, the others on all points. "
              "Members and non-members are disjoint fortunes quotes; the tokenizer was fit on the members.\n\n")
    atomic_write_text(args.results / "text.md", md.replace("\n\n", "\n\n" + header, 1))
    print(f"wrote {args.results / 'text.json'} and {args.results / 'text.md'} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
