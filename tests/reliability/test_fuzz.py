"""Fuzzing every user input: mutated .tflite / .onnx / .ptl / .pte artifacts, mutated hostile artifacts (file
operators, external data, loop and allocation bombs), .npz data and YAML configs (run config, gate policy, audit
config) each end with success or a clean one-line error -- never another exception, a hang (> 30 s) or a crash
-- and every input that once failed is replayed from ``corpus/``. Every artifact runs in the sandbox on the real
path; a case that crashes or hangs the in-process worker must be contained by it (the CLI replay is clean).

The harness is :mod:`reliability_fuzz` (mutators, worker processes, verdicts). ``SAFECOMPRESS_FUZZ_COUNTS=FILE``
writes the number of cases per format and verdict to FILE; ``SAFECOMPRESS_FUZZ_SAVE=1`` copies the inputs of
failing cases into ``corpus/<format>/`` (otherwise they are copied under the test's tmp directory and named
in the failure message).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import reliability_fuzz as fz

#: Cases per format in the default set (>= 1,000 in all, ~1 minute on 2 cores).
DEFAULT = {"tflite": 160, "onnx": 200, "ptl": 80, "pte": 60, "hostile": 14, "npz": 200, "run_config": 130,
           "gate_policy": 100, "audit_config": 80}
#: Every n-th case of a format goes through the real sandbox in the workers (hostile cases always do).
SANDBOX_EVERY = {"tflite": 10, "ptl": 40, "pte": 60}
#: The slow set: twenty times as many (~20,000 cases, ~5 minutes on 2 cores), another seed.
SLOW = {**{k: 20 * v for k, v in DEFAULT.items()}, "hostile": 100}
#: Real-CLI replays per format (a sample of the generated cases).
CLI_SAMPLE = {"tflite": 7, "onnx": 7, "ptl": 2, "hostile": 2, "npz": 5, "gate_policy": 3, "audit_config": 2,
              "run_config": 2}


def _record(name: str, cases: list[fz.Case], results: list[fz.Result], extra: dict | None = None) -> dict:
    summary = {"set": name, **fz.summarize(results), **(extra or {})}
    target = os.environ.get("SAFECOMPRESS_FUZZ_COUNTS")
    if target:
        p = Path(target)
        data = json.loads(p.read_text()) if p.is_file() else {}
        data[name] = summary
        p.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nfuzz {name}: {json.dumps(summary)}")
    return summary


def _assert_clean(results: list[fz.Result], cases: list[fz.Case], tmp: Path) -> None:
    bad = fz.failures(results)
    if not bad:
        return
    dest = fz.CORPUS if os.environ.get("SAFECOMPRESS_FUZZ_SAVE") == "1" else tmp / "failed"
    saved = fz.save_failures(results, cases, dest)
    pytest.fail(f"{len(bad)} fuzz case(s) failed; inputs saved to {dest} ({', '.join(p.name for p in saved)}):\n"
                + fz.describe_failures(results)[-12000:], pytrace=False)


@pytest.fixture(scope="module")
def default_fuzz(tmp_path_factory):
    """The default generated cases and the regression corpus, run together (one worker start-up)."""
    scratch = tmp_path_factory.mktemp("fuzz")
    cases = fz.generate(DEFAULT, scratch / "cases", seed=0, sandbox_every=SANDBOX_EVERY)
    corpus = fz.corpus_cases()
    results = fz.run_cases(cases + corpus, scratch / "run")
    by_id = {r.id: r for r in results}
    return scratch, cases, [by_id[c.id] for c in cases if c.id in by_id], corpus, \
        [by_id[c.id] for c in corpus if c.id in by_id]


def test_fuzz_default_set(default_fuzz):
    scratch, cases, results, _, _ = default_fuzz
    assert len(results) == len(cases) >= 1000
    summary = _record("default", cases, results, {"sandboxed_cases": sum(c.sandboxed for c in cases)})
    per = summary["per_target"]
    assert set(per) == set(fz.TARGETS)
    # Every format produced both outcomes: the mutations reach past the first check, and some still load.
    for target, row in per.items():
        assert row.get("error", 0) > 0, (target, row)
    for target in ("tflite", "onnx", "ptl", "pte", "npz", "gate_policy"):
        assert per[target].get("ok", 0) > 0, (target, per[target])
    _assert_clean(results, cases, scratch)


def test_fuzz_corpus_replays_clean(default_fuzz):
    """Every input that once failed (corpus/<format>/) now ends cleanly; native crashes stay in the sandbox."""
    scratch, _, _, corpus, results = default_fuzz
    assert len(corpus) >= 10 and len(results) == len(corpus)
    for c in corpus:
        assert Path(c.path).stat().st_size < 100 * 1024, c.path
    _record("corpus", corpus, results)
    _assert_clean(results, corpus, scratch)
    native = [r for r in results if "native" in r.id]
    assert native, "the corpus keeps inputs that crash a runtime when opened outside the sandbox"
    for r in native:  # still crashing the runtime in-process (or, after a runtime upgrade, a clean error)
        assert r.status in ("sandboxed-crash", "error"), (r.id, r.status, r.message)
        if r.status == "sandboxed-crash":
            msg = r.cli["checks"][0]["stderr"]
            assert "runtime stopped in the sandbox: it crashed" in msg or "it aborted" in msg, msg


def test_fuzz_cli_sample(default_fuzz):
    """A sample of the generated cases through the real CLI (sandbox included): exit 0 or 2, at most one
    `error:` line, no traceback, no signal, no hang."""
    scratch, cases, results, _, _ = default_fuzz
    status = {r.id: r.status for r in results}
    rng = random.Random(0)
    picked: list[fz.Case] = []
    for target, n in CLI_SAMPLE.items():
        pool = [c for c in cases if c.target == target]
        if target == "run_config":  # a valid run config would start training: replay refused ones only
            pool = [c for c in pool if status.get(c.id) == "error"]
        picked += rng.sample(pool, min(n, len(pool)))
    cli_dir = scratch / "cli"
    cli_dir.mkdir(exist_ok=True)
    jobs = [(c, args) for c in picked for args in fz.cli_args_for(c, cli_dir)]
    for target in fz.ARTIFACTS:  # `inspect` too (loads without querying)
        jobs += [(c, ["inspect", c.path]) for c in [c for c in picked if c.target == target][:1]]
    with ThreadPoolExecutor(2) as pool:
        checks = list(pool.map(lambda job: fz.cli_check(job[1]), jobs))
    bad = [(c.id, chk) for (c, _), chk in zip(jobs, checks) if not chk["ok"]]
    _record("cli", picked, [fz.Result(c.id, c.target, c.kind, "ok" if chk["ok"] else "bad")
                            for (c, _), chk in zip(jobs, checks)], {"invocations": len(jobs)})
    assert len(jobs) >= 30
    assert not bad, json.dumps(bad, indent=1)[:8000]


def test_every_format_is_sandboxed(monkeypatch):
    """Every artifact the process did not produce runs in the sandbox, whatever its format (a corrupt file can
    crash LiteRT, the lite interpreter or ExecuTorch; an ONNX graph can loop or allocate); ONNX files are
    refused for external data before onnx.checker, and checked before ONNX Runtime sees them."""
    import inspect

    from device_tests import load_artifact, sandbox

    # Export is deterministic: an earlier test of this process may have exported these very bytes (and so be
    # trusted to open them in-process). Here the process has exported nothing.
    monkeypatch.setattr(sandbox, "_TRUSTED", set())
    from device_tests.runtimes import onnxrt
    from device_tests.sandbox.client import SandboxedRuntime

    def opened(fmt: str):
        rt = load_artifact(fz.SEEDS / f"mlp.{fmt}")
        try:
            return type(rt), rt.describe()["sandbox"]
        finally:
            rt.close()

    with ThreadPoolExecutor(2) as pool:
        for fmt, (kind, protections) in zip(fz.ARTIFACTS, pool.map(opened, fz.ARTIFACTS)):
            assert kind is SandboxedRuntime, fmt
            assert protections["rlimits"] and protections["private_workdir"], (fmt, protections)
    src = inspect.getsource(onnxrt.OnnxRuntime.__init__)
    assert src.index("refuse_external_data") < src.index("onnx.checker.check_model") < src.index("check_graph") \
        < src.index("InferenceSession")


def test_mutations_are_reproducible(tmp_path):
    """A case is reproduced from its seed: the same ids give byte-identical inputs."""
    counts = {t: 3 for t in fz.TARGETS}
    a = fz.generate(counts, tmp_path / "a", seed=5)
    b = fz.generate(counts, tmp_path / "b", seed=5)
    assert [c.kind for c in a] == [c.kind for c in b]
    assert all(Path(x.path).read_bytes() == Path(y.path).read_bytes() for x, y in zip(a, b))


@pytest.mark.slow
def test_fuzz_slow_set(tmp_path):
    """Twenty times the default number of cases, with another seed."""
    cases = fz.generate(SLOW, tmp_path / "cases", seed=1, sandbox_every={"tflite": 10, "ptl": 50, "pte": 200})
    results = fz.run_cases(cases, tmp_path / "run")
    assert len(results) == len(cases)
    _record("slow", cases, results)
    _assert_clean(results, cases, tmp_path)
    shutil.rmtree(tmp_path / "cases", ignore_errors=True)
