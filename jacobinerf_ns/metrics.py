"""Image and segmentation metrics.

Segmentation scores follow Semantic-NeRF's ``calculate_segmentation_metrics``: accumulate one confusion matrix over
all evaluated pixels (ignore label excluded), then

* ``miou``: mean IoU over the classes present in the ground truth (IoU = TP / (TP + FP + FN)),
* ``accuracy``: total pixel accuracy,
* ``class_accuracy``: mean over present classes of TP / (ground-truth pixels of the class).

Dataset-level scores come from the summed confusion matrix, never from an average of per-image scores.

LPIPS needs torchvision's AlexNet weights; they cannot be downloaded here, so :func:`lpips_if_available` returns
None (with one warning) unless the weights file is already in torch's hub cache. No fake value is ever reported.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"


def confusion_matrix(
    pred: Int[Tensor, "*bs"], target: Int[Tensor, "*bs"], num_classes: int, ignore_label: int = IGNORE_LABEL
) -> Int[Tensor, "num_classes num_classes"]:
    """``conf[t, p]`` = number of pixels with ground truth ``t`` predicted as ``p`` (ignored pixels dropped)."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_label
    pred, target = pred[keep], target[keep]
    if len(target) and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"ground-truth label outside [0, {num_classes}) in confusion_matrix")
    if len(pred) and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted label outside [0, {num_classes}) in confusion_matrix")
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes).cpu()


def segmentation_scores(conf: Int[Tensor, "c c"]) -> dict[str, object]:
    """mIoU, accuracy and class accuracy (present classes only) plus per-class IoU (None where absent)."""
    conf = conf.double()
    tp = conf.diag()
    gt_count = conf.sum(dim=1)
    pred_count = conf.sum(dim=0)
    present = gt_count > 0
    union = gt_count + pred_count - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.zeros_like(tp))
    class_acc = torch.where(present, tp / gt_count.clamp(min=1), torch.zeros_like(tp))
    total = conf.sum()
    n_present = int(present.sum())
    return {
        "miou": float(iou[present].mean()) if n_present else float("nan"),
        "accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "class_accuracy": float(class_acc[present].mean()) if n_present else float("nan"),
        "per_class_iou": [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist(), strict=True)],
        "num_classes_present": n_present,
    }


def psnr(pred: Float[Tensor, "*bs 3"], target: Float[Tensor, "*bs 3"]) -> float:
    """PSNR in dB for images in [0, 1]."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return float(-10.0 * torch.log10(mse.clamp(min=1e-12)))


def alexnet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


_LPIPS_WARNED = False


def lpips_if_available() -> torch.nn.Module | None:
    """torchmetrics' LPIPS (AlexNet) when its weights are on disk, else None (one warning per process)."""
    global _LPIPS_WARNED
    if alexnet_weights_path().is_file():
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    if not _LPIPS_WARNED:
        _LPIPS_WARNED = True
        warnings.warn(
            f"LPIPS skipped: AlexNet weights not found at {alexnet_weights_path()} (no download offline); "
            "place the file there to report lpips",
            stacklevel=2,
        )
    return None
