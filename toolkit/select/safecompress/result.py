"""What a SafeCompress run returns: the model, its masks, and the per-round history (paper Fig. 3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.compress.result import CompressionStats
from toolkit.select.safecompress.config import SafeCompressConfig


@dataclass
class CandidateRecord:
    """One candidate of one round: its update strategy and its test results."""

    name: str  # "<prune>+<grow>", e.g. "magnitude+gradient"
    prune: str
    grow: str
    moved: int  # connections pruned (= regrown) over all layers
    loss: float  # mean training loss of its fine-tuning
    task_accuracy: float
    mia_accuracy: float
    tm_score: float


@dataclass
class RoundRecord:
    """One iteration of Algorithm 1.

    ``loss`` is the mean training loss of the round's training of M_S; ``task_accuracy``/``mia_accuracy``
    are M_S's before the update (the attacker fresh from its training on M_S); ``selected`` names the
    winning candidate, whose figures are the round's outcome.
    """

    round: int
    lr: float
    prune_fraction: float
    steps: int
    loss: float
    task_accuracy: float
    mia_accuracy: float
    candidates: list[CandidateRecord]
    selected: str
    seconds: float

    @property
    def winner(self) -> CandidateRecord:
        return next(c for c in self.candidates if c.name == self.selected)


@dataclass
class SafeCompressResult:
    """The compressed model and how it was obtained.

    ``model`` is an ordinary torch / tf-keras model (dropped weights are exact zeros; no mask objects), so
    the exporters take it as is. ``masks`` maps weight name -> bool array of kept positions; ``density`` is
    the kept fraction they measure (== the config's within rounding, checked). ``accuracy``,
    ``mia_accuracy`` and ``tm_score`` are the final (last selected) candidate's. ``stats`` measures the
    returned model's zeros like :func:`toolkit.compress.measure` (``stats.extra`` holds the densities and
    timings). ``seconds`` is the wall time of the whole run.
    """

    model: Any
    framework: str
    config: SafeCompressConfig
    masks: dict[str, np.ndarray]
    history: list[RoundRecord]
    stats: CompressionStats
    density: float
    accuracy: float
    mia_accuracy: float
    tm_score: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from toolkit.models import predict_proba

        return predict_proba(self.model, x)

    def history_rows(self) -> list[dict[str, Any]]:
        """One flat row per (round, candidate), with ``selected`` marking the winners."""
        rows = []
        for r in self.history:
            for c in r.candidates:
                rows.append({"round": r.round, "lr": r.lr, "round_loss": r.loss, **asdict(c),
                             "selected": c.name == r.selected})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (everything but the model and the mask arrays)."""
        return {
            "framework": self.framework, "config": self.config.model_dump(mode="json"), "density": self.density,
            "accuracy": self.accuracy, "mia_accuracy": self.mia_accuracy, "tm_score": self.tm_score,
            "seconds": round(self.seconds, 4), "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "stats": self.stats.to_dict(),
            "history": [{**{k: v for k, v in asdict(r).items() if k != "candidates"},
                         "candidates": [asdict(c) for c in r.candidates]} for r in self.history],
        }

    def plot_history(self, path: str | Path) -> Path:
        """Paper Fig. 3: round loss, task accuracy and MIA accuracy of the selected model per round (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from toolkit.io import atomic_path

        rounds = [r.round + 1 for r in self.history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        ax1.plot(rounds, [r.loss for r in self.history], marker="o")
        ax1.set(xlabel="round", ylabel="training loss", title="loss")
        ax2.plot(rounds, [r.winner.task_accuracy for r in self.history], marker="o", label="Task Acc")
        ax2.plot(rounds, [r.winner.mia_accuracy for r in self.history], marker="s", label="MIA Acc")
        ax2.set(xlabel="round", ylabel="accuracy", title="selected candidate")
        ax2.legend()
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        return path
