"""Checkpoints of finished jobs, written atomically and read back without ever unpickling.

Layout of ``checkpoint_dir/<key>/`` (``<key>`` made file-system safe by :func:`~toolkit.executors.base.safe_name`)::

    result.json        format, key, fn, fingerprint of the job's arguments, the encoded value, digests
    arrays/a0.npy ...  numpy arrays of the value (np.save, loaded with allow_pickle=False)
    files/...          the files of a JobResult

The value is encoded as JSON: None/bool/int/float/str and lists as themselves, tuples, dicts (any JSON-able
keys) and numpy arrays/scalars as tagged objects. Anything else cannot be checkpointed (a clear error).
A whole entry is written into ``.tmp-<key>-*`` and renamed into place, so a run killed at any moment leaves
either the old entry, the new one, or none: never half of one.

Verification on resume. A checkpoint directory may sit in a shared folder or come from an unpacked archive,
so nothing in it is trusted because it is there. An entry is used only when

1. ``result.mac`` holds the HMAC-SHA256 of ``result.json`` (bound to the entry's name) under the per-user
   **checkpoint key**, which is never stored in the run directory: whoever can write the run directory but
   not the key cannot forge or edit an entry (replacing an artifact *and* updating its recorded digest
   breaks the MAC); and
2. every array and file matches the sha256 that ``result.json`` records (regular files only: a symlink,
   FIFO or device node in an entry is refused, never opened).

An entry that fails either check (no MAC, a MAC under another key, a digest mismatch, unreadable data) is
never used: the job is recomputed, the entry overwritten, and a ``warning:`` line on stderr names the entry
and the reason. (An intact entry of another job under the same key -- a changed fingerprint -- is simply
recomputed.)

The checkpoint key file is, in order of precedence:

* ``$SAFECOMPRESS_CHECKPOINT_KEY_FILE``;
* ``$XDG_STATE_HOME/safecompress/checkpoint.key`` (``XDG_STATE_HOME`` only when it is an absolute path);
* ``~/.local/state/safecompress/checkpoint.key``.

It is created on first use (32 random bytes as hex, mode 0600, its directory 0700) and must stay a regular
file owned by the user and not accessible to group or others, else exit 2. Checkpoints written under one key
do not verify under another (a new key = every job recomputed, with a warning). When the *default* location
cannot be created (a read-only home), the process uses a random key of its own and says so: its checkpoints
then serve only itself and a rerun recomputes them. :func:`seal` / :func:`seal_matches` give other resume
caches of a run (the engine's reference-model outputs) the same protection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from toolkit.errors import ConfigError
from toolkit.executors.base import Envelope, ExecutorError, Item, Job, JobResult

#: 2: entries carry ``result.mac``; format-1 entries (unauthenticated) are recomputed.
FORMAT = 2
_MAX_META_BYTES = 64 * 1024**2
MAC_FILE = "result.mac"
KEY_ENV = "SAFECOMPRESS_CHECKPOINT_KEY_FILE"
_KEY_BYTES = 32
_MAX_KEY_FILE_BYTES = 4096


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


# ---------------------------------------------------------------------------------------------- key and seals
_keys: dict[str, bytes] = {}


def warn(message: str) -> None:
    """A ``warning:`` line on stderr, shown even in quiet mode: a rejected checkpoint is news, not progress."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def checkpoint_key_path() -> tuple[Path, bool]:
    """``(key file, chosen explicitly)``: ``$SAFECOMPRESS_CHECKPOINT_KEY_FILE``, else the XDG state location."""
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit).expanduser(), True
    state = os.environ.get("XDG_STATE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "safecompress" / "checkpoint.key", False


def checkpoint_key() -> bytes:
    """The per-user checkpoint key (created on first use; see the module docstring). Cached per key file.

    Raises :class:`ConfigError` for a key file that is unusable (not a regular file, not ours, accessible to
    others, malformed) and for an explicit ``$SAFECOMPRESS_CHECKPOINT_KEY_FILE`` that cannot be read or
    created. A default location that cannot be created gives a per-process key and a warning instead, so a
    read-only home does not stop a run (it only stops resuming it).
    """
    try:
        path, explicit = checkpoint_key_path()
    except RuntimeError:  # no home directory at all: nowhere to keep a key
        if "" not in _keys:
            warn(f"no home directory for the checkpoint key; using a key for this process only, so this run's "
                 f"checkpoints cannot be resumed (set {KEY_ENV})")
            _keys[""] = secrets.token_bytes(_KEY_BYTES)
        return _keys[""]
    cached = _keys.get(str(path))
    if cached is not None:
        return cached
    try:
        key = _read_key(path) if os.path.lexists(path) else _create_key(path)
    except OSError as exc:
        if explicit:
            raise ConfigError(f"cannot use checkpoint key file {path} (from {KEY_ENV}): "
                              f"{exc.strerror or exc}") from None
        warn(f"cannot create the checkpoint key file {path} ({exc.strerror or exc}); using a key for this "
             f"process only, so this run's checkpoints cannot be resumed (set {KEY_ENV} to a writable path)")
        key = secrets.token_bytes(_KEY_BYTES)
    _keys[str(path)] = key
    return key


def _read_key(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO planted as the key file must be refused, not block the run forever on open().
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"checkpoint key file {path} is not a regular file; remove it (a new key is "
                              f"created) or set {KEY_ENV}")
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ConfigError(f"checkpoint key file {path} must be owned by you and readable by you only "
                              f"(it is mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}); chmod 600 it")
        raw = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(raw) > _MAX_KEY_FILE_BYTES or len(key) < _KEY_BYTES:
        raise ConfigError(f"checkpoint key file {path} is malformed (expected at least {_KEY_BYTES} bytes as "
                          "hex); remove it to create a new key (existing checkpoints are then recomputed)")
    return key


def _create_key(path: Path) -> bytes:
    """Create the key file whole or not at all: written to a private temp file, then hard-linked into place,
    so a concurrent run never reads half a key; if another process won the race, its key is used."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(_KEY_BYTES)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-key-", dir=path.parent)  # mode 0600 whatever the umask
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key(path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return key


def seal(data: bytes, label: str) -> str:
    """HMAC-SHA256 (hex) of ``data`` bound to ``label`` (what the data is, e.g. the entry's name) under the
    checkpoint key; a seal made for one label does not verify another."""
    msg = f"safecompress.checkpoint/{FORMAT}\0{label}\0".encode("utf-8", "surrogateescape") + data
    return hmac.new(checkpoint_key(), msg, hashlib.sha256).hexdigest()


def seal_matches(data: bytes, label: str, mac: str) -> bool:
    """Whether ``mac`` is :func:`seal` of ``data`` and ``label`` (constant-time comparison)."""
    return hmac.compare_digest(seal(data, label), mac.strip())


@contextlib.contextmanager
def open_regular(path: str | os.PathLike):
    """Open ``path`` for reading only if it is a regular file (not a symlink, FIFO, device or directory).

    Files in a checkpoint are as untrusted as the directory: a FIFO would block ``open()`` forever, a
    symlink could point anywhere. Raises :class:`ValueError` for anything but a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        fh: BinaryIO = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    with open_regular(path) as fh:
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{path} is larger than {max_bytes} bytes")
    return data


def _sha256_regular(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Untrusted(Exception):
    """An entry failed verification (the message says how); it is recomputed with a warning."""


class _Stale(Exception):
    """An authentic entry of a different job under this key; it is recomputed silently."""


# ---------------------------------------------------------------------------------------------- store
class CheckpointStore:
    """Finished jobs under ``root``, one directory per key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"cannot create checkpoint directory {self.root}: {exc.strerror or exc}") from None
        #: Labels of entries that existed but failed verification in this store's lifetime.
        self.rejected: list[str] = []

    def entry(self, it: Item) -> Path:
        return self.root / it.safe

    def discard_partials(self, it: Item) -> None:
        """Remove what an interrupted earlier write of this key left behind (never read, only untidy)."""
        for pattern in (f".tmp-{it.safe}-*", f".old-{it.safe}-*"):
            for p in self.root.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)

    def load(self, it: Item, fingerprint: str) -> tuple[bool, Any]:
        """``(True, result)`` for a complete, verified entry of this very job; ``(False, None)`` otherwise.

        An entry that exists but fails verification (see the module docstring) is added to ``rejected`` and
        reported with a ``warning:`` line; the caller recomputes the job and :meth:`save` overwrites it.
        """
        d = self.entry(it)
        if not os.path.lexists(d):
            return False, None
        try:
            return True, self._verified(d, it, fingerprint)
        except _Stale:
            return False, None
        except _Untrusted as exc:
            reason = str(exc)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            reason = f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        self.rejected.append(it.label)
        warn(f"checkpoint {it.label!r} ({d}) failed verification: {reason}; not used, recomputing the job")
        return False, None

    def _verified(self, d: Path, it: Item, fingerprint: str) -> Any:
        """The entry's result once its MAC and every digest check out; raises _Untrusted / _Stale otherwise."""
        if d.is_symlink() or not d.is_dir():
            raise _Untrusted("the entry is not a directory")
        try:
            mac = _read_regular(d / MAC_FILE, 1024).decode("ascii")
        except FileNotFoundError:
            raise _Untrusted(f"no {MAC_FILE} (written by another version, or not by safecompress)") from None
        raw = _read_regular(d / "result.json", _MAX_META_BYTES)
        # The MAC is checked before result.json is even parsed: nothing unauthenticated is interpreted.
        if not seal_matches(raw, f"entry:{it.safe}", mac):
            raise _Untrusted("its MAC does not match (modified, or written under another checkpoint key)")
        meta = json.loads(raw.decode("utf-8"))
        if (meta.get("format") != FORMAT or meta.get("key") != it.job.key or meta.get("fn") != it.job.fn
                or meta.get("fingerprint") != fingerprint):
            raise _Stale()
        arrays = {}
        for name, digest in meta["arrays"].items():
            data = _read_regular(d / "arrays" / _relative(name))
            if hashlib.sha256(data).hexdigest() != digest:
                raise _Untrusted(f"array {name} does not match its recorded sha256")
            arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
        files = {}
        for name, digest in meta["files"].items():
            p = d.joinpath("files", *_relative(name).parts)
            if _sha256_regular(p) != digest:
                raise _Untrusted(f"file {name} does not match its recorded sha256")
            files[name] = p
        value = decode(meta["value"], arrays)
        if meta.get("wrapped"):
            return JobResult(value, files, dict(meta["files"]))
        return value

    def save(self, it: Item, fingerprint: str, env: Envelope) -> Any:
        """Store a finished job atomically, sealed with the checkpoint key; return its result as the caller
        sees it."""
        arrays: dict[str, np.ndarray] = {}
        encoded = encode(env.value, arrays, it.label)
        blobs = {f"arrays/{n}": _npy_bytes(a) for n, a in arrays.items()}
        meta = {"format": FORMAT, "key": it.job.key, "fn": it.job.fn, "fingerprint": fingerprint,
                "wrapped": env.wrapped, "seconds": round(env.seconds, 3),
                "arrays": {n: hashlib.sha256(blobs[f"arrays/{n}"]).hexdigest() for n in arrays},
                "files": dict(env.sha256), "value": encoded}
        blobs.update({f"files/{n}": b for n, b in env.files.items()})
        blobs["result.json"] = (json.dumps(meta, indent=1) + "\n").encode()
        blobs[MAC_FILE] = (seal(blobs["result.json"], f"entry:{it.safe}") + "\n").encode()
        d = self.entry(it)
        write_dir_atomically(d, blobs)
        if env.wrapped:
            return JobResult(env.value, {n: d.joinpath("files", *_relative(n).parts) for n in env.files},
                             dict(env.sha256))
        return env.value
