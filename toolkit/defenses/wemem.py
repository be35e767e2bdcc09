"""WeMem-style primitives against memorization in iterative pruning (numpy only).

WeMem (Shang et al., ``../shared/papers/wemem-iterative-pruning-abstract.txt``) finds that iterative pruning
raises memorization through two factors: **data reuse** (every fine-tuning round revisits the same members)
and **inherent memorability** (some samples are memorized far more than others). The primitives here address
each factor; :mod:`toolkit.select.iterative` combines them in an iterative-pruning loop (one factor, the
other, or both).

* :class:`DataScheduler` — which members each fine-tuning round uses, and how often each has been used:
  ``full`` (every round all members: the vanilla schedule), ``disjoint`` (a seeded partition into one
  part per round: no sample is reused), ``least_used`` (each round the ``fraction`` of members used least so
  far, ties broken at random). ``uses`` counts the epochs each sample was trained on.
* :func:`memorability_scores` — per-sample leakage scores of the members (higher = more exposed):
  ``lira_offline`` (LiRA's offline z-score of the model's confidence against reference models that never saw
  the sample; :mod:`toolkit.attacks.lira`), ``calibrated_loss`` (reference models' mean loss minus the model's
  loss: difficulty-calibrated loss attack) or ``loss`` (the loss attack's score alone, no references; it also
  flags merely easy samples).
* :func:`flag_memorable` — the top ``fraction`` of scores; :func:`round_weights` turns the flags into
  fine-tuning weights: ``holdout`` (weight 0: the samples are excluded from every round) or ``downweight``
  (weight ``factor``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from toolkit.errors import ConfigError

SCHEDULES = ("full", "disjoint", "least_used")
SCORES = ("lira_offline", "calibrated_loss", "loss")
MEMORABLE_MODES = ("none", "holdout", "downweight")


class DataScheduler:
    """Per-round fine-tuning subsets of ``n`` members; ``exclude`` (bool mask) is never scheduled.

    ``indices(r)`` gives round ``r``'s sorted indices (deterministic in ``seed``); ``record(indices, epochs)``
    adds the epochs they were trained for to ``uses``.
    """

    def __init__(self, n: int, rounds: int, mode: Literal["full", "disjoint", "least_used"] = "full",
                 fraction: float | None = None, seed: int = 0, exclude: np.ndarray | None = None):
        if mode not in SCHEDULES:
            raise ConfigError(f"unknown schedule {mode!r}; known: {', '.join(SCHEDULES)}")
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        self.n, self.rounds, self.mode, self.seed = int(n), int(rounds), mode, int(seed)
        self.fraction = (1.0 / rounds) if fraction is None else float(fraction)
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"schedule fraction must lie in (0, 1], got {self.fraction}")
        self.exclude = np.zeros(self.n, bool) if exclude is None else np.asarray(exclude, bool)
        if self.exclude.shape != (self.n,):
            raise ConfigError(f"exclude mask has shape {self.exclude.shape}, expected ({self.n},)")
        self.eligible = np.flatnonzero(~self.exclude)
        if not len(self.eligible):
            raise ConfigError("every member is excluded from fine-tuning")
        self.uses = np.zeros(self.n, dtype=np.int64)
        perm = np.random.default_rng([self.seed, 0x5343]).permutation(self.eligible)
        self._parts = np.array_split(perm, self.rounds)

    def indices(self, round_index: int) -> np.ndarray:
        if self.mode == "full":
            return self.eligible.copy()
        if self.mode == "disjoint":
            part = self._parts[round_index % self.rounds]
            return np.sort(part)
        k = max(1, int(round(self.fraction * len(self.eligible))))
        tie = np.random.default_rng([self.seed, 0x4C55, round_index]).random(len(self.eligible))
        order = np.lexsort((tie, self.uses[self.eligible]))  # fewest uses first, random among equals
        return np.sort(self.eligible[order[:k]])

    def record(self, indices: np.ndarray, epochs: int = 1) -> None:
        np.add.at(self.uses, np.asarray(indices, dtype=np.int64), int(epochs))


def memorability_scores(method: Literal["lira_offline", "calibrated_loss", "loss"], probs: np.ndarray,
                        labels: np.ndarray, ref_probs: np.ndarray | None = None) -> np.ndarray:
    """Per-sample exposure of members (higher = more memorized) from the model's outputs ``probs`` (n, C) and,
    for the reference-based scores, outputs ``ref_probs`` (k, n, C) of reference models **not** trained on them."""
    from toolkit.attacks import signals
    from toolkit.attacks.lira import reference_statistics, scores

    labels = np.asarray(labels, dtype=np.int64)
    if method == "loss":
        return -signals.loss(probs, labels)
    if method not in SCORES:
        raise ConfigError(f"unknown memorability score {method!r}; known: {', '.join(SCORES)}")
    if ref_probs is None or not len(ref_probs):
        raise ConfigError(f"memorability score {method!r} needs reference-model outputs (population reference models)")
    if method == "calibrated_loss":
        ref_loss = np.mean([signals.loss(p, labels) for p in ref_probs], axis=0)
        return ref_loss - signals.loss(probs, labels)
    phi_t = signals.scaled_logit(probs, labels)
    phi_r = reference_statistics(ref_probs, labels)
    s, _ = scores(phi_t, phi_r, np.zeros(phi_r.shape, dtype=bool), online=False, variance="global")
    return s


def flag_memorable(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Bool mask of the ``fraction`` highest scores (at least one when ``fraction`` > 0; stable ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"memorable fraction must lie in [0, 1), got {fraction}")
    k = int(round(fraction * len(scores)))
    k = max(1, k) if fraction > 0 else 0
    flags = np.zeros(len(scores), dtype=bool)
    flags[np.argsort(-scores, kind="stable")[:k]] = True
    return flags


def round_weights(flags: np.ndarray, mode: Literal["none", "holdout", "downweight"], factor: float = 0.1) -> np.ndarray:
    """Fine-tuning weight per member: 1, except flagged samples (0 under ``holdout``, ``factor`` under
    ``downweight``)."""
    if mode not in MEMORABLE_MODES:
        raise ConfigError(f"unknown memorable-sample mode {mode!r}; known: {', '.join(MEMORABLE_MODES)}")
    w = np.ones(len(flags), dtype=np.float64)
    if mode == "holdout":
        w[np.asarray(flags, bool)] = 0.0
    elif mode == "downweight":
        w[np.asarray(flags, bool)] = float(factor)
    return w
