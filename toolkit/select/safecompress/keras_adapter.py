"""Keras (tf-keras) adapter of SafeCompress: a compiled masked-SGD step (see ``adapter``).

The step multiplies every sparsified kernel by its mask variable right after ``apply_gradients``; masks are
non-trainable ``tf.Variable`` objects owned by the adapter, so changing them never retraces the step and
the model itself stays an ordinary Keras model.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import CompressionError
from toolkit.frameworks import keras as _keras
from toolkit.frameworks import tf as _tf
from toolkit.select.safecompress.adapter import BatchStream
from toolkit.select.safecompress.config import SafeCompressConfig


def loss_function(config: SafeCompressConfig):
    """``loss(y_true, logits) -> scalar``: cross-entropy, or the configured entropy regularizer."""
    tf = _tf()
    if config.regularizer == "none":
        def cross_entropy(y_true, y_pred):
            y = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=y_pred))

        return cross_entropy
    from toolkit.defenses import REGULARIZERS

    return REGULARIZERS.get(config.regularizer).keras_loss(config.beta)


class KerasAdapter:
    framework = "keras"

    def __init__(self, model, config: SafeCompressConfig):
        self.tf = tf = _tf()
        self.keras = keras = _keras()
        self.model = model
        self.config = config
        self.loss_fn = loss_function(config)
        self._kernels = {}
        for layer in model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None:
                self._kernels[f"{layer.name}.kernel"] = kernel
        if not self._kernels:
            raise CompressionError("the Keras model has no Dense or Conv layer kernels to sparsify")
        self._masks = {n: tf.Variable(tf.ones_like(k), trainable=False, name=n.replace(".", "_") + "_mask")
                       for n, k in self._kernels.items()}
        self.optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum,
                                              weight_decay=config.weight_decay or None)
        self.optimizer.build(model.trainable_variables)
        self._step = None

    # ------------------------------------------------------------------ weights and masks
    def sparse_shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(int(d) for d in k.shape) for n, k in self._kernels.items()}

    def weights(self) -> dict[str, np.ndarray]:
        return {n: np.array(k.numpy()) for n, k in self._kernels.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for name, value in weights.items():
            self._kernels[name].assign(np.asarray(value, dtype=np.float32))

    def set_masks(self, masks: dict[str, np.ndarray]) -> None:
        for name, kernel in self._kernels.items():
            m = np.asarray(masks[name], dtype=np.float32)
            self._masks[name].assign(m)
            kernel.assign(kernel.numpy() * m)

    def snapshot(self) -> list[np.ndarray]:
        return [np.array(w) for w in self.model.get_weights()]

    def restore(self, state: list[np.ndarray]) -> None:
        self.model.set_weights(state)

    def reinitialize(self, seed: int) -> None:
        self.keras.utils.set_random_seed(seed)
        fresh = self.keras.models.clone_model(self.model)  # new layers: initializers drawn from the seed
        self.model.set_weights(fresh.get_weights())

    # ------------------------------------------------------------------ training
    def _make_step(self):
        tf = self.tf
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        pairs = [(self._kernels[n], self._masks[n]) for n in self._kernels]
        x_spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

        @tf.function(input_signature=[x_spec, tf.TensorSpec([None], tf.int64)])
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            for kernel, mask in pairs:
                kernel.assign(kernel * mask)
            return loss

        return step

    def train(self, x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int) -> float:
        if steps <= 0:
            return float("nan")
        tf = self.tf
        if self._step is None:
            self._step = self._make_step()
        self.keras.utils.set_random_seed(seed)
        # A fresh optimizer state per phase (momentum slots and step counter to zero): candidates must not
        # inherit each other's momentum.
        for v in self.optimizer.variables():
            v.assign(tf.zeros_like(v))
        self.optimizer.learning_rate.assign(lr)
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        stream = BatchStream(len(y), self.config.batch_size, seed)
        total = 0.0
        for _ in range(steps):
            idx = stream.next()
            total += float(self._step(tf.constant(x[idx]), tf.constant(y[idx])))
        if not np.isfinite(total):
            raise CompressionError(f"SafeCompress training diverged (non-finite loss) at lr {lr}; lower 'lr'")
        return total / steps

    def gradients(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        tf = self.tf
        kernels = list(self._kernels.values())
        with tf.GradientTape() as tape:
            loss = self.loss_fn(tf.constant(np.asarray(y, np.int64)),
                                self.model(tf.constant(np.asarray(x, np.float32)), training=True))
        grads = tape.gradient(loss, kernels)
        return {n: np.array(g.numpy()) for n, g in zip(self._kernels, grads)}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from toolkit.models import keras_nets

        return keras_nets.predict_proba(self.model, x, batch_size=max(self.config.batch_size, 256))
