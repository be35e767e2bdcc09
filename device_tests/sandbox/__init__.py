"""The sandbox every untrusted artifact runs in: a confined child process per artifact.

An artifact is code (a ``.ptl``/``.pte`` runs operators; an ONNX graph can loop, allocate or point at other
files). Everything that loads or runs one the user did not produce in this process happens in a child that:

* gets the artifact's **bytes** (read once by the parent and hashed: the digest is of what runs), never a path;
* runs in an empty private working directory, with a scrubbed environment (``python -I``);
* is limited in address space, CPU seconds, open files and output file size, no core files (set before the
  runtime is imported), and dies with its parent (``PR_SET_PDEATHSIG``) and on a per-call wall-clock timeout;
* is confined with **Landlock** (read-only access to the Python installation and system libraries; no write,
  create or delete anywhere; no read of home, ``/etc``, ``/tmp`` or the working directory) and a **seccomp**
  filter (no sockets, processes, exec, signals to others, ptrace, or raising its limits), where the kernel and
  libseccomp offer them; otherwise it warns once and names what is missing;
* has stdout/stderr captured in a capped private file, never relayed to the CLI's output;
* answers over pipes with JSON headers and raw arrays that the parent validates (nothing is unpickled).

``python -m device_tests.sandbox`` (or ``safecompress doctor``) prints the protections active on this machine.
Artifacts this process exported itself (:func:`trust`, by sha256 of their bytes) are opened in-process.
"""

from __future__ import annotations

__all__ = ["SandboxedRuntime", "probe_protections", "trust", "is_trusted"]

#: sha256 of artifact bytes this process produced itself (the exporters validate their own output in-process).
_TRUSTED: set[str] = set()


def trust(sha256: str) -> None:
    """Record that the bytes with this digest were produced by this process (not read from anyone's file)."""
    _TRUSTED.add(sha256)


def is_trusted(sha256: str) -> bool:
    return sha256 in _TRUSTED


def __getattr__(name: str):
    if name in ("SandboxedRuntime", "probe_protections"):
        from device_tests.sandbox import client

        return getattr(client, name)
    raise AttributeError(f"module 'device_tests.sandbox' has no attribute {name!r}")
