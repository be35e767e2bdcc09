import numpy as np
import pytest

from toolkit.data import LOADERS, load_dataset
from toolkit.errors import DataError, MissingDependencyError, UnknownNameError


def test_digits(digits):
    assert len(digits) == 1797 and digits.input_shape == (8, 8, 1) and digits.n_classes == 10
    assert digits.x.dtype == np.float32 and 0.0 <= digits.x.min() and digits.x.max() <= 1.0


def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion_mnist", limit=2000)
    assert len(ds) == 2000 and ds.input_shape == (28, 28, 1) and ds.n_classes == 10
    assert set(np.unique(ds.y)) == set(range(10))
    assert ds.x.max() <= 1.0 and ds.x.mean() > 0.1


def test_fashion_mnist_missing_names_the_package(monkeypatch, tmp_path):
    from toolkit.data import loaders

    monkeypatch.setattr(loaders, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(MissingDependencyError, match="dataset-fashion-mnist"):
        load_dataset("fashion_mnist")


def test_npz_round_trip_and_refusals(tmp_path, digits):
    p = tmp_path / "d.npz"
    np.savez(p, x=digits.x[:100], y=digits.y[:100])
    ds = load_dataset("npz", path=str(p))
    assert len(ds) == 100 and np.array_equal(ds.x, digits.x[:100])

    pickled = tmp_path / "obj.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="pickled"):
        load_dataset("npz", path=str(pickled))

    missing = tmp_path / "nox.npz"
    np.savez(missing, y=np.array([0, 1]))
    with pytest.raises(DataError, match="lacks array"):
        load_dataset("npz", path=str(missing))

    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a valid .npz"):
        load_dataset("npz", path=str(corrupt))


def test_nan_and_label_errors(tmp_path):
    p = tmp_path / "nan.npz"
    x = np.zeros((4, 3), np.float32)
    x[1, 2] = np.nan
    np.savez(p, x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="NaN"):
        load_dataset("npz", path=str(p))
    q = tmp_path / "lab.npz"
    np.savez(q, x=np.eye(4, dtype=np.float32), y=np.array([0, 1, 2, 7]))
    with pytest.raises(DataError, match="outside the model's 3 classes"):
        load_dataset("npz", path=str(q), n_classes=3)


def test_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,label\n0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,1\n")
    ds = load_dataset("csv", path=str(p))
    assert ds.x.shape == (3, 2) and list(ds.y) == [0, 1, 1] and ds.n_classes == 2
    q = tmp_path / "nohdr.csv"
    q.write_text("1,0.5,2\n0,0.25,3\n")
    ds2 = load_dataset("csv", path=str(q))
    assert list(ds2.y) == [2, 3] and ds2.x.shape == (2, 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match="non-numeric"):
        load_dataset("csv", path=str(bad))


def test_unknown_loader_lists_known():
    with pytest.raises(UnknownNameError, match="known: digits, fashion_mnist"):
        LOADERS.get("cifar")
