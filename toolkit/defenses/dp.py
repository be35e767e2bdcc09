"""DP-SGD (Abadi et al. 2016): per-sample gradient clipping + Gaussian noise, with a privacy accountant.

Every step samples a batch by **Poisson sampling** (each member independently with rate
``q = 1 / ceil(n / batch_size)``, as Opacus does; an epoch is ``ceil(n / batch_size)`` steps), clips each
sample's gradient to L2 norm ``max_grad_norm`` (flat clipping over all parameters), sums, adds
``N(0, (noise_multiplier * max_grad_norm)^2)`` noise and divides by the expected batch size. The accountant
(Opacus's RDP accountant by default) turns (noise, q, steps) into the epsilon spent for ``delta``; the report
gives ``epsilon`` for the ``delta`` used.

* **delta** defaults to ``min(1e-5, 1 / n)`` for ``n`` training samples (below 1/n, as DP requires for a
  meaningful guarantee; 1e-5 for every set smaller than 100,000).
* Give either ``noise_multiplier`` or ``target_epsilon`` (then the noise is solved for the planned epochs);
  with neither, ``noise_multiplier = 1.0``.
* The guarantee covers this step's training set only (e.g. fine-tuning after pruning): a dense model
  pretrained on the same members without DP has already spent unbounded privacy. That is the paper's
  Pr-DP setting; only KD-DP's student, trained from scratch, is DP with respect to its own training (the
  teacher's soft labels are still computed from the members).

**PyTorch**: Opacus (``PrivacyEngine.make_private`` / ``make_private_with_epsilon``, Poisson-sampling
``DPDataLoader``, ``DPOptimizer``). After training the Opacus hooks and ``grad_sample`` attributes are removed
(``to_standard_module``), so the model is an ordinary ``nn.Module`` again.

**Keras** (TensorFlow Privacy does not import with TF 2.21): the same algorithm written out — per-example
gradients with ``tf.vectorized_map`` over a ``GradientTape``, flat clipping, seeded Gaussian noise,
Poisson-sampled batches — and the **same Opacus accountant** (``opacus.accountants``) for epsilon.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from toolkit.defenses.base import Defense, DefenseConfig, KerasMasks, TorchMasks


class DPConfig(DefenseConfig):
    noise_multiplier: float | None = Field(None, ge=0, description="sigma: noise std / max_grad_norm (default 1.0 "
                                                                   "when target_epsilon is not given)")
    target_epsilon: float | None = Field(None, gt=0, description="solve the noise for this epsilon over the planned "
                                                                 "epochs (instead of noise_multiplier)")
    max_grad_norm: float = Field(1.0, gt=0, description="C: per-sample gradient L2 clipping norm")
    delta: float | None = Field(None, gt=0, lt=1, description="delta of (epsilon, delta)-DP; default min(1e-5, 1/n)")
    accountant: Literal["rdp", "prv", "gdp"] = Field("rdp", description="Opacus accountant")

    @model_validator(mode="after")
    def _one_noise(self):
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ValueError("give noise_multiplier or target_epsilon, not both")
        return self


#: RDP orders: Opacus's defaults plus larger ones, so few-step / low-epsilon runs find their optimal order.
RDP_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 513, 8))


def epsilon(accountant, delta: float) -> float:
    """Epsilon spent for ``delta`` by an Opacus accountant (RDP with :data:`RDP_ALPHAS`)."""
    if accountant.mechanism() == "rdp":
        return float(accountant.get_epsilon(delta, alphas=RDP_ALPHAS))
    return float(accountant.get_epsilon(delta))


def sample_rate(n: int, batch_size: int) -> float:
    """Opacus's Poisson rate ``1 / ceil(n / batch_size)``: one epoch is ``ceil(n / batch_size)`` sampled batches."""
    return 1.0 / math.ceil(n / batch_size)


def default_delta(n: int) -> float:
    """``min(1e-5, 1/n)``: below 1/n, as a meaningful (epsilon, delta) guarantee needs."""
    return min(1e-5, 1.0 / max(1, int(n)))


class DPSGD(Defense):
    name = "dp"
    description = ("DP-SGD: Poisson-sampled batches, per-sample clipping, Gaussian noise, epsilon from Opacus's "
                   "accountant (torch: Opacus PrivacyEngine; Keras: vectorized per-example gradients)")
    config_cls = DPConfig
    accepts_task_loss = True

    def _noise(self, rate: float, epochs: int, delta: float) -> float:
        cfg = self.config
        if cfg.target_epsilon is not None:
            from opacus.accountants.utils import get_noise_multiplier

            extra = {"alphas": RDP_ALPHAS} if cfg.accountant == "rdp" else {}
            return float(get_noise_multiplier(target_epsilon=cfg.target_epsilon, target_delta=delta,
                                              sample_rate=rate, epochs=max(1, epochs),
                                              accountant=cfg.accountant, **extra))
        return 1.0 if cfg.noise_multiplier is None else float(cfg.noise_multiplier)

    def _details(self, engine_eps: float, noise: float, q: float, delta: float, steps: int, n: int) -> dict:
        cfg = self.config
        return {"epsilon": float(engine_eps), "delta": float(delta), "noise_multiplier": float(noise),
                "max_grad_norm": cfg.max_grad_norm, "sample_rate": float(q), "steps": int(steps),
                "accountant": cfg.accountant, "n": int(n), "target_epsilon": cfg.target_epsilon}

    # ------------------------------------------------------------------ torch: Opacus
    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        from toolkit.frameworks import torch as _torch
        from toolkit.models import torch_nets

        torch = _torch()
        cfg = self.config
        n = len(data.y)
        delta = cfg.delta if cfg.delta is not None else default_delta(n)
        q = sample_rate(n, recipe.batch_size)
        noise = self._noise(q, epochs, delta)
        torch.manual_seed(recipe.seed)
        ds = TensorDataset(torch.from_numpy(np.ascontiguousarray(data.x, np.float32)),
                           torch.from_numpy(data.y.astype(np.int64)), torch.arange(n))
        loader = DataLoader(ds, batch_size=recipe.batch_size, generator=torch.Generator().manual_seed(recipe.seed))
        opt = torch_nets.make_optimizer(model, recipe)
        if masks:
            keeper = TorchMasks(model, masks)
            keeper.apply()
            keeper.attach(opt)  # DPOptimizer steps the original optimizer: its post-hooks run after the noise
        loss_fn = task_loss.torch(data.x, data.y)
        model.train()
        steps = 0
        with warnings.catch_warnings():
            # Opacus warns that secure RNG is off (seeded runs are the point here) and, on every backward, that its
            # full backward hooks fire for input-less first layers; neither affects the result.
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
            engine = PrivacyEngine(accountant=cfg.accountant)
            module, dp_opt, dp_loader = engine.make_private(
                module=model, optimizer=opt, data_loader=loader, noise_multiplier=noise,
                max_grad_norm=cfg.max_grad_norm, poisson_sampling=True,
                noise_generator=torch.Generator().manual_seed(recipe.seed + 1))
            try:
                for _ in range(epochs):
                    for xb, yb, ib in dp_loader:
                        if len(xb) == 0:  # an empty Poisson batch: probability (1-q)^n, negligible
                            continue
                        dp_opt.zero_grad(set_to_none=True)
                        loss_fn(module(xb), yb, ib).mean().backward()
                        dp_opt.step()
                        steps += 1
            finally:
                module.to_standard_module()  # removes Opacus's hooks and per-sample attributes from `model`
                for p in model.parameters():
                    p.grad = None
                model.eval()
        eps = epsilon(engine.accountant, delta) if steps else 0.0
        return epochs, steps, self._details(eps, noise, q, delta, steps, n)

    # ------------------------------------------------------------------ Keras: vectorized per-example gradients
    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        from opacus.accountants import create_accountant

        from toolkit.frameworks import keras as _keras
        from toolkit.frameworks import tf as _tf
        from toolkit.models import keras_nets

        tf, keras = _tf(), _keras()
        cfg = self.config
        n = len(data.y)
        delta = cfg.delta if cfg.delta is not None else default_delta(n)
        q = sample_rate(n, recipe.batch_size)
        noise = self._noise(q, epochs, delta)
        keras.utils.set_random_seed(recipe.seed)
        opt = keras_nets.make_optimizer(recipe)
        variables = model.trainable_variables
        loss_fn = task_loss.keras(data.x, data.y)
        gen = tf.random.Generator.from_seed(recipe.seed + 1)
        clip = tf.constant(float(cfg.max_grad_norm))
        std = tf.constant(float(noise * cfg.max_grad_norm))
        expected = tf.constant(float(q * n))
        keeper = KerasMasks(model, masks) if masks else None
        if keeper:
            keeper.apply()

        def per_example(args):
            xi, ii = args
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(loss_fn(ii[None], model(xi[None], training=True)))
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            factor = tf.minimum(1.0, clip / (tf.linalg.global_norm(grads) + 1e-12))
            return [g * factor for g in grads]

        @tf.function(reduce_retracing=True)
        def step(xb, ib):
            per = tf.vectorized_map(per_example, (xb, ib))
            noisy = [(tf.reduce_sum(g, axis=0) + std * gen.normal(tf.shape(v))) / expected
                     for g, v in zip(per, variables)]
            opt.apply_gradients(zip(noisy, variables))

        accountant = create_accountant(cfg.accountant)
        rng = np.random.default_rng([recipe.seed, 0x4450])
        x = np.asarray(data.x, np.float32)
        steps_per_epoch = math.ceil(n / recipe.batch_size)
        steps = 0
        for _ in range(epochs):
            for _ in range(steps_per_epoch):
                batch = np.flatnonzero(rng.random(n) < q)
                accountant.step(noise_multiplier=noise, sample_rate=q)  # the sampling happened, even if empty
                if len(batch) == 0:
                    continue
                step(tf.constant(x[batch]), tf.constant(batch.astype(np.int64)))
                if keeper:
                    keeper.apply()
                steps += 1
        eps = epsilon(accountant, delta) if steps else 0.0
        return epochs, steps, self._details(eps, noise, q, delta, steps, n)

