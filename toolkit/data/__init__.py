"""Data: offline loaders, the :class:`Dataset` container and membership splits with manifests.

``load_dataset(name, **options)`` looks ``name`` up in :data:`LOADERS` (``digits``, ``fashion_mnist``,
``npz``, ``csv``); text data sets are registered by the text package.
"""

from __future__ import annotations

from toolkit.data.dataset import Dataset, content_sha256, row_hashes, validate_arrays
from toolkit.data.split import PARTS, MembershipSplit, assert_disjoint, make_split
from toolkit.registry import Registry

LOADERS = Registry("data set")
LOADERS.register("digits", "toolkit.data.loaders:load_digits", description="sklearn's embedded 8x8 digits (default)")
LOADERS.register("fashion_mnist", "toolkit.data.loaders:load_fashion_mnist",
                 description="Fashion-MNIST from Debian's dataset-fashion-mnist")
LOADERS.register("npz", "toolkit.data.loaders:load_npz_dataset", description="user .npz with arrays x and y")
LOADERS.register("csv", "toolkit.data.loaders:load_csv_dataset", description="user CSV, label in the last column")
LOADERS.register("fortunes", "toolkit.data.text:load_fortunes",
                 description="topic classification of Debian's fortunes quotes (text as UTF-8 byte codes)")


def load_dataset(name: str, **options) -> Dataset:
    """Load a registered data set by name with loader-specific options (``path=``, ``limit=``...)."""
    return LOADERS.get(name)(**options)


__all__ = ["Dataset", "LOADERS", "MembershipSplit", "PARTS", "assert_disjoint", "content_sha256", "load_dataset",
           "make_split", "row_hashes", "validate_arrays"]
