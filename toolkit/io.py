"""Safe, atomic file I/O shared by every stage.

* Writes go to a temporary file in the target directory, are flushed and fsynced, then renamed over the
  target: a reader (or a rerun after ``kill -9``) sees the old file or the new one, never half of one.
* Inputs are loaded without executing anything: ``np.load(allow_pickle=False)``, ``yaml.safe_load``.
* Inputs larger than a limit are refused with a clear error instead of exhausting memory.
"""

from __future__ import annotations

import contextlib
import functools
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
def _env_bytes(name: str, default: int) -> int:
    """A byte count from the environment; a malformed one is a ConfigError (exit 2 where it is first used)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        raise ConfigError(f"{name}={raw[:40]!r} is not a positive number of bytes")
    return value


MAX_INPUT_BYTES = _env_bytes("SAFECOMPRESS_MAX_INPUT_BYTES", 2 * 1024**3)
#: Largest YAML config accepted.
MAX_CONFIG_BYTES = 1024**2
#: Deepest nesting and most values a YAML config may hold once its aliases are expanded: a config is a few
#: levels deep with hundreds of values; anchors/aliases ("billion laughs") or self-references must not turn a
#: small file into billions of values when it is validated, hashed or written into a report.
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_VALUES = 200_000
#: Largest array (declared shape x item size) a data file may hold; a zip-compressed .npz can decompress to
#: far more than its size on disk, so its arrays are checked before they are read.
#: 1 GiB: a few-MB compressed file may not make the audit hold more than that (raise it for big image sets).
MAX_ARRAY_BYTES = _env_bytes("SAFECOMPRESS_MAX_ARRAY_BYTES", 1024**3)


def refuse_non_regular(path: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` if ``path`` exists and is not a regular file (symlink, directory, FIFO,
    socket, device node). Checked without following a symlink.

    The rename of an atomic write replaces whatever directory entry is at the target: given ``--junit
    /dev/null`` as root it would replace the device node, given a symlink it would replace the link. An output
    path must be a regular file or nothing; anything else is a mistake or an attack, and is refused.
    """
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # absent (or unreachable: the write itself reports that)
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise ConfigError(f"refusing to replace {path}: it is a {kind}, not a regular file; give the path of a "
                      "regular file (or of none)")


def _write_reason(path: str | os.PathLike, exc: OSError) -> str:
    """Why ``path`` cannot be written, in words: the system's message and errno name, or, when a parent
    directory is really a file (mkdir then says "File exists"), which one."""
    import errno

    from toolkit.report.escape import printable

    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        for parent in (Path(path), *Path(path).parents):
            if parent.exists() and not parent.is_dir():
                return f"{printable(os.fspath(parent))} is not a directory"
    code = errno.errorcode.get(exc.errno or 0)
    return (exc.strerror or type(exc).__name__) + (f" ({code})" if code else "")


def output_error(path: str | os.PathLike, exc: OSError) -> ConfigError:
    """The one-line error for an output that cannot be written: the path the user gave (not a temp name) and
    the reason, e.g. ``cannot write out/report.json: No space left on device (ENOSPC)``."""
    from toolkit.report.escape import printable

    return ConfigError(f"cannot write {printable(os.fspath(path))}: {_write_reason(path, exc)}")


def _write_errors(fn):
    """Decorator of a ``fn(path, ...)`` that writes ``path``: an OSError (read-only or full disk, no
    permission, a parent that is a file...) becomes :func:`output_error`, exit 2 rather than a traceback."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except OSError as exc:
            raise output_error(path, exc) from None

    return wrapper


def _write_errors_cm(fn):
    """:func:`_write_errors` for a context manager ``fn(path)``: also converts OSErrors raised in the body of
    the ``with`` block, which writes the temporary file that becomes ``path``."""

    @functools.wraps(fn)
    @contextlib.contextmanager
    def wrapper(path, *args, **kwargs):
        try:
            with fn(path, *args, **kwargs) as value:
                yield value
        except OSError as exc:
            raise output_error(path, exc) from None

    return wrapper


@_write_errors
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename). Returns the path.

    ``path`` must be absent or a regular file (:func:`refuse_non_regular`, checked before writing and again
    just before the rename).
    """
    path = Path(path)
    refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        refuse_non_regular(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (indented) atomically; always valid JSON: non-finite numbers become null
    (:func:`finite_json`; a writer that must say so records the paths it returns)."""
    return atomic_write_text(path, json.dumps(finite_json(obj)[0], indent=2, sort_keys=False,
                                              default=_json_default, allow_nan=False) + "\n")


@_write_errors_cm
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    For libraries that insist on writing to a file name themselves (``torch.save``, ``model.save``...).
    The temporary name ends with the target's full name, because some writers dispatch on its suffixes
    (tf-keras treats ``*.weights.h5`` differently from ``*.h5``). ``path`` must be absent or a regular file
    (:func:`refuse_non_regular`, checked before and again just before the rename).
    """
    path = Path(path)
    refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        refuse_non_regular(path)
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

    Every member is checked by :func:`npz_members` (an ``.npy`` array, its declared size within
    :data:`MAX_ARRAY_BYTES`, its unpacked size equal to what its header declares) before any array is read;
    arrays are then read with numpy's own ``.npy`` reader from a stream that ends where the header says the
    data ends. Arrays named in ``rows`` are not loaded: they come back as :class:`~toolkit.data.rows.NpzRows`,
    read from the file a block of rows at a time (audits of large query sets)."""
    p = check_input_file(path, "data file", DataError)
    try:
        with open_npz(p) as zf:
            members = npz_members(zf, p)
            missing = [k for k in keys if k not in members]
            if missing:
                raise DataError(f"{p} lacks array(s) {', '.join(missing)}; it holds: {', '.join(members) or 'nothing'}")
            out = {k: _read_member(zf, m) for k, m in members.items() if k not in rows}
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a CRC mismatch (BadZipFile), a deflate stream that ends early
        # (numpy's reader: ValueError) or is corrupt (zlib.error): bad input, one line
        raise DataError(f"{p} is not a valid .npz file: {type(exc).__name__}: {_short(exc)}") from None
    if rows:
        from toolkit.data.rows import NpzRows

        out.update({k: NpzRows(p, k) for k in rows})
    return out


def _short(exc: BaseException) -> str:
    """An exception's message on one line, cut to 200 characters (numpy's messages span lines)."""
    return " ".join(str(exc).split())[:200]


#: Most members an ``.npz`` may hold: ``np.savez`` writes one per array; each member costs a header read.
MAX_NPZ_MEMBERS = 1024
#: Largest ``.npy`` header accepted, in bytes (numpy itself refuses headers over 10,000 characters; a v3
#: header is UTF-8, up to 4 bytes a character). Bounds what is read before the declared shape is known.
MAX_NPY_HEADER_BYTES = 40_000
_NPY_MAGIC = b"\x93NUMPY"
#: Zip compression methods numpy writes (``np.savez`` / ``np.savez_compressed``). Others (bzip2, lzma) are
#: refused: zipfile inflates their blocks without an output bound, so one block could expand without limit.
_NPZ_METHODS = {0: "stored", 8: "deflated"}


class NpyMember:
    """One array member of an ``.npz``: its zip entry and its ``.npy`` header (nothing after the header read).

    ``key`` is the name ``np.load`` exposes (the file name without a trailing ``.npy``); ``header_bytes`` the
    bytes before the array data; ``nbytes`` the data bytes the header declares."""

    __slots__ = ("key", "info", "shape", "fortran", "dtype", "header_bytes", "nbytes")

    def __init__(self, key: str, info, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, header_bytes: int):
        self.key, self.info, self.shape, self.fortran, self.dtype = key, info, shape, fortran, dtype
        self.header_bytes = header_bytes
        count = 1
        for d in shape:  # Python ints: a declared shape of (2**63,) cannot overflow
            count *= d
        self.nbytes = count * dtype.itemsize


@contextlib.contextmanager
def open_npz(p: Path):
    """``zipfile.ZipFile(p)``, or a one-line :class:`DataError` if ``p`` is not a zip archive."""
    import zipfile

    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{p} is not a valid .npz file: {type(exc).__name__}: {_short(exc)}") from None
    with zf:
        yield zf


def npz_members(zf, p: Path) -> dict[str, NpyMember]:
    """Every member of the open ``.npz`` ``zf`` as an :class:`NpyMember`, checked before any data is read.

    Refused with one :class:`DataError` line: more than :data:`MAX_NPZ_MEMBERS` members; a member that is not
    an ``.npy`` array (``np.load`` would hand its whole decompressed content back as bytes); two members that
    ``np.load`` would expose under one name (``x`` and ``x.npy``); encrypted members or compression methods
    numpy does not write; object (pickled) dtypes; a negative dimension; arrays declaring more than
    :data:`MAX_ARRAY_BYTES` (all members together); and a member whose unpacked size (the zip entry's
    ``file_size``, which bounds what zipfile inflates) differs from its header plus the declared array bytes:
    larger is a zip bomb or trailing junk, smaller a truncated array."""
    infos = zf.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise DataError(f"{p} holds {len(infos)} members; data files may hold at most {MAX_NPZ_MEMBERS}")
    members: dict[str, NpyMember] = {}
    total = 0
    for info in infos:
        m = _npz_member(zf, info, p)
        if m.key in members:
            raise DataError(f"{p} holds two members named {m.key!r} ({members[m.key].info.filename!r} and "
                            f"{info.filename!r}); save each array once")
        members[m.key] = m
        total += m.nbytes
        if total > MAX_ARRAY_BYTES:
            raise DataError(f"{p}: array {m.key!r} of shape {m.shape} ({m.dtype}) takes {m.nbytes} bytes; data files "
                            f"may hold at most {MAX_ARRAY_BYTES} bytes of arrays (SAFECOMPRESS_MAX_ARRAY_BYTES)")
        expected = m.header_bytes + m.nbytes
        if info.file_size > expected:
            raise DataError(f"{p}: member {info.filename!r} unpacks to {info.file_size} bytes but its .npy header "
                            f"declares {expected} (shape {m.shape}, {m.dtype}); refused as a zip bomb")
        if info.file_size < expected:
            raise DataError(f"{p}: member {info.filename!r} is truncated: {info.file_size} bytes, its .npy header "
                            f"declares {expected} (shape {m.shape}, {m.dtype})")
    return members


def _npz_member(zf, info, p: Path) -> NpyMember:
    """The :class:`NpyMember` of zip entry ``info``: reads at most the magic and a bounded header."""
    name = info.filename
    key = name[:-4] if name.endswith(".npy") else name
    if info.is_dir():
        raise DataError(f"{p}: member {name!r} is a directory, not an array; data files hold .npy arrays only")
    if info.flag_bits & 0x1:
        raise DataError(f"{p}: member {name!r} is encrypted; data files hold plain .npy arrays only")
    if info.compress_type not in _NPZ_METHODS:
        raise DataError(f"{p}: member {name!r} uses zip compression method {info.compress_type}; np.savez and "
                        "np.savez_compressed write stored or deflated members only")
    try:
        with zf.open(info) as fh:
            if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise DataError(f"{p}: member {name!r} is not a .npy array (no .npy magic); data files may hold "
                                "only arrays saved with np.savez / np.savez_compressed")
            fh.seek(0)
            shape, fortran, dtype, header_bytes = _read_npy_header(fh)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed header, a bad CRC, a broken deflate stream
        raise DataError(f"{p}: member {name!r} is not a readable .npy array: {type(exc).__name__}: "
                        f"{_short(exc)}") from None
    if dtype.hasobject:
        raise DataError(f"{p} holds object (pickled) arrays, which are refused; save plain numeric arrays")
    if any(d < 0 for d in shape):
        raise DataError(f"{p}: array {key!r} declares a negative dimension in its shape {shape}")
    return NpyMember(key, info, shape, fortran, dtype, header_bytes)


def _read_member(zf, m: NpyMember) -> np.ndarray:
    """Member ``m`` (already checked by :func:`npz_members`) read with numpy's ``.npy`` reader. zipfile stops
    inflating at the entry's ``file_size``, which was checked to equal header + declared bytes, and verifies
    the CRC at that point: no more than the declared size is ever decompressed."""
    from numpy.lib import format as npy

    with zf.open(m.info) as fh:
        return npy.read_array(fh, allow_pickle=False)


def read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at ``fh``'s position, leaving ``fh`` at the data.
    Reads the header only (a literal, parsed without evaluating code); ValueError for a malformed one."""
    shape, fortran, dtype, _ = _read_npy_header(fh)
    return shape, fortran, dtype


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """:func:`read_npy_header` plus the header's length in bytes (magic included). Versions 1.0, 2.0 and 3.0.

    The length field is checked against :data:`MAX_NPY_HEADER_BYTES` before the header is read (numpy's
    readers would first read all of a 4 GiB header a v2/v3 length field may declare), then numpy's own
    readers parse the header from memory."""
    import io
    import struct

    from numpy.lib import format as npy

    version = npy.read_magic(fh)
    # 3.0 differs from 2.0 only in the header's text encoding (UTF-8, not latin-1); numpy has no public 3.0
    # reader, and the headers of numeric arrays are ASCII, which both encodings read alike.
    fields = {(1, 0): ("<H", npy.read_array_header_1_0), (2, 0): ("<I", npy.read_array_header_2_0),
              (3, 0): ("<I", npy.read_array_header_2_0)}
    if version not in fields:
        raise ValueError(f"unsupported .npy version {version}")
    fmt, read = fields[version]
    size = fh.read(struct.calcsize(fmt))
    if len(size) != struct.calcsize(fmt):
        raise ValueError("the .npy header is truncated")
    (length,) = struct.unpack(fmt, size)
    if length > MAX_NPY_HEADER_BYTES:
        raise ValueError(f".npy header of {length} bytes, over the limit of {MAX_NPY_HEADER_BYTES}")
    text = fh.read(length)
    if len(text) != length:
        raise ValueError("the .npy header is truncated")
    shape, fortran, dtype = read(io.BytesIO(size + text))
    return tuple(int(d) for d in shape), bool(fortran), dtype, npy.MAGIC_LEN + len(size) + length


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


@functools.cache
def unique_key_loader() -> type:
    """PyYAML's ``SafeLoader`` refusing a key given twice in one mapping.

    PyYAML keeps the last of two equal keys silently (``epochs: 5`` ... ``epochs: 50``), so a config could
    say one thing where a reader sees another; YAML itself forbids duplicates. Keys pulled in by a merge
    (``<<: *defaults``) may still be overridden, as YAML's merge allows."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: SafeLoader's own check reports it
                        continue
                    if first is not key_node:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"duplicate key {str(key)[:60]!r} (first given at line {first.start_mark.line + 1})",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with a ``yaml.SafeLoader`` (:func:`unique_key_loader`: duplicate keys refused) only;
    size, nesting and alias expansion limited. Every problem is one :class:`ConfigError` line naming the
    file (and the line, where YAML knows it)."""
    import yaml

    p = check_input_file(path, "config file", ConfigError, max_bytes=MAX_CONFIG_BYTES)
    try:
        text = p.read_text(encoding="utf-8")
        obj = yaml.load(text, Loader=unique_key_loader())  # noqa: S506 - a SafeLoader subclass
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


def finite_json(obj: Any, where: str = "") -> tuple[Any, list[str]]:
    """``(copy of obj, paths)``: ``obj`` with every NaN or infinity replaced by None, and the paths of those
    values (``attacks[0].auc``; ``where`` prefixes them).

    ``json.dumps`` writes such values as ``NaN`` / ``Infinity``, which no JSON parser but Python's accepts, so
    a report holding one would not be JSON. numpy scalars and arrays become Python numbers and lists, tuples
    lists; anything else is returned as is (the caller's ``default=`` deals with it). Recursive: for the
    report-sized objects we build ourselves, never for parsed input."""
    bad: list[str] = []

    def walk(v: Any, at: str) -> Any:
        if isinstance(v, (bool, str)) or v is None:
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            if np.isfinite(v):
                return float(v)
            bad.append(at or "value")
            return None
        if isinstance(v, dict):
            return {k: walk(x, f"{at}.{k}" if at else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{at}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, np.ndarray):
            return walk(v.tolist(), at)
        return v

    return walk(obj, where), bad


def check_output_dir(path: str | os.PathLike, flag: str = "--out", shown: str | os.PathLike | None = None) -> Path:
    """Create the output directory ``path`` (with parents) and check that a file can be created in it, before
    any costly work: a read-only file system, a missing permission or a parent that is a regular file is one
    :class:`ConfigError` line naming ``flag`` and ``shown`` (default ``path``; the file the user named, when
    ``path`` is its directory). (A full disk shows only when the writes come: the atomic writers report it
    the same way.)"""
    from toolkit.report.escape import printable

    p = Path(path)
    shown = p if shown is None else shown
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p, prefix=".safecompress-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {printable(os.fspath(shown))} cannot be written: {_write_reason(p, exc)}") from None
    return p


#: Deepest nesting accepted in a JSON input (reports and sidecars nest about 6 levels).
MAX_JSON_DEPTH = 64
#: Longest integer literal accepted in a JSON input: counts and sizes have far fewer digits (and Python
#: refuses to convert more than 4,300 with a ValueError).
MAX_JSON_DIGITS = 30


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def _json_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _json_depth_within(obj: Any, limit: int) -> bool:
    """Whether parsed JSON ``obj`` nests at most ``limit`` levels (iterative: any depth is safe)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return True


def load_json_strict(path: str | os.PathLike, what: str, error: type = DataError, max_bytes: int = 16 * 1024**2,
                     max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``path`` -- a file someone else may have written -- read strictly.

    Refused with one ``error`` line naming ``what`` and the path: missing, not a regular file, empty or over
    ``max_bytes``; not UTF-8; not JSON, or JSON with ``NaN`` / ``Infinity`` / a number beyond float range
    (not JSON numbers: a figure that could never be compared) or an integer over :data:`MAX_JSON_DIGITS`
    digits; nested deeper than ``max_depth`` (200,000 nested ``[`` is a clean error, not a RecursionError).
    The caller validates the document's shape (a pydantic schema)."""
    from toolkit.report.escape import printable

    p = check_input_file(path, what, error, max_bytes=max_bytes)
    label = f"{what} {printable(os.fspath(p))}"
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{label} is not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{label} cannot be read: {exc.strerror or exc}") from None
    try:
        obj = json.loads(text, parse_constant=_json_constant, parse_int=_json_int, parse_float=_json_float)
    except RecursionError:  # the C parser recurses once per level
        raise error(f"{label} nests more than {max_depth} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, or one of the parse hooks above
        raise error(f"{label} is not valid JSON: {printable(exc)[:200]}") from None
    if not _json_depth_within(obj, max_depth):
        raise error(f"{label} nests more than {max_depth} levels deep")
    return obj
