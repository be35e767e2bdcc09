"""SafeCompress's entropy-based regularizers ``re1`` (Eq. 8) and ``re2`` (Eq. 9), for PyTorch and Keras.

Membership attacks read the target's output probabilities; members get confident (low-entropy) outputs.
Both losses reward output entropy ``E = -sum_i p_i log p_i`` (Eq. 7) to hide that difference:

* ``re1``: ``L = CE - beta * (1/N) * sum_j E_j`` over the N samples of the batch;
* ``re2``: ``L = CE - beta * (1/|Phi|) * sum_{j in Phi} E_j`` over the set Phi of the batch's misclassified
  samples (argmax of the logits != label). A batch without mistakes adds no term (0, not 0/0).

``CE`` is the batch-mean cross-entropy. Models output **logits**; probabilities are ``softmax(logits)`` and
``E`` is computed from ``log_softmax`` (finite for saturated outputs). Gradients flow through the entropy
term (it is a regularizer, not a metric); membership of Phi is not differentiated. The paper uses
``beta = 0.1`` and batches of 128.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The paper's weight of the entropy term.
DEFAULT_BETA = 0.1


@dataclass(frozen=True)
class EntropyRegularizer:
    """One of the two entropy losses; ``misclassified_only`` selects Eq. 9 (re2) over Eq. 8 (re1)."""

    name: str
    misclassified_only: bool

    def torch_loss(self, beta: float = DEFAULT_BETA):
        """``loss_fn(logits, targets, batch_idx=None) -> scalar tensor`` (the torch_nets.train hook)."""
        from toolkit.frameworks import torch as _torch

        torch = _torch()
        F = torch.nn.functional
        beta = float(beta)
        misclassified_only = self.misclassified_only

        def loss_fn(logits, targets, batch_idx=None):
            logp = F.log_softmax(logits, dim=1)
            ce = F.nll_loss(logp, targets)
            ent = -(logp.exp() * logp).sum(dim=1)
            if misclassified_only:
                wrong = (logits.argmax(dim=1) != targets).to(ent.dtype)
                term = (ent * wrong).sum() / wrong.sum().clamp_min(1.0)
            else:
                term = ent.mean()
            return ce - beta * term

        loss_fn.__name__ = self.name
        return loss_fn

    def keras_loss(self, beta: float = DEFAULT_BETA):
        """``loss(y_true, y_pred) -> scalar`` for ``model.compile(loss=...)`` or a custom loop.

        ``y_true`` holds integer class indices (any shape with one entry per sample), ``y_pred`` logits.
        """
        from toolkit.frameworks import tf as _tf

        tf = _tf()
        beta = float(beta)
        misclassified_only = self.misclassified_only

        def loss(y_true, y_pred):
            y = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
            logits = tf.cast(y_pred, tf.float32)
            logp = tf.nn.log_softmax(logits, axis=1)
            ce = tf.reduce_mean(-tf.gather(logp, y, axis=1, batch_dims=1))
            ent = -tf.reduce_sum(tf.exp(logp) * logp, axis=1)
            if misclassified_only:
                wrong = tf.cast(tf.not_equal(tf.argmax(logits, axis=1), y), tf.float32)
                term = tf.reduce_sum(ent * wrong) / tf.maximum(tf.reduce_sum(wrong), 1.0)
            else:
                term = tf.reduce_mean(ent)
            return ce - beta * term

        loss.__name__ = self.name
        return loss


RE1 = EntropyRegularizer("re1", misclassified_only=False)
RE2 = EntropyRegularizer("re2", misclassified_only=True)
