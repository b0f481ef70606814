"""Unsupervised domain adaptation of features: align the labelled source to an unlabelled target,
or reweight it, and choose how without target labels."""

from pipelines.adapt._adapt import (
    ADAPT_MAPS,
    IW_CLIP,
    AffineMap,
    effective_size,
    fit_adaptation,
    importance_weights,
)
from pipelines.adapt._choose import (
    ADAPT_METHODS,
    CANDIDATES,
    Adaptation,
    adapt_to,
    adaptation_for,
    choose_adaptation,
    circular_scores,
)

__all__ = [
    "ADAPT_MAPS",
    "ADAPT_METHODS",
    "CANDIDATES",
    "IW_CLIP",
    "Adaptation",
    "AffineMap",
    "adapt_to",
    "adaptation_for",
    "choose_adaptation",
    "circular_scores",
    "effective_size",
    "fit_adaptation",
    "importance_weights",
]
