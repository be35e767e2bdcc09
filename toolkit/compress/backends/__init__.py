"""Compression backends: one module per library family, each exposing :class:`~toolkit.compress.method.Method`
objects registered lazily in ``toolkit.compress._TABLE``. Modules import their framework inside functions only,
so describing methods loads no framework."""
