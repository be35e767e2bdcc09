"""The torch module every text model is: one int64 input (token ids), logits out.

Imported only by :mod:`toolkit.models.text_nets` when a text model is built (it imports torch at module
level, so the rest of the toolkit never imports it eagerly).
"""

from __future__ import annotations

import torch



class TextClassifier(torch.nn.Module):
    """A Hugging Face ``*ForSequenceClassification`` behind a one-input ``forward(input_ids) -> logits``.

    * The attention mask is derived here from the pad id (``input_ids != pad_id``), so an exported artifact has
      exactly one input and the black-box protocol (one array in, one probability row out) is unchanged.
      Tokens must be right-padded, as :class:`~toolkit.text.tokenizer.TextTokenizer` does.
    * ``input_dtype = "int64"`` tells the toolkit's torch routines (training, prediction, exporters) to feed
      int64 ids instead of the float32 used for images and tables (the embedding lookup refuses floats).
    * In training mode only, trailing columns that are padding in every row of the batch are dropped before
      the transformer runs ("dynamic padding"): the result is the same (padded keys are masked, and the
      classifiers pool the first / last real token), the compute is proportional to the longest text in the
      batch instead of ``seq_len``. Evaluation and export always run the full, fixed-width input.
    """

    input_dtype = "int64"

    def __init__(self, backbone: torch.nn.Module, pad_id: int, spec=None):
        super().__init__()
        self.backbone = backbone
        self.pad_id = int(pad_id)
        #: The :class:`~toolkit.models.text_nets.TextModelSpec` it was built from (exporters read ``seq_len``).
        self.spec = spec

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.training:
            used = input_ids.ne(self.pad_id).any(dim=0).nonzero()
            input_ids = input_ids[:, :int(used.max()) + 1 if len(used) else 1]
        mask = input_ids.ne(self.pad_id).long()
        return self.backbone(input_ids=input_ids, attention_mask=mask, return_dict=False)[0]


def conv1d_to_linear(model: torch.nn.Module) -> int:
    """Replace every ``transformers`` ``Conv1D`` (GPT-2's projections) by the equivalent ``nn.Linear``.

    ``Conv1D(nf, nx)`` computes ``x @ W + b`` with ``W`` of shape ``(nx, nf)``: a Linear with the transposed
    weight. As plain Linear layers they are seen by every torch compressor (``torch.nn.utils.prune``,
    ``quantize_dynamic``, NNI), which know ``nn.Linear`` but not this Hugging Face class. Returns the count.
    """
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, Conv1D):
                nx, nf = child.weight.shape
                lin = torch.nn.Linear(nx, nf, bias=child.bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        lin.bias.copy_(child.bias)
                setattr(mod, child_name, lin)
                replaced += 1
    return replaced
