"""Choosing between tiny-cuda-nn and plain torch for encodings and MLPs."""

from __future__ import annotations

from typing import Literal

import torch

from jacobinerf_ns.errors import ConfigError

Implementation = Literal["auto", "tcnn", "torch"]


def tcnn_available() -> bool:
    """True when tinycudann imports and a CUDA device exists (tcnn kernels run only on CUDA)."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def resolve_implementation(requested: Implementation) -> Literal["tcnn", "torch"]:
    """``auto`` → tcnn when available, else torch; ``tcnn`` without tcnn → a clear error."""
    if requested == "torch":
        return "torch"
    if tcnn_available():
        return "tcnn"
    if requested == "tcnn":
        raise ConfigError(
            "implementation 'tcnn' requested but tinycudann is not usable here (it needs the tinycudann package and "
            "a CUDA device); use implementation 'auto' or 'torch'"
        )
    return "torch"


def auto_device_type() -> Literal["cuda", "cpu"]:
    """The device nerfstudio's ``machine.device_type`` should default to on this machine."""
    return "cuda" if torch.cuda.is_available() else "cpu"
