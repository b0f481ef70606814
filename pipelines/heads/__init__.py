"""The heads (scikit-learn and FAISS), calibration, learning targets and transferability scores."""

from pipelines.heads._calibration import apply_temperature, calibrate_from_folds, calibration_report, plot_reliability
from pipelines.heads._choice import MIN_GAIN, Verdict, beats_plain
from pipelines.heads._heads import (
    HEADS,
    NORMALISATIONS,
    head_grid,
    log_grid,
    make_cv,
    make_head,
    one_standard_error,
    quiet_small_classes,
    scores_of,
    weight_params,
)
from pipelines.heads._linalg import as_logits, softmax, unit_rows
from pipelines.heads._prototype import KNNClassifier, PrototypeClassifier
from pipelines.heads._semi import (
    SEMI_METHODS,
    LabelSpreading,
    SelfTraining,
    SemiChoice,
    choose_semi,
    semi_estimator,
    stack_pool,
    unlabelled_mask,
)
from pipelines.heads._targets import CLASSES, KINDS, MULTILABEL, REGRESSION, Target, join_labels, label_set, read_target
from pipelines.heads._transferability import logme, logme_of_targets, loo_nearest_centroid

__all__ = [
    "CLASSES",
    "HEADS",
    "KINDS",
    "MIN_GAIN",
    "MULTILABEL",
    "NORMALISATIONS",
    "REGRESSION",
    "SEMI_METHODS",
    "KNNClassifier",
    "LabelSpreading",
    "PrototypeClassifier",
    "SelfTraining",
    "SemiChoice",
    "Target",
    "Verdict",
    "apply_temperature",
    "as_logits",
    "beats_plain",
    "calibrate_from_folds",
    "calibration_report",
    "choose_semi",
    "head_grid",
    "join_labels",
    "label_set",
    "log_grid",
    "logme",
    "logme_of_targets",
    "loo_nearest_centroid",
    "make_cv",
    "make_head",
    "one_standard_error",
    "plot_reliability",
    "quiet_small_classes",
    "read_target",
    "scores_of",
    "semi_estimator",
    "softmax",
    "stack_pool",
    "unit_rows",
    "unlabelled_mask",
    "weight_params",
]
