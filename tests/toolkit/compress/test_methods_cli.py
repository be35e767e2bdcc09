"""``safecompress methods``: the registry as JSON, in a real subprocess, without loading any framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from toolkit.compress import METHODS

HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "torch", "nni", "onnxruntime",
         "ai_edge_litert", "executorch")
# Runs the real CLI entry point, then reports which heavy frameworks that imported (on stderr's last line).
PROBE = ("import sys, json; from toolkit.cli import main; rc = main(sys.argv[1:]); "
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr); sys.exit(rc)")


def run_methods(*args):
    env = dict(os.environ, SAFECOMPRESS_QUIET="1")
    r = subprocess.run([sys.executable, "-c", PROBE, "methods", *args], capture_output=True, text=True, env=env,
                       timeout=120)
    *errors, loaded = r.stderr.strip().splitlines()
    return r, errors, json.loads(loaded)


@pytest.mark.parametrize("backend", ["tfmot", "tflite"])
def test_methods_json_describes_each_method_without_loading_frameworks(backend):
    r, errors, loaded = run_methods("--json", "--backend", backend)
    assert r.returncode == 0 and not errors, r.stderr
    assert loaded == []
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == [n for n in METHODS if METHODS.meta(n)["backend"] == backend]
    for row in rows:
        assert row["backend"] == backend and row["kind"] and row["framework"] == "keras"
        fields = {f["name"]: f for f in row["config"]}
        assert {"fine_tune_epochs", "seed"} <= set(fields)
        assert all({"type", "default", "description"} <= set(f) for f in fields.values())
    by_name = {row["name"]: {f["name"]: f for f in row["config"]} for row in rows}
    if backend == "tfmot":
        prune = by_name["tfmot_prune"]
        assert prune["sparsity"]["type"] == "float" and prune["sparsity"]["default"] == 0.5
        assert prune["schedule"]["type"] == "Literal['constant', 'polynomial']"
        clusters = by_name["tfmot_cluster"]["n_clusters"]
        assert (clusters["type"], clusters["default"]) == ("int", 16)


def test_methods_table_lists_names():
    r, errors, loaded = run_methods("--backend", "tflite")
    assert r.returncode == 0 and not errors and loaded == []
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["tflite_dynamic", "tflite_float16", "tflite_int8"]


def test_methods_unknown_backend_is_one_line_exit_2():
    r, errors, _ = run_methods("--backend", "jax")
    assert r.returncode == 2
    known = ", ".join(sorted({METHODS.meta(n)["backend"] for n in METHODS}))
    assert errors == [f"error: unknown backend 'jax'; known: {known}"]


def test_methods_json_lists_every_registered_method():
    r, errors, loaded = run_methods("--json")
    assert r.returncode == 0 and not errors and loaded == []
    assert [row["name"] for row in json.loads(r.stdout)] == METHODS.names()
