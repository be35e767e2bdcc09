"""The sandbox child: confines itself, then serves one artifact's runtime to its parent.

Started by :mod:`device_tests.sandbox.client` as ``python -I -c <boot> ROOT ARGS_JSON`` with the request pipe,
the reply pipe and the shared input file as inherited descriptors, stdout/stderr pointed at a capped log file the
parent owns, and an empty private working directory. ``ARGS_JSON``: the descriptors, the format, the parent's
pid and the limits.

Requests (JSON headers, :mod:`device_tests.sandbox.wire`):

* ``{"op": "open", "name": ..., "batch_size": B, "threads": T}`` with the artifact's bytes as payload.
  Reply: the runtime's description (shape, dtype, classes, batching).
* ``{"op": "run", "shape": [...], "dtype": ...}``: adapted inputs at the start of the shared file. The child
  runs them in groups of whole batches (one batch at first; the group doubles while a group takes under
  :data:`GROUP_SECONDS`, halves when one takes over twice that, and keeps its size across requests). It sends
  ``{"progress": rows_done}`` after a group once :data:`GROUP_SECONDS` have passed since the request or the last
  report, never after the last group (the parent's timeout runs from the request and from each report), then
  ``{"ok": true, "shape": [n, k], "out_offset": o}`` with the float32 outputs written into the shared file at
  ``o`` (room the parent reserves once it knows the class count), or ``{"ok": true, "shape": [n, k]}`` with
  them as payload when they do not fit there.

Every failure is a reply ``{"ok": false, "error": one line}``; the parent turns it into an ``ArtifactError``.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

#: A group of batches that ran faster than this is doubled for the next call (few runtime calls and messages for
#: fast models); progress is reported at most this often. ``MAX_GROUP`` bounds a group, in batches.
GROUP_SECONDS = 0.25
MAX_GROUP = 1024


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
    # Landlock confines the calling thread and the threads it starts afterwards, not threads that already run:
    # it goes on while this is the only thread, before numpy (OpenBLAS starts its pool on import) and the
    # runtime's framework are imported (trusted library code; the files they read are the allowed ones).
    confine.preload()
    abi, why_not_landlock = confine.restrict_files(scratch=os.getcwd())
    import numpy as np

    from device_tests.runtimes import RUNTIMES
    from device_tests.sandbox import wire

    fmt = args["format"]
    runtime_cls = RUNTIMES.get(fmt)
    runtime_cls.preload()
    if abi:  # the read-only layer on top (the imports are done writing their caches)
        abi, why_not_landlock = confine.restrict_files(over_first_layer=True)
    # seccomp covers every thread (TSYNC) and goes on last: it is harmless to the imports, but they may start a
    # process of their own (ctypes.util.find_library) and would fail on the EPERM instead of falling back.
    seccomp, why_not_seccomp = confine.restrict_syscalls()
    req, rep, shm_fd = int(args["requests"]), int(args["replies"]), int(args["shared"])
    wire.send(rep, {"ok": True, "protections": {
        "rlimits": True, "parent_death_signal": parent_death, "landlock_abi": abi, "seccomp": seccomp,
        "private_workdir": os.getcwd() == args["workdir"],
        "missing": [m for m in (why_not_landlock, why_not_seccomp) if m]}})

    runtime = None
    shared: mmap.mmap | None = None
    batches = 1  # batches per runtime call (see GROUP_SECONDS)
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
                outs, i, said = [], 0, time.monotonic()
                while i < len(x):  # whole batches at a time, a sign of life after any group that took a while
                    started = time.monotonic()
                    xb = x[i:i + batches * step]
                    outs.append(np.asarray(runtime.run_adapted(xb), dtype=np.float32).reshape(len(xb), -1))
                    i += len(xb)
                    now = time.monotonic()
                    if i < len(x) and now - said >= GROUP_SECONDS:
                        wire.send(rep, {"progress": i})
                        said = now
                    # Fast batches: fewer, larger calls (each costs the runtime's per-call setup); the size is
                    # kept for the next request. A group that took long is halved again.
                    if now - started < GROUP_SECONDS and len(xb) == batches * step:
                        batches = min(batches * 2, MAX_GROUP)
                    elif now - started > 2 * GROUP_SECONDS:
                        batches = max(1, batches // 2)
                start = max(int(msg.get("out_offset", 0)), x.nbytes)
                del x  # no view into the shared map may outlive this request (it is resized)
                n_out = sum(o.size for o in outs)
                if outs and all(o.shape[1] == outs[0].shape[1] for o in outs) and start + 4 * n_out <= len(shared):
                    # Outputs go back where the parent reserved room for them: no copy through the pipe.
                    dest = np.frombuffer(shared, dtype=np.float32, count=n_out, offset=start).reshape(
                        -1, outs[0].shape[1])
                    np.concatenate(outs, out=dest) if len(outs) > 1 else np.copyto(dest, outs[0])
                    del dest
                    wire.send(rep, {"ok": True, "shape": [n_out // outs[0].shape[1], outs[0].shape[1]],
                                    "out_offset": start})
                else:
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
