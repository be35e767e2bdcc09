"""The data SafeCompress needs: the four membership halves of SafeCompress Table 1.

The target (the sparse model) trains on **all members** (known + unknown halves). The simulated attacker
trains on the *known* member / non-member halves and the safety test scores it on the *unknown* halves.
The task test measures accuracy on held-out data: ``task`` if given, else all non-members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolkit.data.dataset import validate_arrays
from toolkit.data.split import SplitArrays, assert_disjoint
from toolkit.errors import DataError

PARTS = ("member_known", "member_unknown", "nonmember_known", "nonmember_unknown")


@dataclass(eq=False)
class MembershipData:
    """Four ``(x, y)`` halves (``SplitArrays`` or any object with ``x``/``y``) plus an optional task set.

    Build it with :meth:`from_split` (a :class:`~toolkit.data.MembershipSplit` of a data set) or
    :meth:`from_parts` (a mapping part name -> arrays, e.g. the ``digits_parts`` test fixture). Construction
    validates shapes, finiteness and labels, and refuses samples that are both members and non-members.
    """

    member_known: SplitArrays
    member_unknown: SplitArrays
    nonmember_known: SplitArrays
    nonmember_unknown: SplitArrays
    task: SplitArrays | None = None
    n_classes: int | None = None
    #: Optional population pool (never members, never audit non-members): reference data for defenses
    #: (DMP's unlabeled reference set, AdvReg's reference non-members, reference models).
    population: SplitArrays | None = None
    _all_x: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        shape = None
        for part in PARTS + tuple(p for p in ("task", "population") if getattr(self, p) is not None):
            arr = getattr(self, part)
            if arr is None or not hasattr(arr, "x") or not hasattr(arr, "y"):
                raise DataError(f"SafeCompress data part {part!r} must have arrays x and y")
            x, y = validate_arrays(arr.x, arr.y, f"SafeCompress {part}", self.n_classes)
            if len(y) < 2:
                raise DataError(f"SafeCompress {part} needs at least 2 samples, got {len(y)}")
            if shape is None:
                shape = x.shape[1:]
            elif x.shape[1:] != shape:
                raise DataError(f"SafeCompress {part} has samples of shape {x.shape[1:]}, others {shape}")
            setattr(self, part, SplitArrays(x, y))
        assert_disjoint(self.members.x, self.nonmembers.x)
        if self.population is not None:
            assert_disjoint(self.population.x, np.concatenate([self.members.x, self.nonmembers.x]),
                            "the population", "the members or non-members")
        self._all_x = np.concatenate([getattr(self, p).x for p in PARTS])

    @classmethod
    def from_parts(cls, parts, task=None, n_classes: int | None = None) -> "MembershipData":
        """The four halves from ``parts``; a ``population`` entry (with >= 2 samples) is kept as the pool."""
        missing = [p for p in PARTS if p not in parts]
        if missing:
            raise DataError(f"SafeCompress data lacks part(s) {', '.join(missing)}; needs {', '.join(PARTS)}")
        pop = parts.get("population")
        pop = pop if pop is not None and len(pop.y) >= 2 else None
        return cls(*(parts[p] for p in PARTS), task=task, n_classes=n_classes, population=pop)

    @classmethod
    def from_split(cls, dataset, split, task=None) -> "MembershipData":
        names = PARTS + (("population",) if len(split.population) else ())
        return cls.from_parts({p: split.take(dataset, p) for p in names}, task=task, n_classes=dataset.n_classes)

    @property
    def members(self) -> SplitArrays:
        """The target's training set: known then unknown member halves."""
        return SplitArrays(np.concatenate([self.member_known.x, self.member_unknown.x]),
                           np.concatenate([self.member_known.y, self.member_unknown.y]))

    @property
    def nonmembers(self) -> SplitArrays:
        return SplitArrays(np.concatenate([self.nonmember_known.x, self.nonmember_unknown.x]),
                           np.concatenate([self.nonmember_known.y, self.nonmember_unknown.y]))

    def sizes(self) -> dict[str, int]:
        out = {p: int(len(getattr(self, p).y)) for p in PARTS}
        for part in ("task", "population"):
            if getattr(self, part) is not None:
                out[part] = int(len(getattr(self, part).y))
        return out

    def outputs(self, predict_proba) -> "PartOutputs":
        """One forward pass over the four halves (and the task set if separate)."""
        probs = np.asarray(predict_proba(self._all_x))
        out, start = {}, 0
        for p in PARTS:
            n = len(getattr(self, p).y)
            out[p] = probs[start:start + n]
            start += n
        task = None if self.task is None else np.asarray(predict_proba(self.task.x))
        return PartOutputs(self, out, task)


@dataclass(eq=False)
class PartOutputs:
    """A model's probability vectors on each half (computed once, shared by the attack and task tests)."""

    data: MembershipData
    probs: dict[str, np.ndarray]
    task_probs: np.ndarray | None = None

    def attack_set(self, known: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probs, labels, membership)`` of the known (attacker training) or unknown (safety test) halves."""
        side = "known" if known else "unknown"
        mem, non = f"member_{side}", f"nonmember_{side}"
        d = self.data
        probs = np.concatenate([self.probs[mem], self.probs[non]])
        labels = np.concatenate([getattr(d, mem).y, getattr(d, non).y])
        membership = np.concatenate([np.ones(len(getattr(d, mem).y), bool), np.zeros(len(getattr(d, non).y), bool)])
        return probs, labels, membership

    def attack_sets(self) -> "AttackSets":
        """Both attack sets as one small picklable object (what the simulated attacker needs, no images)."""
        return AttackSets(self.attack_set(known=True), self.attack_set(known=False))

    def task_accuracy(self) -> float:
        """Accuracy on the task set (all non-members unless a separate one was given)."""
        if self.task_probs is not None:
            return float(np.mean(np.argmax(self.task_probs, axis=1) == self.data.task.y))
        probs = np.concatenate([self.probs["nonmember_known"], self.probs["nonmember_unknown"]])
        return float(np.mean(np.argmax(probs, axis=1) == self.data.nonmembers.y))


@dataclass(frozen=True, eq=False)
class AttackSets:
    """``(probs, labels, membership)`` of the known and the unknown halves: the attacker's whole input.

    It quacks like :class:`PartOutputs` for :class:`~toolkit.select.safecompress.attacker.SimulatedAttacker`
    (``attack_set(known)``) but holds only probability vectors, so it travels cheaply to a helper process.
    """

    known: tuple[np.ndarray, np.ndarray, np.ndarray]
    unknown: tuple[np.ndarray, np.ndarray, np.ndarray]

    def attack_set(self, known: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.known if known else self.unknown
