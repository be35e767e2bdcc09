"""The one error hierarchy of safecompress.

Every error a user can cause (bad input, bad config, an artifact that does not fit) is a
:class:`SafeCompressError`. Library code raises these; only the CLI catches them, prints the message on one
line and exits with :attr:`SafeCompressError.exit_code` (2). Messages must be self-contained single lines:
say what was wrong, with which value, and what would be accepted.
"""

from __future__ import annotations


class SafeCompressError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: a message with newlines would break CI logs and the one-line contract.
        super().__init__(" ".join(str(message).split()))


class ConfigError(SafeCompressError):
    """A config, option or flag is unknown, mistyped or out of range."""


class UnknownNameError(ConfigError):
    """A registry was asked for a name it does not hold; the message lists the known names."""


class DataError(SafeCompressError):
    """Data is missing, malformed, non-finite, mis-shaped, overlapping, or does not match a manifest."""


class ModelError(SafeCompressError):
    """A model is of the wrong framework or architecture, or cannot be built, trained or loaded."""


class ArtifactError(SafeCompressError):
    """An artifact file is corrupt, of an unknown or unsupported format, or refused as unsafe."""


class ExportError(SafeCompressError):
    """An export failed, or the exported artifact does not agree with its source model."""


class CompressionError(SafeCompressError):
    """A compression method failed, or measurably did not achieve what its config asked for."""


class AttackError(SafeCompressError):
    """An attack cannot run with the signals it was given (missing references, too little data...)."""


class MissingDependencyError(SafeCompressError):
    """An optional system resource (a Debian package, a data file, a browser) is not installed."""
