"""Learning-rate schedule of the family: linear warm-up, cosine decay, then a constant fine-tuning rate.

GSNeRF trains with Adam 5e-4, a warm-up and a cosine decay. Test-time fine-tuning (``ns-train ... --load-dir RUN``)
continues the step count of the loaded run, i.e. *past* ``max_steps``: there the factor is ``finetune_ratio`` (not
the cosine's periodic continuation, which would climb back to the peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler


def lr_factor(step: int, warm_up: int, max_steps: int, min_ratio: float, finetune_ratio: float) -> float:
    """The multiplier of the base learning rate at ``step``."""
    if step > max_steps:
        return finetune_ratio
    if warm_up > 0 and step < warm_up:
        return (step + 1) / warm_up
    progress = (step - warm_up) / max(1, max_steps - warm_up)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class WarmupCosineSchedulerConfig(SchedulerConfig):
    """Warm-up, cosine decay to ``min_ratio``, then ``finetune_ratio`` after ``max_steps``."""

    _target: type = field(default_factory=lambda: WarmupCosineScheduler)
    warm_up_steps: int = 500
    """Linear warm-up steps."""
    max_steps: int = 100000
    """End of the cosine decay (the run's length)."""
    min_ratio: float = 0.05
    """Learning-rate factor at ``max_steps``."""
    finetune_ratio: float = 0.5
    """Factor after ``max_steps`` (test-time fine-tuning of a loaded run)."""


class WarmupCosineScheduler(Scheduler):
    """See :class:`WarmupCosineSchedulerConfig`."""

    config: WarmupCosineSchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        c = self.config
        return lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, c.warm_up_steps, c.max_steps, c.min_ratio, c.finetune_ratio)
        )
