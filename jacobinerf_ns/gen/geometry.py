"""Camera conventions and the projective geometry every kernel of the family shares.

Conventions (all kernels):

* Poses are 4x4 camera-to-world matrices in the **OpenCV** convention (x right, y down, z forward); nerfstudio's
  cameras are OpenGL (y up, z back) and are converted once by :func:`opengl_to_opencv`.
* Depth is **z-depth** (distance along the optical axis), in metres.
* Pixel (row i, column j) has its centre at the continuous coordinate (u, v) = (j + 0.5, i + 0.5), as in nerfstudio,
  whose ``cx``/``cy`` already include that +0.5. Intrinsics are 3x3 matrices ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* ``torch.nn.functional.grid_sample`` is always called with ``align_corners=False``, for which the normalised
  coordinate of a continuous pixel coordinate u in an image of width W is ``2 u / W - 1`` (:func:`to_grid`).
* Scaling an image by s (a pyramid level) scales the intrinsics by s in both rows (:func:`scale_intrinsics`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

GL_TO_CV = (1.0, -1.0, -1.0)
"""Column signs that turn an OpenGL camera-to-world rotation into an OpenCV one (and back)."""


def opengl_to_opencv(c2w: Float[Tensor, "*bs 3 4"] | Float[Tensor, "*bs 4 4"]) -> Float[Tensor, "*bs 4 4"]:
    """OpenGL (nerfstudio) camera-to-world → OpenCV camera-to-world, as a 4x4 matrix."""
    out = torch.zeros(*c2w.shape[:-2], 4, 4, dtype=c2w.dtype, device=c2w.device)
    out[..., :3, :4] = c2w[..., :3, :4]
    out[..., 3, 3] = 1.0
    signs = torch.tensor(GL_TO_CV, dtype=c2w.dtype, device=c2w.device)
    out[..., :3, :3] = out[..., :3, :3] * signs
    return out


def opencv_to_opengl(c2w: Float[Tensor, "*bs 4 4"]) -> Float[Tensor, "*bs 3 4"]:
    """OpenCV camera-to-world → OpenGL (nerfstudio) 3x4 camera-to-world."""
    signs = torch.tensor(GL_TO_CV, dtype=c2w.dtype, device=c2w.device)
    out = c2w[..., :3, :4].clone()
    out[..., :3, :3] = out[..., :3, :3] * signs
    return out


def intrinsics_matrix(
    fx: Float[Tensor, "*bs"], fy: Float[Tensor, "*bs"], cx: Float[Tensor, "*bs"], cy: Float[Tensor, "*bs"]
) -> Float[Tensor, "*bs 3 3"]:
    """Pinhole intrinsics from their four parameters."""
    k = torch.zeros(*fx.shape, 3, 3, dtype=fx.dtype, device=fx.device)
    k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = fx, fy, cx, cy, 1.0
    return k


def scale_intrinsics(k: Float[Tensor, "*bs 3 3"], scale: float) -> Float[Tensor, "*bs 3 3"]:
    """Intrinsics of the image resized by ``scale`` (pixel-centre convention above)."""
    out = k.clone()
    out[..., :2, :] = out[..., :2, :] * scale
    return out


def invert_pose(c2w: Float[Tensor, "*bs 4 4"]) -> Float[Tensor, "*bs 4 4"]:
    """Rigid inverse (world-to-camera from camera-to-world)."""
    rot = c2w[..., :3, :3]
    out = torch.zeros_like(c2w)
    out[..., :3, :3] = rot.transpose(-1, -2)
    out[..., :3, 3] = -(rot.transpose(-1, -2) @ c2w[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def pixel_centres(
    height: int, width: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Float[Tensor, "h w 2"]:
    """Continuous (u, v) of every pixel centre."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def camera_rays(
    uv: Float[Tensor, "*bs 2"], k: Float[Tensor, "3 3"], c2w: Float[Tensor, "4 4"]
) -> tuple[Float[Tensor, "*bs 3"], Float[Tensor, "*bs 3"]]:
    """World origins and *unnormalised* directions of pixels: the point at z-depth z is ``origin + z * direction``."""
    x = (uv[..., 0] - k[0, 2]) / k[0, 0]
    y = (uv[..., 1] - k[1, 2]) / k[1, 1]
    cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    dirs = cam @ c2w[:3, :3].T
    return c2w[:3, 3].expand_as(dirs), dirs


def backproject(
    depth: Float[Tensor, "*bs h w"], k: Float[Tensor, "*bs 3 3"], c2w: Float[Tensor, "*bs 4 4"]
) -> Float[Tensor, "*bs h w 3"]:
    """World points of every pixel of z-depth maps (one camera per leading index)."""
    h, w = depth.shape[-2:]
    uv = pixel_centres(h, w, depth.device, depth.dtype)
    fx, fy = k[..., 0, 0, None, None], k[..., 1, 1, None, None]
    cx, cy = k[..., 0, 2, None, None], k[..., 1, 2, None, None]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    cam = torch.stack([x, y, depth], dim=-1)
    rot = c2w[..., None, None, :3, :3]
    return (rot @ cam[..., None])[..., 0] + c2w[..., None, None, :3, 3]


def project(
    points: Float[Tensor, "*bs 3"], k: Float[Tensor, "3 3"], w2c: Float[Tensor, "4 4"], eps: float = 1e-6
) -> tuple[Float[Tensor, "*bs 2"], Float[Tensor, "*bs"]]:
    """Continuous pixel coordinates and z-depth of world points in one camera (z clamped at ``eps`` for the
    division; callers mask ``z <= eps`` themselves)."""
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[..., 2]
    pix = cam @ k.T
    uv = pix[..., :2] / z.clamp(min=eps)[..., None]
    return uv, z


def to_grid(uv: Float[Tensor, "*bs 2"], height: int, width: int) -> Float[Tensor, "*bs 2"]:
    """Continuous pixel coordinates → ``grid_sample`` coordinates (``align_corners=False``)."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=uv.dtype, device=uv.device)
    return uv * scale - 1.0


def inside_image(uv: Float[Tensor, "*bs 2"], height: int, width: int) -> Tensor:
    """Whether continuous coordinates fall inside the image (pixel edges included)."""
    return (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)
