"""The typed config of MIA-SafeCompress (every knob of paper §4.3, with CPU-friendly defaults)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError


class SafeCompressConfig(ConfigModel):
    """How MIA-SafeCompress compresses one model. Unknown keys are refused.

    Budgets are in *epochs over the members* (the target's training set) and converted to optimizer steps
    with ``batch_size``, so the same config scales with the data set: round training is
    ``ceil(epochs_per_round * n_members / batch_size)`` steps (the paper's 4,000 iterations ~ 10 epochs on
    CIFAR-100). The run does ``rounds`` iterations of Algorithm 1 (train -> 4 candidates -> select); the
    total training budget (Alg. 1's ``Eps``) is ``rounds * epochs_per_round`` plus the winners' fine-tuning.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ---- Stage 1
    density: float = Field(0.05, gt=0, le=1, description="fraction of weights kept (the paper's 'sparsity 0.05')")
    init: Literal["random", "keep"] = Field(
        "random", description="kept weights: re-initialized at random (paper footnote 5) or the big model's")
    # ---- Stage 2
    rounds: int = Field(4, ge=1, description="mask updates = candidate selections (Alg. 1 iterations)")
    epochs_per_round: float = Field(2.0, gt=0, description="training epochs before each update (Alg. 1's T)")
    fine_tune_epochs: float = Field(0.5, ge=0, description="fine-tuning epochs of each candidate")
    batch_size: int = Field(128, ge=1, description="the paper's N = 128")
    lr: float = Field(0.1, gt=0, description="SGD learning rate (paper: 0.1)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    lr_milestones: tuple[float, ...] = Field(
        (0.5, 0.75), description="multi-step decay: fractions of the rounds after which lr is multiplied by lr_gamma")
    lr_gamma: float = Field(0.1, gt=0, le=1)
    prune: tuple[str, ...] = Field(("magnitude", "threshold"), description="pruning strategies (masks.PRUNERS)")
    grow: tuple[str, ...] = Field(("gradient", "random"), description="growth strategies (masks.GROWERS)")
    prune_fraction: float = Field(
        0.3, gt=0, lt=1, description="share of each layer's active weights magnitude pruning moves in round 1; "
                                     "cosine-decayed over the rounds")
    threshold_quality: float = Field(
        0.3, gt=0, description="threshold pruning removes |w| < q * std(layer's active weights) (Han et al. 2015)")
    regularizer: Literal["none", "re1", "re2"] = Field("none", description="entropy regularizer (Eqs. 8, 9)")
    beta: float = Field(0.1, ge=0, description="weight of the entropy term")
    # ---- simulated attacker (Stage 2 branch 2: the `nn` attacker of toolkit.attacks) and Stage 3
    attack_epochs: int = Field(50, ge=1, description="attacker training epochs on M_S (paper: 100)")
    attack_fine_tune_epochs: int = Field(5, ge=0, description="attacker fine-tuning epochs per candidate")
    attacker_process: bool = Field(
        False, description="run the simulated attacker in a helper process that tests candidate i while this one "
                           "fine-tunes candidate i+1 (same results; worth it with a spare core)")
    lam: float = Field(1.0, ge=0, description="TM-score = task_acc**lam / mia_acc (Eq. 6)")
    seed: int = 0

    @field_validator("prune", "grow")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...], info) -> tuple[str, ...]:
        from toolkit.select.safecompress.masks import GROWERS, PRUNERS

        registry = PRUNERS if info.field_name == "prune" else GROWERS
        if not value:
            raise ValueError("needs at least one strategy")
        if len(set(value)) != len(value):
            raise ValueError(f"repeats a strategy: {list(value)}")
        unknown = [v for v in value if v not in registry]
        if unknown:
            raise ValueError(f"unknown {registry.kind} {unknown[0]!r}; known: {', '.join(registry.names())}")
        return value

    @field_validator("lr_milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < v < 1 for v in value) or list(value) != sorted(value):
            raise ValueError(f"must be increasing fractions in (0, 1), got {list(value)}")
        return value

    @property
    def candidates(self) -> list[tuple[str, str]]:
        """(prune, grow) pairs in the order candidates are built and ties are broken."""
        return [(p, g) for p in self.prune for g in self.grow]

    def lr_at(self, round_index: int) -> float:
        """The multi-step learning rate of round ``round_index`` (0-based)."""
        progress = round_index / self.rounds
        return self.lr * self.lr_gamma ** sum(progress >= m for m in self.lr_milestones)

    def prune_fraction_at(self, round_index: int) -> float:
        """Cosine decay of the update size, as in dynamic sparse training (RigL, ITOP)."""
        import math

        return self.prune_fraction * 0.5 * (1.0 + math.cos(math.pi * round_index / self.rounds))


def parse_config(values: dict[str, Any] | SafeCompressConfig | None = None, **overrides: Any) -> SafeCompressConfig:
    """A validated config from a dict (or a config plus overrides); one-line :class:`ConfigError` otherwise."""
    from toolkit.compress.config import validation_message

    if isinstance(values, SafeCompressConfig):
        values = values.model_dump()
    body = {**(values or {}), **overrides}
    if not isinstance(body, dict):
        raise ConfigError(f"a SafeCompress config must be a mapping, got {type(values).__name__}")
    try:
        return SafeCompressConfig(**body)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, "SafeCompress config", SafeCompressConfig)) from None
