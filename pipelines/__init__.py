"""Heads and the fit / predict / evaluate / few-shot flows on cached features."""

from pipelines._evaluate import (
    ModelInputs,
    check_compatible,
    evaluate,
    evaluate_file,
    model_features,
    predict_file,
    predict_rows,
    spec_differences,
)
from pipelines._fewshot import FewShotRow, few_shot, few_shot_files, plot_learning_curve, sample_few_shot
from pipelines._fit import CVRow, FitResult, fit, read_xy
from pipelines._heads import HEADS, make_cv, make_head
from pipelines._prototype import KNNClassifier, PrototypeClassifier
from pipelines._rank import Ranking, RankRow, rank
from pipelines._saved import TRUSTED_TYPES, ModelCard, UntrustedModelError, load_model, save_model

__all__ = [
    "HEADS",
    "TRUSTED_TYPES",
    "CVRow",
    "FewShotRow",
    "FitResult",
    "KNNClassifier",
    "ModelCard",
    "ModelInputs",
    "PrototypeClassifier",
    "RankRow",
    "Ranking",
    "UntrustedModelError",
    "check_compatible",
    "evaluate",
    "evaluate_file",
    "few_shot",
    "few_shot_files",
    "fit",
    "load_model",
    "make_cv",
    "make_head",
    "model_features",
    "plot_learning_curve",
    "predict_file",
    "predict_rows",
    "rank",
    "read_xy",
    "sample_few_shot",
    "save_model",
    "spec_differences",
]
