"""``audit_memory``: peak RSS of an audit of 100,000 queries minus that of 10,000 (goal: < 50 MB).

Setting: a Fashion-MNIST torch MLP exported to ``.onnx``; members-like and non-member queries (half each) made
by tiling the target's 2,000 members and 2,000 non-members with small seeded noise (so every query is distinct
by content), written to ``members.npz`` / ``non-members.npz`` as a user would give them to
``safecompress audit``. Each size is audited in a **fresh subprocess** (argv list, no shell) running what the
CLI runs: ``device_tests.audit_cli.audit_command`` (loads the two ``.npz`` files, ``device_tests.leakage.audit``
with the 4 metric attacks and bootstrap CIs, ``report.json`` + ``roc.png`` + ``risk.csv``) and
``toolkit.report.write_reports``. The peak RSS of each child is its own high-water mark ``VmHWM`` from
``/proc/self/status``, read by the child when the audit is done; it also reports its RSS after imports. (The
``ru_maxrss`` that ``os.wait4`` / ``getrusage(RUSAGE_CHILDREN)`` return is recorded too but is not used: Linux
carries the parent's high-water mark at fork into the child's ``ru_maxrss`` across ``exec``, so a parent holding
700 MB makes every child "peak" at >= 700 MB.) Quick: 2,000 vs 20,000 queries.

The input arrays alone are ``n x 784 x 4`` bytes (313.6 MB at 100k, 31.4 MB at 10k): the audit CLI reads them
from the ``.npz`` files a block of rows at a time (``toolkit.data.rows.NpzRows``), so the difference is the
audit's per-query state (outputs, labels, digests, scores, ROC arrays).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import fashion_split, figure, jitter_copies, pin_torch_threads, quiet_warnings, threads

ATTACKS = "loss,confidence,entropy,modified_entropy"
ROOT = Path(__file__).resolve().parents[1]


def _status(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(artifact: str, members: str, nonmembers: str, out_dir: str, result: str) -> int:
    """The audited process: what ``safecompress audit ARTIFACT --members --nonmembers --attacks --out`` runs."""
    os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
    import device_tests.audit_cli  # noqa: F401  (imports counted in the start figure, as in the CLI)
    import toolkit.report  # noqa: F401

    start = _status("VmRSS")
    t = time.perf_counter()
    from device_tests.audit_cli import audit_command
    from toolkit.report import write_reports

    report = audit_command(Path(artifact), Path(members), Path(nonmembers), None, ATTACKS, None, Path(out_dir), 0)
    write_reports(report, Path(out_dir))
    Path(result).write_text(json.dumps({"rss_start_mb": start, "vm_hwm_mb": _status("VmHWM"),
                                        "seconds": time.perf_counter() - t, "audit_seconds": report["seconds"],
                                        "n": report["data"]["n_members"] + report["data"]["n_nonmembers"]}))
    return 0


def _measure(artifact: str, n: int, base, tmp: Path) -> dict:
    (mx, my), (nx, ny) = base
    d = tmp / f"n{n}"
    d.mkdir()
    half = n // 2
    reps = int(np.ceil(half / len(my)))
    np.savez(d / "members.npz", x=jitter_copies(mx, half, seed=1), y=np.tile(my, reps)[:half])
    np.savez(d / "nonmembers.npz", x=jitter_copies(nx, n - half, seed=2), y=np.tile(ny, reps + 1)[:n - half])
    argv = [sys.executable, "-m", "benchmarks.audit_memory", "--child", artifact, str(d / "members.npz"),
            str(d / "nonmembers.npz"), str(d / "out"), str(d / "result.json")]
    proc = subprocess.Popen(argv, cwd=ROOT, env=os.environ.copy())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"audit child for {n} queries exited with {proc.returncode}")
    res = json.loads((d / "result.json").read_text())
    input_mb = n * int(np.prod(mx.shape[1:])) * 4 / 1e6
    for f in d.glob("*.npz"):
        f.unlink()
    return {"n": n, "peak_rss_mb": round(res["vm_hwm_mb"], 1), "wait4_ru_maxrss_mb": round(usage.ru_maxrss / 1024.0, 1),
            "rss_after_imports_mb": round(res["rss_start_mb"], 1), "input_arrays_mb": round(input_mb, 1),
            "audit_seconds": res["audit_seconds"], "child_seconds": round(res["seconds"], 2)}


def run(quick: bool = False, log=print) -> dict:
    quiet_warnings()
    from exporters import export
    from toolkit.models import ModelSpec, TrainRecipe, train_reference_model

    small, large = (2_000, 20_000) if quick else (10_000, 100_000)
    pin_torch_threads()
    ds, parts = fashion_split(2000, 2000, 0, seed=0, limit=6000 if quick else None)
    mem, non = parts["members"], parts["nonmembers"]
    spec = ModelSpec(arch="mlp", input_shape=ds.input_shape, n_classes=ds.n_classes)
    model = train_reference_model(spec, "torch", mem.x, mem.y, TrainRecipe(epochs=2, seed=0))
    with tempfile.TemporaryDirectory(prefix="sc-bench-mem-") as tmp:
        artifact = export(model, "onnx", Path(tmp) / "model.onnx", non.x[:200]).path
        rows = [_measure(artifact, n, ((mem.x, mem.y), (non.x, non.y)), Path(tmp)) for n in (small, large)]
    for r in rows:
        log(f"audit_memory {r['n']}: peak RSS {r['peak_rss_mb']} MB (after imports {r['rss_after_imports_mb']} MB, "
            f"inputs {r['input_arrays_mb']} MB)")
    lo, hi = rows
    diff = hi["peak_rss_mb"] - lo["peak_rss_mb"]
    extra_in = hi["input_arrays_mb"] - lo["input_arrays_mb"]
    per_query = diff * 1e6 / (large - small)
    why = (f"peak {hi['peak_rss_mb']:.0f} MB at {large:,} vs {lo['peak_rss_mb']:.0f} MB at {small:,} queries; the "
           f"inputs ({extra_in:.0f} MB more at {large:,}) are read from the .npz files a block of rows at a time, so "
           f"what grows is the audit's per-query state: outputs, labels, content digests, attack scores and ROC "
           f"arrays, about {per_query:.0f} bytes per query")
    return {"figures": [figure(f"peak RSS {large // 1000}k - {small // 1000}k queries (MB)", diff, "< 50", why)],
            "details": {"setting": {"artifact": "onnx (Fashion-MNIST MLP)", "attacks": ATTACKS, "n_bootstrap": 200,
                                    "sizes": [small, large], "threads": threads(),
                                    "child": "device_tests.audit_cli.audit_command + toolkit.report.write_reports"},
                        "rows": rows}}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        return child(*argv[1:6])
    print(json.dumps(run("--quick" in argv), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
