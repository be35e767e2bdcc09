"""safecompress host-side toolkit.

The package is importable without TensorFlow, PyTorch, NNI or ONNX Runtime being loaded: every heavy
framework is imported lazily by the module that needs it (see :mod:`toolkit.frameworks`).
"""

__version__ = "0.1.0"
