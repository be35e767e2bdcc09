"""Confinement of a sandbox child, applied by the child to itself before it sees the artifact's bytes.

Order (each step narrows what the next may do; none needs root):

1. :func:`die_with_parent` - ``PR_SET_PDEATHSIG`` = SIGKILL, then a check that the parent is still the one that
   started us (it may have died before the call).
2. :func:`set_rlimits` - address space, CPU seconds, open files, output file size, no core files. Set before the
   runtime is imported, so the import itself runs under them.
3. :func:`restrict_files` with ``scratch`` - Landlock, first layer: read-only access to the Python installation,
   the runtime's libraries and a few device files, plus the child's private empty working directory (imports
   write caches there); nothing else. Landlock confines the calling thread and the threads it starts later, so
   it is applied while the child has one thread (a thread already running is reported as not confined).
4. (the child imports numpy and the runtime: trusted library code, not the artifact)
5. :func:`restrict_files` - second layer, stacked: the same read-only paths and no write, create, remove or
   execute anywhere, the private directory included. An artifact cannot read ``/etc``, the user's home, the run
   directory or the current directory, and cannot write any file. Threads the imports started keep the first
   layer only (the child's numpy runs with ``OPENBLAS_NUM_THREADS=1`` so that it starts none; torch and ONNX
   Runtime start one housekeeping thread); the runtimes' worker threads start later, under both.
6. :func:`restrict_syscalls` - a seccomp filter (libseccomp via ``pyseccomp``), synchronised to every thread
   (``TSYNC``): no sockets, no new processes
   (threads only), no exec, no signals to other processes, no ptrace / process_vm_*, no raising of limits, no
   namespaces, mounts, BPF, keyrings or io_uring. Denied calls fail with EPERM (ENOSYS for ``clone3``, so that
   libc falls back to ``clone``, whose flags the filter can see).

Each step reports whether it took effect; what could not be enabled (old kernel, no libseccomp) is listed and
the parent warns. The parent validates the report (:class:`device_tests.sandbox.limits.Protections`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
import sysconfig
from pathlib import Path

PR_SET_PDEATHSIG = 1

#: System calls a model runtime never needs. ``kill``-like calls are handled separately (allowed to ourselves).
DENIED_SYSCALLS = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "execve", "execveat", "fork", "vfork",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill",
    "setrlimit", "prlimit64", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "personality", "open_by_handle_at",
    "name_to_handle_at", "mknod", "mknodat", "sethostname", "setdomainname", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog",
    "iopl", "ioperm", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
)
CLONE_THREAD = 0x00010000


def _libc():
    # The C library the interpreter is linked against (find_library would spawn ldconfig: no processes here).
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(expected_parent: int) -> bool:
    """SIGKILL this process when its parent dies; exit at once if the parent is already gone."""
    try:
        ok = _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    if os.getppid() != expected_parent:
        os._exit(1)
    return ok


def set_rlimits(limits: dict) -> None:
    """Address space, CPU time, open files and written file size; core files off (a crash writes nothing)."""
    cpu = int(limits["cpu_seconds"])
    for res, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, int(limits["memory_bytes"])),
                       (resource.RLIMIT_CPU, (cpu, cpu + 5)), (resource.RLIMIT_NOFILE, int(limits["open_files"])),
                       (resource.RLIMIT_FSIZE, int(limits["file_size"]))):
        soft, hard = value if isinstance(value, tuple) else (value, value)
        _, old_hard = resource.getrlimit(res)
        if old_hard != resource.RLIM_INFINITY:  # never ask for more than we were given
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(res, (soft, hard))


def readable_paths() -> list[str]:
    """Where the child may read after confinement: the interpreter and its packages (lazy imports, native
    libraries loaded on first use), the safecompress packages themselves, the dynamic loader's cache and the
    CPU description native runtimes read at start-up. Nothing with user data: no home, /etc, /tmp or cwd."""
    here = Path(__file__).resolve().parents[2]
    paths = {sys.prefix, sys.base_prefix + "/lib", sys.exec_prefix + "/lib", *sysconfig.get_paths().values(),
             *(str(here / pkg) for pkg in ("device_tests", "toolkit", "exporters")),
             *(p for p in sys.path if p.endswith(("site-packages", "dist-packages", "lib-dynload"))),
             "/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
             "/sys/devices/system/cpu", "/proc/cpuinfo", "/dev/urandom", "/dev/zero"}
    if str(here) in paths:  # a venv inside the clone would otherwise expose the whole clone (runs, data)
        paths.discard(str(here))
    return sorted(p for p in paths if p and os.path.exists(p))


def preload() -> None:
    """Import the confinement libraries while files may still be opened (pyseccomp looks up libseccomp with
    ``ctypes.util.find_library``, which needs a temporary directory and a process of its own)."""
    for module in ("landlock", "pyseccomp"):
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - reported as missing by restrict_files / restrict_syscalls
            pass
    import tempfile

    # Found by writing a probe file, once per process; frameworks ask for it on import (ExecuTorch does), when
    # nothing can be written any more. Creating a file there later still fails: nothing is writable.
    tempfile.gettempdir()


def restrict_files(scratch: str | None = None, *, over_first_layer: bool = False) -> tuple[int, str | None]:
    """Landlock: read-only access beneath :func:`readable_paths`, nothing else. ``(abi, reason if not)``.

    With ``scratch`` (the child's private, empty working directory), also reading, creating and writing files
    beneath it: the first of two layers, for the imports (torch's inductor makes a cache directory in the temp
    directory on import). A second call without it stacks the read-only layer on top (Landlock layers only
    narrow), for the calling thread and the threads it starts afterwards (``over_first_layer``: threads that
    already run are under the first layer, not unconfined)."""
    try:
        import landlock
        from landlock import FSAccess
    except Exception as exc:  # noqa: BLE001 - the package is optional: degrade with the reason
        return 0, f"Landlock: the landlock package is not importable ({type(exc).__name__})"
    try:
        abi = int(landlock.landlock_abi_version())
    except Exception as exc:  # noqa: BLE001 - OSError (ENOSYS: kernel < 5.13, EOPNOTSUPP: disabled at boot)
        return 0, f"Landlock: not available in this kernel ({' '.join(str(exc).split())[:120]})"
    # Threads started before this call do not get this layer.
    others = 0 if over_first_layer else len(os.listdir("/proc/self/task")) - 1
    try:
        ruleset = landlock.Ruleset()  # handles every access right this ABI knows: all are denied unless allowed
        read_dir = FSAccess.READ_FILE | FSAccess.READ_DIR
        for path in readable_paths():
            ruleset.allow(path, rules=read_dir if os.path.isdir(path) else FSAccess.READ_FILE)
        # Runtimes silence native chatter by pointing fd 2 at /dev/null: writing there reaches nothing.
        ruleset.allow("/dev/null", rules=FSAccess.READ_FILE | FSAccess.WRITE_FILE)
        if scratch is not None:
            ruleset.allow(scratch, rules=read_dir | FSAccess.WRITE_FILE | FSAccess.MAKE_REG | FSAccess.MAKE_DIR
                          | FSAccess.REMOVE_FILE | FSAccess.REMOVE_DIR | _truncate(FSAccess))
        ruleset.apply()
    except Exception as exc:  # noqa: BLE001
        return 0, f"Landlock: could not be applied ({' '.join(str(exc).split())[:120]})"
    if others:
        return abi, f"Landlock: {others} thread(s) started before it are not confined"
    return abi, None


def _truncate(access):
    """The TRUNCATE right where this landlock package knows it (ABI 3), else nothing."""
    return getattr(access, "TRUNCATE", 0)


def restrict_syscalls() -> tuple[bool, str | None]:
    """The seccomp filter described in the module docstring. ``(loaded, reason if not)``."""
    try:
        import pyseccomp as sc
    except Exception as exc:  # noqa: BLE001 - no libseccomp.so.2 on this system: degrade with the reason
        return False, f"seccomp: libseccomp is not available ({' '.join(str(exc).split())[:120]})"
    me = os.getpid()
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread of the process, not only the caller
        deny = sc.ERRNO(errno.EPERM)
        for name in DENIED_SYSCALLS:
            try:
                f.add_rule(deny, name)
            except (OSError, ValueError, RuntimeError):  # a call this architecture does not have
                pass
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags live in memory the filter cannot read
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))  # a process, not a thread
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            f.add_rule(deny, name, sc.Arg(0, sc.NE, me))  # signals to ourselves only
        f.add_rule(deny, "prctl", sc.Arg(0, sc.EQ, PR_SET_PDEATHSIG))  # keep dying with the parent
        f.load()
    except Exception as exc:  # noqa: BLE001
        return False, f"seccomp: the filter could not be loaded ({' '.join(str(exc).split())[:120]})"
    return True, None
