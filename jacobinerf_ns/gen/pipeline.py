"""The pipeline of the generalizable family: the house semantic pipeline, plus handing the banks to the model.

After nerfstudio built the datamanager and the model, the model gets the datamanager's source banks (read lazily,
kept on the device) and the scene that cameras without scene metadata (the viewer's) render. When training with
ground-truth depth supervision, every training scene must have ``depth/``: checked here, before the first step.
Loading a checkpoint checks its class table first (fine-tuning on a scene must keep the pretraining label space).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from jacobinerf_ns.errors import DataError
from jacobinerf_ns.pipeline import SemanticPipeline, SemanticPipelineConfig


@dataclass
class GenPipelineConfig(SemanticPipelineConfig):
    """Semantic pipeline whose model reads source banks from its datamanager."""

    _target: type = field(default_factory=lambda: GenPipeline)


class GenPipeline(SemanticPipeline):
    """See the module docstring."""

    def __init__(
        self,
        config: GenPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: torch.cuda.amp.GradScaler | None = None,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        dm = self.datamanager
        model = self.model
        model.attach_banks(dm.source_bank, dm.default_render_scene)  # type: ignore[attr-defined]
        if test_mode == "val" and model.config.depth_supervision == "gt":
            for s in dm.train_scene_ids:  # type: ignore[attr-defined]
                if not dm.scene_has_depth(s):  # type: ignore[attr-defined]
                    raise DataError(
                        f"depth supervision is on but scene {dm.records[s].path} has no depth/ "  # type: ignore[attr-defined]
                        "(use --pipeline.model.depth-supervision self, or none)"
                    )

    def load_state_dict(self, state_dict, strict: bool | None = None):  # type: ignore[override]
        """The class table is checked first: a checkpoint of another label space is a one-line error saying how to
        fine-tune, before any parameter-shape comparison."""
        for key in ("_model.class_table_hash", "_model.module.class_table_hash"):
            if key in state_dict:
                self.model.check_class_table(state_dict[key])  # type: ignore[attr-defined]
        return super().load_state_dict(state_dict, strict=strict)
