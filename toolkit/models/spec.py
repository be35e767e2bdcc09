"""Framework-neutral descriptions of a model and of how it is trained.

A :class:`ModelSpec` builds the *same* architecture in PyTorch and in Keras (tf-keras); a
:class:`TrainRecipe` trains either with one seeded routine. Reference and shadow models reuse the target's
recipe, so the spec + recipe pair is what "the target's training recipe" means throughout the toolkit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from toolkit.config_io import ConfigModel
from toolkit.seed import Seed


class _Strict(ConfigModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Widest layer a config may ask for: a negative or zero width fails deep inside a framework, a huge one
#: allocates without bound before training starts.
MAX_WIDTH = 65_536
#: A layer width (MLP hidden layer, CNN channels, dense layer).
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class ModelSpec(_Strict):
    """Architecture of a reference model.

    * ``mlp``: Flatten -> Dense(h) + ReLU for each ``hidden`` width -> Dense(n_classes).
    * ``cnn``: for each ``channels`` width: Conv 3x3 (same padding) + ReLU + MaxPool 2x2; then Flatten ->
      Dense(``dense``) + ReLU -> Dense(n_classes). Inputs are channels-last ``(H, W, C)`` in both
      frameworks (the PyTorch model permutes to NCHW as its first op).

    Both output logits.
    """

    arch: Literal["mlp", "cnn"] = "mlp"
    input_shape: tuple[int, ...]
    n_classes: int = Field(ge=2)
    hidden: tuple[Width, ...] = (256, 128)
    channels: tuple[Width, ...] = (32,)
    dense: Width = 128

    @model_validator(mode="after")
    def _check(self):
        if self.arch == "cnn" and len(self.input_shape) != 3:
            raise ValueError(f"cnn needs (H, W, C) inputs, got input_shape {self.input_shape}")
        return self


#: Overfit-mode batch size by architecture when ``overfit_batch_size`` is not set (measurements: TrainRecipe).
_OVERFIT_BATCH = {"cnn": 32}


class TrainRecipe(_Strict):
    """How a model is trained: seeded, deterministic data order, Adam or SGD on cross-entropy.

    ``overfit=True`` is the switch for leakage studies: it trains ``overfit_epochs`` epochs of SGD with
    momentum at ``overfit_lr`` and no weight decay, long enough that members and non-members are
    measurably told apart, in batches of ``overfit_batch_size`` — by default 32 for the CNN and
    ``batch_size`` otherwise (:meth:`batch_size_for`). Measured on Fashion-MNIST with 1,000 members
    (loss-attack AUC, torch / keras): batch 64 gives MLP 0.61 / 0.61 but CNN 0.598 / 0.587; batch 32 gives
    CNN 0.610 / 0.611 but MLP 0.588 / 0.599 (the weight-sharing CNN needs more, smaller steps to memorize;
    the MLP generalizes worse with them). Adam, 200 epochs or a wider dense layer left the CNN below 0.6.
    """

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    overfit: bool = False
    overfit_epochs: int = Field(100, ge=1)
    overfit_lr: float = Field(0.05, gt=0)
    overfit_batch_size: int | None = Field(None, ge=1)
    seed: Seed = 0

    def batch_size_for(self, arch: str | None) -> int:
        """The batch size a model of ``arch`` trains with under this recipe (see the class docstring)."""
        if not self.overfit:
            return self.batch_size
        return self.overfit_batch_size or _OVERFIT_BATCH.get(arch or "", self.batch_size)

    @property
    def effective_epochs(self) -> int:
        return self.overfit_epochs if self.overfit else self.epochs

    @property
    def effective_weight_decay(self) -> float:
        return 0.0 if self.overfit else self.weight_decay

    @property
    def effective_optimizer(self) -> str:
        return "sgd" if self.overfit else self.optimizer

    @property
    def effective_lr(self) -> float:
        return self.overfit_lr if self.overfit else self.lr

    def fingerprint(self, spec: ModelSpec | None = None) -> str:
        """Stable hash of recipe (+ spec): the cache key of models trained with it."""
        body = {"recipe": self.model_dump(mode="json"), "spec": spec.model_dump(mode="json") if spec else None}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
