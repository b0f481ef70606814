"""Unsupervised domain adaptation of features: align the labelled source to an unlabelled target."""

from pipelines.adapt._adapt import fit_adaptation

__all__ = ["fit_adaptation"]
