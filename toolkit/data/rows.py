"""Rows of an array stored in an ``.npz`` file, read on demand: an audit of any size holds one batch of inputs.

``NpzRows(path, key)`` behaves like a read-only 2+-D array for what the audit does with its inputs: ``len``,
``shape``, ``ndim``, ``dtype`` and ``rows[start:stop]`` (a fresh ndarray read from the file with ``os.pread``).
``np.asarray(rows)`` still works (it reads everything: callers that need the whole array, e.g. reference-model
training, pay for it only then).

Every member of the file is checked first (:func:`toolkit.io.npz_members`: an ``.npy`` array within the size
limit whose unpacked size is what its header declares). A member stored uncompressed (``np.savez``) is read in
place at its offset in the zip; a compressed member (``np.savez_compressed``) is first inflated, in chunks, to
an anonymous temporary file: exactly the array bytes its header declares (never more, whatever the deflate
stream holds), in a file that has no name in the temporary directory, so nothing is left behind however the
process ends (SIGTERM, Ctrl-C, even SIGKILL). Only ``.npy`` headers are parsed (never pickles); Fortran-ordered
and object arrays are refused.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from toolkit.errors import DataError

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the zip local file header (30 bytes)
_CHUNK = 1 << 20  # bytes inflated per read: bounds the extra memory of the copy


class NpzRows:
    """Read-only rows of array ``key`` of the ``.npz`` at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, key: str):
        from toolkit.io import npz_members, open_npz

        self.path = Path(path)
        self._fd: int | None = None
        self._tmp = None  # the anonymous temporary file of a compressed member
        where = f"{self.path} ({key})"
        try:
            with open_npz(self.path) as zf:
                member = npz_members(zf, self.path).get(key)
                if member is None:
                    raise DataError(f"{self.path} lacks array {key}")
                if member.fortran and len(member.shape) > 1:
                    raise DataError(f"{where}: Fortran-ordered arrays are not supported; save with np.savez (C order)")
                if len(member.shape) < 1:
                    raise DataError(f"{where}: a scalar, not an array of samples")
                if member.info.compress_type == zipfile.ZIP_STORED:
                    self._fd = os.open(self.path, os.O_RDONLY)
                    self._offset = self._member_offset(member.info) + member.header_bytes
                    if os.fstat(self._fd).st_size < self._offset + member.nbytes:
                        raise DataError(f"{where}: the file is truncated (the array needs {member.nbytes} bytes "
                                        f"from offset {self._offset})")
                else:
                    self._tmp = _inflate(zf, member, where)
                    self._fd, self._offset = self._tmp.fileno(), 0
        except BaseException:  # DataError, but also Ctrl-C / SIGTERM while inflating: nothing stays open
            self.close()
            raise
        self.shape, self.stored_dtype = member.shape, member.dtype
        self.ndim = len(self.shape)
        #: the dtype rows are returned in (validation sets float32 / int64, as for in-memory arrays)
        self.dtype = self.stored_dtype
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.stored_dtype.itemsize

    def _member_offset(self, info: zipfile.ZipInfo) -> int:
        """Offset of a stored member's first byte in the zip: after its local header, name and extra field."""
        head = os.pread(self._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
            raise DataError(f"{self.path} is not a valid .npz file: bad local header of {info.filename}")
        fields = _LOCAL_HEADER.unpack(head)
        return info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("NpzRows supports row slices only (rows[start:stop])")
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise TypeError("NpzRows supports contiguous row slices only")
        n = max(0, stop - start)
        nbytes = n * self._row_bytes
        buf = bytearray(nbytes)
        view, got = memoryview(buf), 0
        while got < nbytes:  # pread may return fewer bytes than asked
            chunk = os.pread(self._fd, nbytes - got, self._offset + start * self._row_bytes + got)
            if not chunk:
                raise DataError(f"{self.path}: the file ended while reading rows {start}..{stop}")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        rows = np.frombuffer(buf, dtype=self.stored_dtype).reshape((n, *self.shape[1:]))
        return rows.astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        whole = self[0:len(self)]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def close(self) -> None:
        """Release the file (and the temporary copy of a compressed member). Idempotent."""
        tmp, self._tmp = getattr(self, "_tmp", None), None
        fd, self._fd = getattr(self, "_fd", None), None
        if tmp is not None:
            tmp.close()  # closes fd too: the anonymous file's space is freed with its last descriptor
        elif fd is not None:
            os.close(fd)

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"NpzRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def _inflate(zf: zipfile.ZipFile, member, where: str):
    """The data of compressed ``member`` (header skipped) in an anonymous temporary file, returned open.

    Copies exactly ``member.nbytes`` bytes, the size its header declares (already checked against the
    limits), a chunk at a time, and refuses a stream that ends early or holds more. The file is created
    without a name (``tempfile.TemporaryFile``: O_TMPFILE, or unlinked at once) so that no exit, however
    abrupt, can leave it behind; the free space of the temporary directory is checked first so that a large
    array fails with one line instead of filling the disk."""
    tmpdir = tempfile.gettempdir()
    free = shutil.disk_usage(tmpdir).free
    if member.nbytes > free:
        raise DataError(f"{where}: inflating the compressed array needs {member.nbytes} bytes of temporary space "
                        f"but {tmpdir} has {free} free; point TMPDIR at a larger disk or save with np.savez")
    out = tempfile.TemporaryFile(prefix=".sc-rows-", suffix=".npy")
    try:
        with zf.open(member.info) as src:
            if len(src.read(member.header_bytes)) != member.header_bytes:
                raise DataError(f"{where}: the compressed member ends inside its .npy header")
            left = member.nbytes
            while left:
                chunk = src.read(min(left, _CHUNK))
                if not chunk:
                    raise DataError(f"{where}: the compressed member ends {left} bytes before the array its header "
                                    "declares")
                out.write(chunk)
                left -= len(chunk)
            if src.read(1):  # zipfile stops at the checked file_size, so this is defence in depth
                raise DataError(f"{where}: the compressed member holds more data than its header declares")
        out.flush()
    except (DataError, MemoryError):
        out.close()
        raise
    except Exception as exc:  # noqa: BLE001 - a CRC mismatch (BadZipFile), corrupt deflate data (zlib.error)...
        out.close()
        raise DataError(f"{where}: not a valid .npz member: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    except BaseException:  # Ctrl-C / SIGTERM: close (and so free) the partial copy, then go on unwinding
        out.close()
        raise
    return out
