"""Run ``safecompress`` as a real subprocess and measure what its whole process tree used.

:func:`run_cli` starts ``python -m toolkit.cli ARGS`` in its own session and, while it runs, scans ``/proc``
every ``POLL_S`` seconds for the CLI and every descendant (the sandbox child is a child of the CLI, anything a
runtime might start a grandchild). Peak memory is the sum over those processes of the largest ``VmHWM`` (the
kernel's own high-water mark of each process's resident set) seen for each: an upper bound of the tree's
simultaneous peak that does not miss a short spike between two scans of a process still alive. The CLI is started
and reaped by the small middleman ``peak.py``, whose ``wait4`` gives the CLI's ``ru_maxrss`` (the largest of the
CLI and the children it waited for) as a second, exact lower bound; the reported peak is the larger of the two.
(Reaped straight from pytest, that number would start at pytest's own resident set: Linux keeps it across exec.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
POLL_S = 0.02


@dataclass
class CliRun:
    args: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    peak_bytes: int
    pids: set[int] = field(default_factory=set)
    timed_out: bool = False

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def describe(self) -> str:
        return (f"safecompress {' '.join(self.args)}\n  rc={self.rc} {self.seconds:.1f} s peak "
                f"{self.peak_bytes / 2**20:.0f} MiB\n  stdout: {self.stdout[-800:]!r}\n"
                f"  stderr: {self.stderr[-1500:]!r}")


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces and parentheses
        try:
            out[int(entry)] = int(rest[1])
        except (IndexError, ValueError):
            continue
    return out


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (by parent pid), now."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def _hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONHASHSEED="0")
    env.pop("SAFECOMPRESS_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def start_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
              peak_report: Path | None = None) -> subprocess.Popen:
    """Start the CLI in a session of its own; with ``peak_report``, as the child of the ``peak.py`` middleman,
    which writes the CLI's ``ru_maxrss`` there (the Popen is then the middleman's)."""
    cmd = [sys.executable, "-m", "toolkit.cli", *map(str, args)]
    if peak_report is not None:
        cmd = [sys.executable, str(Path(__file__).with_name("peak.py")), str(peak_report), "--", *cmd]
    return subprocess.Popen(cmd, cwd=cwd, env=env or cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def run_cli(args: list, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180.0) -> CliRun:
    """Run the CLI to its end (killed with its process group after ``timeout``) and measure it."""
    args = [str(a) for a in args]
    t0 = time.monotonic()
    report = tempfile.NamedTemporaryFile(prefix="peak-", delete=False)
    report.close()
    proc = start_cli(args, cwd, env, Path(report.name))
    peaks: dict[int, int] = {}
    done = threading.Event()
    streams: dict[str, bytes] = {}

    def read(name, stream):
        streams[name] = stream.read()

    readers = [threading.Thread(target=read, args=(n, s), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()

    def poll():
        while not done.is_set():
            for pid in descendants(proc.pid):
                hwm = _hwm(pid)
                if hwm is not None and hwm > peaks.get(pid, 0):
                    peaks[pid] = hwm
            done.wait(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status = os.waitpid(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    poller.join()
    for r in readers:
        r.join(30)
    proc.stdout.close()
    proc.stderr.close()
    try:
        waited = int(Path(report.name).read_text() or 0)
    finally:
        os.unlink(report.name)
    peaks.pop(proc.pid, None)  # the middleman's own resident set is not the CLI's
    peak = max(sum(peaks.values()), waited)
    return CliRun(args, proc.returncode, streams.get("stdout", b"").decode("utf-8", "replace"),
                  streams.get("stderr", b"").decode("utf-8", "replace"), seconds, peak, set(peaks),
                  timed_out.is_set())


def sandbox_children_of(parent: int) -> list[int]:
    """Pids of live sandbox children started by ``parent`` (their command line carries the parent's pid)."""
    marker = f'"parent": {parent},'.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if b"device_tests.sandbox.child" in cmd and marker in cmd and state != b"Z":
            found.append(int(entry))
    return found
