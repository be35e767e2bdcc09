"""CompLeak (Li et al., USENIX Security 2026): the privacy cost of shipping compressed versions of one model.

The audited target is one compressed version; :class:`~toolkit.attacks.inputs.AttackInput` ``versions`` holds
the other versions the attacker can query, ``versions[0]`` being the uncompressed original when
``original_first`` is True.

* ``compleak_nr`` (no reference): every metric attack on every *compressed* version separately (the target and
  the non-original versions). The details hold the per-version table (AUC and TPR over all points); the result
  is the (version, attack) pair with the best AUC **on the known half**, so the choice is never made on the
  points it is scored on, and it is evaluated on the unknown half.
* ``compleak_sr`` (single reference): the original (``versions[0]``) and the target. Features: the original's
  probability vector sorted in descending order, the target's vector reordered by the *same* permutation, and
  their difference; with the one-hot label into the learned attacker (the Fig. 2 network on raw features).
* ``compleak_mr`` (multiple references): all versions. The anchor is the original when present, else the
  target. Features: the anchor's sorted vector, for every other version its difference to the anchor after
  the same alignment, and every version's loss; standardized (losses and differences live on very different
  scales), with the one-hot label, into the learned attacker.

SR and MR train on the known half and are evaluated on the unknown half (SafeCompress Table 1 protocol).
"""

from __future__ import annotations

import numpy as np

from toolkit.attacks import metrics, signals, threshold
from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.attacks.nn_attack import NNAttack

NR_ATTACKS = ("loss", "confidence", "entropy", "modified_entropy", "correctness")


def _compressed(inp: AttackInput) -> list[tuple[str, np.ndarray]]:
    """(name, outputs) of every compressed version: the target and the versions that are not the original."""
    out = [("target", inp.probs)]
    start = 1 if inp.original_first else 0
    for i in range(start, inp.n_versions):
        out.append((inp.version_names[i], inp.versions[i]))
    return out


def run_nr(inp: AttackInput, *, attacks: tuple[str, ...] = NR_ATTACKS) -> AttackResult:
    k, mem = inp.known, inp.membership
    table, best, best_key = [], None, -np.inf
    for vname, probs in _compressed(inp):
        for attack in attacks:
            s = threshold.score(probs, inp.labels, attack)
            fpr, tpr, _ = metrics.roc(s, mem)
            row = {"version": vname, "attack": attack, "auc": metrics.auc(s, mem),
                   "tpr_at_fpr": {str(t): metrics.tpr_at(fpr, tpr, t) for t in metrics.FPR_TARGETS},
                   "auc_known": metrics.auc(s[k], mem[k])}
            table.append(row)
            if row["auc_known"] > best_key:
                best_key, best = row["auc_known"], (vname, attack, s)
    vname, attack, s = best
    return AttackResult("compleak_nr", s, ~k, learned=True,
                        details={"per_version": table, "selected": {"version": vname, "attack": attack}})


def sr_features(original: np.ndarray, compressed: np.ndarray) -> np.ndarray:
    """``[sorted original, compressed aligned to it, their difference]``, shape (n, 3C)."""
    a, b = signals.aligned_sorted(original, compressed)
    return np.concatenate([a, b, a - b], axis=1)


def mr_features(anchor: np.ndarray, others: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """``[sorted anchor, (anchor - aligned other) per other version, loss per version]``."""
    a_sorted = signals.sorted_probabilities(anchor)
    parts = [a_sorted]
    for o in others:
        a, b = signals.aligned_sorted(anchor, o)
        parts.append(a - b)
    parts.append(np.stack([signals.loss(p, labels) for p in [anchor, *others]], axis=1))
    return np.concatenate(parts, axis=1)


def _learned(name: str, inp: AttackInput, feats: np.ndarray, epochs: int, standardize: bool, details: dict):
    k = inp.known
    attack = NNAttack(inp.n_classes, features="raw", epochs=epochs, standardize=standardize, seed=inp.seed)
    attack.fit(feats[k], inp.labels[k], inp.membership[k])
    return AttackResult(name, attack.score(feats, inp.labels), ~k, learned=True,
                        details={**details, "features": int(feats.shape[1]), "epochs": epochs})


def run_sr(inp: AttackInput, *, epochs: int = 100) -> AttackResult:
    feats = sr_features(inp.versions[0], inp.probs)
    return _learned("compleak_sr", inp, feats, epochs, False,
                    {"reference": inp.version_names[0], "reference_is_original": inp.original_first})


def run_mr(inp: AttackInput, *, epochs: int = 100) -> AttackResult:
    models = [("target", inp.probs)] + [(inp.version_names[i], inp.versions[i]) for i in range(inp.n_versions)]
    anchor_i = 1 if inp.original_first else 0
    anchor = models[anchor_i]
    others = [m for i, m in enumerate(models) if i != anchor_i]
    feats = mr_features(anchor[1], [p for _, p in others], inp.labels)
    return _learned("compleak_mr", inp, feats, epochs, True,
                    {"anchor": anchor[0], "versions": [n for n, _ in models], "with_original": inp.original_first})
