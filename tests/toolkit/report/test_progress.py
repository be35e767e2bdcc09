"""Progress bars appear on a terminal only: leakage queries and reference-model training under a
pseudo-terminal, with SAFECOMPRESS_QUIET=1 (what --quiet/--json set), and with stdout a pipe."""

import os
import pty
import subprocess
import sys

import pytest

SNIPPET = """
import numpy as np
from device_tests.leakage import query
from toolkit.data import load_dataset
from toolkit.models import ModelSpec, TrainRecipe
from toolkit.models.references import ReferencePool

class M:
    def predict_proba(self, x):
        return np.full((len(x), 3), 1 / 3)

out = query(M(), np.zeros((40, 2), np.float32), "target", 3, batch_size=4)
ds = load_dataset("digits")
spec = ModelSpec(arch="mlp", input_shape=ds.input_shape, n_classes=10, hidden=(8,))
pool = ReferencePool(spec, TrainRecipe(epochs=1), (ds.x[:60], ds.y[:60]), n_models=2, executor="inprocess")
refs = pool.query(ds.x[100:110], ds.y[100:110])
print("done", len(out), refs.probs.shape)
"""


def _run(tty: bool, quiet: bool) -> str:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", SAFECOMPRESS_THREADS="1")
    env.pop("SAFECOMPRESS_QUIET", None)
    if quiet:
        env["SAFECOMPRESS_QUIET"] = "1"
    if not tty:
        return subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=env,
                              timeout=300, check=True).stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SNIPPET], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode("utf-8", "replace")
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("tty,quiet,shown", [(True, False, True), (True, True, False), (False, False, False)])
def test_progress_only_on_a_terminal(tty, quiet, shown):
    out = _run(tty, quiet)
    assert "done 40 (2, 10, 10)" in out
    assert ("querying target" in out) == shown, out
    assert ("training 2 reference model(s)" in out) == shown, out
