"""The sandbox child: confines itself, then serves one artifact's runtime to its parent.

Started by :mod:`device_tests.sandbox.client` as ``python -I -c <boot> ROOT ARGS_JSON`` with the request pipe,
the reply pipe and the shared input file as inherited descriptors, stdout/stderr pointed at a capped log file the
parent owns, and an empty private working directory. ``ARGS_JSON``: the descriptors, the format, the parent's
pid and the limits.

Requests (JSON headers, :mod:`device_tests.sandbox.wire`):

* ``{"op": "open", "name": ..., "batch_size": B, "threads": T}`` with the artifact's bytes as payload.
  Reply: the runtime's description (shape, dtype, classes, batching).
* ``{"op": "run", "shape": [...], "dtype": ...}``: adapted inputs at the start of the shared file. The child
  runs them a batch at a time and sends ``{"progress": rows_done}`` after each batch but the last (the parent's
  timeout is per batch), then ``{"ok": true, "shape": [n, k]}`` with the float32 outputs as payload.

Every failure is a reply ``{"ok": false, "error": one line}``; the parent turns it into an ``ArtifactError``.
"""

from __future__ import annotations

import json
import mmap
import os
import sys


def _reply_error(fd: int, exc: BaseException) -> None:
    from device_tests.sandbox import wire
    from toolkit.errors import DataError, SafeCompressError

    if isinstance(exc, SafeCompressError):
        msg, kind = str(exc), "data" if isinstance(exc, DataError) else "artifact"
    else:
        msg, kind = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", "runtime"
    wire.send(fd, {"ok": False, "error": msg[:1000], "kind": kind})


def _describe(runtime) -> dict:
    return {"ok": True, "input_shape": None if runtime.input_shape is None else list(runtime.input_shape),
            "input_dtype": str(runtime.input_dtype), "n_classes": runtime.n_classes,
            "max_seq_len": runtime.max_seq_len, "quantized_input": bool(getattr(runtime, "quantized_input", False)),
            "max_batch": runtime.max_batch, "fixed_batch": bool(runtime.fixed_batch),
            "output_atol": float(runtime.output_atol), "details": runtime.details()}


def serve(args: dict) -> int:
    from device_tests.sandbox import confine

    parent_death = confine.die_with_parent(int(args["parent"]))
    confine.set_rlimits(args["limits"])
    # Trusted imports first (numpy, the runtime's framework), under the limits but before the lock-down.
    import numpy as np

    from device_tests.runtimes import RUNTIMES
    from device_tests.sandbox import wire

    fmt = args["format"]
    runtime_cls = RUNTIMES.get(fmt)
    runtime_cls.preload()
    confine.preload()
    abi, why_not_landlock = confine.restrict_files()
    seccomp, why_not_seccomp = confine.restrict_syscalls()
    req, rep, shm_fd = int(args["requests"]), int(args["replies"]), int(args["shared"])
    wire.send(rep, {"ok": True, "protections": {
        "rlimits": True, "parent_death_signal": parent_death, "landlock_abi": abi, "seccomp": seccomp,
        "private_workdir": os.getcwd() == args["workdir"],
        "missing": [m for m in (why_not_landlock, why_not_seccomp) if m]}})

    runtime = None
    shared: mmap.mmap | None = None
    while True:
        try:
            msg, payload = wire.recv(req, max_payload=1 << 40)  # the parent is trusted
        except (wire.WireClosed, wire.WireError):
            return 0
        try:
            size = int(msg.get("shared_size", 0))
            if size and (shared is None or len(shared) != size):
                if shared is not None:
                    shared.close()
                shared = mmap.mmap(shm_fd, size)
            if msg["op"] == "open":
                from pathlib import Path

                runtime = runtime_cls(Path(msg["name"]), bytes(payload), batch_size=int(msg["batch_size"]),
                                      threads=int(msg["threads"]))
                del payload
                wire.send(rep, _describe(runtime))
            elif msg["op"] == "run":
                shape = tuple(int(d) for d in msg["shape"])
                x = np.frombuffer(shared, dtype=np.dtype(msg["dtype"]), count=int(np.prod(shape))).reshape(shape)
                step = int(runtime.max_batch) if runtime.fixed_batch else min(runtime.batch_size,
                                                                               runtime.max_batch or runtime.batch_size)
                outs = []
                for i in range(0, len(x), step):  # one batch at a time, each followed by a sign of life
                    outs.append(np.asarray(runtime.run_adapted(x[i:i + step]), dtype=np.float32).reshape(
                        len(x[i:i + step]), -1))
                    if i + step < len(x):
                        wire.send(rep, {"progress": i + step})
                del x  # no view into the shared map may outlive this request (it is resized)
                out = np.ascontiguousarray(np.concatenate(outs) if len(outs) > 1 else outs[0])
                wire.send(rep, {"ok": True, "shape": list(out.shape)}, out)
            elif msg["op"] == "close":
                return 0
            else:
                raise ValueError(f"unknown request {msg['op']!r}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as one line
            _reply_error(rep, exc)


def main(argv: list[str]) -> int:
    return serve(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
