"""Fixtures of the executor tests: real reference-model jobs on digits, and probe jobs that count executions."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.executors import Job, JobResult

TRAIN = "toolkit.models.references:train_and_predict"


@pytest.fixture(scope="session")
def reference_jobs(digits_parts, digits_spec):
    """``reference_jobs(specs)`` -> Jobs training tiny digits models, one per (framework, arch, seed) in
    ``specs``, each returning its probabilities on 40 fixed query points."""
    from toolkit.models import TrainRecipe

    pop, query = digits_parts["population"], digits_parts["member_unknown"]

    def make(specs=(("torch", "mlp", 0), ("torch", "mlp", 1)), fn: str = TRAIN, n_train: int = 200):
        jobs = []
        for framework, arch, seed in specs:
            rows = slice(seed * 50, seed * 50 + n_train)  # each model its own (overlapping) training rows
            jobs.append(Job(fn, {"spec": digits_spec(arch), "framework": framework,
                                 "recipe": TrainRecipe(epochs=2, batch_size=32, seed=seed),
                                 "x_train": pop.x[rows], "y_train": pop.y[rows], "x_query": query.x[:40]},
                            key=f"{framework}-{arch}-{seed}"))
        return jobs

    return make


class Probe:
    """``probe(tag, **kwargs)`` -> a Job of :func:`toolkit.executors.jobs.probe` that records each execution
    under ``markers``; ``records(tag)`` lists them, ``runs(tag)`` counts them."""

    def __init__(self, markers):
        self.markers = markers

    def __call__(self, tag: str, key: str | None = None, **kwargs) -> Job:
        return Job("toolkit.executors.jobs:probe", {"marker_dir": str(self.markers), "tag": tag, **kwargs},
                   key=tag if key is None else key)

    def records(self, tag: str) -> list[dict]:
        from toolkit.executors.jobs import executions

        return executions(self.markers, tag)

    def runs(self, tag: str) -> int:
        return len(self.records(tag))


@pytest.fixture
def probe(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    return Probe(markers)


def _assert_same(a, b):
    """Equal values of equal types, arrays bit for bit, JobResult files byte for byte."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, JobResult):
        _assert_same(a.value, b.value)
        assert a.sha256 == b.sha256 and set(a.files) == set(b.files)
        for name in a.files:
            assert a.files[name].read_bytes() == b.files[name].read_bytes()
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b) and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    else:
        assert a == b


@pytest.fixture(scope="session")
def assert_same():
    return _assert_same
