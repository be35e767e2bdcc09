"""AdvReg: membership privacy through min-max adversarial regularization (Nasr, Shokri & Houmansadr, CCS 2018).

An inference model ``h(f(x), y)`` (a membership attacker on the target's probability vector and the one-hot
label) is trained *during* the target's training, against it:

* **max step** (``attack_steps`` per target step): ``h`` learns to tell the current batch of members
  (label 1) from an equally large batch of the **reference set** (label 0) — ``DefenseData.reference``, the
  population pool, never the audit's non-members — by binary cross-entropy, with Adam at ``attack_lr``;
* **min step**: the target minimizes ``task loss + lam * log h(f(x), y)`` on the member batch, i.e. its loss
  plus ``lam`` times the attacker's (log) gain on members (Nasr et al. Alg. 1).

The inference model follows Nasr et al.'s three streams: prediction vector -> ``hidden`` widths, label ->
``hidden[-1]``, their concatenation -> ``hidden[-1]`` -> 1 (ReLU); it is narrower than the paper's (1024, 512,
64) by default, to keep a CPU step cheap. torch: the attacker steps run inside ``torch_nets.train``'s
``loss_fn``; Keras: a ``tf.function`` loop with ``GradientTape``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from toolkit.defenses.base import Defense, DefenseConfig, KerasMasks, torch_fit
from toolkit.models.spec import Width


class AdvRegConfig(DefenseConfig):
    lam: float = Field(1.0, ge=0, description="lambda: weight of the attacker's gain in the target's loss")
    attack_steps: int = Field(1, ge=1, description="k: inference-model steps per target step")
    attack_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the inference model")
    hidden: tuple[Width, ...] = Field((128, 64), min_length=1, description="widths of the prediction stream; the label "
                                                                          "stream and fusion use the last one")


def _torch_inference_model(torch, n_classes: int, hidden: tuple[int, ...], seed: int):
    nn = torch.nn

    class Inference(nn.Module):
        def __init__(self):
            super().__init__()
            layers, d = [], n_classes
            for w in hidden:
                layers += [nn.Linear(d, w), nn.ReLU()]
                d = w
            self.pred = nn.Sequential(*layers)
            self.label = nn.Sequential(nn.Linear(n_classes, hidden[-1]), nn.ReLU())
            self.fusion = nn.Sequential(nn.Linear(2 * hidden[-1], hidden[-1]), nn.ReLU(), nn.Linear(hidden[-1], 1))

        def forward(self, p, y):
            return self.fusion(torch.cat([self.pred(p), self.label(y)], dim=1)).squeeze(1)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Inference()


class AdvReg(Defense):
    name = "advreg"
    description = ("min-max adversarial regularization (Nasr et al. 2018): an inference model trained on members vs "
                   "the population reference set; the target minimizes loss + lambda x its gain")
    config_cls = AdvRegConfig
    needs = ("reference",)
    accepts_task_loss = True

    def _fit_torch(self, model, data, recipe, epochs, masks, task_loss):
        from toolkit.frameworks import torch as _torch
        from toolkit.models import torch_nets

        torch = _torch()
        F = torch.nn.functional
        cfg = self.config
        n_classes = int(torch_nets.predict_logits(model, data.x[:1]).shape[1])
        h = _torch_inference_model(torch, n_classes, tuple(cfg.hidden), cfg.seed)
        h_opt = torch.optim.Adam(h.parameters(), lr=cfg.attack_lr)
        ref_x = torch.from_numpy(np.ascontiguousarray(data.reference.x, np.float32))
        ref_oh = F.one_hot(torch.from_numpy(data.reference.y.astype(np.int64)), n_classes).float()
        rng = np.random.default_rng([cfg.seed, 0x4144])
        task = task_loss.torch(data.x, data.y)
        stats = {"attack_loss": [], "attack_accuracy": [], "gain": []}

        def loss_fn(logits, targets, idx):
            probs = F.softmax(logits, dim=1)
            onehot = F.one_hot(targets, n_classes).float()
            n = len(targets)
            for _ in range(cfg.attack_steps):  # max step(s): the inference model against the current target
                r = torch.from_numpy(rng.choice(len(ref_x), size=n, replace=n > len(ref_x)))
                with torch.no_grad():
                    ref_probs = F.softmax(model(ref_x[r]), dim=1)
                out_m, out_r = h(probs.detach(), onehot), h(ref_probs, ref_oh[r])
                h_loss = (F.binary_cross_entropy_with_logits(out_m, torch.ones_like(out_m))
                          + F.binary_cross_entropy_with_logits(out_r, torch.zeros_like(out_r)))
                h_opt.zero_grad(set_to_none=True)
                h_loss.backward()
                h_opt.step()
            stats["attack_loss"].append(float(h_loss.detach()))
            stats["attack_accuracy"].append(0.5 * float((out_m > 0).float().mean() + (out_r <= 0).float().mean()))
            gain = F.logsigmoid(h(probs, onehot))  # min step: log h(f(x), y) on the members
            stats["gain"].append(float(gain.detach().mean()))
            return (task(logits, targets, idx) + cfg.lam * gain).mean()

        ran, steps = torch_fit(model, data.x, data.y, recipe, epochs, loss_fn, masks=masks)
        return ran, steps, self._details(stats, steps)

    def _fit_keras(self, model, data, recipe, epochs, masks, task_loss):
        from toolkit.frameworks import keras as _keras
        from toolkit.frameworks import tf as _tf
        from toolkit.models import keras_nets

        tf, keras = _tf(), _keras()
        cfg = self.config
        keras.utils.set_random_seed(recipe.seed)
        n_classes = int(model(np.asarray(data.x[:1], np.float32)).shape[1])
        L = keras.layers
        p_in, y_in = keras.Input((n_classes,)), keras.Input((n_classes,))
        z = p_in
        for w in cfg.hidden:
            z = L.Dense(w, activation="relu")(z)
        zy = L.Dense(cfg.hidden[-1], activation="relu")(y_in)
        out = L.Dense(1)(L.Dense(cfg.hidden[-1], activation="relu")(L.Concatenate()([z, zy])))
        h = keras.Model([p_in, y_in], out)
        h_opt = keras.optimizers.Adam(cfg.attack_lr)
        t_opt = keras_nets.make_optimizer(recipe)
        task = task_loss.keras(data.x, data.y)
        labels_oh = tf.constant(np.eye(n_classes, dtype=np.float32)[data.y])
        ref_x = tf.constant(np.asarray(data.reference.x, np.float32))
        ref_oh = tf.constant(np.eye(n_classes, dtype=np.float32)[data.reference.y])
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        keeper = KerasMasks(model, masks) if masks else None
        if keeper:
            keeper.apply()

        @tf.function(reduce_retracing=True)
        def h_step(xb, idx, r):
            pm = tf.nn.softmax(model(xb, training=False))
            pr = tf.nn.softmax(model(tf.gather(ref_x, r), training=False))
            with tf.GradientTape() as tape:
                om, orf = h([pm, tf.gather(labels_oh, idx)]), h([pr, tf.gather(ref_oh, r)])
                loss = bce(tf.ones_like(om), om) + bce(tf.zeros_like(orf), orf)
            h_opt.apply_gradients(zip(tape.gradient(loss, h.trainable_variables), h.trainable_variables))
            acc = 0.5 * (tf.reduce_mean(tf.cast(om > 0, tf.float32)) + tf.reduce_mean(tf.cast(orf <= 0, tf.float32)))
            return loss, acc

        @tf.function(reduce_retracing=True)
        def t_step(xb, idx):
            with tf.GradientTape() as tape:
                logits = model(xb, training=True)
                gain = tf.math.log_sigmoid(h([tf.nn.softmax(logits), tf.gather(labels_oh, idx)]))[:, 0]
                loss = tf.reduce_mean(task(idx, logits) + cfg.lam * gain)
            t_opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return tf.reduce_mean(gain)

        rng = np.random.default_rng([cfg.seed, 0x4144])
        x = np.asarray(data.x, np.float32)
        n, bs, n_ref = len(x), recipe.batch_size, len(data.reference.y)
        stats = {"attack_loss": [], "attack_accuracy": [], "gain": []}
        steps = 0
        for _ in range(epochs):
            perm = rng.permutation(n)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                for _ in range(cfg.attack_steps):
                    r = rng.choice(n_ref, size=len(idx), replace=len(idx) > n_ref)
                    h_loss, acc = h_step(tf.constant(x[idx]), tf.constant(idx), tf.constant(r))
                stats["attack_loss"].append(float(h_loss))
                stats["attack_accuracy"].append(float(acc))
                stats["gain"].append(float(t_step(tf.constant(x[idx]), tf.constant(idx))))
                if keeper:
                    keeper.apply()
                steps += 1
        return epochs, steps, self._details(stats, steps)

    @staticmethod
    def _details(stats, steps) -> dict:
        tail = 20  # the last steps: the end state of the min-max game

        def last(key):
            return float(np.mean(stats[key][-tail:])) if stats[key] else None

        return {"final_attack_loss": last("attack_loss"), "final_attack_accuracy": last("attack_accuracy"),
                "final_gain": last("gain"), "steps": steps}
