"""Artifacts for the runtime tests: ours (through ``exporters``) and foreign ones (plain converters)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def rt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture(scope="session")
def ours(trained, digits_parts, rt_dir):
    """``ours(framework, arch, fmt, mode="float") -> path`` exported by exporters.export (cached)."""
    from exporters import export

    cache: dict = {}

    def get(framework: str, arch: str, fmt: str, mode: str = "float"):
        key = (framework, arch, fmt, mode)
        if key not in cache:
            x = digits_parts["nonmembers"].x[:100]
            info = export(trained(framework, arch), fmt, rt_dir / f"ours-{framework}-{arch}-{mode}.{fmt}", x, mode=mode,
                          representative=digits_parts["members"].x[:100])
            cache[key] = info.path
        return cache[key]

    return get
