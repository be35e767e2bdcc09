"""Open a new artifact in a throw-away subprocess before trusting the runtime with it in-process.

Native interpreters (LiteRT, the lite interpreter, ExecuTorch) parse flatbuffers / archives in C++; a
malformed or hostile file may crash (segfault) or hang them rather than raise. :func:`check_isolated` runs
``python -m device_tests.isolate PATH`` (an argv list, never a shell) with a timeout: the child loads the
file with the format's runtime and runs one tiny inference. Only if that succeeds is the file opened in the
calling process. A crash (negative return code), a hang (timeout) or a one-line error from the child becomes
an :class:`~toolkit.errors.ArtifactError` naming the file. Verdicts are cached by sha256 for the life of
the process, so each distinct file is checked once. :func:`mark_trusted` records a verdict for bytes this
process produced itself (the exporters validate their own output in-process).

Child protocol: one JSON line on stdout, ``{"ok": true}`` (exit 0) or ``{"ok": false, "error": msg}`` (exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from toolkit.errors import ArtifactError

TIMEOUT_S = float(os.environ.get("SAFECOMPRESS_ISOLATE_TIMEOUT", "120"))
#: sha256 -> None (loads and runs) or (file name it was seen as, error message)
_VERDICTS: dict[str, tuple[str, str] | None] = {}


def mark_trusted(sha256: str) -> None:
    _VERDICTS[sha256] = None


def _raise(verdict: tuple[str, str], name: str) -> None:
    seen_as, msg = verdict
    raise ArtifactError(msg.replace(seen_as, name) if seen_as != name else msg)


def check_isolated(path: Path, content: bytes, fmt: str, timeout: float | None = None) -> None:
    """Raise :class:`ArtifactError` unless ``path`` loads and answers one query in a subprocess."""
    from toolkit.io import sha256_bytes

    sha = sha256_bytes(content)
    name = Path(path).name
    if sha in _VERDICTS:
        if _VERDICTS[sha] is not None:
            _raise(_VERDICTS[sha], name)
        return
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    limit = TIMEOUT_S if timeout is None else timeout
    try:
        # An absolute path: the child runs in the repository root, not in the caller's working directory.
        proc = subprocess.run([sys.executable, "-m", "device_tests.isolate", str(Path(path).absolute()), fmt],
                              capture_output=True, text=True, timeout=limit, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        verdict = (name, f"{name}: the {fmt} runtime did not finish loading it within {limit:.0f} s "
                         "(checked in an isolated process); the file is corrupt or hostile")
    else:
        verdict = _verdict(proc, name, fmt)
    _VERDICTS[sha] = verdict
    if verdict is not None:
        _raise(verdict, name)


def _verdict(proc: subprocess.CompletedProcess, name: str, fmt: str) -> tuple[str, str] | None:
    if proc.returncode < 0:
        return (name, f"{name}: the {fmt} runtime crashed (signal {-proc.returncode}) loading it in an isolated "
                      "process; the file is corrupt or hostile")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " ".join(proc.stderr.split())[-200:]
        return (name, f"{name}: the {fmt} runtime failed loading it in an isolated process "
                      f"(exit {proc.returncode}): {tail}")
    if answer.get("ok") and proc.returncode == 0:
        return None
    return (name, str(answer.get("error") or f"{name}: the {fmt} runtime failed (exit {proc.returncode})"))


def _probe_input(runtime):
    import numpy as np

    shape = runtime.input_shape
    if shape is None:
        return None
    dims = tuple(d if d is not None else min(8, runtime.max_seq_len or 8) for d in shape)
    return np.zeros((1, *dims), dtype=runtime.input_dtype if runtime.integer_input else np.float32)


def main(argv: list[str]) -> int:
    from toolkit.errors import SafeCompressError

    try:
        path = Path(argv[0])
        content = path.read_bytes()
        from device_tests.detect import detect_format
        from device_tests.runtimes import open_artifact

        fmt = detect_format(content, path.name)
        runtime = open_artifact(path, content, fmt, batch_size=1, threads=1)
        x = _probe_input(runtime)
        if x is not None:
            runtime.predict_raw(x)
    except SafeCompressError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else is reported to the parent as one line
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(json.dumps({"ok": False, "error": f"{Path(argv[0]).name}: cannot load it: {msg}"}), flush=True)
        return 2
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
