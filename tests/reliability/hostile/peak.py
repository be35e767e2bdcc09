"""Run a command as the child of this small process and record the child's own peak resident set.

``python peak.py REPORT -- CMD ...`` forks, execs CMD in the child, reaps it with ``wait4`` and writes the child's
``ru_maxrss`` (bytes) to REPORT, then ends the way the child ended (same exit code, same signal).

Why a middleman: Linux keeps a process's ``maxrss`` across ``exec`` and a forked child starts with its parent's
resident set, so a CLI forked straight from a pytest process that has imported torch and TensorFlow "peaks" at
the size of pytest (1.2 GB measured in CI) before doing anything. Forked from this ~10 MB process, the number is
the CLI's own (and that of the children it waited for, such as the sandbox child).
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> None:
    report, sep, cmd = argv[0], argv[1], argv[2:]
    if sep != "--" or not cmd:
        raise SystemExit("usage: peak.py REPORT -- CMD ...")
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    for sig in (signal.SIGINT, signal.SIGTERM):  # signals go to the CLI (the test sends them there); stay alive
        signal.signal(sig, signal.SIG_IGN)
    _, status, usage = os.wait4(pid, 0)
    with open(report, "w") as f:
        f.write(str(usage.ru_maxrss * 1024))
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot (and need not) be reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
