"""Lazy, configured imports of the heavy frameworks, thread pinning and seeding.

Always import TensorFlow / tf-keras / torch through these functions. They set what must be set before
the first import (``TF_USE_LEGACY_KERAS=1``: tfmot does not support Keras 3), pin thread counts so runs are
reproducible and two runtimes in one process do not oversubscribe the cores, and make seeding uniform.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from functools import cache

import numpy as np

from toolkit.errors import MissingDependencyError, ModelError


def thread_count() -> int:
    """Threads per framework: ``SAFECOMPRESS_THREADS`` or all cores (at most 8)."""
    raw = os.environ.get("SAFECOMPRESS_THREADS")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return max(1, min(8, os.cpu_count() or 1))


def _prepare_tf_env() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Deterministic kernels: the same seed must give the same metrics (issue: determinism).
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 while a native library loads.

    TensorFlow's C++ runtime prints start-up notices (CUDA probing, absl init) straight to fd 2 before its
    log level applies; they would break the one-line-error contract of the CLI. Python-level errors still
    propagate as exceptions. Set ``SAFECOMPRESS_DEBUG=1`` to see the native output.
    """
    if os.environ.get("SAFECOMPRESS_DEBUG") == "1":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_import():
    """Import a chatty native package (ExecuTorch, its XNNPACK backend): its warnings, root-logger messages
    below ERROR and fd-2 start-up notices are dropped; import errors still propagate."""
    import logging
    import warnings

    root = logging.getLogger()
    level = root.level
    with _quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            root.setLevel(level)


@cache
def tf():
    """The ``tensorflow`` module, configured (legacy Keras, pinned threads, quiet logs)."""
    _prepare_tf_env()
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise ModelError("TF_USE_LEGACY_KERAS must be 1: tensorflow-model-optimization needs tf-keras (Keras 2)")
    try:
        with _quiet_native_stderr():
            import tensorflow as tf_mod
    except ImportError as exc:  # pragma: no cover - install problem
        raise MissingDependencyError(f"tensorflow is not importable: {exc}") from exc
    n = thread_count()
    try:
        tf_mod.config.threading.set_intra_op_parallelism_threads(n)
        tf_mod.config.threading.set_inter_op_parallelism_threads(min(2, n))
    except RuntimeError:
        pass  # already initialized by someone else: keep their settings
    tf_mod.get_logger().setLevel("ERROR")
    return tf_mod


@cache
def keras():
    """The ``tf_keras`` module (Keras 2), the only Keras tfmot supports."""
    tf()
    import tf_keras

    return tf_keras


@cache
def torch():
    """The ``torch`` module with pinned intra-op threads."""
    import torch as torch_mod

    torch_mod.set_num_threads(thread_count())
    return torch_mod


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and every framework that is already imported (never imports one)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].utils.set_random_seed(seed)
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
