"""Heads and the fit / predict / evaluate / few-shot flows on cached features."""

from featurizer.spec import check_compatible, spec_differences
from pipelines.evaluate import (
    ModelInputs,
    evaluate,
    evaluate_file,
    evaluate_to_files,
    model_features,
    predict_file,
    predict_rows,
)
from pipelines.fit import (
    CVRow,
    FewShotRow,
    FitResult,
    Ranking,
    RankRow,
    few_shot,
    few_shot_files,
    fit,
    fit_file,
    plot_learning_curve,
    rank,
    read_xy,
    sample_few_shot,
)
from pipelines.heads import HEADS, KNNClassifier, PrototypeClassifier, make_cv, make_head
from pipelines.models import TRUSTED_TYPES, ModelCard, UntrustedModelError, load_model, save_model

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
    "evaluate_to_files",
    "few_shot",
    "few_shot_files",
    "fit",
    "fit_file",
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
