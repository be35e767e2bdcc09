"""Offline data sources. Nothing is downloaded at run time.

* ``digits``: scikit-learn's embedded 8x8 handwritten digits (1,797 images, 10 classes) — the default.
* ``fashion_mnist``: Zalando's Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (70,000 28x28
  images, 10 classes), read from its gzip'd IDX files.
* ``npz`` / ``csv``: user data. An ``.npz`` holds arrays ``x`` and ``y``; a CSV has one sample per row with
  the label in the last column (or a column named ``label``/``y``/``target``) and a header row if any
  field of the first row is not numeric.

Every loader returns a de-duplicated :class:`~toolkit.data.dataset.Dataset`.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from toolkit.data.dataset import Dataset, class_count, validate_arrays
from toolkit.errors import DataError, MissingDependencyError
from toolkit.io import check_input_file, load_npz

FASHION_MNIST_DIR = Path(os.environ.get("SAFECOMPRESS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


def load_digits() -> Dataset:
    """sklearn's embedded digits as ``(n, 8, 8, 1)`` float32 in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Dataset("digits", x, bunch.target.astype(np.int64), 10, {"loader": "digits"}).deduplicated()


def _read_idx(path: Path) -> np.ndarray:
    """Parse one gzip'd IDX file (the MNIST container: magic, dims, then raw uint8 data)."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable gzip'd IDX file: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: IDX size does not match its header {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(limit: int | None = None) -> Dataset:
    """Fashion-MNIST's 70,000 images (train and test files together: the split decides membership).

    ``limit`` keeps the first ``limit`` images (after de-duplication) for quick runs.
    """
    files = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    missing = [n for pair in files.values() for n in pair if not (FASHION_MNIST_DIR / n).is_file()]
    if missing:
        raise MissingDependencyError(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR} (missing {missing[0]}): install the Debian package "
            "'dataset-fashion-mnist' (apt-get install -y dataset-fashion-mnist)")
    xs, ys = [], []
    for img_name, lbl_name in files.values():
        xs.append(_read_idx(FASHION_MNIST_DIR / img_name))
        ys.append(_read_idx(FASHION_MNIST_DIR / lbl_name))
    x = (np.concatenate(xs).astype(np.float32) / 255.0)[..., None]
    y = np.concatenate(ys).astype(np.int64)
    ds = Dataset("fashion_mnist", x, y, 10, {"loader": "fashion_mnist", "dir": str(FASHION_MNIST_DIR)}).deduplicated()
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be positive, got {limit}")
        ds = ds.subset(np.arange(min(limit, len(ds))))
    return ds


def load_npz_dataset(path: str, n_classes: int | None = None, name: str | None = None) -> Dataset:
    """User data from an ``.npz`` with arrays ``x`` and ``y`` (never unpickled; members size-checked first)."""
    arrays = load_npz(path)
    y = np.asarray(arrays["y"])
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y must be a non-empty 1-D array of class indices")
    # Finite integer labels (and x checks) before the class count is read from them.
    x, y = validate_arrays(arrays["x"], y, str(path), n_classes)
    return Dataset(name or Path(path).stem, x, y, class_count(y, str(path), n_classes),
                   {"loader": "npz", "path": str(path)}).deduplicated()


#: Longest CSV row accepted, in characters (a quoted field may span lines: the whole row counts). The csv
#: module bounds one field (131,072 characters); this bounds the list of fields one row turns into.
MAX_CSV_ROW_CHARS = 16 * 1024**2


class _BoundedLines:
    """The lines of a text file, for ``csv.reader``, with a limit on the characters of one CSV row.

    The reader loop sets ``used = 0`` after each row; a row (or a line: ``readline`` is given the limit too)
    longer than ``limit`` is a one-line :class:`DataError` before it is held in memory."""

    def __init__(self, fh, where: Path, limit: int | None = None):
        self._fh, self._where = fh, where
        self._limit = MAX_CSV_ROW_CHARS if limit is None else limit
        self.used = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._fh.readline(self._limit - self.used + 1)
        if not line:
            raise StopIteration
        self.used += len(line)
        if self.used > self._limit:
            raise DataError(f"{self._where}: a CSV row is longer than {self._limit} characters")
        return line


def _numeric(field: str) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


def _read_csv_table(p: Path) -> tuple[list[str] | None, np.ndarray]:
    """``(header or None, table)`` of a numeric CSV, ``table`` float64 ``(rows, width)``.

    Streamed: one row at a time from the csv module into a flat array of doubles, so memory is 8 bytes a
    field (not a Python list of strings per row), and the limits are checked as rows arrive: the row length
    (:data:`MAX_CSV_ROW_CHARS`), the sample count (``SAFECOMPRESS_MAX_ROWS``) and the table's bytes
    (``SAFECOMPRESS_MAX_ARRAY_BYTES``). Blank lines are skipped; the first row is a header if any of its
    fields is not a number."""
    import array
    import csv

    from toolkit import io as tio
    from toolkit.data.dataset import max_rows

    rows_limit, bytes_limit = max_rows(), tio.MAX_ARRAY_BYTES
    values = array.array("d")
    header, width, n = None, 0, 0
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            lines = _BoundedLines(fh, p)
            reader = csv.reader(lines)
            for row in reader:
                lines.used = 0
                if not row:
                    continue
                if not width:
                    width = len(row)
                    if not all(_numeric(f) for f in row):
                        header = [h.strip() for h in row]
                        continue
                if len(row) != width:
                    raise DataError(f"{p}: line {reader.line_num} has {len(row)} fields, the first row {width}")
                try:
                    values.extend(map(float, row))
                except ValueError as exc:
                    raise DataError(f"{p}: non-numeric field at line {reader.line_num} ({exc})") from None
                n += 1
                if n > rows_limit:
                    raise DataError(f"{p}: more than {rows_limit} rows (SAFECOMPRESS_MAX_ROWS)")
                if len(values) * values.itemsize > bytes_limit:
                    raise DataError(f"{p}: more than {bytes_limit} bytes of values as float64 "
                                    "(SAFECOMPRESS_MAX_ARRAY_BYTES)")
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p} is not a readable CSV file: {' '.join(str(exc).split())[:200]}") from None
    if not n:
        raise DataError(f"{p} holds no rows" if not width else f"{p} holds a header but no rows")
    return header, np.frombuffer(values, dtype=np.float64).reshape(n, width)


def load_csv_dataset(path: str, n_classes: int | None = None, name: str | None = None,
                     label_column: str | int | None = None) -> Dataset:
    """User data from a CSV: one sample per row, numeric features, integer label column (streamed: see
    :func:`_read_csv_table`)."""
    p = check_input_file(path, "CSV file", DataError)
    header, table = _read_csv_table(p)
    width = table.shape[1]
    if width < 2:
        raise DataError(f"{p}: expected rows of at least 2 numeric fields (features + label), got {width}")
    if label_column is None:
        label_idx = width - 1
        if header:
            for cand in ("label", "y", "target", "class"):
                if cand in header:
                    label_idx = header.index(cand)
                    break
    elif isinstance(label_column, int) and not isinstance(label_column, bool):
        if not -width <= label_column < width:
            raise DataError(f"{p}: label column {label_column} is outside the {width} columns")
        label_idx = label_column % width
    else:
        if not header or label_column not in header:
            raise DataError(f"{p}: no column named {label_column!r}")
        label_idx = header.index(label_column)
    y = table[:, label_idx]
    if not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
        raise DataError(f"{p}: label column must hold integer class indices")
    # Features straight into float32 (no float64 copy of the table without its label column).
    x = np.empty((len(table), width - 1), dtype=np.float32)
    x[:, :label_idx] = table[:, :label_idx]
    x[:, label_idx:] = table[:, label_idx + 1:]
    x, y = validate_arrays(x, y, str(p), n_classes)
    del table
    return Dataset(name or p.stem, x, y, class_count(y, str(p), n_classes),
                   {"loader": "csv", "path": str(p)}).deduplicated()
