"""Saved models: a skops file that loads without running code, and its card."""

from pipelines.models._saved import (
    TRUSTED_TYPES,
    ModelCard,
    UntrustedModelError,
    head_of,
    load_model,
    read_card,
    save_model,
    spec_problem,
)

__all__ = [
    "TRUSTED_TYPES",
    "ModelCard",
    "UntrustedModelError",
    "head_of",
    "load_model",
    "read_card",
    "save_model",
    "spec_problem",
]
