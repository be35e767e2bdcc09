"""Membership splits (SafeCompress Table 1) and their manifests.

A split assigns disjoint index sets of one data set to five parts:

============================  =======================================================================
``member_known``              in the target's training set; the simulated attacker trains on it
``member_unknown``            in the target's training set; attacks are evaluated on it
``nonmember_known``           held out from training; the simulated attacker trains on it
``nonmember_unknown``         held out from training; attacks are evaluated on it
``population``                never used by the target; reference / shadow models train on it
============================  =======================================================================

The split is a pure function of (data content, sizes, seed). Its manifest (JSON) records the indices, the
data set's content hash and one hash per part, plus a hash over the whole manifest, so a later audit can
prove it uses the same samples and any edit to the manifest or the data is detected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.dataset import Dataset, content_sha256, row_digests
from toolkit.errors import DataError
from toolkit.io import atomic_write_text, check_input_file

PARTS = ("member_known", "member_unknown", "nonmember_known", "nonmember_unknown", "population")
MANIFEST_VERSION = 1


def assert_disjoint(x_a: np.ndarray, x_b: np.ndarray, what_a: str = "members", what_b: str = "non-members") -> None:
    """Raise :class:`DataError` if any sample (by feature content) occurs in both arrays."""
    common = np.intersect1d(row_digests(x_a), row_digests(x_b))
    if len(common):
        raise DataError(f"{len(common)} sample(s) occur in both {what_a} and {what_b} (matched by content hash); "
                        "membership cannot be measured on overlapping sets")


@dataclass(frozen=True, eq=False)
class SplitArrays:
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True, eq=False)
class MembershipSplit:
    dataset_name: str
    dataset_sha256: str
    seed: int
    member_known: np.ndarray
    member_unknown: np.ndarray
    nonmember_known: np.ndarray
    nonmember_unknown: np.ndarray
    population: np.ndarray

    @property
    def members(self) -> np.ndarray:
        """All training indices of the target (known then unknown)."""
        return np.concatenate([self.member_known, self.member_unknown])

    @property
    def nonmembers(self) -> np.ndarray:
        return np.concatenate([self.nonmember_known, self.nonmember_unknown])

    def indices(self, part: str) -> np.ndarray:
        if part in ("members", "nonmembers"):
            return getattr(self, part)
        if part not in PARTS:
            raise DataError(f"unknown split part {part!r}; known: {', '.join(PARTS + ('members', 'nonmembers'))}")
        return getattr(self, part)

    def take(self, dataset: Dataset, part: str) -> SplitArrays:
        """The (x, y) arrays of one part (or ``members``/``nonmembers``) of ``dataset``."""
        self.verify(dataset)
        idx = self.indices(part)
        return SplitArrays(dataset.x[idx], dataset.y[idx])

    # ----------------------------------------------------------------- manifest
    def _part_hash(self, dataset: Dataset, part: str) -> str:
        idx = self.indices(part)
        return content_sha256(dataset.x[idx], dataset.y[idx])

    def to_manifest(self, dataset: Dataset | None = None) -> dict:
        body = {
            "version": MANIFEST_VERSION,
            "dataset": {"name": self.dataset_name, "sha256": self.dataset_sha256},
            "seed": self.seed,
            "parts": {p: np.asarray(self.indices(p), dtype=np.int64).tolist() for p in PARTS},
        }
        if dataset is not None:
            body["part_sha256"] = {p: self._part_hash(dataset, p) for p in PARTS}
        body["manifest_sha256"] = _manifest_hash(body)
        return body

    def save(self, path: str | Path, dataset: Dataset | None = None) -> Path:
        """Write the manifest (JSON, atomically): indented, each part's indices on one line."""
        return atomic_write_text(path, _manifest_text(self.to_manifest(dataset)))

    @classmethod
    def from_manifest(cls, manifest: dict) -> "MembershipSplit":
        try:
            stored = manifest["manifest_sha256"]
            if _manifest_hash(manifest) != stored:
                raise DataError("split manifest was modified after it was written (manifest_sha256 mismatch)")
            if manifest.get("version") != MANIFEST_VERSION:
                raise DataError(f"unsupported split manifest version {manifest.get('version')!r}")
            parts = {p: np.asarray(manifest["parts"][p], dtype=np.int64) for p in PARTS}
            split = cls(manifest["dataset"]["name"], manifest["dataset"]["sha256"], int(manifest["seed"]), **parts)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed split manifest: {type(exc).__name__}: {exc}") from None
        split._check_disjoint_indices()
        object.__setattr__(split, "_part_sha256", manifest.get("part_sha256"))
        return split

    @classmethod
    def load(cls, path: str | Path) -> "MembershipSplit":
        p = check_input_file(path, "split manifest", DataError, max_bytes=512 * 1024**2)
        try:
            manifest = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{p} is not a JSON split manifest: {exc}") from None
        if not isinstance(manifest, dict):
            raise DataError(f"{p} is not a JSON split manifest")
        return cls.from_manifest(manifest)

    def verify(self, dataset: Dataset) -> None:
        """Raise :class:`DataError` unless ``dataset`` is the data this split was made from."""
        if dataset.sha256 != self.dataset_sha256:
            raise DataError(f"data set {dataset.name!r} (sha256 {dataset.sha256[:12]}...) is not the one this split "
                            f"was made from ({self.dataset_name!r}, sha256 {self.dataset_sha256[:12]}...)")
        top = max(int(self.indices(p).max(initial=-1)) for p in PARTS)
        if top >= len(dataset):
            raise DataError(f"split index {top} is out of range for {len(dataset)} samples")
        expected = self.__dict__.get("_part_sha256")
        if expected:
            for p in PARTS:
                if expected.get(p) != self._part_hash(dataset, p):
                    raise DataError(f"split part {p!r} does not hash to the value in its manifest")

    def _check_disjoint_indices(self) -> None:
        """No part repeats an index and no index is in two parts. With arrays and one sort (8-16 bytes an
        index): a dict of Python ints cost ~100 bytes an index, ~1 GB for a split of millions of samples."""
        parts = [np.asarray(self.indices(p)) for p in PARTS]
        every = np.concatenate(parts)
        owner = np.repeat(np.arange(len(PARTS)), [len(idx) for idx in parts])
        order = np.argsort(every, kind="stable")  # equal indices stay in part order: earlier part first
        ranked = every[order]
        dup = np.flatnonzero(ranked[1:] == ranked[:-1])
        if len(dup):
            j = int(dup[0])
            first, second = PARTS[owner[order[j]]], PARTS[owner[order[j + 1]]]
            if first == second:
                raise DataError(f"split part {first!r} repeats indices")
            raise DataError(f"index {int(ranked[j])} is in both {first!r} and {second!r}")

    def sizes(self) -> dict[str, int]:
        return {p: int(len(self.indices(p))) for p in PARTS}


def _manifest_text(manifest: dict) -> str:
    """The manifest as indented JSON with each part's index list on one line.

    ``json.dumps(indent=...)`` runs json's pure-Python encoder, which holds a string for every index, comma and
    newline before joining them (~600 MB for a split of 5M samples); each value here goes through the C
    encoder in one piece. The layout does not matter to readers or to ``manifest_sha256`` (computed over
    compact, key-sorted JSON)."""
    fields = []
    for key, value in manifest.items():
        if key == "parts":
            lists = [f"    {json.dumps(p)}: {json.dumps(idx)}" for p, idx in value.items()]
            text = "{\n" + ",\n".join(lists) + "\n  }"
        else:
            text = json.dumps(value, indent=2).replace("\n", "\n  ")
        fields.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _manifest_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _count(value: int | float, total: int, what: str) -> int:
    if isinstance(value, float) and 0 < value < 1:
        return int(round(value * total))
    n = int(value)
    if n < 0 or n != value:
        raise DataError(f"{what} must be a count >= 0 or a fraction in (0, 1), got {value!r}")
    return n


def make_split(dataset: Dataset, members: int | float = 1 / 3, nonmembers: int | float | None = None,
               population: int | float | None = None, seed: int = 0) -> MembershipSplit:
    """Draw a membership split of ``dataset``.

    ``members`` / ``nonmembers`` / ``population`` are counts or fractions of the data set. ``nonmembers``
    defaults to the member count; ``population`` to everything left. Members and non-members are each
    halved into known / unknown parts (the attacker knows 50% of each, as in SafeCompress Table 1).
    Labels are stratified: each part draws from every class in proportion.
    """
    n = len(dataset)
    n_mem = _count(members, n, "members")
    n_non = n_mem if nonmembers is None else _count(nonmembers, n, "nonmembers")
    n_pop = n - n_mem - n_non if population is None else _count(population, n, "population")
    if min(n_mem, n_non) < 4:
        raise DataError(f"need at least 4 members and 4 non-members, got {n_mem} and {n_non}")
    if n_pop < 0 or n_mem + n_non + n_pop > n:
        raise DataError(f"split asks for {n_mem}+{n_non}+{max(n_pop, 0)} samples but {dataset.name!r} has {n}")
    # Duplicated samples would put one image on both sides: splits are drawn from unique content only.
    # 16-byte digests in one sorted array (a set of hex strings would cost ~100 bytes per sample; np.unique's
    # hash table takes seconds per million here).
    digests = np.sort(row_digests(dataset.x))
    if (digests[1:] == digests[:-1]).any():
        raise DataError(f"data set {dataset.name!r} contains duplicate samples; call .deduplicated() first")
    del digests

    rng = np.random.default_rng(seed)
    # Stratified permutation: interleave per-class shuffles so every prefix is class-balanced.
    order = _stratified_order(dataset.y, rng)
    mem = order[:n_mem]
    non = order[n_mem:n_mem + n_non]
    pop = order[n_mem + n_non:n_mem + n_non + n_pop]
    split = MembershipSplit(
        dataset.name, dataset.sha256, int(seed),
        member_known=np.sort(mem[: n_mem // 2]), member_unknown=np.sort(mem[n_mem // 2:]),
        nonmember_known=np.sort(non[: n_non // 2]), nonmember_unknown=np.sort(non[n_non // 2:]),
        population=np.sort(pop),
    )
    split._check_disjoint_indices()
    return split


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix holds the classes in (close to) their overall proportions."""
    keys = np.empty(len(y), dtype=np.float64)
    # Each class's indices (ascending) from one stable sort: O(n log n) in all, where a `y == c` scan per class
    # would cost samples x classes (10**12 steps for 10M samples of 100,000 classes). Same classes in the same
    # order, same draws: splits are unchanged.
    by_label = np.argsort(y, kind="stable")
    _, starts = np.unique(y[by_label], return_index=True)
    ends = np.append(starts[1:], len(y))
    for start, end in zip(starts, ends):
        idx = by_label[start:end]
        perm = rng.permutation(len(idx))
        # Position of each sample within its class, scaled to [0, 1): merging by this key interleaves classes.
        keys[idx[perm]] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.argsort(keys, kind="stable")
