"""Reading the images of a scene with errors that name the file.

Every reader returns numpy arrays and raises :class:`~jacobinerf_ns.errors.DataError` (one line: what and which
file) for a missing, unreadable or wrongly shaped image, so that bad data never surfaces as a traceback from PIL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import UInt8
from PIL import Image, UnidentifiedImageError

from jacobinerf_ns.errors import DataError


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"missing image file: {path}")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"unreadable image file: {path} ({exc.__class__.__name__})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with _open(path) as img:
        return img.size


def read_image(
    path: Path,
    *,
    expected_hw: tuple[int, int] | None = None,
    resize_hw: tuple[int, int] | None = None,
    nearest: bool = False,
) -> np.ndarray:
    """Decode an image file into an array of its native dtype ((H, W) or (H, W, C)).

    Args:
        path: the file.
        expected_hw: if given, the decoded size must be this (height, width) *before* resizing.
        resize_hw: optional (height, width) to resize to (area when shrinking colour, bilinear when enlarging it,
            nearest for labels and depth).
        nearest: use nearest-neighbour resampling (labels, depth).
    """
    img = _open(path)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"unreadable image file: {path} ({exc})") from None
    if expected_hw is not None and (img.height, img.width) != tuple(expected_hw):
        raise DataError(
            f"image size mismatch: {path} is {img.width}x{img.height}, expected {expected_hw[1]}x{expected_hw[0]}"
        )
    if resize_hw is not None and (img.height, img.width) != tuple(resize_hw):
        shrink = resize_hw[0] < img.height and resize_hw[1] < img.width
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        if nearest:
            resample = Image.Resampling.NEAREST
        img = img.resize((resize_hw[1], resize_hw[0]), resample=resample)
    return np.asarray(img)


def read_rgb(path: Path, **kwargs) -> UInt8[np.ndarray, "h w 3"]:
    """An RGB uint8 image (greyscale is replicated, alpha dropped)."""
    arr = read_image(path, **kwargs)
    if arr.dtype != np.uint8:
        raise DataError(f"colour image must be 8-bit: {path} has dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"colour image must have 3 or 4 channels: {path} has shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def read_label(path: Path, **kwargs) -> np.ndarray:
    """A single-channel integer label / depth image (uint8 or uint16), shape (H, W)."""
    arr = read_image(path, nearest=True, **kwargs)
    if arr.ndim == 3:
        raise DataError(f"label/depth image must have one channel: {path} has shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"label/depth image must hold integers: {path} has dtype {arr.dtype}")
    return arr
