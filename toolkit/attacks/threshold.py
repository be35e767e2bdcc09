"""Metric (threshold) attacks: one signal per sample, thresholded. No training, no side information.

Yeom et al. (2018) loss; Song & Mittal (2021) confidence, entropy, modified entropy; the gap attack
(correctness). Scores are oriented so that higher means "member". They are score-based: AUC and TPR@FPR use
every evaluation point; only the balanced-accuracy threshold is chosen on the known half.
"""

from __future__ import annotations

import numpy as np

from toolkit.attacks import signals
from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.errors import AttackError

#: signal name -> (function, orientation): +1 when members have higher values, -1 when lower.
SIGNALS = {
    "loss": (signals.loss, -1.0),
    "confidence": (signals.confidence, 1.0),
    "entropy": (signals.entropy, -1.0),
    "modified_entropy": (signals.modified_entropy, -1.0),
    "correctness": (signals.correctness, 1.0),
}


def score(probs: np.ndarray, labels: np.ndarray, signal: str) -> np.ndarray:
    """Membership scores (higher = member) of one metric attack."""
    try:
        fn, sign = SIGNALS[signal]
    except KeyError:
        raise AttackError(f"unknown signal {signal!r}; known: {', '.join(SIGNALS)}") from None
    return sign * fn(probs, labels)


def run(inp: AttackInput, *, signal: str) -> AttackResult:
    return AttackResult(signal, score(inp.probs, inp.labels, signal), np.ones(inp.n, dtype=bool))
