"""What an attack is given (:class:`AttackInput`) and what it returns (:class:`AttackResult`). Numpy only.

Shapes: ``n`` evaluation points (members and non-members), ``C`` classes, ``k`` reference models, ``m``
population samples, ``v`` other versions of the audited model.

The **known** mask is the attacker's side knowledge (SafeCompress Table 1): a seeded half of the members and
a seeded half of the non-members. Learned attacks train on it and are evaluated on the rest; score-based
attacks use it only to choose the balanced-accuracy threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import AttackError

#: What each requirement means, phrased as the fix (``{name}`` is the attack). Checked before any attack runs.
NEEDS: dict[str, str] = {
    "references": "attack {name!r} needs reference models trained with the target's recipe: pass --config with "
                  "the training recipe and population data (CLI), or reference_pool=ReferencePool(...) (Python)",
    "references_in": "attack {name!r} is an online attack and needs reference models trained on halves that "
                     "include the audit points: set 'online: true' in the --config (CLI) or pass "
                     "ReferencePool(..., online=True) (Python); the offline variants need no such models",
    "population": "attack {name!r} needs population samples with target and reference outputs: pass --config "
                  "with a population file (CLI), or reference_pool=ReferencePool(...) (Python)",
    "versions": "attack {name!r} needs a second version of the model (the original for CompLeak SR): pass "
                "--reference ORIGINAL (CLI) or references=[original] (Python)",
    "versions2": "attack {name!r} needs at least 2 other versions of the model (the original and/or more "
                 "compressed versions): pass --reference two or more times (CLI) or references=[...] (Python)",
}


def known_mask(membership: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded half of the members and a seeded half of the non-members (rounded down), as a boolean mask."""
    m = np.asarray(membership, dtype=bool)
    rng = np.random.default_rng([int(seed), 0x6B6E])
    known = np.zeros(len(m), dtype=bool)
    for side in (np.flatnonzero(m), np.flatnonzero(~m)):
        known[rng.permutation(side)[: len(side) // 2]] = True
    return known


def _bool(a, what: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != shape:
        raise AttackError(f"{what} must have shape {shape}, got {a.shape}")
    return a.astype(bool)


def _probs(a, what: str, lead: tuple[int, ...], n_classes: int) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (*lead, n_classes):
        raise AttackError(f"{what} must have shape {(*lead, n_classes)}, got {a.shape}")
    if not np.isfinite(a).all():
        raise AttackError(f"{what} contain NaN or inf")
    return a


@dataclass(eq=False)
class AttackInput:
    """Everything an attack may use. Only ``probs``, ``labels``, ``membership`` are required.

    ``probs`` (n, C): target outputs on the evaluation points; ``labels`` (n,); ``membership`` (n,) ground
    truth; ``known`` (n,) the attacker's known half (default: :func:`known_mask` of ``seed``).

    Reference models (LiRA, RMIA): ``ref_probs`` (k, n, C) their outputs on the evaluation points and
    ``ref_in`` (k, n), True where reference j was trained on point i (all False for offline references).

    Population samples z (RMIA, shadow models): ``pop_probs`` (m, C) target outputs, ``pop_labels`` (m,),
    ``pop_ref_probs`` (k, m, C) reference outputs and ``pop_ref_in`` (k, m).

    Other versions of the audited model (CompLeak): ``versions`` (v, n, C) in order; ``original_first`` says
    whether ``versions[0]`` is the uncompressed original (the target is then one compressed version).
    """

    probs: np.ndarray
    labels: np.ndarray
    membership: np.ndarray
    known: np.ndarray | None = None
    ref_probs: np.ndarray | None = None
    ref_in: np.ndarray | None = None
    pop_probs: np.ndarray | None = None
    pop_labels: np.ndarray | None = None
    pop_ref_probs: np.ndarray | None = None
    pop_ref_in: np.ndarray | None = None
    versions: np.ndarray | None = None
    original_first: bool = True
    version_names: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        p = np.asarray(self.probs)
        if p.ndim != 2 or p.shape[1] < 2:
            raise AttackError(f"target outputs must have shape (n, n_classes>=2), got {p.shape}")
        n, c = p.shape
        self.probs = _probs(p, "target outputs", (n,), c)
        y = np.asarray(self.labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise AttackError(f"labels must be {n} integer class indices, got shape {y.shape} dtype {y.dtype}")
        if n and (y.min() < 0 or y.max() >= c):
            raise AttackError(f"labels must lie in 0..{c - 1} (the model has {c} outputs)")
        self.labels = y.astype(np.int64)
        self.membership = _bool(self.membership, "membership", (n,))
        if self.known is None:
            self.known = known_mask(self.membership, self.seed)
        self.known = _bool(self.known, "known mask", (n,))
        for part, name in ((self.known, "known"), (~self.known, "unknown")):
            mem = self.membership[part]
            if mem.sum() < 2 or (~mem).sum() < 2:
                raise AttackError(f"the {name} half needs at least 2 members and 2 non-members "
                                  f"(got {int(mem.sum())} and {int((~mem).sum())})")
        if (self.ref_probs is None) != (self.ref_in is None):
            raise AttackError("ref_probs and ref_in must be given together")
        if self.ref_probs is not None:
            rp = np.asarray(self.ref_probs)
            k = rp.shape[0] if rp.ndim == 3 else -1
            self.ref_probs = _probs(rp, "reference outputs", (k, n), c)
            self.ref_in = _bool(self.ref_in, "ref_in", (k, n))
        pop = (self.pop_probs, self.pop_labels, self.pop_ref_probs, self.pop_ref_in)
        if any(a is not None for a in pop) and not all(a is not None for a in pop):
            raise AttackError("pop_probs, pop_labels, pop_ref_probs and pop_ref_in must be given together")
        if self.pop_probs is not None:
            pp = np.asarray(self.pop_probs)
            m = pp.shape[0] if pp.ndim == 2 else -1
            self.pop_probs = _probs(pp, "target outputs on the population", (m,), c)
            py = np.asarray(self.pop_labels)
            if py.shape != (m,) or not np.issubdtype(py.dtype, np.integer) or (m and (py.min() < 0 or py.max() >= c)):
                raise AttackError(f"pop_labels must be {m} integer class indices in 0..{c - 1}")
            self.pop_labels = py.astype(np.int64)
            prp = np.asarray(self.pop_ref_probs)
            k = prp.shape[0] if prp.ndim == 3 else -1
            self.pop_ref_probs = _probs(prp, "reference outputs on the population", (k, m), c)
            self.pop_ref_in = _bool(self.pop_ref_in, "pop_ref_in", (k, m))
        if self.versions is not None:
            v = np.asarray(self.versions)
            if v.ndim == 2:
                v = v[None]
            self.versions = _probs(v, "version outputs", (v.shape[0] if v.ndim == 3 else -1, n), c)
            if not self.version_names:
                self.version_names = tuple(f"version{i}" for i in range(len(self.versions)))
            if len(self.version_names) != len(self.versions):
                raise AttackError(f"{len(self.version_names)} version names for {len(self.versions)} versions")

    # ------------------------------------------------------------------ what is available
    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def n_versions(self) -> int:
        return 0 if self.versions is None else len(self.versions)

    def available(self) -> set[str]:
        """The requirement keys of :data:`NEEDS` this input satisfies."""
        have = set()
        if self.ref_probs is not None and len(self.ref_probs):
            have.add("references")
            if self.ref_in.any():
                have.add("references_in")
        if self.pop_probs is not None and len(self.pop_probs) and len(self.pop_ref_probs):
            have.add("population")
        if self.n_versions >= 1:
            have.add("versions")
        if self.n_versions >= 2:
            have.add("versions2")
        return have


def missing_message(name: str, needs, available: set[str]) -> str | None:
    """The one-line error for the first unmet requirement of attack ``name``, or None."""
    for need in needs:
        if need not in available:
            return NEEDS[need].format(name=name)
    return None


@dataclass(eq=False)
class AttackResult:
    """One attack's per-sample scores (higher = more likely a member) and where they may be evaluated.

    ``eval_mask`` is all True for score-based attacks and the unknown half for attacks that learned from the
    known half. ``details`` holds JSON-ready extras (per-version tables, tuned parameters...).
    """

    name: str
    scores: np.ndarray
    eval_mask: np.ndarray
    learned: bool = False
    details: dict = field(default_factory=dict)
