"""Using a saved model: predictions, evaluation reports, groups, shift, what to label next."""

from pipelines.evaluate._evaluate import (
    ModelInputs,
    evaluate,
    evaluate_file,
    evaluate_to_files,
    model_features,
    predict_file,
    predict_rows,
)
from pipelines.evaluate._shift import measure_shift
from pipelines.evaluate._suggest import STRATEGIES, choose, suggest_file

__all__ = [
    "STRATEGIES",
    "ModelInputs",
    "choose",
    "evaluate",
    "evaluate_file",
    "evaluate_to_files",
    "measure_shift",
    "model_features",
    "predict_file",
    "predict_rows",
    "suggest_file",
]
