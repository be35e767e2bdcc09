"""Shared fixtures: small real data and real trained models, built once per test session.

Everything is real (sklearn digits, real PyTorch / tf-keras training) but tiny, so the default test set
stays fast. Fixtures that train are session-scoped and cached by (framework, arch).
"""

from __future__ import annotations

import os

os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
os.environ.setdefault("SAFECOMPRESS_THREADS", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

ARCHS = ("mlp", "cnn")
FRAMEWORKS = ("torch", "keras")


@pytest.fixture(scope="session")
def digits():
    from toolkit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_split(digits):
    from toolkit.data import make_split

    return make_split(digits, members=600, nonmembers=600, population=597, seed=0)


@pytest.fixture(scope="session")
def digits_parts(digits, digits_split):
    """dict part-name -> SplitArrays (x, y) for every part, plus 'members' and 'nonmembers'."""
    from toolkit.data import PARTS

    return {p: digits_split.take(digits, p) for p in (*PARTS, "members", "nonmembers")}


@pytest.fixture(scope="session")
def digits_spec(digits):
    from toolkit.models import ModelSpec

    def make(arch: str):
        return ModelSpec(arch=arch, input_shape=digits.input_shape, n_classes=digits.n_classes)

    return make


@pytest.fixture(scope="session")
def quick_recipe():
    from toolkit.models import TrainRecipe

    return TrainRecipe(epochs=15, batch_size=64, seed=0)


@pytest.fixture(scope="session")
def trained(digits_parts, digits_spec, quick_recipe):
    """``trained(framework, arch)`` -> a model trained on the digits members (cached; do not mutate)."""
    from toolkit.models import train_reference_model

    cache: dict = {}

    def get(framework: str, arch: str = "mlp"):
        key = (framework, arch)
        if key not in cache:
            tr = digits_parts["members"]
            cache[key] = train_reference_model(digits_spec(arch), framework, tr.x, tr.y, quick_recipe)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
