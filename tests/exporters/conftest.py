"""Artifacts exported once per session from the ``trained`` digits models, shared by the exporter tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def sample(digits_parts):
    """Parity sample (held-out digits) and calibration data (members)."""
    return digits_parts["nonmembers"].x[:200], digits_parts["members"].x[:200]


@pytest.fixture(scope="session")
def exported(trained, sample, export_dir):
    """``exported(framework, arch, fmt, mode) -> ArtifactInfo`` (cached)."""
    from exporters import export

    cache: dict = {}

    def get(framework: str, arch: str, fmt: str, mode: str = "float"):
        key = (framework, arch, fmt, mode)
        if key not in cache:
            x, rep = sample
            cache[key] = export(trained(framework, arch), fmt, export_dir / f"{framework}-{arch}-{mode}.{fmt}", x,
                                mode=mode, representative=rep)
        return cache[key]

    return get
