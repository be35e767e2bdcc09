"""MIA-SafeCompress (paper §4.3, Algorithm 1): the test-driven dynamic sparse training loop.

::

    Stage 1   masks <- Erdős–Rényi(density); weights <- random (or the big model's) * masks
    repeat `rounds` times:
      Stage 2   train M_S `epochs_per_round` (masked SGD, lr multi-step decay)
                branch 2: attacker A <- fit(nn, M_S outputs on the known halves)        (once per round)
                branch 1: for (prune, grow) in {magnitude, threshold} x {gradient, random}:
                              candidate <- update masks of M_S (density per layer constant),
                                           fine-tune `fine_tune_epochs`
      Stage 3   for each candidate: A_i <- copy of A fine-tuned on its known-half outputs
                              MIA Acc_i (A_i, unknown halves), Task Acc_i (held-out) -> TM_i = Acc^lam / MIA
                M_S <- the candidate of highest TM-score (ties: the first in strategy order)
    return M_S

Every random choice derives from ``config.seed``: the same inputs give the same model and history.
Candidates of one round share their fine-tuning data order, so they differ only by their masks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from toolkit.errors import CompressionError, ConfigError
from toolkit.progress import info
from toolkit.select.safecompress import masks as M
from toolkit.select.safecompress.adapter import ADAPTERS, steps_for
from toolkit.select.safecompress.attacker import SimulatedAttacker, tm_score
from toolkit.select.safecompress.config import SafeCompressConfig, parse_config
from toolkit.select.safecompress.data import MembershipData
from toolkit.select.safecompress.result import CandidateRecord, RoundRecord, SafeCompressResult


def _seed(config: SafeCompressConfig, *path: int) -> int:
    """A 32-bit seed for one named random choice of the run (stable, independent streams)."""
    return int(np.random.SeedSequence([config.seed, *path]).generate_state(1)[0])


# Stream ids of _seed, so two choices never share a stream.
_MASK, _INIT, _TRAIN, _GRAD, _FINETUNE, _GROW, _ATTACK = range(7)


def _working_model(model, framework: str | None, seed: int):
    """A private copy of ``model`` (never mutated), or a fresh model built from a ``ModelSpec``."""
    from toolkit.frameworks import seed_everything
    from toolkit.models import ModelSpec, build_model, clone_model, framework_of

    if isinstance(model, ModelSpec):
        if framework not in ("torch", "keras"):
            raise ConfigError(f"building from a ModelSpec needs framework='torch' or 'keras', got {framework!r}")
        return build_model(model, framework, seed=seed), framework
    fw = framework_of(model)
    if framework is not None and framework != fw:
        raise ConfigError(f"framework={framework!r} was given for a {fw} model")
    if fw not in ADAPTERS:
        raise CompressionError(f"SafeCompress trains torch or keras models, not {fw} models")
    seed_everything(seed)
    return clone_model(model), fw


def sparse_init(adapter, config: SafeCompressConfig) -> dict[str, np.ndarray]:
    """Stage 1 (§4.3.1): Erdős–Rényi masks at ``config.density``, installed on the adapter's model.

    ``init="random"`` re-initializes the whole model first (paper footnote 5) and scales each layer's kept
    weights by ``1/sqrt(layer density)``: a neuron keeping a fraction d of its inputs then has the dense
    initializer's pre-activation variance. Without it the signal of these BatchNorm-free models shrinks by
    sqrt(d) per layer and SGD barely moves at density 0.05. ``init="keep"`` keeps the big model's weights.
    """
    masks = M.random_masks(adapter.sparse_shapes(), config.density, _seed(config, _MASK))
    if config.init == "random":
        adapter.reinitialize(_seed(config, _INIT))
        dens = M.layer_densities(masks)
        adapter.set_weights({n: w / np.sqrt(dens[n]) for n, w in adapter.weights().items()})
    adapter.set_masks(masks)
    return masks


class SafeCompress:
    """MIA-SafeCompress as an estimator: ``SafeCompress(config).fit(model, data)`` returns self.

    ``config``: a :class:`SafeCompressConfig`, a dict of its fields, or None (defaults); keyword overrides
    are merged in. After ``fit``: ``result_`` (:class:`SafeCompressResult`), and its shortcuts ``model_``,
    ``masks_``, ``history_``.
    """

    def __init__(self, config: SafeCompressConfig | dict[str, Any] | None = None, **overrides: Any):
        self.config = parse_config(config, **overrides)

    # ------------------------------------------------------------------ public
    def fit(self, model, data: MembershipData, framework: str | None = None) -> "SafeCompress":
        """Compress a copy of ``model`` (a torch / tf-keras model, or a ``ModelSpec`` with ``framework``).

        ``data``: the four membership halves (:class:`MembershipData`); the model trains on all members.
        """
        if not isinstance(data, MembershipData):
            raise ConfigError(f"SafeCompress needs a MembershipData, got {type(data).__name__}")
        self.result_ = self._run(model, data, framework)
        return self

    @property
    def model_(self):
        return self.result_.model

    @property
    def masks_(self) -> dict[str, np.ndarray]:
        return self.result_.masks

    @property
    def history_(self) -> list[RoundRecord]:
        return self.result_.history

    # ------------------------------------------------------------------ the loop
    def _run(self, model, data: MembershipData, framework: str | None) -> SafeCompressResult:
        from toolkit.compress import measure
        from toolkit.models import n_params

        cfg = self.config
        t_start = time.perf_counter()
        work, fw = _working_model(model, framework, cfg.seed)
        params_before = n_params(work)
        adapter = ADAPTERS.get(fw)(work, cfg)
        timings = {"train": 0.0, "fine_tune": 0.0, "attack": 0.0, "predict": 0.0, "update": 0.0}

        masks = sparse_init(adapter, cfg)  # ---- Stage 1

        members = data.members
        n = len(members.y)
        steps_round = steps_for(cfg.epochs_per_round, n, cfg.batch_size)
        steps_ft = steps_for(cfg.fine_tune_epochs, n, cfg.batch_size)
        n_classes = int(adapter.predict_proba(members.x[:1]).shape[1])
        needs_gradient = any(M.GROWERS.meta(g).get("needs_gradient") for g in cfg.grow)
        history: list[RoundRecord] = []
        final = None

        for r in range(cfg.rounds):
            t_round = time.perf_counter()
            lr = cfg.lr_at(r)
            # ---- Stage 2: train M_S
            t = time.perf_counter()
            round_loss = adapter.train(members.x, members.y, steps_round, lr, _seed(cfg, _TRAIN, r))
            timings["train"] += time.perf_counter() - t
            base_state = adapter.snapshot()
            base_weights = adapter.weights()
            t = time.perf_counter()
            base_out = data.outputs(adapter.predict_proba)
            timings["predict"] += time.perf_counter() - t

            # branch 2: the simulated attacker, trained once on M_S
            t = time.perf_counter()
            attacker = SimulatedAttacker(n_classes, cfg.attack_epochs, cfg.attack_fine_tune_epochs,
                                         _seed(cfg, _ATTACK, r)).fit(base_out)
            base_mia = attacker.mia_accuracy(base_out)
            timings["attack"] += time.perf_counter() - t

            # branch 1: dynamic sparse update -> candidates
            t = time.perf_counter()
            grads = None
            if needs_gradient:
                batch = np.random.default_rng(_seed(cfg, _GRAD, r)).choice(n, min(cfg.batch_size, n), replace=False)
                grads = adapter.gradients(members.x[batch], members.y[batch])
            params = M.UpdateParams(cfg.prune_fraction_at(r), cfg.threshold_quality)
            timings["update"] += time.perf_counter() - t
            records, states, cand_masks = [], [], []
            for i, (prune, grow) in enumerate(cfg.candidates):
                t = time.perf_counter()
                new_masks, report = M.update_masks(base_weights, masks, prune, grow, params, grads,
                                                   seed=_seed(cfg, _GROW, r, i))
                adapter.restore(base_state)
                adapter.set_masks(new_masks)
                timings["update"] += time.perf_counter() - t
                t = time.perf_counter()
                ft_loss = adapter.train(members.x, members.y, steps_ft, lr, _seed(cfg, _FINETUNE, r))
                timings["fine_tune"] += time.perf_counter() - t
                t = time.perf_counter()
                out = data.outputs(adapter.predict_proba)
                timings["predict"] += time.perf_counter() - t
                # ---- Stage 3: safety test (fine-tuned copy of A) and task test
                t = time.perf_counter()
                mia = attacker.fine_tuned(out).mia_accuracy(out)
                timings["attack"] += time.perf_counter() - t
                acc = out.task_accuracy()
                records.append(CandidateRecord(f"{prune}+{grow}", prune, grow, report.total, ft_loss, acc, mia,
                                               tm_score(acc, mia, cfg.lam)))
                states.append(adapter.snapshot())
                cand_masks.append(new_masks)
            best = int(np.argmax([c.tm_score for c in records]))  # argmax: the first of equal scores
            adapter.restore(states[best])
            masks = cand_masks[best]
            adapter.set_masks(masks)
            final = records[best]
            history.append(RoundRecord(r, lr, params.fraction, steps_round, round_loss, base_out.task_accuracy(),
                                       base_mia, records, records[best].name, time.perf_counter() - t_round))
            info(f"safecompress round {r + 1}/{cfg.rounds}: loss {round_loss:.3f}, selected {final.name} "
                 f"(task {final.task_accuracy:.3f}, MIA {final.mia_accuracy:.3f}, TM {final.tm_score:.3f})")

        # ---- checks: the returned model holds exactly the promised density, masks baked in as zeros
        weights = adapter.weights()
        for name, mask in masks.items():
            stray = int(np.count_nonzero(weights[name][~mask]))
            if stray:
                raise CompressionError(f"{stray} weight(s) of {name!r} outside the mask are not zero")
        density = M.density_of(masks)
        total = sum(int(m.size) for m in masks.values())
        if abs(density - cfg.density) > 0.5 / total + 1e-12:
            raise CompressionError(f"SafeCompress kept {density:.6f} of the weights, not the requested density "
                                   f"{cfg.density} (too many layers for so low a density?)")
        stats = measure(work, fw, params_before)
        stats.extra = {"density": density, "layer_density": M.layer_densities(masks),
                       "rounds": cfg.rounds, "steps_per_round": steps_round, "fine_tune_steps": steps_ft,
                       "candidates_per_round": len(cfg.candidates)}
        seconds = time.perf_counter() - t_start
        timings["total"] = seconds
        return SafeCompressResult(model=work, framework=fw, config=cfg, masks=masks, history=history, stats=stats,
                                  density=density, accuracy=final.task_accuracy, mia_accuracy=final.mia_accuracy,
                                  tm_score=final.tm_score, seconds=seconds, timings=timings)


def safecompress(model, data: MembershipData, config: SafeCompressConfig | dict[str, Any] | None = None,
                 framework: str | None = None, **overrides: Any) -> SafeCompressResult:
    """Functional shorthand: ``SafeCompress(config, **overrides).fit(model, data, framework).result_``."""
    return SafeCompress(config, **overrides).fit(model, data, framework).result_
