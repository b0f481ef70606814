"""Fine-tuning a backbone when frozen features are not enough; the result is another backbone."""

from pipelines.finetune._dann import DANN_WEIGHT
from pipelines.finetune._finetune import (
    ADAPT_METHODS,
    AUGMENTATIONS,
    DEFAULT_BUDGET_S,
    SCHEDULE_CHOICES,
    SCHEDULES,
    Schedule,
    TuneReport,
    candidate_schedules,
    finetune,
)
from pipelines.finetune._l2sp import L2SP_ALPHA, REGULARIZERS
from pipelines.finetune._lora import ADAPTERS, LORA_RANK

__all__ = [
    "ADAPTERS",
    "ADAPT_METHODS",
    "AUGMENTATIONS",
    "DANN_WEIGHT",
    "DEFAULT_BUDGET_S",
    "L2SP_ALPHA",
    "LORA_RANK",
    "REGULARIZERS",
    "SCHEDULES",
    "SCHEDULE_CHOICES",
    "Schedule",
    "TuneReport",
    "candidate_schedules",
    "finetune",
]
