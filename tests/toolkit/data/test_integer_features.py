"""Integer features (token ids) stay int64 through validation; float features stay float32; hashes agree."""

import numpy as np
import pytest

from toolkit.data import Dataset, assert_disjoint, content_sha256, make_split, row_hashes, validate_arrays
from toolkit.errors import DataError


def test_integer_features_stay_int64_and_floats_float32():
    ids, y = validate_arrays(np.array([[2, 5, 0], [2, 7, 9]], dtype=np.int32), np.array([0, 1]), "ids")
    assert ids.dtype == np.int64 and ids.tolist() == [[2, 5, 0], [2, 7, 9]]
    flt, _ = validate_arrays(np.array([[0.5, 1.0]], dtype=np.float64), np.array([0]), "floats")
    assert flt.dtype == np.float32
    boolean, _ = validate_arrays(np.array([[True, False]]), np.array([0]), "bools")
    assert boolean.dtype == np.float32


def test_hashes_agree_between_integer_and_float_copies():
    x = np.arange(24, dtype=np.int64).reshape(4, 6) * 1000
    y = np.array([0, 1, 0, 1])
    assert list(row_hashes(x)) == list(row_hashes(x.astype(np.float32)))
    assert content_sha256(x, y) == content_sha256(x.astype(np.float32), y)
    with pytest.raises(DataError, match="occur in both"):
        assert_disjoint(x[:2], x[1:].astype(np.float32))


def test_large_integers_refused():
    with pytest.raises(DataError, match="below 2\\*\\*24"):
        validate_arrays(np.array([[2**24]]), np.array([0]), "ids")
    with pytest.raises(DataError, match="below 2\\*\\*24"):
        validate_arrays(np.array([[2**64 - 1]], dtype=np.uint64), np.array([0]), "ids")


def test_integer_dataset_splits_and_subsets():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5000, size=(60, 8))
    ds = Dataset("ids", x, np.arange(60) % 3, 3)
    assert ds.x.dtype == np.int64 and ds.subset(np.arange(5)).x.dtype == np.int64
    split = make_split(ds, members=20, nonmembers=20, seed=0)
    assert split.take(ds, "members").x.dtype == np.int64
