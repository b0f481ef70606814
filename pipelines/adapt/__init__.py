"""Unsupervised domain adaptation of features: align the labelled source to an unlabelled target."""

from pipelines.adapt._adapt import ADAPT_METHODS, fit_adaptation

__all__ = ["ADAPT_METHODS", "fit_adaptation"]
