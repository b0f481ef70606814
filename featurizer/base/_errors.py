"""Errors a user can act on: the CLI prints their message on one line, without a traceback."""

from __future__ import annotations


class FeaturizerError(Exception):
    """Base class for every error that has a plain-language message for the user."""


class UnknownModelError(FeaturizerError, KeyError):
    """A model name that is neither registered nor a ``timm/``, ``torchvision/`` or ``hf/`` name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingPackageError(FeaturizerError, ImportError):
    """A model needs a package (its weights, or its model zoo) that is not installed."""


class UnknownLayerError(FeaturizerError, ValueError):
    """A layer name or index that the model does not have."""


class InputError(FeaturizerError, ValueError):
    """An input that cannot be read: missing path, unknown format, missing column."""


class ItemError(FeaturizerError):
    """One item (an image or a text) could not be featurized; raised with ``on_error='fail'``."""
