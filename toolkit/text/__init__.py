"""Text models end to end (issue 10): fortunes data -> locally trained tokenizer -> small BERT / GPT-2
classifiers -> compression -> ONNX export -> black-box leakage audit. See ``docs/text.md``.

Modules: :mod:`~toolkit.text.tokenizer` (WordPiece / byte-level BPE trained with ``tokenizers``),
:mod:`~toolkit.text.config` (the pipeline config), :mod:`~toolkit.text.pipeline` (``run_text_pipeline``).
The data loader is :mod:`toolkit.data.text` (``fortunes``), the models :mod:`toolkit.models.text_nets`.
"""
