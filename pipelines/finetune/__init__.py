"""Fine-tuning a backbone when frozen features are not enough; the result is another backbone."""

from pipelines.finetune._finetune import AUGMENTATIONS, SCHEDULES, Schedule, finetune

__all__ = ["AUGMENTATIONS", "SCHEDULES", "Schedule", "finetune"]
