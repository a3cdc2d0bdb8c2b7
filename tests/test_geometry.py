"""Camera conventions of every dataparser, on cameras with general rotations (tests/geometry_scenes.py).

Two independent checks per layout, both through what the dataparser hands nerfstudio:

* a 3D point seen in one view, projected through every *parsed* camera, lands on the pixel where the truth's OpenCV
  projection puts it, and the parsed depth there is the point's depth;
* the ray nerfstudio generates for a pixel, marched to that pixel's parsed depth, ends on the wall that the pixel's
  label names.

With identity rotations a wrong OpenCV→OpenGL flip or R instead of Rᵀ gives the same cameras; here both fail.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from geometry_scenes import (
    WALL_NAMES,
    BoxScene,
    distance_to_box_surface,
    make_box_scene,
    wall_of,
    write_nerfstudio,
    write_replica,
    write_scannet,
)
from nerfstudio.model_components.ray_generators import RayGenerator

from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
from jacobinerf_ns.data.replica_dataset import ReplicaSemanticDataset
from jacobinerf_ns.data.scannet_dataparser import ScanNetInvalidPoseWarning, ScanNetSemanticDataParserConfig


def _replica(scene: BoxScene, root: Path):
    write_replica(scene, root)
    return ReplicaSemanticDataParserConfig(data=root, train_every=1, test_offset=0)


def _scannet(scene: BoxScene, root: Path):
    write_scannet(scene, root)
    return ScanNetSemanticDataParserConfig(data=root, label_space="raw", train_every=1, test_offset=0)


def _nerfstudio(scene: BoxScene, root: Path):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    write_nerfstudio(scene, root)
    return NerfstudioDataParserConfig(data=root, eval_mode="all")


LAYOUTS = {"replica-semantic": _replica, "scannet-semantic": _scannet, "nerfstudio-data": _nerfstudio}
"""Each layout writes the box scene and returns a dataparser config that reads every frame into the train split."""


@pytest.fixture(scope="module")
def box() -> BoxScene:
    return make_box_scene()


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def parsed(request, box, tmp_path_factory):
    """(outputs, per-camera dataset items, scene frame of each camera) for one layout."""
    config = LAYOUTS[request.param](box, tmp_path_factory.mktemp(request.param) / "scene")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = config.setup().get_dataparser_outputs(split="train")
    if request.param == "scannet-semantic":  # the -inf pose of frame 100 is skipped with one warning naming it
        skipped = [w for w in caught if issubclass(w.category, ScanNetInvalidPoseWarning)]
        assert len(skipped) == 1 and "100" in str(skipped[0].message)
    dataset = ReplicaSemanticDataset(outputs)
    items = [dataset[i] for i in range(len(dataset))]
    if "frame_indices" in outputs.metadata:
        frames = list(outputs.metadata["frame_indices"])
    else:  # nerfstudio-data: the frame number is in the file name
        frames = [int(Path(p).stem.split("_")[-1]) for p in outputs.image_filenames]
    assert sorted(frames) == list(range(box.num_frames))
    return outputs, items, frames


def _world_to_scene(outputs, points: np.ndarray) -> np.ndarray:
    transform = outputs.dataparser_transform.double().numpy()
    return outputs.dataparser_scale * (points @ transform[:, :3].T + transform[:, 3])


def _scene_to_world(outputs, points: np.ndarray) -> np.ndarray:
    transform = outputs.dataparser_transform.double().numpy()
    return (points / outputs.dataparser_scale - transform[:, 3]) @ transform[:, :3]


def _walls(outputs, item, box: BoxScene, frame: int) -> np.ndarray:
    """The wall index at each pixel: from the parsed labels, or (a capture without labels) from the truth."""
    if "semantics" not in item:
        return box.wall[frame]
    return _wall_index(outputs, item["semantics"][..., 0].numpy())


def _wall_index(outputs, semantics: np.ndarray) -> np.ndarray:
    names = list(outputs.metadata["semantics"].classes)
    lut = np.array([WALL_NAMES.index(n) for n in names])
    return lut[semantics]


def _interior(wall: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood sees one wall (bilinear look-ups there stay on a plane)."""
    pad = np.pad(wall, 1, mode="edge")
    same = np.ones_like(wall, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= pad[1 + dy : 1 + dy + wall.shape[0], 1 + dx : 1 + dx + wall.shape[1]] == wall
    return same


def _bilinear(image: np.ndarray, row: float, col: float) -> float:
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    fr, fc = row - r0, col - c0
    return float(
        image[r0, c0] * (1 - fr) * (1 - fc)
        + image[r0, c0 + 1] * (1 - fr) * fc
        + image[r0 + 1, c0] * fr * (1 - fc)
        + image[r0 + 1, c0 + 1] * fr * fc
    )


def test_points_project_through_parsed_cameras_to_their_true_pixels(parsed, box):
    outputs, items, frames = parsed
    cams = outputs.cameras
    rng = np.random.default_rng(1)
    checked = 0
    for ref in range(box.num_frames):
        rows, cols = np.nonzero(_interior(box.wall[ref]))
        pick = rng.choice(len(rows), size=8, replace=False)
        d_cam = box.pixel_dirs_cam()[rows[pick], cols[pick]]
        pose = box.poses[ref]
        world = pose[:3, 3] + (box.depth[ref][rows[pick], cols[pick]][:, None] * d_cam) @ pose[:3, :3].T
        scene_pts = _world_to_scene(outputs, world)
        for j, frame in enumerate(frames):
            c2w = cams.camera_to_worlds[j].double().numpy()
            local = (scene_pts - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera: x right, y up, z backwards
            ahead = -local[:, 2]
            fx, fy, cx, cy = (float(getattr(cams, k)[j]) for k in ("fx", "fy", "cx", "cy"))
            col = cx + fx * local[:, 0] / ahead - 0.5  # nerfstudio: pixel (row, col) has its centre at +0.5
            row = cy - fy * local[:, 1] / ahead - 0.5
            truth_uv, truth_z = box.project(frame, world)
            depth = items[j]["depth"][..., 0].double().numpy()
            walls = _walls(outputs, items[j], box, frame)
            inside = (truth_z > 0.05) & (col > 1) & (row > 1) & (col < box.width - 2) & (row < box.height - 2)
            for k in np.nonzero(inside)[0]:
                assert ahead[k] > 0
                np.testing.assert_allclose([col[k], row[k]], truth_uv[k], atol=2e-3)
                r, c = int(round(row[k])), int(round(col[k]))
                if not _interior(walls)[r, c] or walls[r, c] != wall_of(world[k : k + 1])[0]:
                    continue  # occluded by nothing in an empty box; skipped only near a wall edge
                # on a plane, inverse depth is affine in the pixel coordinates: interpolate it, not depth
                parsed_depth = 1.0 / _bilinear(1.0 / depth, row[k], col[k])
                assert parsed_depth == pytest.approx(ahead[k], abs=2e-3 * outputs.dataparser_scale)  # scene units
                checked += 1
    assert checked > 200


def test_rays_marched_to_parsed_depth_land_on_the_labelled_wall(parsed, box):
    outputs, items, frames = parsed
    cams = outputs.cameras
    n, h, w = len(items), int(cams.height[0]), int(cams.width[0])
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    indices = grid.reshape(-1, 3)
    rays = RayGenerator(cams)(indices)
    depth = torch.stack([it["depth"][..., 0] for it in items]).reshape(-1).double()
    labels = np.stack([_walls(outputs, it, box, f) for it, f in zip(items, frames, strict=True)])
    forward = -cams.camera_to_worlds[indices[:, 0], :3, 2].double()
    dirs = rays.directions.double()
    t = depth / (dirs * forward).sum(-1)
    points = _scene_to_world(outputs, (rays.origins.double() + t[:, None] * dirs).numpy())
    keep = np.stack([_interior(lab) for lab in labels]).reshape(-1)
    assert keep.mean() > 0.5
    assert distance_to_box_surface(points[keep]).max() < 2e-3  # depth PNGs hold whole millimetres
    assert (wall_of(points[keep]) == labels.reshape(-1)[keep]).all()
    # the rays start at the true camera centres
    centres = _scene_to_world(outputs, cams.camera_to_worlds[:, :3, 3].double().numpy())
    np.testing.assert_allclose(centres, box.poses[frames, :3, 3], atol=1e-5)
