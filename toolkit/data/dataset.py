"""The in-memory data set every stage passes around.

Layout convention (one data file fits every artifact we export): images are ``(n, H, W, C)`` float32 in
[0, 1] (channels last, as TFLite expects; our PyTorch CNN permutes internally), tabular data ``(n, d)``
float32; labels are int64 class indices ``0..n_classes-1``. Integer features (text: token ids or UTF-8 byte
codes, ``(n, seq_len)``) stay integers, as int64.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import ConfigError, DataError

#: Most classes a data set may have (``SAFECOMPRESS_MAX_CLASSES``). The class count sizes a model's output
#: layer, one-hot label matrices and per-class loops: one label of 10**7 in an 80 KB file must not turn into
#: a 10,000,001-way output layer (tens of GB). Checked before anything of that size is allocated.
DEFAULT_MAX_CLASSES = 100_000
#: Most samples a data set may have (``SAFECOMPRESS_MAX_ROWS``). Hashing, de-duplication and splits cost tens
#: of bytes a sample whatever its size, so a tiny compressed file of millions of one-byte rows is bounded
#: here, before those passes, rather than by its array bytes alone.
DEFAULT_MAX_ROWS = 10_000_000


def env_limit(name: str, default: int) -> int:
    """The positive integer limit in environment variable ``name``, else ``default``. Read at each call, so a
    limit set for one command applies to it; a malformed value is a one-line :class:`ConfigError`."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {raw[:40]!r}")
    return value


def max_classes() -> int:
    """The class-count ceiling (:data:`DEFAULT_MAX_CLASSES` unless ``SAFECOMPRESS_MAX_CLASSES`` is set)."""
    return env_limit("SAFECOMPRESS_MAX_CLASSES", DEFAULT_MAX_CLASSES)


def max_rows() -> int:
    """The sample-count ceiling (:data:`DEFAULT_MAX_ROWS` unless ``SAFECOMPRESS_MAX_ROWS`` is set)."""
    return env_limit("SAFECOMPRESS_MAX_ROWS", DEFAULT_MAX_ROWS)


def check_class_count(n_classes, what: str) -> int:
    """``n_classes`` as an int if it is an integer in ``2..max_classes()``, else a one-line :class:`DataError`.
    A classifier needs two classes; more than the ceiling would allocate per-class arrays without bound."""
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)):
        raise DataError(f"{what}: the number of classes must be an integer, got {n_classes!r}")
    n, ceiling = int(n_classes), max_classes()
    if n < 2:
        raise DataError(f"{what}: {n} class(es); a classifier needs at least 2")
    if n > ceiling:
        raise DataError(f"{what}: {n} classes, over the limit of {ceiling} (SAFECOMPRESS_MAX_CLASSES)")
    return n


def class_count(y: np.ndarray, what: str, n_classes: int | None = None) -> int:
    """The number of classes of labels ``y`` (validated int64 class indices, e.g. from
    :func:`validate_arrays`): ``n_classes`` if given, else the largest label + 1.

    Computed only from ``y.min()`` / ``y.max()`` (no array of the class count's size), then checked by
    :func:`check_class_count` before any caller allocates per class. One-class data (every label equal) is
    refused: no classifier can be trained on it, nor a stratified split drawn from it."""
    y = np.asarray(y)
    if y.size == 0:
        raise DataError(f"{what}: no labels")
    lo, hi = int(y.min()), int(y.max())
    if lo == hi:
        raise DataError(f"{what}: all {y.size} labels are {lo}; a classifier needs samples of at least 2 classes")
    if n_classes is not None:
        return check_class_count(n_classes, what)
    ceiling = max_classes()
    if hi + 1 > ceiling:
        raise DataError(f"{what}: label {hi} makes {hi + 1} classes, over the limit of {ceiling} classes "
                        "(SAFECOMPRESS_MAX_CLASSES); labels must be class indices 0..n_classes-1")
    return check_class_count(hi + 1, what)


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
    sha = hashlib.sha256
    for start, block in _float_blocks(x):
        # One list per block from byte slices of the block: the same digests as hashing each row's bytes,
        # in about half the time of a per-row loop (these passes dominate splits of millions of rows).
        raw, step = memoryview(block).cast("B"), block.shape[1] * block.itemsize
        out[start:start + len(block)] = ([sha(raw[i:i + step]).digest()[:16] for i in range(0, len(raw), step)]
                                         if step else sha(b"").digest()[:16])
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
    if len(x) > max_rows():  # before any per-sample pass (conversion, hashing) costs memory per row
        raise DataError(f"{what}: {len(x)} samples, over the limit of {max_rows()} (SAFECOMPRESS_MAX_ROWS)")
    if stored.kind not in "biuf":  # complex would be cast to float32 silently, dropping its imaginary part
        raise DataError(f"{what}: x must be numeric (bool, integer or float), got dtype {stored}")
    integer = stored.kind in "iu"
    _check_features(x, integer, what)
    target = np.dtype(np.int64 if integer else np.float32)
    if rows:
        x.dtype = target  # rows are read as the target dtype from now on
    else:
        x = x.astype(target, copy=False)
    return x, _labels(y, what, n_classes)


def _labels(y: np.ndarray, what: str, n_classes: int | None) -> np.ndarray:
    """1-D ``y`` as int64 class indices: integer-valued, finite, >= 0, below ``n_classes`` if given.

    The range is checked in ``y``'s own dtype before the cast: a float label of 1e30 or a uint64 of 2**64-1
    would wrap to a negative int64 and be reported as something it is not."""
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{what}: labels must be integer class indices")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be integer class indices, got dtype {y.dtype}")
    lo, hi = y.min(), y.max()
    if lo < 0:
        raise DataError(f"{what}: negative label {_number(lo)}")
    if n_classes is not None and hi >= n_classes:
        raise DataError(f"{what}: label {_number(hi)} is outside the model's {n_classes} classes (0..{n_classes - 1})")
    if hi >= 2**62:  # far beyond any class count, and near where float -> int64 casts wrap
        raise DataError(f"{what}: label {_number(hi)} is not a class index")
    return y.astype(np.int64)


def _number(v) -> str:
    """A label for a message: integers and integer-valued floats without a decimal point (``12``, not ``12.0``)."""
    v = v.item()  # a numpy scalar as a Python int or float
    return str(int(v)) if float(v).is_integer() else repr(v)


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
        check_class_count(self.n_classes, f"data set {self.name!r}")  # before anything sized by it
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
        # 16-byte digests, not hex strings (a Python string per sample costs ~100 bytes: a 59 KB file of 5M
        # one-byte rows took ~1 GB here), and one stable sort instead of np.unique's extra copies: a sample is
        # kept where its digest differs from the one before it in sorted order, i.e. its first occurrence.
        digests = row_digests(self.x)
        order = np.argsort(digests, kind="stable")
        digests = digests[order]
        first = np.ones(len(digests), dtype=bool)
        first[1:] = digests[1:] != digests[:-1]
        del digests
        if first.all():
            return self
        keep = np.sort(order[first])
        src = dict(self.source, deduplicated_dropped=int(len(self) - len(keep)))
        return Dataset(self.name, self.x[keep], self.y[keep], self.n_classes, src)
