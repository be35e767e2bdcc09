"""Executors without Ray: the registry and options, identical results in-process and in worker processes,
job order, thread pinning, dead-worker retries, partial files, sha256 checks and checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from toolkit.errors import ConfigError, DataError, UnknownNameError
from toolkit.executors import (EXECUTORS, ExecutorError, Job, JobResult, RemoteTraceback, executor_from_options,
                               get_executor, job_output_dir)

SAVE = "toolkit.executors.jobs:train_and_save"


# ------------------------------------------------------------------------------------------ API and options
def test_registry_lists_the_executors_and_refuses_unknown_names():
    assert EXECUTORS.names() == ["inprocess", "process", "ray"]
    with pytest.raises(UnknownNameError, match="unknown executor 'rey'.*did you mean 'ray'.*inprocess, process, ray"):
        get_executor("rey")
    with pytest.raises(UnknownNameError, match="known: inprocess, process, ray"):
        executor_from_options("dask")


def test_options_are_checked_with_one_line_errors():
    with pytest.raises(ConfigError, match="--address applies to --executor ray only"):
        executor_from_options("process", address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="--workers must be >= 1, got 0"):
        executor_from_options("ray", workers=0)
    with pytest.raises(ConfigError, match="address applies to the ray executor only"):
        get_executor("inprocess", address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="retries must be >= 0"):
        get_executor("process", retries=-1)
    with pytest.raises(ConfigError, match="must be given as 'package.module:function'"):
        get_executor("inprocess").map([Job("toolkit.executors.jobs.probe")])
    with pytest.raises(ConfigError, match="job key 'a' is used twice"):
        get_executor("inprocess").map([Job("os:getpid", key="a"), Job("os:getpid", key="a")])
    ex = executor_from_options(None, workers=2)
    assert ex.name == "process" and ex.workers == 2 and ex.threads_per_worker >= 1 and ex.retries == 1


def test_the_ray_executor_is_built_without_importing_ray():
    code = ("import sys; from toolkit.executors import get_executor, executor_from_options; "
            "ex = executor_from_options('ray', address='127.0.0.1:1', workers=2); "
            "print(ex.name, ex.address, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["ray", "127.0.0.1:1", "False"]


def test_job_output_dir_exists_only_inside_jobs():
    with pytest.raises(ExecutorError, match="only available inside a job"):
        job_output_dir()


# ------------------------------------------------------------------------------------------ identical results
def test_process_pool_reproduces_inprocess_results_bit_for_bit(reference_jobs, assert_same):
    """Real trainings (torch MLP + CNN, Keras MLP) whose weights come back as files: the same seeds and the
    same threads give the same probabilities and byte-identical weight files in this process and in workers."""
    from toolkit.frameworks import thread_count
    from toolkit.io import sha256_file
    from toolkit.models import load_model, predict_proba

    jobs = reference_jobs((("torch", "mlp", 0), ("torch", "cnn", 1), ("keras", "mlp", 2)), fn=SAVE)
    with get_executor("inprocess") as a, get_executor("process", workers=1, threads_per_worker=thread_count()) as b:
        here, there = a.map(jobs), b.map(jobs)
        for job, x, y in zip(jobs, here, there):
            assert_same(x, y)
            assert x.value.shape == (40, 10) and x.value.dtype == np.float32
            weights = next(p for n, p in y.files.items() if not n.endswith(".json"))
            assert sha256_file(weights) == y.sha256[weights.name]
            # the file that travelled back is the model that produced the returned probabilities
            model, _ = load_model(weights)
            np.testing.assert_allclose(predict_proba(model, job.kwargs["x_query"]), y.value, atol=1e-6)
        assert set(there[2].files) == {"model.weights.h5", "model.weights.h5.json"}
        assert b.computed == [j.key for j in jobs] and b.reused == []


def test_results_come_back_in_job_order_on_pinned_workers(probe):
    # job 0 finishes last: completion order differs from job order
    jobs = [probe(f"order{i}", value=[i, float(i) / 3], sleep=1.2 - 0.5 * i) for i in range(3)]
    with get_executor("process", workers=2, threads_per_worker=1) as ex:
        assert ex.map(jobs) == [[i, float(i) / 3] for i in range(3)]
        assert ex.computed != [j.key for j in jobs]  # really finished out of order
    for i in range(3):
        (rec,) = probe.records(f"order{i}")
        assert rec["threads"] == 1 and rec["omp"] == "1"
    assert len({probe.records(f"order{i}")[0]["pid"] for i in range(3)}) == 2  # two workers, reused


def test_empty_job_list():
    with get_executor("process", workers=2) as ex:
        assert ex.map([]) == []


# ------------------------------------------------------------------------------------------ robustness
def test_a_dead_worker_is_retried_and_its_partial_files_never_enter_the_results(probe, tmp_path):
    jobs = [probe("crash", value=7, die_times=1, files={"out/model.bin": "complete"}), probe("steady", value=8)]
    ckpt = tmp_path / "ckpt"
    with get_executor("process", workers=2, threads_per_worker=1, retries=1, checkpoint_dir=ckpt) as ex:
        crash, steady = ex.map(jobs)
    assert probe.runs("crash") == 2 and probe.runs("steady") == 1
    assert steady == 8 and isinstance(crash, JobResult) and crash.value == 7
    # only the successful attempt's file: the dead attempt's partial-<pid>.bin is gone
    assert list(crash.files) == ["out/model.bin"] and crash.files["out/model.bin"].read_text() == "complete"
    assert not [p for p in ckpt.rglob("*") if p.name.startswith(("partial-", ".tmp-", ".old-"))]


def test_a_worker_that_keeps_dying_fails_naming_the_job(probe, tmp_path):
    ckpt = tmp_path / "ckpt"
    jobs = [probe("fine", value={"ok": True}), probe("doomed", die_times=10, files={"a.txt": "x"})]
    ex = get_executor("process", workers=1, threads_per_worker=1, retries=2, checkpoint_dir=ckpt)
    with pytest.raises(ExecutorError, match=r"job 'doomed' .*worker process died 3 time\(s\) \(exit codes \[17, 17, 17\]\); "
                                            r"gave up after 2 retries"):
        ex.map(jobs)
    ex.close()
    assert probe.runs("doomed") == 3
    # the job that finished before the failure is checkpointed; nothing of the doomed one is
    assert sorted(p.name for p in ckpt.iterdir()) == ["fine"]
    with get_executor("process", workers=1, retries=0) as ex:
        with pytest.raises(ExecutorError, match="died 1 time"):
            ex.map([probe("once", die_times=1)])
    assert probe.runs("once") == 1


@pytest.mark.parametrize("name", ["inprocess", "process"])
def test_job_errors_are_not_retried_and_keep_their_type(probe, name):
    with get_executor(name, workers=1, retries=3) as ex:
        with pytest.raises(DataError, match="^labels out of range$") as info:
            ex.map([probe("bad", fail="labels out of range")])
    assert probe.runs("bad") == 1
    if name == "process":
        assert isinstance(info.value.__cause__, RemoteTraceback) and "probe" in str(info.value.__cause__)


def test_files_whose_digest_does_not_match_are_refused():
    from toolkit.executors.base import Envelope, Item, _verify

    it = Item(0, Job("m:f", key="k"), "k", "k")
    good = Envelope(None, True, {"a.bin": b"abc"},
                    {"a.bin": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}, 0.0)
    _verify(it, good)
    bad = Envelope(None, True, {"a.bin": b"abd"}, dict(good.sha256), 0.0)
    with pytest.raises(ExecutorError, match="job 'k': file a.bin came back with sha256 .* refusing"):
        _verify(it, bad)


# ------------------------------------------------------------------------------------------ checkpoints
VALUES = [
    (1, 2.5, "s", None, True, [1, [2, 3]], {"a": np.float32(1.5), 3: (4, "5")}),
    np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
    {"probs": np.eye(3, dtype=np.float64), "n": np.int64(7), "ok": np.bool_(True)},
]


def test_checkpoints_are_reused_on_rerun_instead_of_recomputed(probe, tmp_path, assert_same, capsys):
    ckpt = tmp_path / "ckpt"
    jobs = [probe(f"v{i}", value=v) for i, v in enumerate(VALUES)]
    jobs.append(probe("files", value=np.arange(4), files={"model.tflite": "bytes", "sub/meta.json": "{}"}))
    with get_executor("process", workers=2, checkpoint_dir=ckpt) as ex:
        first = ex.map(jobs)
    counts = {j.key: probe.runs(j.key) for j in jobs}
    assert set(counts.values()) == {1}
    # nothing is pickled on disk: JSON metadata, its MAC, .npy arrays (loadable without pickle), the job's files
    kinds = {p.suffix for p in ckpt.rglob("*") if p.is_file()}
    assert kinds == {".json", ".mac", ".npy", ".tflite"}
    for npy in ckpt.rglob("*.npy"):
        np.load(npy, allow_pickle=False)

    # rerun (another executor kind even): everything is served from the checkpoints, nothing executes
    with get_executor("inprocess", checkpoint_dir=ckpt) as ex:
        again = ex.map(jobs)
        assert ex.reused == [j.key for j in jobs] and ex.computed == []
    assert {j.key: probe.runs(j.key) for j in jobs} == counts
    for a, b in zip(first, again):
        assert_same(a, b)
    assert again[3].files["sub/meta.json"].read_text() == "{}"

    # a damaged entry, a changed job under the same key, and a leftover partial write: only those recompute
    (ckpt / "v1" / "arrays" / "a0.npy").write_bytes(b"\x93NUMPY garbage")
    (ckpt / "files" / "files" / "model.tflite").write_text("tampered")
    changed = probe("v2", value={"other": 1})
    (ckpt / ".tmp-v0-leftover").mkdir()
    capsys.readouterr()
    with get_executor("process", workers=2, checkpoint_dir=ckpt) as ex:
        third = ex.map([jobs[0], jobs[1], changed, jobs[3]])
        assert ex.reused == ["v0"] and ex.computed and set(ex.computed) == {"v1", "v2", "files"}
    # the damaged entries are named in a warning; the changed job is simply recomputed
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 2 and "'v1'" in warned[0] and "'files'" in warned[1], warned
    assert all("failed verification" in w and "does not match its recorded sha256" in w for w in warned)
    assert probe.runs("v0") == 1 and probe.runs("v1") == 2 and probe.runs("v2") == 2 and probe.runs("files") == 2
    assert_same(third[1], first[1])
    assert third[2] == {"other": 1} and third[3].files["model.tflite"].read_text() == "bytes"
    assert not (ckpt / ".tmp-v0-leftover").exists()


def test_checkpoints_need_keys_and_storable_results(probe, tmp_path):
    with pytest.raises(ConfigError, match="checkpointing needs a key for every job; job 0"):
        get_executor("inprocess", checkpoint_dir=tmp_path).map([probe("x", key="")])
    with pytest.raises(ExecutorError, match="job 'odd' returned a builtins.frozenset, which a checkpoint cannot hold"):
        get_executor("inprocess", checkpoint_dir=tmp_path).map([probe("odd", value=frozenset({1}))])
    assert not (tmp_path / "odd").exists()


def test_keys_become_safe_distinct_directory_names(probe, tmp_path):
    keys = ["cand/../../etc", "cand ../etc", ".hidden", "a" * 200]
    with get_executor("inprocess", checkpoint_dir=tmp_path) as ex:
        assert ex.map([probe(f"k{i}", key=k, value=i) for i, k in enumerate(keys)]) == [0, 1, 2, 3]
    names = [p.name for p in tmp_path.iterdir() if p.name != "markers"]
    assert len(names) == 4 and all("/" not in n and not n.startswith(".") and len(n) < 100 for n in names)
    meta = {json.loads((tmp_path / n / "result.json").read_text())["key"] for n in names}
    assert meta == set(keys)
