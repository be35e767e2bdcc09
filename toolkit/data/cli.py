"""Implementation of ``safecompress data ...`` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.data import LOADERS, Dataset, load_dataset, make_split
from toolkit.io import atomic_path


def resolve_dataset(name_or_path: str, limit: int | None = None) -> Dataset:
    """A registered name, or a path ending in .npz / .csv."""
    if name_or_path.endswith(".npz"):
        ds = load_dataset("npz", path=name_or_path)
    elif name_or_path.endswith(".csv"):
        ds = load_dataset("csv", path=name_or_path)
    elif name_or_path == "fashion_mnist":
        return load_dataset("fashion_mnist", limit=limit)
    else:
        ds = LOADERS.get(name_or_path)()
    if limit is not None:
        ds = ds.subset(np.arange(min(limit, len(ds))))
    return ds


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=x, y=y)
    return path


def _count(v):
    return v if v is None or v < 1 else int(v)


def split_command(dataset: str, out: Path, members, nonmembers, population, limit, seed) -> dict:
    ds = resolve_dataset(dataset, limit)
    split = make_split(ds, _count(members), _count(nonmembers), _count(population), seed=seed)
    out = Path(out)
    split.save(out / "split.json", ds)
    files = {"manifest": str(out / "split.json")}
    for part in ("members", "nonmembers", "population", "member_known", "member_unknown", "nonmember_known",
                 "nonmember_unknown"):
        arr = split.take(ds, part)
        files[part] = str(save_npz(out / f"{part}.npz", arr.x, arr.y))
    return {"dataset": ds.name, "sha256": ds.sha256, "sizes": split.sizes(), "files": files}
