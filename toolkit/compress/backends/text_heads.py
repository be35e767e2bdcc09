"""Structured pruning of transformer text models: whole attention heads and feed-forward neurons removed.

``torch_prune_heads`` removes, in every transformer block, ``floor(heads * H)`` of its ``H`` attention heads and
``floor(ffn * F)`` of its ``F`` feed-forward neurons, then fine-tunes on the members. The tensors really
shrink (``transformers.pytorch_utils.prune_linear_layer`` slices the projections): the query/key/value rows and
the output-projection columns of a removed head, the first FFN layer's rows and the second's columns of a
removed neuron. Fewer parameters, fewer FLOPs, a smaller ONNX artifact.

Why this method exists: NNI's structured pruners need ``ModelSpeedup``, which needs a ``torch.fx``-traceable
model, and transformers 5.x models are not (shape-dependent Python in their forward: ``position_ids[:, :seq]``,
``if attention_mask.ndim < 4``), while transformers 5 dropped both its fx tracer and ``PreTrainedModel.prune_heads``.
Heads and neurons are ranked by

* ``taylor`` (default): first-order Taylor importance on the members (Michel et al. 2019, "Are Sixteen Heads
  Really Better than One?"): gating a head's output by ``xi`` gives ``dL/dxi = sum(grad(W_o) * W_o)`` over the
  head's columns of the output projection (and likewise for an FFN neuron's column of the second FFN layer);
  ``|dL/dxi|`` is accumulated over one pass of member batches (eval mode, no update);
* ``l2``: the L2 norm of the head's / neuron's weights in all four (two) projections (data-free).

Blocks are found by class (``BertLayer``: BERT and MiniLM; ``GPT2Block``), so the method also works on a model
another method has already changed. Each block keeps at least one head and one neuron. Every block is
checked afterwards to hold exactly the kept heads / neurons, and the parameter count to have dropped;
otherwise :class:`~toolkit.errors.CompressionError`. Pruned models export to ONNX; they cannot be rebuilt from
their :class:`~toolkit.models.text_nets.TextModelSpec` (blocks now differ in width), so keep the artifact.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from toolkit.compress.backends import _torch_common as common
from toolkit.compress.config import MethodConfig
from toolkit.compress.method import Method, MethodOutput
from toolkit.errors import CompressionError, ModelError


class PruneHeadsConfig(MethodConfig):
    """Remove a fraction of the attention heads and FFN neurons of every transformer block."""

    method: Literal["torch_prune_heads"] = "torch_prune_heads"
    fine_tune_epochs: int = Field(2, ge=0, description="Epochs of fine-tuning on the members after removing heads "
                                                       "and neurons (0 = none)")
    heads: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of the attention heads removed from every block "
                                                           "(rounded down; at least one head stays)")
    ffn: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of the feed-forward neurons removed from every "
                                                         "block (rounded down)")
    criterion: Literal["taylor", "l2"] = Field("taylor", description="taylor: |dL/d gate| on the members (Michel et "
                                                                     "al. 2019); l2: weight norms (data-free)")


class _Block:
    """One transformer block seen as ``H`` heads of width ``d`` and ``F`` feed-forward neurons."""

    def __init__(self, name: str, layer):
        self.name, self.layer = name, layer

    # q/k/v projections as (Linear, row offset of head 0) pairs; the output projection (head columns)
    def qkv(self) -> list[tuple[object, int]]:
        raise NotImplementedError

    def out_proj(self):
        raise NotImplementedError

    def ffn_in(self):
        raise NotImplementedError

    def ffn_out(self):
        raise NotImplementedError

    @property
    def head_dim(self) -> int:
        raise NotImplementedError

    @property
    def n_heads(self) -> int:
        return self.out_proj().weight.shape[1] // self.head_dim

    @property
    def n_ffn(self) -> int:
        return self.ffn_out().weight.shape[1]

    def l2_heads(self) -> np.ndarray:
        torch = common.torch()
        d, h = self.head_dim, self.n_heads
        total = self.out_proj().weight.detach().reshape(-1, h, d).pow(2).sum(dim=(0, 2))
        for lin, off in self.qkv():
            total = total + lin.weight.detach()[off:off + h * d].reshape(h, d, -1).pow(2).sum(dim=(1, 2))
        return torch.sqrt(total).numpy()

    def l2_ffn(self) -> np.ndarray:
        w1, w2 = self.ffn_in().weight.detach(), self.ffn_out().weight.detach()
        return (w1.pow(2).sum(dim=1) + w2.pow(2).sum(dim=0)).sqrt().numpy()

    def taylor_heads(self) -> np.ndarray:
        w = self.out_proj().weight
        return (w.grad * w).detach().reshape(w.shape[0], self.n_heads, self.head_dim).sum(dim=(0, 2)).abs().numpy()

    def taylor_ffn(self) -> np.ndarray:
        w = self.ffn_out().weight
        return (w.grad * w).detach().sum(dim=0).abs().numpy()

    def prune(self, keep_heads: np.ndarray, keep_ffn: np.ndarray) -> None:
        from transformers.pytorch_utils import prune_linear_layer

        torch = common.torch()
        d, h = self.head_dim, self.n_heads
        cols = torch.from_numpy(np.concatenate([np.arange(k * d, (k + 1) * d) for k in keep_heads]).astype(np.int64))
        self._set_qkv([(prune_linear_layer(lin, torch.cat([cols + off for _, off in group]), dim=0))
                       for lin, group in self._qkv_groups(h * d)], len(keep_heads))
        self._set("out", prune_linear_layer(self.out_proj(), cols, dim=1))
        neurons = torch.from_numpy(np.asarray(keep_ffn, dtype=np.int64))
        self._set("ffn_in", prune_linear_layer(self.ffn_in(), neurons, dim=0))
        self._set("ffn_out", prune_linear_layer(self.ffn_out(), neurons, dim=1))

    def _qkv_groups(self, width: int):
        """``[(Linear, [(_, row offset), ...])]``: the q/k/v rows each Linear holds (one each, or all three)."""
        groups: dict[int, tuple[object, list]] = {}
        for lin, off in self.qkv():
            groups.setdefault(id(lin), (lin, []))[1].append((lin, off))
        return list(groups.values())

    def _set_qkv(self, new: list, n_heads: int) -> None:
        raise NotImplementedError

    def _set(self, which: str, lin) -> None:
        raise NotImplementedError


class _BertBlock(_Block):
    """``BertLayer`` (BERT, MiniLM): separate query/key/value Linear layers, ``attention.output.dense``."""

    def qkv(self):
        s = self.layer.attention.self
        return [(s.query, 0), (s.key, 0), (s.value, 0)]

    def out_proj(self):
        return self.layer.attention.output.dense

    def ffn_in(self):
        return self.layer.intermediate.dense

    def ffn_out(self):
        return self.layer.output.dense

    @property
    def head_dim(self) -> int:
        return int(self.layer.attention.self.attention_head_size)

    def _set_qkv(self, new, n_heads):
        s = self.layer.attention.self
        s.query, s.key, s.value = new
        s.num_attention_heads = n_heads
        s.all_head_size = n_heads * s.attention_head_size

    def _set(self, which, lin):
        if which == "out":
            self.layer.attention.output.dense = lin
        elif which == "ffn_in":
            self.layer.intermediate.dense = lin
        else:
            self.layer.output.dense = lin


class _GPT2Block(_Block):
    """``GPT2Block``: one fused ``c_attn`` (q, k, v stacked, each ``H*d`` rows; built as ``nn.Linear`` by
    :func:`~toolkit.models.text_modules.conv1d_to_linear`), ``attn.c_proj``, ``mlp.c_fc`` / ``mlp.c_proj``."""

    def qkv(self):
        a = self.layer.attn
        width = a.split_size
        return [(a.c_attn, 0), (a.c_attn, width), (a.c_attn, 2 * width)]

    def out_proj(self):
        return self.layer.attn.c_proj

    def ffn_in(self):
        return self.layer.mlp.c_fc

    def ffn_out(self):
        return self.layer.mlp.c_proj

    @property
    def head_dim(self) -> int:
        return int(self.layer.attn.head_dim)

    def _set_qkv(self, new, n_heads):
        a = self.layer.attn
        (a.c_attn,) = new
        a.num_heads = n_heads
        a.split_size = n_heads * a.head_dim

    def _set(self, which, lin):
        if which == "out":
            self.layer.attn.c_proj = lin
        elif which == "ffn_in":
            self.layer.mlp.c_fc = lin
        else:
            self.layer.mlp.c_proj = lin


_BLOCKS = {"BertLayer": _BertBlock, "GPT2Block": _GPT2Block}


def transformer_blocks(model) -> list[_Block]:
    """The prunable blocks of ``model`` (``BertLayer`` / ``GPT2Block``), in order; ModelError if none."""
    nn = common.torch().nn
    blocks = [_BLOCKS[type(mod).__name__](name, mod) for name, mod in model.named_modules()
              if type(mod).__name__ in _BLOCKS]
    if not blocks:
        raise ModelError("torch_prune_heads prunes transformer text models (BertLayer / GPT2Block blocks); "
                         "this model has none")
    for b in blocks:
        for lin in (b.out_proj(), b.ffn_in(), b.ffn_out(), *(lin for lin, _ in b.qkv())):
            if not isinstance(lin, nn.Linear):
                raise ModelError(f"torch_prune_heads needs float nn.Linear projections; {b.name} has "
                                 f"{type(lin).__name__} (prune before quantizing)")
    return blocks


def _taylor(model, blocks: list[_Block], data, config) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Accumulate |dL/d gate| of every head and neuron over one pass of the members (no weight update)."""
    from toolkit.models.torch_nets import input_dtype

    torch = common.torch()
    heads = [np.zeros(b.n_heads) for b in blocks]
    ffn = [np.zeros(b.n_ffn) for b in blocks]
    batch = common.fine_tune_recipe(data, config).batch_size
    x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=input_dtype(model)))
    y = torch.from_numpy(np.asarray(data.y, dtype=np.int64))
    model.eval()
    for start in range(0, len(x), batch):
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
        loss.backward()
        for i, b in enumerate(blocks):
            heads[i] += b.taylor_heads()
            ffn[i] += b.taylor_ffn()
    model.zero_grad(set_to_none=True)
    return heads, ffn


def _keep(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (ascending) of the ``n - floor(fraction * n)`` highest scores; ties keep the lower index."""
    n = len(scores)
    drop = min(int(math.floor(fraction * n)), n - 1)
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[: n - drop])


def _apply(model, config: PruneHeadsConfig, data) -> MethodOutput:
    blocks = transformer_blocks(model)
    if config.criterion == "taylor":
        head_scores, ffn_scores = _taylor(model, blocks, data, config)
    else:
        head_scores, ffn_scores = [b.l2_heads() for b in blocks], [b.l2_ffn() for b in blocks]
    before = [(b.n_heads, b.n_ffn) for b in blocks]
    kept = []
    for b, hs, fs in zip(blocks, head_scores, ffn_scores):
        keep_h, keep_f = _keep(hs, config.heads), _keep(fs, config.ffn)
        b.prune(keep_h, keep_f)
        kept.append((keep_h, keep_f))
    seconds, epochs = common.fine_tune(model, data, config)
    per_block = {}
    for b, (h0, f0), (keep_h, keep_f) in zip(blocks, before, kept):
        if (b.n_heads, b.n_ffn) != (len(keep_h), len(keep_f)):
            raise CompressionError(f"torch_prune_heads left {b.n_heads} heads / {b.n_ffn} neurons in {b.name} "
                                   f"instead of {len(keep_h)} / {len(keep_f)}")
        per_block[b.name] = {"heads": [h0, b.n_heads], "ffn": [f0, b.n_ffn], "kept_heads": [int(i) for i in keep_h]}
    return MethodOutput(model=model.eval(), framework="torch", fine_tune_epochs=epochs, fine_tune_seconds=seconds,
                        extra={"blocks": per_block, "criterion": config.criterion})


def _targets(config: PruneHeadsConfig) -> dict:
    # Removing anything must shrink the model; a no-op config keeps every parameter.
    return {"params_ratio": 1.0 if config.heads == 0 and config.ffn == 0 else 0.999}


PRUNE_HEADS = Method(
    name="torch_prune_heads", backend="torch", kind="prune", framework="torch", config_cls=PruneHeadsConfig,
    apply=_apply, exports=("onnx",),
    description="Structured pruning of BERT/GPT-2 text models: removes a fraction of the attention heads and FFN "
                "neurons of every block (Taylor importance on the members or weight L2), slicing the projections "
                "with transformers' prune_linear_layer, then fine-tunes. The model really shrinks.",
    targets=_targets,
    example={"heads": 0.5, "ffn": 0.5, "fine_tune_epochs": 1},
    noop={"heads": 0.0, "ffn": 0.0, "fine_tune_epochs": 0},
)
