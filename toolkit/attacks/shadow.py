"""Shokri et al. (2017) shadow-model attack.

Shadow models are trained like the target (same spec and recipe) on random halves of the population pool
(the :class:`~toolkit.models.references.ReferencePool` builds them). Each shadow model's outputs on the
population samples it was trained on ("in") and not trained on ("out") form a labelled training set for an
attack classifier, which is then applied to the target's outputs. Shokri et al. train one attack model per
class; here one label-conditioned attacker (the SafeCompress Fig. 2 network: sorted probabilities + one-hot
label) plays that role, trained for 20 epochs by default: its training set is k reference models x m population
samples, so an epoch is k times longer than on one model's data. The attacker never sees the target's members, so the attack is score-based: AUC and
TPR use every evaluation point.
"""

from __future__ import annotations

import numpy as np

from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.attacks.nn_attack import NNAttack
from toolkit.errors import AttackError


def run(inp: AttackInput, *, epochs: int = 20) -> AttackResult:
    k, m = inp.pop_ref_in.shape
    x = inp.pop_ref_probs.reshape(k * m, inp.n_classes)
    y = np.tile(inp.pop_labels, k)
    member = inp.pop_ref_in.reshape(-1)
    if member.all() or not member.any():
        raise AttackError("shadow models need population samples both inside and outside their training sets")
    attack = NNAttack(inp.n_classes, epochs=epochs, seed=inp.seed).fit(x, y, member)
    return AttackResult("shadow", attack.score(inp.probs, inp.labels), np.ones(inp.n, dtype=bool),
                        details={"shadow_models": int(k), "shadow_samples": int(k * m), "epochs": epochs})
