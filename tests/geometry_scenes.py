"""An analytic scene with exact ground truth, written in every capture layout the plugin reads.

The world is an empty box room (six walls, each its own class and instance); cameras sit inside it with general
rotations (yaw, pitch *and* roll) and translations on all three axes, so a wrong OpenCV→OpenGL flip, R used instead
of Rᵀ, or a misplaced principal point moves rays onto the wrong wall or off the surface. Depth is z-depth from exact
ray/box intersection. Every writer takes the same :class:`BoxScene`, so a dataparser test can compare parsed cameras
with the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HALF = np.array([2.0, 1.5, 1.2])
"""Half extents of the box room (metres), centred at the origin."""
WALL_NAMES = ["wall_x_neg", "wall_x_pos", "wall_y_neg", "wall_y_pos", "floor", "ceiling"]
WALL_IDS = [3, 4, 7, 9, 12, 15]
"""Raw class id (= instance id) of each wall, in the order of :data:`WALL_NAMES`."""


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A rotation matrix from three Euler angles (z, y, x)."""
    cz, sz, cy, sy, cx, sx = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def box_hit(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance along ``dirs`` from ``origins`` (inside the box) to the wall hit, and that wall's index."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_pos = (HALF - origins) / dirs
        t_neg = (-HALF - origins) / dirs
    t_axis = np.where(dirs > 0, t_pos, t_neg)  # exit distance per axis
    t_axis = np.where(np.isfinite(t_axis) & (t_axis > 0), t_axis, np.inf)
    axis = t_axis.argmin(axis=-1)
    t = np.take_along_axis(t_axis, axis[..., None], -1)[..., 0]
    sign = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0
    return t, axis * 2 + sign


def distance_to_box_surface(points: np.ndarray) -> np.ndarray:
    """Distance of points inside (or near) the box to its surface."""
    return np.abs(HALF - np.abs(points)).min(axis=-1)


def wall_of(points: np.ndarray) -> np.ndarray:
    """Index of the wall each surface point lies on."""
    axis = np.abs(HALF - np.abs(points)).argmin(axis=-1)
    sign = np.take_along_axis(points, axis[..., None], -1)[..., 0] > 0
    return axis * 2 + sign


@dataclass
class BoxScene:
    """Cameras (OpenCV camera-to-world, pinhole) and their exact renders of the box room."""

    poses: np.ndarray
    """(n, 4, 4) camera-to-world, OpenCV convention (x right, y down, z forward)."""
    fx: float
    fy: float
    cx: float
    """Principal point in pixel coordinates whose pixel centres are integers (Replica's convention)."""
    cy: float
    width: int
    height: int
    depth: np.ndarray
    """(n, h, w) exact z-depth in metres (float64)."""
    wall: np.ndarray
    """(n, h, w) index of the wall seen at each pixel."""
    rgb: np.ndarray
    """(n, h, w, 3) uint8: a colour per wall with a checker texture."""

    @property
    def num_frames(self) -> int:
        return len(self.poses)

    @property
    def class_ids(self) -> np.ndarray:
        """(n, h, w) raw class ids (also the instance ids)."""
        return np.asarray(WALL_IDS)[self.wall]

    def pixel_dirs_cam(self) -> np.ndarray:
        """(h, w, 3) OpenCV camera-frame directions with z = 1 through each pixel centre."""
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)

    def project(self, frame: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV projection of world points into ``frame``: (u, v) pixel coordinates (centres at integers), z."""
        pose = self.poses[frame]
        cam = (points - pose[:3, 3]) @ pose[:3, :3]
        z = cam[..., 2]
        return np.stack([self.fx * cam[..., 0] / z + self.cx, self.fy * cam[..., 1] / z + self.cy], -1), z


def make_box_scene(num_frames: int = 10, width: int = 32, height: int = 24, seed: int = 0) -> BoxScene:
    """Random cameras with general rotations inside the box room, rendered exactly."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(num_frames):
        pose = np.eye(4)
        pose[:3, :3] = rotation(rng.uniform(0, 2 * np.pi), rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 0.5))
        pose[:3, 3] = rng.uniform(-1, 1, 3) * HALF * 0.4
        poses.append(pose)
    poses = np.stack(poses)
    fx = fy = width / 2.0  # horizontal FoV 90°, as Replica
    scene = BoxScene(poses, fx, fy, (width - 1) / 2, (height - 1) / 2, width, height, None, None, None)  # type: ignore
    d_cam = scene.pixel_dirs_cam()
    depth, wall, rgb = [], [], []
    palette = rng.integers(40, 216, (6, 3))
    for pose in poses:
        dirs = d_cam @ pose[:3, :3].T
        t, w = box_hit(np.broadcast_to(pose[:3, 3], dirs.shape), dirs)
        depth.append(t)  # d_cam has z = 1, so the ray parameter is the z-depth
        wall.append(w)
        points = pose[:3, 3] + t[..., None] * dirs
        checker = (np.floor(points * 4).sum(axis=-1) % 2)[..., None]
        rgb.append(np.clip(palette[w] + 30 * checker - 15, 0, 255).astype(np.uint8))
    scene.depth, scene.wall, scene.rgb = np.stack(depth), np.stack(wall), np.stack(rgb)
    return scene


def class_table_json() -> dict:
    return {"classes": [{"id": i, "name": n} for i, n in zip(WALL_IDS, WALL_NAMES, strict=True)]}


def write_replica(scene: BoxScene, root: Path) -> Path:
    """Semantic-NeRF's Replica layout (rgb/, depth/ in mm, semantic_class/, semantic_instance/, traj_w_c.txt)."""
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = scene.class_ids
    for i in range(scene.num_frames):
        Image.fromarray(scene.rgb[i]).save(root / "rgb" / f"rgb_{i}.png")
        Image.fromarray(np.round(scene.depth[i] * 1000).astype(np.uint16)).save(root / "depth" / f"depth_{i}.png")
        Image.fromarray(ids[i].astype(np.uint8)).save(root / "semantic_class" / f"semantic_class_{i}.png")
        Image.fromarray(ids[i].astype(np.uint16)).save(root / "semantic_instance" / f"semantic_instance_{i}.png")
    (root / "traj_w_c.txt").write_text("\n".join(" ".join(f"{v:.9f}" for v in p.reshape(-1)) for p in scene.poses))
    (root / "info_semantic.json").write_text(json.dumps(class_table_json()))
    return root


def write_scannet(scene: BoxScene, root: Path, color_factor: int = 2, invalid_frame: int | None = 100) -> Path:
    """A ScanNet export: colour at ``color_factor`` times the depth/label resolution (its own intrinsics), depth and
    labels at the scene's resolution, one extra frame whose pose is -inf (must be skipped), raw ids + a label table
    whose raw categories are the wall names."""
    for sub in ("color", "depth", "pose", "intrinsic", "label-filt", "instance-filt"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = scene.class_ids
    k = np.eye(4)
    k[0, 0], k[1, 1], k[0, 2], k[1, 2] = scene.fx, scene.fy, scene.cx, scene.cy
    kc = k.copy()
    kc[0, 0], kc[1, 1] = scene.fx * color_factor, scene.fy * color_factor
    kc[0, 2], kc[1, 2] = (scene.cx + 0.5) * color_factor - 0.5, (scene.cy + 0.5) * color_factor - 0.5
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", k)
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", kc)
    frames = list(range(scene.num_frames)) + ([invalid_frame] if invalid_frame is not None else [])
    for i, f in enumerate(frames):
        j = min(i, scene.num_frames - 1)
        color = scene.rgb[j].repeat(color_factor, axis=0).repeat(color_factor, axis=1)
        Image.fromarray(color).save(root / "color" / f"{f}.jpg", quality=95)
        Image.fromarray(np.round(scene.depth[j] * 1000).astype(np.uint16)).save(root / "depth" / f"{f}.png")
        Image.fromarray(ids[j].astype(np.uint16)).save(root / "label-filt" / f"{f}.png")
        Image.fromarray(ids[j].astype(np.uint8)).save(root / "instance-filt" / f"{f}.png")
        pose = scene.poses[j] if f != invalid_frame else np.full((4, 4), -np.inf)
        np.savetxt(root / "pose" / f"{f}.txt", pose)
    nyu = {3: 1, 4: 1, 7: 1, 9: 1, 12: 2, 15: 22}  # walls, floor, ceiling
    lines = ["id\traw_category\tcategory\tcount\tnyu40id\tnyu40class"]
    lines += [f"{i}\t{n}\t{n}\t1\t{nyu[i]}\tx" for i, n in zip(WALL_IDS, WALL_NAMES, strict=True)]
    (root / "scannetv2-labels.combined.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_nerfstudio(scene: BoxScene, root: Path) -> Path:
    """nerfstudio's transforms.json capture: OpenGL camera-to-world, pixel centres at +0.5, depth PNGs in mm."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    opencv_to_opengl = np.diag([1.0, -1.0, -1.0, 1.0])
    frames = []
    for i in range(scene.num_frames):
        Image.fromarray(scene.rgb[i]).save(root / "images" / f"frame_{i:05d}.png")
        Image.fromarray(np.round(scene.depth[i] * 1000).astype(np.uint16)).save(root / "depth" / f"frame_{i:05d}.png")
        frames.append(
            {
                "file_path": f"images/frame_{i:05d}.png",
                "depth_file_path": f"depth/frame_{i:05d}.png",
                "transform_matrix": (scene.poses[i] @ opencv_to_opengl).tolist(),
            }
        )
    meta = {
        "camera_model": "OPENCV",
        "fl_x": scene.fx,
        "fl_y": scene.fy,
        "cx": scene.cx + 0.5,
        "cy": scene.cy + 0.5,
        "w": scene.width,
        "h": scene.height,
        "frames": frames,
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    return root
