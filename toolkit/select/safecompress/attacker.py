"""The simulated attacker of Stage 2 (branch 2) and the safety test of Stage 3.

The attacker is :class:`toolkit.attacks.nn_attack.NNAttack` (SafeCompress Fig. 2). Per round it is trained
**once** on the current model M_S's outputs on the known member / non-member halves; for each candidate a
*copy* is fine-tuned a few epochs on that candidate's outputs on the same halves (the paper's acceleration:
candidates deviate from M_S only marginally). ``outputs`` is anything with ``attack_set(known)``: a
:class:`~toolkit.select.safecompress.data.PartOutputs` or its image-free
:class:`~toolkit.select.safecompress.data.AttackSets`.

MIA Acc (the safety test) is the toolkit's balanced accuracy (:mod:`toolkit.attacks.metrics`): the threshold
that maximizes balanced accuracy on the known halves, applied to the attacker's scores on the unknown halves.
"""

from __future__ import annotations

import copy

from toolkit.select.safecompress.data import AttackSets, PartOutputs


class SimulatedAttacker:
    """``fit(outputs)`` returns self; ``fine_tuned(outputs)`` a fine-tuned copy; ``mia_accuracy(outputs)``."""

    def __init__(self, n_classes: int, epochs: int, fine_tune_epochs: int, seed: int):
        from toolkit.attacks.nn_attack import NNAttack

        self.fine_tune_epochs = int(fine_tune_epochs)
        self.attack = NNAttack(n_classes, epochs=epochs, seed=seed)

    def fit(self, outputs: PartOutputs | AttackSets) -> "SimulatedAttacker":
        self.attack.fit(*outputs.attack_set(known=True))
        return self

    def refit(self, outputs: PartOutputs | AttackSets) -> "SimulatedAttacker":
        """Fine-tune this attacker in place on ``outputs`` (the next round's M_S); returns self."""
        if self.fine_tune_epochs:
            self.attack.fine_tune(*outputs.attack_set(known=True), epochs=self.fine_tune_epochs)
        return self

    def fine_tuned(self, outputs: PartOutputs | AttackSets) -> "SimulatedAttacker":
        """A copy fine-tuned on ``outputs`` (this attacker is left as it is, for the next candidate)."""
        other = copy.copy(self)
        # deepcopy copies the network and its Adam state together, so the copy's optimizer drives its own net.
        other.attack = copy.deepcopy(self.attack)
        return other.refit(outputs)

    def mia_accuracy(self, outputs: PartOutputs | AttackSets) -> float:
        """Balanced accuracy on the unknown halves at the threshold chosen on the known halves."""
        from toolkit.attacks import metrics

        kp, ky, km = outputs.attack_set(known=True)
        up, uy, um = outputs.attack_set(known=False)
        threshold = metrics.choose_threshold(self.attack.score(kp, ky), km)
        return metrics.balanced_accuracy(self.attack.score(up, uy), um, threshold)


def tm_score(task_accuracy: float, mia_accuracy: float, lam: float = 1.0) -> float:
    """Eq. 6: ``task_accuracy ** lam / mia_accuracy`` (infinite if the attack is always wrong)."""
    if mia_accuracy <= 0:
        return float("inf")
    return float(task_accuracy) ** float(lam) / float(mia_accuracy)
