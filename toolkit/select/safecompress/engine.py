"""MIA-SafeCompress (paper §4.3, Algorithm 1): the test-driven dynamic sparse training loop.

::

    Stage 1   masks <- Erdős–Rényi(density); weights <- random (or the big model's) * masks
    repeat `rounds` times:
      Stage 2   train M_S `epochs_per_round` (masked SGD, lr multi-step decay)
                branch 2: attacker A <- fit(nn, M_S outputs on the known halves)
                          (first round: from scratch; later rounds: the previous A fine-tuned on M_S)
                branch 1: for (prune, grow) in {magnitude, threshold} x {gradient, random}:
                              candidate <- update masks of M_S (density per layer constant),
                                           fine-tune `fine_tune_epochs`
      Stage 3   for each candidate: A_i <- copy of A fine-tuned on its known-half outputs
                              MIA Acc_i (A_i, unknown halves), Task Acc_i (held-out) -> TM_i = Acc^lam / MIA
                M_S <- the candidate of highest TM-score (ties: the first in strategy order)
    return M_S

The attacker's work runs in this process or, with ``attacker_process``, in a helper process alongside (see
``safety``); the results are the same. Every random choice derives from ``config.seed``: the same inputs give
the same model and history. Candidates of one round share their fine-tuning data order, so they differ only by
their masks.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import numpy as np

from toolkit.errors import CompressionError, ConfigError
from toolkit.progress import info
from toolkit.select.safecompress import masks as M
from toolkit.select.safecompress.adapter import ADAPTERS, steps_for
from toolkit.select.safecompress.attacker import tm_score
from toolkit.select.safecompress.config import SafeCompressConfig, parse_config
from toolkit.select.safecompress.data import MembershipData
from toolkit.select.safecompress.result import CandidateRecord, RoundRecord, SafeCompressResult
from toolkit.select.safecompress.safety import safety_tester


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str):
    """Add the block's wall time to ``timings[key]``."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - t


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
    def _round(self, r: int, adapter, data: MembershipData, tester, masks, steps_round: int, steps_ft: int,
               needs_gradient: bool, history: list[RoundRecord], timings: dict[str, float]):
        """One iteration of Algorithm 1; appends its record to ``history``, returns ``(masks, winner record)``.

        The attacker's work goes to ``tester`` as soon as each model's outputs exist and is collected after
        the last candidate, so a helper process tests candidate i while this one fine-tunes i+1.
        """
        cfg = self.config
        members = data.members
        n = len(members.y)
        t_round = time.perf_counter()
        lr = cfg.lr_at(r)
        timed = functools.partial(_timed, timings)
        # ---- Stage 2: train M_S
        with timed("train"):
            round_loss = adapter.train(members.x, members.y, steps_round, lr, _seed(cfg, _TRAIN, r))
        base_state = adapter.snapshot()
        base_weights = adapter.weights()
        with timed("predict"):
            base_out = data.outputs(adapter.predict_proba)

        # branch 2: the simulated attacker, trained on M_S: from scratch in the first round, afterwards the
        # previous round's attacker fine-tuned on M_S (the "reuse the attacker": M_S moved by one
        # round of training, and the paper already relies on fine-tuning for models this close).
        with timed("attack"):
            tester.train(base_out.attack_sets())

        # branch 1: dynamic sparse update -> candidates
        with timed("update"):
            grads = None
            if needs_gradient:
                batch = np.random.default_rng(_seed(cfg, _GRAD, r)).choice(n, min(cfg.batch_size, n), replace=False)
                grads = adapter.gradients(members.x[batch], members.y[batch])
            params = M.UpdateParams(cfg.prune_fraction_at(r), cfg.threshold_quality)
        built, states, cand_masks = [], [], []
        for i, (prune, grow) in enumerate(cfg.candidates):
            with timed("update"):
                new_masks, report = M.update_masks(base_weights, masks, prune, grow, params, grads,
                                                   seed=_seed(cfg, _GROW, r, i))
                adapter.restore(base_state)
                adapter.set_masks(new_masks)
            with timed("fine_tune"):
                ft_loss = adapter.train(members.x, members.y, steps_ft, lr, _seed(cfg, _FINETUNE, r))
            with timed("predict"):
                out = data.outputs(adapter.predict_proba)
            # ---- Stage 3: safety test (a fine-tuned copy of A, handed over now) and task test
            with timed("attack"):
                tester.test(out.attack_sets())
            built.append((prune, grow, report.total, ft_loss, out.task_accuracy()))
            states.append(adapter.snapshot())
            cand_masks.append(new_masks)
        with timed("attack"):
            base_mia, mias, seconds = tester.collect()
        timings["attack_compute"] += seconds
        records = [CandidateRecord(f"{prune}+{grow}", prune, grow, moved, ft_loss, acc, mia,
                                   tm_score(acc, mia, cfg.lam))
                   for (prune, grow, moved, ft_loss, acc), mia in zip(built, mias)]
        best = int(np.argmax([c.tm_score for c in records]))  # argmax: the first of equal scores
        adapter.restore(states[best])
        adapter.set_masks(cand_masks[best])
        final = records[best]
        history.append(RoundRecord(r, lr, params.fraction, steps_round, round_loss, base_out.task_accuracy(),
                                   base_mia, records, final.name, time.perf_counter() - t_round))
        info(f"safecompress round {r + 1}/{cfg.rounds}: loss {round_loss:.3f}, selected {final.name} "
             f"(task {final.task_accuracy:.3f}, MIA {final.mia_accuracy:.3f}, TM {final.tm_score:.3f})")
        return cand_masks[best], final

    def _run(self, model, data: MembershipData, framework: str | None) -> SafeCompressResult:
        from toolkit.compress import measure
        from toolkit.models import n_params

        cfg = self.config
        t_start = time.perf_counter()
        work, fw = _working_model(model, framework, cfg.seed)
        params_before = n_params(work)
        adapter = ADAPTERS.get(fw)(work, cfg)
        # attack: this process's time on the simulated attacker (with a helper process: waiting for it);
        # attack_compute: the attacker's own compute time, wherever it ran.
        timings = {"train": 0.0, "fine_tune": 0.0, "attack": 0.0, "attack_compute": 0.0, "predict": 0.0,
                   "update": 0.0}

        masks = sparse_init(adapter, cfg)  # ---- Stage 1

        n = len(data.members.y)
        steps_round = steps_for(cfg.epochs_per_round, n, cfg.batch_size)
        steps_ft = steps_for(cfg.fine_tune_epochs, n, cfg.batch_size)
        n_classes = int(adapter.predict_proba(data.members.x[:1]).shape[1])
        needs_gradient = any(M.GROWERS.meta(g).get("needs_gradient") for g in cfg.grow)
        history: list[RoundRecord] = []
        final = None
        attacker_args = (n_classes, cfg.attack_epochs, cfg.attack_fine_tune_epochs, _seed(cfg, _ATTACK))
        tester = safety_tester(attacker_args, in_process=not cfg.attacker_process)
        try:
            for r in range(cfg.rounds):
                masks, final = self._round(r, adapter, data, tester, masks, steps_round, steps_ft, needs_gradient,
                                           history, timings)
        finally:
            tester.close()

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
