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

from toolkit.data.dataset import Dataset
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


def _n_classes(y: np.ndarray, n_classes: int | None) -> int:
    return int(n_classes) if n_classes is not None else int(np.max(y)) + 1


def load_npz_dataset(path: str, n_classes: int | None = None, name: str | None = None) -> Dataset:
    """User data from an ``.npz`` with arrays ``x`` and ``y`` (never unpickled)."""
    from toolkit.data.dataset import validate_arrays

    arrays = load_npz(path)
    y = np.asarray(arrays["y"])
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y must be a non-empty 1-D array of class indices")
    # Finite integer labels (and x checks) before the class count is read from them.
    x, y = validate_arrays(arrays["x"], y, str(path), n_classes)
    return Dataset(name or Path(path).stem, x, y, _n_classes(y, n_classes),
                   {"loader": "npz", "path": str(path)}).deduplicated()


def load_csv_dataset(path: str, n_classes: int | None = None, name: str | None = None,
                     label_column: str | int | None = None) -> Dataset:
    """User data from a CSV: one sample per row, numeric features, integer label column."""
    import csv

    p = check_input_file(path, "CSV file", DataError)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p} is not a readable CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{p} holds no rows")

    def numeric(field: str) -> bool:
        try:
            float(field)
            return True
        except ValueError:
            return False

    header = None if all(numeric(f) for f in rows[0]) else [h.strip() for h in rows[0]]
    body = rows[1:] if header else rows
    width = len(rows[0])
    if label_column is None:
        label_idx = width - 1
        if header:
            for cand in ("label", "y", "target", "class"):
                if cand in header:
                    label_idx = header.index(cand)
                    break
    elif isinstance(label_column, int):
        label_idx = label_column
    else:
        if not header or label_column not in header:
            raise DataError(f"{p}: no column named {label_column!r}")
        label_idx = header.index(label_column)
    try:
        table = np.array([[float(f) for f in r] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{p}: non-numeric field ({exc})") from None
    except Exception:
        raise DataError(f"{p}: rows have different numbers of fields") from None
    if table.ndim != 2 or table.shape[1] != width or width < 2:
        raise DataError(f"{p}: expected rows of {width} numeric fields (features + label)")
    y = table[:, label_idx]
    x = np.delete(table, label_idx, axis=1).astype(np.float32)
    if not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
        raise DataError(f"{p}: label column must hold integer class indices")
    y = y.astype(np.int64)
    return Dataset(name or p.stem, x, y, _n_classes(y, n_classes), {"loader": "csv", "path": str(p)}).deduplicated()
