"""Fitting heads on cached features: data, cross-validation, layers, tasks, few-shot, zero-shot, ranking."""

from pipelines.fit._fewshot import (
    FewShotRow,
    few_shot,
    few_shot_files,
    few_shot_head,
    overlap_warnings,
    plot_learning_curve,
)
from pipelines.fit._fit import (
    CVRow,
    FitResult,
    choose_layers,
    cross_validate,
    fit_fixed,
    labelled,
    labelled_views,
    raw_pixels,
    read_xy,
    sample_few_shot,
    unknown_label_warnings,
)
from pipelines.fit._flow import fit, fit_file
from pipelines.fit._memory import MEMORY_SUFFIX, memory_path, read_memory, write_memory
from pipelines.fit._rank import CHANCE_LOGME, DEFAULT_PER_CLASS, Ranking, RankRow, rank
from pipelines.fit._tasks import evaluate_tasks, task_prediction_rows
from pipelines.fit._update import UpdateResult, update, update_file
from pipelines.fit._zeroshot import (
    DEFAULT_TEMPLATES,
    class_text_vectors,
    fit_zero_shot,
    read_class_texts,
    zero_shot_head,
)

__all__ = [
    "CHANCE_LOGME",
    "DEFAULT_PER_CLASS",
    "DEFAULT_TEMPLATES",
    "MEMORY_SUFFIX",
    "CVRow",
    "FewShotRow",
    "FitResult",
    "RankRow",
    "Ranking",
    "UpdateResult",
    "choose_layers",
    "class_text_vectors",
    "cross_validate",
    "evaluate_tasks",
    "few_shot",
    "few_shot_files",
    "few_shot_head",
    "fit",
    "fit_file",
    "fit_fixed",
    "fit_zero_shot",
    "labelled",
    "labelled_views",
    "memory_path",
    "overlap_warnings",
    "plot_learning_curve",
    "rank",
    "raw_pixels",
    "read_class_texts",
    "read_memory",
    "read_xy",
    "sample_few_shot",
    "task_prediction_rows",
    "unknown_label_warnings",
    "update",
    "update_file",
    "write_memory",
    "zero_shot_head",
]
