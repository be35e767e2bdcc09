"""Safe, atomic file I/O shared by every stage.

* Writes go to a temporary file in the target directory, are flushed and fsynced, then renamed over the
  target: a reader (or a rerun after ``kill -9``) sees the old file or the new one, never half of one.
* Inputs are loaded without executing anything: ``np.load(allow_pickle=False)``, ``yaml.safe_load``.
* Inputs larger than a limit are refused with a clear error instead of exhausting memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ArtifactError, ConfigError, DataError

#: Largest input file accepted (model artifacts, data files, configs), overridable by environment.
MAX_INPUT_BYTES = int(os.environ.get("SAFECOMPRESS_MAX_INPUT_BYTES", str(2 * 1024**3)))
#: Largest YAML config accepted.
MAX_CONFIG_BYTES = 1024**2
#: Deepest nesting and most values a YAML config may hold once its aliases are expanded: a config is a few
#: levels deep with hundreds of values; anchors/aliases ("billion laughs") or self-references must not turn a
#: small file into billions of values when it is validated, hashed or written into a report.
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_VALUES = 200_000
#: Largest array (declared shape x item size) a data file may hold; a zip-compressed .npz can decompress to
#: far more than its size on disk, so its arrays are checked before they are read.
MAX_ARRAY_BYTES = int(os.environ.get("SAFECOMPRESS_MAX_ARRAY_BYTES", str(4 * 1024**3)))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    For libraries that insist on writing to a file name themselves (``torch.save``, ``model.save``...).
    The temporary name ends with the target's full name, because some writers dispatch on its suffixes
    (tf-keras treats ``*.weights.h5`` differently from ``*.h5``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gzip_size(data: bytes) -> int:
    """Size after gzip at level 9: tfmot's standard measure of what pruning/clustering saves on disk."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def check_input_file(path: str | os.PathLike, what: str, error: type = ArtifactError,
                     max_bytes: int | None = None) -> Path:
    """Return ``path`` as a Path if it is an existing, non-empty regular file within the size limit."""
    p = Path(path)
    try:
        if not p.exists():
            raise error(f"{what} not found: {p}")
        if not p.is_file():
            raise error(f"{what} is not a regular file: {p}")
        size = p.stat().st_size
    except (OSError, ValueError) as exc:  # a NUL byte in the name, a name too long, no permission...
        raise error(f"{what} cannot be opened: {str(p)[:200]!r}: {exc}") from None
    if size == 0:
        raise error(f"{what} is empty: {p}")
    limit = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    if size > limit:
        raise error(f"{what} is {size} bytes, over the limit of {limit} bytes: {p}")
    return p


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ("x", "y"), rows: tuple[str, ...] = ()) -> dict:
    """Load an ``.npz`` holding at least ``keys`` without ever unpickling (object arrays are refused).

    Arrays named in ``rows`` are not loaded: they come back as :class:`~toolkit.data.rows.NpzRows`, read from
    the file a block of rows at a time (audits of large query sets)."""
    p = check_input_file(path, "data file", DataError)
    _check_npz_arrays(p)
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{p} lacks array(s) {', '.join(missing)}; it holds: {', '.join(npz.files) or 'nothing'}")
            out = {k: np.asarray(npz[k]) for k in npz.files if k not in rows}
        if rows:
            from toolkit.data.rows import NpzRows

            out.update({k: NpzRows(p, k) for k in rows})
        return out
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{p} holds object (pickled) arrays, which are refused; save plain numeric arrays") from None
        raise DataError(f"{p} is not a valid .npz file: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise DataError(f"{p} is not a valid .npz file: {type(exc).__name__}: {exc}") from None


def read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at ``fh``'s position, leaving ``fh`` at the data.
    Reads the header only (a literal, parsed without evaluating code); ValueError for a malformed one."""
    from numpy.lib import format as npy

    version = npy.read_magic(fh)
    read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = read(fh)
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _check_npz_arrays(p: Path) -> None:
    """Refuse an .npz whose arrays are pickled or declare more than :data:`MAX_ARRAY_BYTES`, reading only the
    .npy headers (a zip-compressed member may decompress to far more than the file's size)."""
    import zipfile

    try:
        zf = zipfile.ZipFile(p)
    except Exception:  # not a zip (or a damaged one): np.load gives the error
        return
    total = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as fh:
                    shape, _, dtype = read_npy_header(fh)
            except Exception:  # a bad header, CRC or compression error: np.load names it below
                continue
            if dtype.hasobject:
                raise DataError(f"{p} holds object (pickled) arrays, which are refused; save plain numeric arrays")
            count = 1
            for d in shape:
                count *= int(d)
            total += max(count, 0) * dtype.itemsize
            if total > MAX_ARRAY_BYTES:
                raise DataError(f"{p}: array {info.filename[:-4]!r} of shape {tuple(shape)} ({dtype}) takes "
                                f"{count * dtype.itemsize} bytes; data files may hold at most {MAX_ARRAY_BYTES} "
                                "bytes of arrays (SAFECOMPRESS_MAX_ARRAY_BYTES)")


def _check_yaml_size(obj: Any, p: Path) -> None:
    """Refuse YAML that nests deeper than :data:`MAX_CONFIG_DEPTH` or expands (aliases counted at every use)
    to more than :data:`MAX_CONFIG_VALUES` values. Iterative: a self-referencing alias cannot loop it."""
    stack = [(obj, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{p} expands to more than {MAX_CONFIG_VALUES} values (anchors/aliases used over and "
                              "over, or an alias that refers to itself); write the config out plainly")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{p} nests more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, (list, tuple, set)):
            stack.extend((v, depth + 1) for v in node)


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with ``yaml.safe_load`` only (size, nesting and alias expansion limited)."""
    import yaml

    p = check_input_file(path, "config file", ConfigError, max_bytes=MAX_CONFIG_BYTES)
    try:
        text = p.read_text(encoding="utf-8")
        obj = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text") from None
    except RecursionError:  # PyYAML's parser and constructor recurse once per nesting level
        raise ConfigError(f"{p} nests more than {MAX_CONFIG_DEPTH} levels deep") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p} is not valid YAML{where}: {problem}") from None
    except Exception as exc:  # noqa: BLE001 - safe_load runs no user code: e.g. ValueError for a 5,000-digit
        # integer (Python's int-string limit) or an impossible date (2001-13-45)
        raise ConfigError(f"{p} holds a value YAML cannot read: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    _check_yaml_size(obj, p)
    return obj
