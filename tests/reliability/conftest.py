"""Fixtures of the reliability tests; the helper modules (reliability_runs, reliability_fuzz) sit next to this
file and are imported by name (the fuzz workers also run reliability_fuzz.py as a script)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from reliability_runs import TINY_RUN, run_to_end  # noqa: E402


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("reliability-config") / "tiny.yaml"
    p.write_text(TINY_RUN)
    return p


@pytest.fixture(scope="session")
def tiny_reference_run(tiny_config, tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run of the tiny config: the reference for the resume and determinism tests."""
    out = tmp_path_factory.mktemp("tiny-uninterrupted") / "run"
    return out, run_to_end(tiny_config, out)
