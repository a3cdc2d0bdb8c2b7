"""Click geometry: a click ray as a 1×1 camera, a scene point projected into a dataset view, viewer camera poses.

* :func:`ray_camera`: the viewer gives a click as a ray (``ViewerClick.origin`` already divided by the viewer's scale
  10, a unit ``direction``). A pinhole camera of one pixel whose only ray is exactly that ray lets the click go
  through the same code as any view (:func:`jacobinerf_ns.query.query_from_click`, ``render``): one ray rendered, not
  a whole view, so a click costs one ray whatever the viewer's resolution.
* :func:`project_to_pixel`: the inverse of nerfstudio's pinhole ray generation (OpenGL camera frame: x right, y up,
  looking down −z; pixel (y, x) has its ray through (x + 0.5, y + 0.5)); used to write a click as a pixel of the
  labelled training view (the annotation JSON that ``jn-propagate --annotations`` reads).
* :func:`viser_pose`: a dataset camera as the viewer's camera (position × 10, orientation with the viewer's
  OpenCV-style flip, vertical field of view), for "go to view".
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras, CameraType
from torch import Tensor

VISER_SCALE = 10.0
"""nerfstudio's ``VISER_NERFSTUDIO_SCALE_RATIO``: viewer coordinates are scene coordinates × 10."""


def ray_camera(origin: Float[Tensor, "3"], direction: Float[Tensor, "3"]) -> Cameras:
    """A 1×1 perspective camera whose single pixel's ray starts at ``origin`` and points along ``direction``."""
    origin = torch.as_tensor(origin, dtype=torch.float32).reshape(3)
    d = F.normalize(torch.as_tensor(direction, dtype=torch.float32).reshape(3), dim=0)
    back = -d  # the camera looks down its −z axis
    helper = torch.tensor([0.0, 0.0, 1.0]) if abs(float(d[2])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    right = F.normalize(torch.linalg.cross(helper, back), dim=0)
    up = torch.linalg.cross(back, right)
    c2w = torch.stack([right, up, back, origin], dim=1)
    return Cameras(
        camera_to_worlds=c2w[None],
        fx=1.0,
        fy=1.0,
        cx=0.5,
        cy=0.5,
        width=1,
        height=1,
        camera_type=CameraType.PERSPECTIVE,
    )


def project_to_pixel(camera: Cameras, point: Float[Tensor, "3"]) -> tuple[int, int] | None:
    """Pixel ``(y, x)`` of a one-camera ``Cameras`` that sees ``point`` (None: behind it or outside the image)."""
    c2w = camera.camera_to_worlds.reshape(-1, 3, 4)[0].double().cpu()
    p = torch.as_tensor(point, dtype=torch.float64).reshape(3)
    local = c2w[:, :3].T @ (p - c2w[:, 3])
    depth = -float(local[2])
    if depth <= 1e-9:
        return None
    fx, fy = float(camera.fx.flatten()[0]), float(camera.fy.flatten()[0])
    cx, cy = float(camera.cx.flatten()[0]), float(camera.cy.flatten()[0])
    u = cx + fx * float(local[0]) / depth
    v = cy - fy * float(local[1]) / depth
    x, y = math.floor(u), math.floor(v)
    w, h = int(camera.width.flatten()[0]), int(camera.height.flatten()[0])
    if not (0 <= x < w and 0 <= y < h):
        return None
    return y, x


def viser_pose(camera: Cameras) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(position, wxyz, up direction, vertical fov in radians) of a one-camera ``Cameras`` in viewer coordinates
    (what nerfstudio's train-camera frustums use, so that the viewer's ``get_camera`` gives the camera back)."""
    import viser.transforms as vtf

    c2w = camera.camera_to_worlds.reshape(-1, 3, 4)[0].double().cpu().numpy()
    rotation = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)
    position = c2w[:3, 3] * VISER_SCALE
    up = c2w[:3, 1]  # the camera's +y (OpenGL) is the viewer's up (−y in its OpenCV frame)
    h, fy = float(camera.height.flatten()[0]), float(camera.fy.flatten()[0])
    fov = 2.0 * math.atan(h / (2.0 * fy))
    return position, rotation.wxyz, up, fov
