"""Heads and the fit / predict / evaluate / few-shot flows on cached features."""

from pipelines._evaluate import check_compatible, evaluate, model_features, predict_rows, spec_differences
from pipelines._fewshot import FewShotRow, few_shot, plot_learning_curve, sample_few_shot
from pipelines._fit import CVRow, FitResult, fit, read_xy
from pipelines._heads import HEADS, make_cv, make_head
from pipelines._prototype import KNNClassifier, PrototypeClassifier
from pipelines._saved import ModelCard, UntrustedModelError, load_model, save_model

__all__ = [
    "HEADS",
    "CVRow",
    "FewShotRow",
    "FitResult",
    "KNNClassifier",
    "ModelCard",
    "PrototypeClassifier",
    "UntrustedModelError",
    "check_compatible",
    "evaluate",
    "few_shot",
    "fit",
    "load_model",
    "make_cv",
    "make_head",
    "model_features",
    "plot_learning_curve",
    "predict_rows",
    "read_xy",
    "sample_few_shot",
    "save_model",
    "spec_differences",
]
