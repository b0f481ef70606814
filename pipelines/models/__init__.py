"""Saved models: a skops file that loads without running code, and its cards (JSON and Markdown)."""

from pipelines.models._card import TUNED_CARD, card_text, evaluation_entry, record_evaluation
from pipelines.models._markdown import md_escape, render_model_card, render_tuned_card
from pipelines.models._saved import (
    TRUSTED_TYPES,
    ModelCard,
    UntrustedModelError,
    head_of,
    load_model,
    markdown_path,
    read_card,
    save_model,
    spec_problem,
)

__all__ = [
    "TRUSTED_TYPES",
    "TUNED_CARD",
    "ModelCard",
    "UntrustedModelError",
    "card_text",
    "evaluation_entry",
    "head_of",
    "load_model",
    "markdown_path",
    "md_escape",
    "read_card",
    "record_evaluation",
    "render_model_card",
    "render_tuned_card",
    "save_model",
    "spec_problem",
]
