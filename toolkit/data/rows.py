"""Rows of an array stored in an ``.npz`` file, read on demand: an audit of any size holds one batch of inputs.

``NpzRows(path, key)`` behaves like a read-only 2+-D array for what the audit does with its inputs: ``len``,
``shape``, ``ndim``, ``dtype`` and ``rows[start:stop]`` (a fresh ndarray read from the file with ``os.pread``).
``np.asarray(rows)`` still works (it reads everything: callers that need the whole array, e.g. reference-model
training, pay for it only then).

A member stored uncompressed (``np.savez``) is read in place at its offset in the zip; a compressed member
(``np.savez_compressed``) is first inflated, in chunks, to a temporary ``.npy`` file that is deleted on close.
Only ``.npy`` headers are parsed (never pickles); Fortran-ordered and object arrays are refused.
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


def _read_header(fh, where: str) -> tuple[tuple[int, ...], np.dtype]:
    from toolkit.io import read_npy_header

    try:
        shape, fortran, dtype = read_npy_header(fh)
    except Exception as exc:  # noqa: BLE001 - any malformed header is bad input
        raise DataError(f"{where}: not a readable .npy array: {' '.join(str(exc).split())[:200]}") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds object (pickled) arrays, which are refused; save plain numeric arrays")
    if fortran and len(shape) > 1:
        raise DataError(f"{where}: Fortran-ordered arrays are not supported; save with np.savez (C order)")
    return shape, dtype


class NpzRows:
    """Read-only rows of array ``key`` of the ``.npz`` at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, key: str):
        self.path = Path(path)
        self._tmp: str | None = None
        name = f"{key}.npy"
        where = f"{self.path} ({key})"
        try:
            with zipfile.ZipFile(self.path) as zf:
                info = zf.getinfo(name)
                if info.compress_type == zipfile.ZIP_STORED:
                    source, base = str(self.path), self._member_offset(info)
                else:  # inflate once to a temporary .npy file, in chunks
                    fd, self._tmp = tempfile.mkstemp(prefix=".sc-rows-", suffix=".npy")
                    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                    source, base = self._tmp, 0
        except KeyError:
            raise DataError(f"{self.path} lacks array {key}") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{self.path} is not a valid .npz file: {type(exc).__name__}: {exc}") from None
        with open(source, "rb") as fh:
            fh.seek(base)
            self.shape, self.stored_dtype = _read_header(fh, where)
            self._offset = fh.tell()
        if len(self.shape) < 1:
            raise DataError(f"{where}: a scalar, not an array of samples")
        self.ndim = len(self.shape)
        #: the dtype rows are returned in (validation sets float32 / int64, as for in-memory arrays)
        self.dtype = self.stored_dtype
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.stored_dtype.itemsize
        expected = self._offset + self._row_bytes * self.shape[0]
        if os.path.getsize(source) < expected:
            raise DataError(f"{where}: the file is truncated ({os.path.getsize(source)} bytes, the array needs "
                            f"{expected})")
        self._fd = os.open(source, os.O_RDONLY)

    def _member_offset(self, info: zipfile.ZipInfo) -> int:
        with open(self.path, "rb") as fh:
            fh.seek(info.header_offset)
            head = fh.read(_LOCAL_HEADER.size)
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
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"NpzRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"
