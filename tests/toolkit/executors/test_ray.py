"""The Ray executor against a real local Ray cluster (``ray start --head`` on 127.0.0.1, started and stopped by
the fixture) and a private local Ray instance: the process pool's results, retries, errors, checkpoints."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from toolkit.errors import DataError
from toolkit.executors import ExecutorError, RemoteTraceback, get_executor
from toolkit.executors.ray_cluster import LocalRayCluster, free_port

SAVE = "toolkit.executors.jobs:train_and_save"


@pytest.fixture(scope="module")
def ray_cluster():
    """Address of a 2-CPU Ray head on 127.0.0.1; its processes are stopped (by pid) afterwards."""
    cluster = LocalRayCluster(num_cpus=2, start_timeout=90)
    try:
        yield cluster.start()
    finally:
        import ray

        ray.shutdown()
        cluster.stop()


def test_ray_cluster_reproduces_the_process_pool(ray_cluster, reference_jobs, probe, tmp_path, assert_same):
    jobs = reference_jobs((("torch", "mlp", 0), ("torch", "cnn", 1)), fn=SAVE)
    ckpt = tmp_path / "ckpt"
    with get_executor("process", workers=2, threads_per_worker=1) as pool, \
            get_executor("ray", address=ray_cluster, threads_per_worker=1, checkpoint_dir=ckpt) as ex:
        local = pool.map(jobs)  # files live until the pool is closed
        remote = ex.map(jobs)
        # same seeds + same threads: the same probabilities and byte-identical weight files (sha256 checked)
        for a, b in zip(local, remote):
            assert_same(a, b)
        assert set(remote[0].files) == {"model.safetensors", "model.safetensors.json"}

        # rerun: served from the checkpoints, no task runs
        again = ex.map(jobs)
        assert ex.reused == [j.key for j in jobs] and ex.computed == []
        for a, b in zip(remote, again):
            assert_same(a, b)

        # a task whose worker dies is retried by Ray; partial files of the dead attempt never come back
        (out,) = ex.map([probe("crash", value=[1, 2], die_times=1, files={"f.txt": "whole"})])
        assert probe.runs("crash") == 2 and out.value == [1, 2] and list(out.files) == ["f.txt"]
        # the dead attempt's scratch directory on the node was removed by the next attempt
        scratch = Path(tempfile.gettempdir()) / f"safecompress-jobs-{os.getuid()}"
        assert not list(scratch.rglob("partial-*.bin"))
        with pytest.raises(ExecutorError, match=r"job 'doomed' .*failed on Ray after 2 attempt\(s\): WorkerCrashedError"):
            ex.map([probe("doomed", die_times=5)])
        assert probe.runs("doomed") == 2

        # an exception raised by the job is not retried and keeps its type and one-line message
        with pytest.raises(DataError, match="^bad labels$") as info:
            ex.map([probe("bad", fail="bad labels")])
        assert probe.runs("bad") == 1 and isinstance(info.value.__cause__, RemoteTraceback)


def test_a_private_local_ray_instance_when_no_address_is_given(probe):
    import ray

    assert not ray.is_initialized()
    jobs = [probe(f"local{i}", value=i, sleep=0.5) for i in range(3)]
    with get_executor("ray", workers=2, threads_per_worker=1) as ex:
        assert ex.map(jobs) == [0, 1, 2]
        assert ray.cluster_resources()["CPU"] == 2
    assert not ray.is_initialized()  # the executor started it, so close() shut it down
    assert all(r["threads"] == 1 for i in range(3) for r in probe.records(f"local{i}"))


def test_an_unreachable_cluster_is_a_clear_error(probe):
    import ray

    assert not ray.is_initialized()
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at {address}: .*ray start --head"):
        get_executor("ray", address=address).map([probe("never")])
    assert probe.runs("never") == 0
