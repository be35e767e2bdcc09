"""The learned attacker of SafeCompress (Fig. 2), after Nasr et al. (2018). Numpy in, numpy out.

Three fully connected streams with ReLU:

* probability stream on the target's output vector **sorted in descending order**: d -> 1024 -> 512 -> 64;
* label stream on the one-hot label: C -> 512 -> 64;
* fusion stream on both 64-d codes: 128 -> 256 -> 64 -> 1 (a membership logit).

Training follows the paper's Sec. 5.3: weights ~ N(0, 0.01), biases 0, Adam at lr 1e-3, batches of 128 with
as many members as non-members in every batch, 100 epochs (an epoch is one pass over the larger side).
SafeCompress trains the attacker once and fine-tunes it for a few epochs per candidate model:
:meth:`NNAttack.fine_tune` continues with the same weights and optimizer state.

``features="raw"`` feeds any feature matrix to the probability stream instead (CompLeak SR/MR), optionally
standardized with the statistics of the first ``fit``. torch is imported only when fitting or scoring.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import numpy as np

from toolkit.attacks import signals
from toolkit.attacks.inputs import AttackInput, AttackResult
from toolkit.errors import AttackError

PROB_STREAM = (1024, 512, 64)
LABEL_STREAM = (512, 64)
FUSION_STREAM = (256, 64)


@contextlib.contextmanager
def _one_thread(torch):
    """Run the attacker's small matrix products on one thread, restoring the setting afterwards.

    Measured on the 2-core CI host under load: 128-sample steps of this network took 9.5 ms on one thread and
    100-200 ms on two (intra-op threads spin against the other processes); idle, two threads gain little.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(torch, d: int, n_classes: int, init_std: float, seed: int):
    nn = torch.nn

    def mlp(widths, d_in):
        layers = []
        for w in widths:
            layers += [nn.Linear(d_in, w), nn.ReLU()]
            d_in = w
        return nn.Sequential(*layers)

    class ThreeStream(nn.Module):
        def __init__(self):
            super().__init__()
            self.prob = mlp(PROB_STREAM, d)
            self.label = mlp(LABEL_STREAM, n_classes)
            self.fusion = nn.Sequential(mlp(FUSION_STREAM, PROB_STREAM[-1] + LABEL_STREAM[-1]),
                                        nn.Linear(FUSION_STREAM[-1], 1))

        def forward(self, p, y):
            return self.fusion(torch.cat([self.prob(p), self.label(y)], dim=1)).squeeze(1)

    net = ThreeStream()
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, 0.0, init_std, generator=gen)
                nn.init.zeros_(mod.bias)
    return net


class NNAttack:
    """The Fig. 2 attacker. ``fit(x, labels, membership)`` returns self; ``score(x, labels)`` gives logits.

    ``x`` is ``(n, C)`` probability vectors (``features="sorted"``, sorted inside) or ``(n, d)`` features
    (``features="raw"``).
    """

    def __init__(self, n_classes: int, *, features: Literal["sorted", "raw"] = "sorted", epochs: int = 100,
                 batch_size: int = 128, lr: float = 1e-3, init_std: float = 0.01, standardize: bool = False,
                 seed: int = 0):
        if batch_size < 2 or batch_size % 2:
            raise AttackError(f"batch_size must be an even number >= 2 (half members, half non-members), got {batch_size}")
        self.n_classes = int(n_classes)
        self.features = features
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.init_std = float(init_std)
        self.standardize = standardize
        self.seed = int(seed)
        self.net = None
        self._opt = None
        self._mean = self._std = None
        self._rng = np.random.default_rng([self.seed, 0x4E4E])
        self.history: list[float] = []

    # ------------------------------------------------------------------ pickling
    # The network's class is built inside _build (torch is imported lazily), so it cannot pickle by reference:
    # a fitted attacker travels as its weights and Adam state and is rebuilt on arrival (values exact).
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.net is not None:
            state["net"] = {"d": self.net.prob[0].in_features, "weights": self.net.state_dict(),
                            "optimizer": self._opt.state_dict()}
            state["_opt"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        net = state.pop("net")
        self.__dict__.update(state, net=None)
        if net is not None:
            from toolkit.frameworks import torch as _torch

            torch = _torch()
            self.net = _build(torch, net["d"], self.n_classes, self.init_std, self.seed)
            self.net.load_state_dict(net["weights"])
            self.net.eval()
            self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
            self._opt.load_state_dict(net["optimizer"])

    # ------------------------------------------------------------------ features
    def _inputs(self, x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.features == "sorted":
            feat = signals.sorted_probabilities(x)
            if feat.shape[1] != self.n_classes:
                raise AttackError(f"attacker built for {self.n_classes} classes got outputs with {feat.shape[1]}")
        else:
            feat = np.asarray(x, dtype=np.float64)
            if feat.ndim != 2 or not np.isfinite(feat).all():
                raise AttackError(f"attack features must be a finite 2-D array, got shape {feat.shape}")
        if self.standardize:
            if self._mean is None:
                self._mean = feat.mean(axis=0)
                self._std = feat.std(axis=0) + 1e-8
            feat = (feat - self._mean) / self._std
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (len(feat),) or (len(y) and (y.min() < 0 or y.max() >= self.n_classes)):
            raise AttackError(f"labels must be {len(feat)} class indices in 0..{self.n_classes - 1}")
        return feat.astype(np.float32), signals.one_hot(y, self.n_classes).astype(np.float32)

    # ------------------------------------------------------------------ training
    def _train(self, x, labels, membership, epochs: int) -> "NNAttack":
        from toolkit.frameworks import torch as _torch

        torch = _torch()
        m = np.asarray(membership, dtype=bool)
        if m.shape != (len(labels),):
            raise AttackError(f"membership must have shape ({len(labels)},), got {m.shape}")
        pos, neg = np.flatnonzero(m), np.flatnonzero(~m)
        if not len(pos) or not len(neg):
            raise AttackError("the learned attacker needs both members and non-members to train on")
        feat, onehot = self._inputs(x, labels)
        if self.net is None:
            self.net = _build(torch, feat.shape[1], self.n_classes, self.init_std, self.seed)
            self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        elif self.net.prob[0].in_features != feat.shape[1]:
            raise AttackError(f"attacker was fitted on {self.net.prob[0].in_features} features, got {feat.shape[1]}")
        ft, yt = torch.from_numpy(feat), torch.from_numpy(onehot)
        half = self.batch_size // 2
        steps = int(np.ceil(max(len(pos), len(neg)) / half))
        lossf = torch.nn.BCEWithLogitsLoss()
        self.net.train()
        with _one_thread(torch):
            self._epochs(torch, ft, yt, pos, neg, steps, half, lossf, epochs)
        self.net.eval()
        return self

    def _epochs(self, torch, ft, yt, pos, neg, steps, half, lossf, epochs) -> None:
        for _ in range(epochs):
            # Balanced batches: both sides are cycled through fresh permutations, the smaller one repeats.
            p_idx = np.concatenate([self._rng.permutation(pos) for _ in range(int(np.ceil(steps * half / len(pos))))])
            n_idx = np.concatenate([self._rng.permutation(neg) for _ in range(int(np.ceil(steps * half / len(neg))))])
            total = 0.0
            for s in range(steps):
                idx = torch.from_numpy(np.concatenate([p_idx[s * half:(s + 1) * half], n_idx[s * half:(s + 1) * half]]))
                target = torch.cat([torch.ones(half), torch.zeros(half)])
                loss = lossf(self.net(ft[idx], yt[idx]), target)
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                self._opt.step()
                total += float(loss.detach())
            self.history.append(total / steps)

    def fit(self, x: np.ndarray, labels: np.ndarray, membership: np.ndarray) -> "NNAttack":
        """Train from scratch for ``epochs`` epochs; returns self."""
        self.net = self._opt = None
        self._mean = self._std = None
        self.history = []
        return self._train(x, labels, membership, self.epochs)

    def fine_tune(self, x: np.ndarray, labels: np.ndarray, membership: np.ndarray, epochs: int = 5) -> "NNAttack":
        """Continue training a fitted attacker on another model's outputs (SafeCompress, per candidate)."""
        if self.net is None:
            raise AttackError("fine_tune needs a fitted attacker: call fit first")
        return self._train(x, labels, membership, int(epochs))

    def score(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Membership logits (higher = member), float64. Logits, not sigmoids, so confident points do not tie."""
        from toolkit.frameworks import torch as _torch

        if self.net is None:
            raise AttackError("the attacker is not fitted: call fit first")
        torch = _torch()
        feat, onehot = self._inputs(x, labels)
        out = []
        with torch.inference_mode(), _one_thread(torch):
            for i in range(0, len(feat), 4096):
                out.append(self.net(torch.from_numpy(feat[i:i + 4096]), torch.from_numpy(onehot[i:i + 4096])).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def predict_proba(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Probability of "member" per sample."""
        from scipy.special import expit

        return expit(self.score(x, labels))


def run(inp: AttackInput, *, epochs: int = 100) -> AttackResult:
    """Fit on the known half of the target's outputs, score every point, evaluate on the unknown half."""
    k = inp.known
    attack = NNAttack(inp.n_classes, epochs=epochs, seed=inp.seed).fit(inp.probs[k], inp.labels[k], inp.membership[k])
    return AttackResult("nn", attack.score(inp.probs, inp.labels), ~k, learned=True,
                        details={"epochs": epochs, "final_train_loss": attack.history[-1]})
