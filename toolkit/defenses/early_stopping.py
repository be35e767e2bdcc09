"""Early stopping: end training when the loss on a held-out set stops improving, keep the best epoch's weights.

Overfitting is what membership attacks exploit; stopping at the best validation loss limits it. The
validation set is **never** the audit's non-members (that would tune training on the evaluation):

* ``source="members"`` (default): a seeded ``holdout`` fraction of this step's members is held out of
  training and used for validation;
* ``source="reference"``: ``DefenseData.reference`` (the population pool) validates, and all members train.

torch: ``torch_nets.train`` with an ``on_epoch`` hook that evaluates the task loss on the validation set and
raises :class:`~toolkit.defenses.base.StopTraining` after ``patience`` epochs without an improvement larger
than ``min_delta``. Keras: ``keras.callbacks.EarlyStopping(monitor="val_loss")``.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.defenses.base import Defense, DefenseConfig, StopTraining, keras_compile_fit, mean_loss, torch_fit
from toolkit.errors import ConfigError


class EarlyStoppingConfig(DefenseConfig):
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest decrease of the validation loss that counts")
    source: Literal["members", "reference"] = Field(
        "members", description="validation data: a held-out split of the members, or DefenseData.reference "
                               "(the population); never the audit non-members")
    holdout: float = Field(0.2, gt=0, lt=1, description="fraction of the members held out (source=members)")
    restore_best: bool = Field(True, description="end with the weights of the best validation epoch")


class EarlyStopping(Defense):
    name = "early_stopping"
    description = ("stop when the task loss on a held-out split of the members (or the population) stops improving; "
                   "keep the best epoch's weights")
    config_cls = EarlyStoppingConfig
    accepts_task_loss = True

    def _split(self, data):
        cfg = self.config
        if cfg.source == "reference":
            if data.reference is None:
                raise ConfigError("early_stopping with source='reference' needs DefenseData.reference (the population)")
            return data.x, data.y, data.reference.x, data.reference.y, np.arange(len(data.y))
        n = len(data.y)
        n_val = int(round(cfg.holdout * n))
        if n_val < 1 or n - n_val < 1:
            raise ConfigError(f"early_stopping holdout {cfg.holdout} of {n} members leaves an empty training or "
                              "validation set")
        perm = np.random.default_rng([cfg.seed, 0x4553]).permutation(n)
        tr, va = np.sort(perm[n_val:]), np.sort(perm[:n_val])
        return data.x[tr], data.y[tr], data.x[va], data.y[va], tr

    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        from toolkit.frameworks import torch as _torch

        torch = _torch()
        cfg = self.config
        x, y, xv, yv, tr = self._split(data)
        self.arrays_["trained_on"] = tr
        val_fn = task_loss.torch(xv, yv)
        xv_t = torch.from_numpy(np.ascontiguousarray(xv, np.float32))
        yv_t = torch.from_numpy(np.asarray(yv, np.int64))
        state = {"best": float("inf"), "epoch": -1, "weights": None, "history": []}

        def on_epoch(epoch, m):
            with torch.no_grad():
                losses = [val_fn(m(xv_t[i:i + 512]), yv_t[i:i + 512], torch.arange(i, min(i + 512, len(yv_t))))
                          for i in range(0, len(yv_t), 512)]
                value = float(torch.cat(losses).mean())
            state["history"].append(value)
            if value < state["best"] - cfg.min_delta:
                state.update(best=value, epoch=epoch, weights=copy.deepcopy(m.state_dict()))
            elif epoch - state["epoch"] >= cfg.patience:
                raise StopTraining

        ran, steps = torch_fit(model, x, y, recipe, epochs, mean_loss(task_loss.torch(x, y)), masks=masks,
                               on_epoch=on_epoch)
        if cfg.restore_best and state["weights"] is not None:
            model.load_state_dict(state["weights"])
        return ran, steps, self._details(state["history"], ran, epochs, len(y), len(yv))

    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        from toolkit.frameworks import keras as _keras

        keras = _keras()
        cfg = self.config
        x, y, xv, yv, tr = self._split(data)
        self.arrays_["trained_on"] = tr
        loss = task_loss.keras(np.concatenate([x, xv]), np.concatenate([y, yv]))
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, min_delta=cfg.min_delta,
                                             restore_best_weights=cfg.restore_best)
        ran, steps, hist = keras_compile_fit(model, x, recipe, epochs, loss, masks=masks, callbacks=[stop],
                                             validation_x=xv)
        history = [float(v) for v in (hist.history.get("val_loss", []) if hist is not None else [])]
        if cfg.restore_best and history and stop.best_weights is not None:
            model.set_weights(stop.best_weights)  # tf-keras restores only when it stopped early
        return ran, steps, self._details(history, ran, epochs, len(y), len(yv))

    def _details(self, history, ran, epochs, n_train, n_val):
        best = int(np.argmin(history)) if history else -1
        return {"stopped_early": ran < epochs, "epochs_run": ran, "best_epoch": best,
                "best_val_loss": float(history[best]) if history else None, "val_loss": history,
                "n_train": int(n_train), "n_validation": int(n_val), "source": self.config.source}
