"""Camera conventions and scene normalisation shared by our dataparsers (``replica-semantic``, ``scannet-semantic``).

Input poses are camera-to-world in the **OpenCV** convention (x right, y down, z forward), intrinsics in pixel
coordinates whose pixel *centres* are integers (OpenCV / Replica / ScanNet). nerfstudio wants OpenGL camera axes
(y up, z backwards) and puts pixel centres at +0.5, so :func:`nerfstudio_cameras` flips two axes and adds 0.5 to the
principal point — once, here, for every parser.

Normalisation: the world is rotated so that the mean camera up is +z, then the scene (back-projected depth points
when depth exists, else the camera centres grown by a padding) is centred and scaled into the box [-1, 1]^3:
``p_scene = scale · (R p_world + t)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplied onto an OpenCV camera-to-world matrix: the same camera with OpenGL axes."""


def backproject_depth(
    depth_m: Float[np.ndarray, "h w"], fx: float, fy: float, cx: float, cy: float, pose: Float[np.ndarray, "4 4"]
) -> Float[np.ndarray, "m 3"]:
    """World points of every pixel with depth > 0 (z-depth in metres; OpenCV pose and intrinsics)."""
    v, u = np.nonzero(depth_m > 0)
    z = depth_m[v, u]
    cam = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)
    return cam @ pose[:3, :3].T + pose[:3, 3]


def scene_normalisation(
    poses_cv: Float[np.ndarray, "n 4 4"],
    points: Float[np.ndarray, "m 3"] | None,
    orientation_method: Literal["up", "none"] = "up",
    bounds_margin: float = 0.05,
    poses_padding: float = 1.0,
) -> tuple[Float[np.ndarray, "3 4"], float]:
    """``(transform, scale)`` with ``p_scene = scale · (transform[:, :3] p + transform[:, 3])`` in [-1, 1]^3.

    ``points``: scene points (e.g. back-projected depth); the 0.5 / 99.5 % percentiles of them and the camera centres
    bound the scene. None bounds it by the camera centres grown by ``poses_padding`` metres.
    """
    poses_gl = poses_cv @ OPENCV_TO_OPENGL
    _, transform = camera_utils.auto_orient_and_center_poses(
        torch.from_numpy(poses_gl).float(), method=orientation_method, center_method="none"
    )
    transform = transform.double().numpy()
    centres = poses_cv[:, :3, 3]
    if points is None or len(points) == 0:
        bound_pts, pad = centres, poses_padding
    else:
        both = np.concatenate([centres, points])
        lo, hi = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
        bound_pts, pad = np.concatenate([centres, lo[None], hi[None]]), 0.0
    rotated = bound_pts @ transform[:, :3].T + transform[:, 3]
    lo, hi = rotated.min(axis=0) - pad, rotated.max(axis=0) + pad
    centre = (lo + hi) / 2.0
    half = float(np.max(hi - lo) / 2.0) * (1.0 + bounds_margin)
    transform = transform.copy()
    transform[:, 3] -= centre
    return transform, 1.0 / max(half, 1e-6)


def nerfstudio_cameras(
    poses_cv: Float[np.ndarray, "n 4 4"],
    transform: Float[np.ndarray, "3 4"],
    scale: float,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
) -> Cameras:
    """nerfstudio cameras of OpenCV poses/intrinsics in the normalised scene (see the module docstring)."""
    poses = torch.from_numpy(transform) @ torch.from_numpy(poses_cv @ OPENCV_TO_OPENGL)
    poses[:, :3, 3] *= scale
    return Cameras(
        camera_to_worlds=poses[:, :3, :4].float(),
        fx=fx,
        fy=fy,
        cx=cx + 0.5,
        cy=cy + 0.5,
        width=width,
        height=height,
        camera_type=CameraType.PERSPECTIVE,
    )


def scale_intrinsics(
    fx: float, fy: float, cx: float, cy: float, from_hw: tuple[int, int], to_hw: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Intrinsics (pixel centres at integers) of the same camera resampled from ``from_hw`` to ``to_hw``."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def depth_points(
    poses_cv: Float[np.ndarray, "n 4 4"],
    depth_files: list,
    depth_scale: float,
    intrinsics: tuple[float, float, float, float],
    max_frames: int,
) -> Float[np.ndarray, "m 3"]:
    """World points back-projected from the depth images of up to ``max_frames`` frames spread evenly over the
    sequence (what :func:`scene_normalisation` bounds the scene with)."""
    from jacobinerf_ns.data.image_io import read_label

    n = len(poses_cv)
    frames = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    chunks = [
        backproject_depth(read_label(depth_files[i]).astype(np.float64) / depth_scale, *intrinsics, poses_cv[i])
        for i in frames
    ]
    return np.concatenate(chunks)


def interleaved_split(n: int, train_every: int, test_offset: int, split: str, where: object) -> list[int]:
    """Semantic-NeRF's split: training frames every ``train_every``-th from 0, test frames every ``train_every``-th
    from ``test_offset``; one-line errors for a bad rule or an empty split of the ``n`` frames of ``where``."""
    from jacobinerf_ns.errors import DataError

    if train_every < 1 or not 0 <= test_offset < train_every:
        raise DataError(
            f"bad split: need train_every >= 1 and 0 <= test_offset < train_every (got {train_every}, {test_offset})"
        )
    start = 0 if split == "train" else test_offset
    indices = list(range(start, n, train_every))
    if not indices:
        raise DataError(f"empty {split} split: {n} frames in {where}, offset {start}")
    return indices
