"""nerfstudio's Trainer with atomic checkpoints and a configurable default viewer resolution.

* Checkpoints are written to a temporary file beside the checkpoint folder and moved into place with
  ``os.replace``, so an interrupted save never leaves a truncated ``step-*.ckpt`` that ``--load-dir``, ``ns-eval``
  or ``ns-viewer`` would then fail on (nerfstudio picks the newest file by name).
* ``viewer_max_res`` sets the viewer's "Max res" slider at start: on a CPU a 512-pixel render holds the train lock
  for minutes, so the CPU presets start small.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig


@dataclass
class SemanticTrainerConfig(TrainerConfig):
    """nerfstudio's trainer settings plus the viewer's starting resolution."""

    _target: type = field(default_factory=lambda: SemanticTrainer)
    viewer_max_res: int | None = None
    """Starting value of the viewer's "Max res" slider (None: nerfstudio's 512)."""


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the parent folder and an atomic rename."""
    tmp = path.parent.parent / f".{path.parent.name}-{path.name}.tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class SemanticTrainer(Trainer):
    """See the module docstring."""

    config: SemanticTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        super().setup(test_mode=test_mode)
        panel = getattr(self.viewer_state, "control_panel", None)
        if panel is not None and self.config.viewer_max_res is not None:
            panel._max_res.value = int(self.config.viewer_max_res)

    def save_checkpoint(self, step: int) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # type: ignore
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        atomic_torch_save(state, ckpt_path)
        if self.config.save_only_latest_checkpoint:
            for f in self.checkpoint_dir.glob("*.ckpt"):
                if f != ckpt_path:
                    f.unlink()
