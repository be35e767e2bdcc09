"""Iterative magnitude pruning with per-round memorization measurement and WeMem-style defenses.

``ITERATIVE_METHODS.get("iterative_prune" | "wemem").apply(model, data: MembershipData, params, framework=None)
-> IterativeResult`` (the calling convention of ``SAFECOMPRESS_METHODS`` and ``BASELINES``).

Loop (torch models)::

    scores <- memorability of every member under the dense model        (when memorable != none)
    for r in 1..rounds:
        density_r = density ** (r / rounds)                               (geometric schedule)
        prune globally to density_r   (toolkit.compress torch_global_unstructured; zeros of earlier rounds stay)
        fine-tune `fine_tune_epochs` on the round's members                (DataScheduler: full / disjoint /
                                                                            least_used; masks kept)
                  with weights 0 (holdout) or `downweight` for the flagged memorable members
        measure memorization on the unknown halves                        (round record)

**Memorization per round** (also for the dense model as round 0): the member/non-member loss gap on the
unknown halves (mean non-member loss minus mean member loss), and for every name in ``attacks``
(``toolkit.attacks``: metric attacks, ``lira_offline`` with population reference models, ``nn`` trained on the
known halves) the AUC, balanced accuracy and TPR at 1% / 0.1% FPR on the unknown halves
(``toolkit.attacks.metrics.evaluate``). Score-based attacks are evaluated on the unknown halves too, so every
attack and the loss gap read the same points.

**Defenses** (WeMem's two factors, :mod:`toolkit.defenses.wemem`):

* data reuse: ``schedule`` ``disjoint`` or ``least_used`` (``subset_fraction`` of the members per round,
  default ``1 / rounds``), instead of ``full``;
* inherent memorability: ``memorable`` ``holdout`` or ``downweight`` for the ``memorable_fraction`` of members
  with the highest ``score`` (``lira_offline`` / ``calibrated_loss`` with population reference models, or
  ``loss``), computed on the dense model before the first round;
* both together. ``iterative_prune`` defaults to neither (vanilla); ``wemem`` to ``least_used`` + ``holdout``.

Reference models (for ``lira_offline`` scores or attacks) are a :class:`toolkit.models.references.ReferencePool`
trained on ``data.population`` with ``reference_recipe`` (set it to the dense model's training recipe) and
queried once on all four halves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from toolkit.compress.result import CompressionStats
from toolkit.config_io import ConfigModel
from toolkit.errors import CompressionError, ConfigError
from toolkit.registry import Registry


class IterativeConfig(ConfigModel):
    """Iterative magnitude pruning + WeMem-style defenses. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    density: float = Field(0.1, gt=0, le=1, description="final kept fraction of the prunable weights")
    rounds: int = Field(4, ge=1, description="prune + fine-tune rounds; density_r = density ** (r / rounds)")
    fine_tune_epochs: int = Field(2, ge=0, description="epochs of fine-tuning per round (over the round's subset)")
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["full", "disjoint", "least_used"] = Field(
        "full", description="members per round: all (vanilla), a disjoint part, or the least used so far")
    subset_fraction: float | None = Field(None, gt=0, le=1, description="least_used: share of members per round "
                                                                        "(default 1 / rounds)")
    memorable: Literal["none", "holdout", "downweight"] = Field(
        "none", description="what happens to the most memorable members in fine-tuning")
    memorable_fraction: float = Field(0.1, ge=0, lt=1, description="share of members flagged as memorable")
    downweight: float = Field(0.1, ge=0, le=1, description="fine-tuning weight of flagged members (downweight)")
    score: Literal["lira_offline", "calibrated_loss", "loss"] = Field(
        "lira_offline", description="per-sample memorability score (toolkit.defenses.wemem.memorability_scores)")
    attacks: tuple[str, ...] = Field(("loss", "lira_offline"), description="toolkit.attacks names measured per round")
    attack_epochs: int = Field(30, ge=1, description="epochs of the nn attacker when 'nn' is in attacks")
    n_reference_models: int = Field(4, ge=1, description="population reference models (lira_offline, "
                                                         "calibrated_loss)")
    reference_fraction: float = Field(0.5, gt=0, lt=1, description="share of the population each reference trains on")
    reference_recipe: dict[str, Any] = Field(
        default_factory=lambda: {"epochs": 10, "batch_size": 128, "optimizer": "sgd", "lr": 0.05},
        description="TrainRecipe fields of the reference models (use the dense model's recipe)")
    reference_cache: str | None = Field(None, description="directory caching reference-model outputs")
    seed: int = 0

    def recipe(self, round_index: int):
        from toolkit.models import TrainRecipe

        return TrainRecipe(epochs=max(1, self.fine_tune_epochs), batch_size=self.batch_size, optimizer=self.optimizer,
                           lr=self.lr, momentum=self.momentum, seed=self.seed * 1000 + round_index)

    def needs_references(self) -> bool:
        uses_score = self.memorable != "none" and self.score in ("lira_offline", "calibrated_loss")
        return uses_score or any(a in ("lira_offline", "lira_offline_pe") for a in self.attacks)


@dataclass
class IterativeResult:
    """The pruned model, per-round memorization and the data-use record.

    ``rounds``: one dict per round (round 0 = the dense model): ``density``, ``n_train`` (members fine-tuned on),
    ``task_accuracy``, ``loss_gap``, ``member_loss``, ``nonmember_loss`` and ``attacks`` ({name: auc,
    balanced_accuracy, tpr_at_fpr}). ``uses``: epochs each member was fine-tuned on (all rounds); ``flagged``:
    the members held out / down-weighted as memorable.
    """

    model: Any
    framework: str
    method: str
    config: IterativeConfig
    stats: CompressionStats
    density: float
    accuracy: float
    rounds: list[dict[str, Any]]
    uses: np.ndarray
    flagged: np.ndarray
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from toolkit.models import predict_proba

        return predict_proba(self.model, x)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "framework": self.framework, "config": self.config.model_dump(mode="json"),
                "density": self.density, "accuracy": self.accuracy, "rounds": self.rounds,
                "uses": {"max": int(self.uses.max()), "mean": float(self.uses.mean()),
                         "never_used": int((self.uses == 0).sum())},
                "flagged": int(self.flagged.sum()), "seconds": round(self.seconds, 4),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}, "stats": self.stats.to_dict()}


_PARTS = ("member_known", "member_unknown", "nonmember_known", "nonmember_unknown")


class _Evaluation:
    """Memorization measurement on the four halves (outputs of reference models computed once)."""

    @staticmethod
    def check(config: IterativeConfig) -> None:
        from toolkit.attacks import ATTACKS

        for name in config.attacks:
            ATTACKS.meta(name)  # unknown names raise, listing the known ones
            if ATTACKS.meta(name)["needs"] and name not in ("lira_offline", "lira_offline_pe"):
                raise ConfigError(f"attack {name!r} is not measured per round; use metric attacks, nn, lira_offline")

    def __init__(self, data, config: IterativeConfig, ref_probs: np.ndarray | None):
        self.check(config)
        self.data, self.config, self.ref_probs = data, config, ref_probs
        sizes = [len(getattr(data, p).y) for p in _PARTS]
        self.x = np.concatenate([getattr(data, p).x for p in _PARTS])
        self.y = np.concatenate([getattr(data, p).y for p in _PARTS])
        self.membership = np.repeat([True, True, False, False], sizes)
        self.known = np.repeat([True, False, True, False], sizes)

    def __call__(self, model) -> dict[str, Any]:
        from toolkit.attacks import AttackInput, run_attack, signals
        from toolkit.attacks.metrics import evaluate
        from toolkit.models import predict_proba

        probs = predict_proba(model, self.x, batch_size=256)
        unknown = ~self.known
        loss = signals.loss(probs, self.y)
        m_loss = float(loss[unknown & self.membership].mean())
        n_loss = float(loss[unknown & ~self.membership].mean())
        task = self.data.task
        if task is not None:
            acc = float(np.mean(np.argmax(predict_proba(model, task.x, 256), 1) == task.y))
        else:
            acc = float(np.mean(np.argmax(probs[~self.membership], 1) == self.y[~self.membership]))
        out = {"task_accuracy": acc, "member_loss": m_loss, "nonmember_loss": n_loss, "loss_gap": n_loss - m_loss,
               "attacks": {}}
        refs = {}
        if self.ref_probs is not None:
            refs = {"ref_probs": self.ref_probs, "ref_in": np.zeros(self.ref_probs.shape[:2], bool)}
        for name in self.config.attacks:
            opts = {"epochs": self.config.attack_epochs} if name == "nn" else {}
            inp = AttackInput(probs, self.y, self.membership, known=self.known, seed=self.config.seed, **refs)
            res = run_attack(name, inp, **opts)
            m = evaluate(res.scores, self.membership, self.known, unknown, n_bootstrap=0)
            out["attacks"][name] = {"auc": m["auc"], "balanced_accuracy": m["balanced_accuracy"],
                                    "tpr_at_fpr": m["tpr_at_fpr"]}
        return out


def _references(model, data, config: IterativeConfig) -> np.ndarray | None:
    """Offline reference models' outputs ``(k, n, C)`` on the four halves (in ``_PARTS`` order), or None."""
    if not config.needs_references():
        return None
    if data.population is None:
        raise ConfigError("lira_offline / calibrated_loss need population reference models: MembershipData.population "
                          "(make_split(..., population=N)) is missing")
    from toolkit.models import TrainRecipe
    from toolkit.models.references import ReferencePool
    from toolkit.select.baselines import infer_spec

    try:
        recipe = TrainRecipe(**{"seed": config.seed, **config.reference_recipe})
    except ValidationError as exc:
        from toolkit.compress.config import validation_message

        raise ConfigError(validation_message(exc, "reference_recipe", TrainRecipe)) from None
    spec = infer_spec(model, data.member_known.x.shape[1:])
    pool = ReferencePool(spec, recipe, (data.population.x, data.population.y), framework="torch",
                         n_models=config.n_reference_models, fraction=config.reference_fraction, seed=config.seed,
                         cache_dir=config.reference_cache)
    x = np.concatenate([getattr(data, p).x for p in _PARTS])
    y = np.concatenate([getattr(data, p).y for p in _PARTS])
    return pool.query(x, y).probs


def run_iterative(method: str, model, data, config: IterativeConfig, framework: str | None = None) -> IterativeResult:
    from toolkit.compress import measure
    from toolkit.defenses import wemem
    from toolkit.defenses.base import TorchMasks
    from toolkit.models import n_params, predict_proba, torch_nets
    from toolkit.select.baselines import _Base, check_density, prune_global, working_model

    _Evaluation.check(config)
    t0 = time.perf_counter()
    timings = {"references": 0.0, "prune": 0.0, "fine_tune": 0.0, "measure": 0.0}
    pre = _Base(seed=config.seed)  # only for building / pretraining a ModelSpec input
    work, fw = working_model(model, framework, pre, data)
    if fw != "torch":
        raise ConfigError(f"{method} prunes with torch.nn.utils.prune and takes torch models, not {fw} models")
    before = n_params(work)
    members = data.members
    n = len(members.y)

    t = time.perf_counter()
    ref_probs = _references(work, data, config)
    timings["references"] = time.perf_counter() - t
    evaluate = _Evaluation(data, config, ref_probs)

    flagged = np.zeros(n, bool)
    if config.memorable != "none" and config.memorable_fraction > 0:
        mem_refs = None if ref_probs is None else ref_probs[:, :n]  # members come first in _PARTS order
        scores = wemem.memorability_scores(config.score, predict_proba(work, members.x, 256), members.y, mem_refs)
        flagged = wemem.flag_memorable(scores, config.memorable_fraction)
    weights = wemem.round_weights(flagged, config.memorable, config.downweight)
    scheduler = wemem.DataScheduler(n, config.rounds, config.schedule, config.subset_fraction, config.seed,
                                    exclude=weights == 0)

    t = time.perf_counter()
    records = [{"round": 0, "density": 1.0, "n_train": 0, **evaluate(work)}]
    timings["measure"] += time.perf_counter() - t
    for r in range(1, config.rounds + 1):
        target = config.density ** (r / config.rounds)
        t = time.perf_counter()
        work = prune_global(work, target, config.seed)
        timings["prune"] += time.perf_counter() - t
        idx = scheduler.indices(r - 1)
        t = time.perf_counter()
        if config.fine_tune_epochs:
            from toolkit.defenses.base import masks_of

            recipe = config.recipe(r)
            opt = torch_nets.make_optimizer(work, recipe)
            TorchMasks(work, masks_of(work)).attach(opt)
            w = None if config.memorable != "downweight" else weights[idx]
            torch_nets.train(work, members.x[idx], members.y[idx], recipe, epochs=config.fine_tune_epochs,
                             optimizer=opt, sample_weight=w)
            scheduler.record(idx, config.fine_tune_epochs)
        timings["fine_tune"] += time.perf_counter() - t
        t = time.perf_counter()
        from toolkit.select.baselines import kept_fraction

        records.append({"round": r, "density": kept_fraction(work), "target_density": target, "n_train": int(len(idx)),
                        **evaluate(work)})
        timings["measure"] += time.perf_counter() - t
    kept = check_density(work, config.density, method)
    stats = measure(work, fw, before)
    stats.extra = {"density": kept, "flagged": int(flagged.sum()), "max_uses": int(scheduler.uses.max())}
    if not np.isfinite(records[-1]["member_loss"]):
        raise CompressionError(f"{method}: fine-tuning diverged (non-finite loss); lower 'lr'")
    return IterativeResult(work, fw, method, config, stats, kept, records[-1]["task_accuracy"], records,
                           scheduler.uses.copy(), flagged, time.perf_counter() - t0, timings)


@dataclass(frozen=True)
class IterativeMethod:
    """An iterative-pruning variant, described like the SafeCompress methods and the baselines."""

    name: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    kind: str = "prune"
    backend: str = "iterative"
    frameworks: tuple[str, ...] = ("torch",)
    example: dict[str, Any] = field(default_factory=lambda: {"density": 0.2, "rounds": 2, "fine_tune_epochs": 1,
                                                             "attacks": ["loss"], "score": "loss"})

    def config(self, params: dict[str, Any] | IterativeConfig | None = None) -> IterativeConfig:
        from toolkit.compress.config import validation_message

        if isinstance(params, IterativeConfig):
            return params
        body = dict(params or {})
        name = body.pop("method", self.name)
        if name != self.name:
            raise ConfigError(f"params name method {name!r} but were given to {self.name!r}")
        try:
            return IterativeConfig(**{**self.defaults, **body})
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, f"{self.name} config", IterativeConfig)) from None

    def targets(self, config: IterativeConfig) -> dict[str, Any]:
        return {"density": config.density}

    def apply(self, model, data, params=None, framework: str | None = None) -> IterativeResult:
        from toolkit.select.safecompress.data import MembershipData

        if not isinstance(data, MembershipData):
            raise ConfigError(f"{self.name} needs a MembershipData, got {type(data).__name__}")
        return run_iterative(self.name, model, data, self.config(params), framework)


ITERATIVE_METHODS = Registry("iterative pruning method")
for _m in (
    IterativeMethod("iterative_prune", "iterative global magnitude pruning, every round fine-tuned on all members "
                                       "(vanilla); memorization measured per round"),
    IterativeMethod("wemem", "iterative pruning with WeMem-style defenses: least-used data scheduling + hold-out of "
                             "the most memorable members", {"schedule": "least_used", "memorable": "holdout"}),
):
    ITERATIVE_METHODS.register(_m.name, _m, kind=_m.kind, frameworks=_m.frameworks, description=_m.description)

__all__ = ["ITERATIVE_METHODS", "IterativeConfig", "IterativeMethod", "IterativeResult", "run_iterative"]
