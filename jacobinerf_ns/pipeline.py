"""Pipeline whose whole-dataset evaluation reports segmentation scores from one summed confusion matrix, and which
loads checkpoints strictly.

nerfstudio's ``get_average_image_metrics`` averages per-image numbers; for mIoU that is wrong (a class present in a
few pixels of one view would weigh as much as a whole view). Here the per-image confusion matrices are summed and
``miou`` / ``accuracy`` / ``class_accuracy`` are computed once over all evaluated pixels; every other metric is
averaged as nerfstudio does.

Loading: nerfstudio's pipeline retries a failing model ``load_state_dict`` with ``strict=False``, so a checkpoint
whose parameters do not match the model (another field implementation, another preset) loaded with random weights
and no error. Here any missing, unexpected or mis-shaped model parameter is a one-line error naming the first ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from time import time

import torch
import torchvision.utils as vutils
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jacobinerf_ns.errors import DataError
from jacobinerf_ns.metrics import segmentation_scores

SEGMENTATION_KEYS = ("miou", "accuracy", "class_accuracy")


@dataclass
class SemanticPipelineConfig(VanillaPipelineConfig):
    """nerfstudio's vanilla pipeline with dataset-level segmentation scores."""

    _target: type = field(default_factory=lambda: SemanticPipeline)


def checkpoint_mismatch(expected: dict, saved: dict) -> str | None:
    """Why a model state ``saved`` cannot be loaded into a model whose state is ``expected`` (None if it can).
    Extra-state entries (``*._extra_state``) may be absent from older checkpoints."""
    missing = [k for k in expected if k not in saved and not k.endswith("_extra_state")]
    unexpected = [k for k in saved if k not in expected]
    shapes = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in saved and hasattr(v, "shape") and hasattr(saved[k], "shape") and tuple(v.shape) != tuple(saved[k].shape)
    ]
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} missing parameters ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )
    if unexpected:
        more = ", ..." if len(unexpected) > 3 else ""
        parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{more})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({', '.join(shapes[:2])})")
    return "; ".join(parts) or None


def sync_smoothing(config: VanillaPipelineConfig) -> None:
    """A feature model that smooths needs patches (and, for ``masks``, 2D masks) from its datamanager: switch them on
    (2 patches when none are configured), so one model option is enough."""
    smoothing = getattr(config.model, "smoothing", "none")
    dm = config.datamanager
    if smoothing != "none" and hasattr(dm, "patches_per_batch"):
        if dm.patches_per_batch <= 0:
            dm.patches_per_batch = 2
        dm.patch_masks = smoothing == "masks"


class SemanticPipeline(VanillaPipeline):
    """See the module docstring."""

    def __init__(self, config: VanillaPipelineConfig, *args, **kwargs):
        sync_smoothing(config)
        super().__init__(config, *args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool | None = None):  # type: ignore[override]
        prefix = "_model.module." if any(k.startswith("_model.module.") for k in state_dict) else "_model."
        saved = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        reason = checkpoint_mismatch(self.model.state_dict(), saved)
        if reason is not None:
            raise DataError(
                f"checkpoint does not match the {type(self.model).__name__} this config builds: {reason} (a run "
                "trained with another field implementation or preset?)"
            )
        return super().load_state_dict(state_dict, strict=strict)

    def _eval_teacher(self):
        """Teacher features of the evaluation views when the model distils them (for ``feature_cos_sim``)."""
        if getattr(self.model, "feature_dim", lambda: 0)() <= 0 or not hasattr(
            self.datamanager, "eval_teacher_features"
        ):
            return None
        return self.datamanager.eval_teacher_features().to("cpu")

    @torch.no_grad()
    def get_average_image_metrics(
        self,
        data_loader,
        image_prefix: str,
        step: int | None = None,
        output_path: Path | None = None,
        get_std: bool = False,
    ):
        self.eval()
        per_image = []
        confusion = None
        if output_path is not None:
            output_path.mkdir(exist_ok=True, parents=True)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            MofNCompleteColumn(),
        )
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("[green]Evaluating all images...", total=len(data_loader))
            teacher = self._eval_teacher()
            for idx, (camera, batch) in enumerate(data_loader):
                if teacher is not None and "image_idx" in batch:
                    batch["teacher_features"] = teacher.dense(int(batch["image_idx"]))
                start = time()
                outputs = self.model.get_outputs_for_camera(camera=camera)
                metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
                conf = getattr(self.model, "semantic_confusion", lambda *_: None)(outputs, batch)
                if conf is not None:
                    confusion = conf if confusion is None else confusion + conf
                if output_path is not None:
                    for key, image in images.items():
                        vutils.save_image(
                            image.permute(2, 0, 1).cpu(), output_path / f"{image_prefix}_{key}_{idx:04d}.png"
                        )
                num_rays = int(camera.height.item() * camera.width.item())
                metrics["num_rays_per_sec"] = num_rays / (time() - start)
                metrics["fps"] = metrics["num_rays_per_sec"] / num_rays
                per_image.append(metrics)
                progress.advance(task)
        result = {}
        for key in per_image[0]:
            values = torch.tensor([m[key] for m in per_image], dtype=torch.float64)
            if get_std:
                std, mean = torch.std_mean(values)
                result[key], result[f"{key}_std"] = float(mean), float(std)
            else:
                result[key] = float(values.mean())
        if confusion is not None:
            scores = segmentation_scores(confusion)
            for key in SEGMENTATION_KEYS:
                result[key] = float(scores[key])  # type: ignore[arg-type]
                result.pop(f"{key}_std", None)
        self.train()
        return result
