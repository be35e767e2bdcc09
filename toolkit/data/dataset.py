"""The in-memory data set every stage passes around.

Layout convention (one data file fits every artifact we export): images are ``(n, H, W, C)`` float32 in
[0, 1] (channels last, as TFLite expects; our PyTorch CNN permutes internally), tabular data ``(n, d)``
float32; labels are int64 class indices ``0..n_classes-1``. Integer features (text: token ids or UTF-8 byte
codes, ``(n, seq_len)``) stay integers, as int64.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import DataError


def row_hashes(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Content hash of every sample (its bytes as contiguous float32; with its label if given).

    Used to detect the same sample on both sides of a membership split, whatever its index.
    """
    out = np.empty(len(x), dtype=object)
    for start, block in _float_blocks(x):
        for i, row in enumerate(block, start):
            h = hashlib.sha256(row.data)
            if y is not None:
                h.update(np.int64(y[i]).tobytes())
            out[i] = h.hexdigest()
    return out


def row_digests(x) -> np.ndarray:
    """The first 16 bytes of each sample's :func:`row_hashes` digest, as a compact ``S16`` array (overlap
    checks of large audit sets: 16 bytes a row instead of a Python string)."""
    out = np.empty(len(x), dtype="S16")
    for start, block in _float_blocks(x):
        for i, row in enumerate(block, start):
            out[i] = hashlib.sha256(row.data).digest()[:16]
    return out


#: Rows per block when hashing and checking data sets (bounds the extra memory of those passes).
_HASH_ROWS = 4096


def _float_blocks(x, rows: int = _HASH_ROWS):
    """``(start, block)``: ``x`` (an array or file-backed rows) as contiguous float32 ``(k, features)`` blocks."""
    for start in range(0, len(x), rows):
        block = np.asarray(x[start:start + rows], dtype=np.float32)
        yield start, np.ascontiguousarray(block.reshape(len(block), -1))


def content_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """One hash of a whole data set (features as float32, labels as int64, shapes included)."""
    h = hashlib.sha256()
    x = x if hasattr(x, "shape") else np.asarray(x)  # arrays and file-backed rows alike
    h.update(repr(tuple(x.shape)).encode())
    # Block by block: one block of extra memory, and the same digest as hashing all bytes at once.
    for _, block in _float_blocks(x):
        h.update(block.data)
    h.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).data)
    return h.hexdigest()


def validate_arrays(x: np.ndarray, y: np.ndarray, what: str, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to (float32 — int64 for integer features —, int64) and check: same length, finite, labels in range.

    Integer features (token ids) must lie below 2**24 in magnitude: content hashes read features as float32,
    which represents such integers exactly, so hashes of integer and float copies of one sample agree.
    """
    from toolkit.data.rows import NpzRows

    rows = isinstance(x, NpzRows)  # file-backed rows: checked block by block, never loaded whole
    x = x if rows else np.asarray(x)
    y = np.asarray(y)
    stored = x.stored_dtype if rows else x.dtype
    if x.ndim < 2:
        raise DataError(f"{what}: x must have a sample axis and at least one feature axis, got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{what}: y must be a 1-D array of class indices, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{what}: no samples")
    if stored.kind not in "biuf":  # complex would be cast to float32 silently, dropping its imaginary part
        raise DataError(f"{what}: x must be numeric (bool, integer or float), got dtype {stored}")
    integer = stored.kind in "iu"
    _check_features(x, integer, what)
    target = np.dtype(np.int64 if integer else np.float32)
    if rows:
        x.dtype = target  # rows are read as the target dtype from now on
    else:
        x = x.astype(target, copy=False)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{what}: labels must be integer class indices")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{what}: negative label {int(y.min())}")
    if n_classes is not None and y.max() >= n_classes:
        raise DataError(f"{what}: label {int(y.max())} is outside the model's {n_classes} classes (0..{n_classes - 1})")
    return x, y


def _check_features(x, integer: bool, what: str) -> None:
    """Integer features below 2**24 in magnitude; float features finite once read as float32 (a float64 value
    beyond float32's range becomes inf). A block of rows at a time: no whole-array masks or copies."""
    bad = 0
    for start in range(0, len(x), _HASH_ROWS):
        block = np.asarray(x[start:start + _HASH_ROWS])
        if integer:
            lo, hi = (int(block.min()), int(block.max())) if block.size else (0, 0)  # Python ints: no overflow
            if max(-lo, hi) >= 2**24:
                raise DataError(f"{what}: integer features must lie below 2**24 in magnitude (token ids, byte "
                                f"codes), got {hi if hi >= -lo else lo}")
        elif block.dtype.kind == "f":
            finite = np.isfinite(block.astype(np.float32, copy=False))
            bad += int((~finite).reshape(len(block), -1).any(axis=1).sum())
    if bad:
        raise DataError(f"{what}: {bad} sample(s) contain NaN or inf")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, labels and what is needed to reproduce them."""

    name: str
    x: np.ndarray
    y: np.ndarray
    n_classes: int
    #: Free-form provenance (source file, options) recorded in manifests.
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        x, y = validate_arrays(self.x, self.y, f"data set {self.name!r}", self.n_classes)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def sha256(self) -> str:
        cached = self.__dict__.get("_sha256")
        if cached is None:
            cached = content_sha256(self.x, self.y)
            object.__setattr__(self, "_sha256", cached)
        return cached

    def subset(self, idx: np.ndarray) -> "Dataset":
        idx = np.asarray(idx, dtype=np.int64)
        return Dataset(self.name, self.x[idx], self.y[idx], self.n_classes, dict(self.source))

    def deduplicated(self) -> "Dataset":
        """Drop samples whose features repeat an earlier sample's (keeps first occurrences, order kept).

        Members and non-members are told apart by content; a repeated image would otherwise land on both
        sides of a split and make the split invalid.
        """
        hashes = row_hashes(self.x)
        _, first = np.unique(hashes, return_index=True)
        if len(first) == len(self):
            return self
        keep = np.sort(first)
        src = dict(self.source, deduplicated_dropped=int(len(self) - len(keep)))
        return Dataset(self.name, self.x[keep], self.y[keep], self.n_classes, src)
