"""Checkpoints of finished jobs, written atomically and read back without ever unpickling.

Layout of ``checkpoint_dir/<key>/`` (``<key>`` made file-system safe by :func:`~toolkit.executors.base.safe_name`)::

    result.json        format, key, fn, fingerprint of the job's arguments, the encoded value, digests
    arrays/a0.npy ...  numpy arrays of the value (np.save, loaded with allow_pickle=False)
    files/...          the files of a JobResult

The value is encoded as JSON: None/bool/int/float/str and lists as themselves, tuples, dicts (any JSON-able
keys) and numpy arrays/scalars as tagged objects. Anything else cannot be checkpointed (a clear error).
A whole entry is written into ``.tmp-<key>-*`` and renamed into place, so a run killed at any moment leaves
either the old entry, the new one, or none: never half of one. An entry whose digests, arrays or
fingerprint do not check out is ignored and the job recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from toolkit.executors.base import Envelope, ExecutorError, Item, Job, JobResult
from toolkit.io import sha256_file

FORMAT = 1
_MAX_META_BYTES = 64 * 1024**2


# ---------------------------------------------------------------------------------------------- fingerprint
def job_fingerprint(job: Job) -> str:
    """sha256 of the job's function and arguments, so a checkpoint is reused only for the same job.

    Arrays hash by dtype, shape and bytes; pydantic models by their JSON; dataclasses field by field.
    Objects of other types contribute their type name only (the key must then tell them apart).
    """
    h = hashlib.sha256()
    h.update(job.fn.encode())
    _feed(h, job.kwargs)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, bytes):
        h.update(f"bytes:{len(obj)}:".encode())
        h.update(obj)
    elif isinstance(obj, os.PathLike):
        h.update(f"path:{os.fspath(obj)!r};".encode())
    elif isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind == "O":
            h.update(b"opaque:object-array;")
        else:
            h.update(f"nd:{arr.dtype.str}:{arr.shape};".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)}[".encode())
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)}{{".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, enum.Enum):
        h.update(f"enum:{type(obj).__qualname__}:".encode())
        _feed(h, obj.value)
    elif hasattr(obj, "model_dump_json") and hasattr(type(obj), "model_fields"):  # pydantic v2 model
        h.update(f"pydantic:{type(obj).__module__}.{type(obj).__qualname__}:".encode())
        h.update(obj.model_dump_json().encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dataclass:{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _feed(h, getattr(obj, f.name))
        h.update(b")")
    else:
        h.update(f"opaque:{type(obj).__module__}.{type(obj).__qualname__};".encode())


# ---------------------------------------------------------------------------------------------- encoding
def encode(obj: Any, arrays: dict[str, np.ndarray], label: str) -> Any:
    """JSON-able form of ``obj``; numpy arrays are moved into ``arrays`` (name -> array)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind == "O":
            raise ExecutorError(f"job {label!r} returned an object array, which a checkpoint cannot hold; "
                                "return numeric arrays")
        name = f"a{len(arrays)}.npy"
        arrays[name] = arr
        return {"$npy": name, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, list):
        return [encode(v, arrays, label) for v in obj]
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v, arrays, label) for v in obj]}
    if isinstance(obj, dict):
        return {"$dict": [[encode(k, arrays, label), encode(v, arrays, label)] for k, v in obj.items()]}
    raise ExecutorError(f"job {label!r} returned a {type(obj).__module__}.{type(obj).__qualname__}, which a "
                        "checkpoint cannot hold; return JSON-able data, numpy arrays or JobResult(value) with files")


def decode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, list):
        return [decode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if "$npy" in obj:
            arr = arrays[obj["$npy"]]
            return arr[()] if obj.get("scalar") else arr
        if "$tuple" in obj:
            return tuple(decode(v, arrays) for v in obj["$tuple"])
        if "$dict" in obj:
            return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in obj["$dict"]}
        raise ValueError("untagged object in a checkpoint")
    return obj


def _hashable(k: Any) -> Any:
    hash(k)  # TypeError for a list key: the entry is corrupt
    return k


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _relative(name: str) -> PurePosixPath:
    """A stored file name, refused unless it is a plain relative path inside the entry."""
    p = PurePosixPath(name)
    if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts):
        raise ValueError(f"unsafe file name {name!r} in a checkpoint")
    return p


# ---------------------------------------------------------------------------------------------- atomic dirs
def write_dir_atomically(final: Path, files: dict[str, bytes]) -> None:
    """Create directory ``final`` holding ``files`` (relative name -> bytes) in one rename.

    Everything is written and fsynced under a ``.tmp-`` sibling first; an existing ``final`` is moved aside
    and deleted only after the new one is in place.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        for name, data in files.items():
            p = tmp.joinpath(*_relative(name).parts)
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
            os.replace(final, old / "entry")
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------- store
class CheckpointStore:
    """Finished jobs under ``root``, one directory per key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"cannot create checkpoint directory {self.root}: {exc.strerror or exc}") from None

    def entry(self, it: Item) -> Path:
        return self.root / it.safe

    def discard_partials(self, it: Item) -> None:
        """Remove what an interrupted earlier write of this key left behind (never read, only untidy)."""
        for pattern in (f".tmp-{it.safe}-*", f".old-{it.safe}-*"):
            for p in self.root.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)

    def load(self, it: Item, fingerprint: str) -> tuple[bool, Any]:
        """``(True, result)`` for a complete, intact entry of this very job; ``(False, None)`` otherwise."""
        d = self.entry(it)
        meta_path = d / "result.json"
        try:
            if not meta_path.is_file() or meta_path.stat().st_size > _MAX_META_BYTES:
                return False, None
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (meta.get("format") != FORMAT or meta.get("key") != it.job.key or meta.get("fn") != it.job.fn
                    or meta.get("fingerprint") != fingerprint):
                return False, None
            arrays = {}
            for name, digest in meta["arrays"].items():
                p = d / "arrays" / _relative(name)
                data = p.read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    return False, None
                arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
            files = {}
            for name, digest in meta["files"].items():
                p = d.joinpath("files", *_relative(name).parts)
                if sha256_file(p) != digest:
                    return False, None
                files[name] = p
            value = decode(meta["value"], arrays)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            return False, None  # corrupt or foreign entry: recompute and overwrite it
        if meta.get("wrapped"):
            return True, JobResult(value, files, dict(meta["files"]))
        return True, value

    def save(self, it: Item, fingerprint: str, env: Envelope) -> Any:
        """Store a finished job atomically; return its result as the caller sees it."""
        arrays: dict[str, np.ndarray] = {}
        encoded = encode(env.value, arrays, it.label)
        blobs = {f"arrays/{n}": _npy_bytes(a) for n, a in arrays.items()}
        meta = {"format": FORMAT, "key": it.job.key, "fn": it.job.fn, "fingerprint": fingerprint,
                "wrapped": env.wrapped, "seconds": round(env.seconds, 3),
                "arrays": {n: hashlib.sha256(blobs[f"arrays/{n}"]).hexdigest() for n in arrays},
                "files": dict(env.sha256), "value": encoded}
        blobs.update({f"files/{n}": b for n, b in env.files.items()})
        blobs["result.json"] = (json.dumps(meta, indent=1) + "\n").encode()
        d = self.entry(it)
        write_dir_atomically(d, blobs)
        if env.wrapped:
            return JobResult(env.value, {n: d.joinpath("files", *_relative(n).parts) for n in env.files},
                             dict(env.sha256))
        return env.value

