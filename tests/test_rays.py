"""Rays meet pixels: what the datamanager attaches to a training ray belongs to that ray's pixel.

On a generated room (exact geometry from the generator itself), for a batch of the teacher datamanager:

* the ray of pixel (y, x) of training view i, marched to that pixel's ground-truth depth, ends where the generator's
  own camera ray through that pixel centre hits the mesh;
* the colour and labels attached to the ray are the PNG values of that pixel of that frame (read independently);
* the teacher feature attached to the ray is the one at that ray's pixel: the teacher recomputed from the files, in
  frame order, and interpolated at (y, x) by a slow loop, gives the same vector.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.data.synth import SynthConfig
from jacobinerf_ns.data.synth.scene import build_scene
from jacobinerf_ns.teachers import (
    AppearanceTeacherConfig,
    SyntheticTeacherConfig,
    TeacherInputs,
    compute_teacher_features,
)

TEACHERS = {
    "synthetic": lambda: SyntheticTeacherConfig(show_progress=False),  # reads the labels
    "appearance": lambda: AppearanceTeacherConfig(show_progress=False),  # reads the pixels
}


@pytest.fixture(scope="module", params=sorted(TEACHERS))
def datamanager(request, synth_scene):
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods["jacobinerf-tiny"].pipeline.datamanager)
    cfg.data = synth_scene
    cfg.train_num_rays_per_batch = 1024
    cfg.shaping_rays_per_batch = 256
    cfg.teacher = TEACHERS[request.param]()
    return cfg.setup(device="cpu", test_mode="val")


@pytest.fixture(scope="module")
def batch(datamanager):
    return datamanager.next_train(0)


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_rays_marched_to_depth_land_on_the_generators_surface_point(datamanager, batch, synth_scene):
    ray_bundle, data = batch
    meta = json.loads((synth_scene / "scene_meta.json").read_text())
    poses = np.loadtxt(synth_scene / "traj_w_c.txt").reshape(-1, 4, 4)
    frames = np.asarray(datamanager.train_dataparser_outputs.metadata["frame_indices"])
    i, y, x = data["indices"].numpy().T
    # the generator's ray through pixel centre (x, y) of the frame, cast against its own mesh
    pose = poses[frames[i]]
    d_cam = np.stack([(x - meta["cx"]) / meta["fx"], (y - meta["cy"]) / meta["fy"], np.ones(len(x))], -1)
    dirs = np.einsum("nij,nj->ni", pose[:, :3, :3], d_cam)
    geometry = build_scene(SynthConfig(seed=meta["seed"], width=meta["width"], height=meta["height"]))
    hits, ray_idx, _ = geometry.mesh().ray.intersects_location(pose[:, :3, 3], dirs, multiple_hits=False)
    truth = np.full((len(x), 3), np.nan)
    truth[ray_idx] = hits
    # our ray, marched to the ground-truth depth the batch carries (scene units), back to world coordinates
    outputs = datamanager.train_dataparser_outputs
    forward = -outputs.cameras.camera_to_worlds[torch.as_tensor(i), :3, 2].double()
    d = ray_bundle.directions.double()
    t = data["depth"][:, 0].double() / (d * forward).sum(-1)
    scene_pts = (ray_bundle.origins.double() + t[:, None] * d).numpy()
    transform = outputs.dataparser_transform.double().numpy()
    world = (scene_pts / outputs.dataparser_scale - transform[:, 3]) @ transform[:, :3]
    ok = np.isfinite(truth).all(axis=1) & (data["depth"][:, 0].numpy() > 0)
    assert ok.mean() > 0.95
    err = np.linalg.norm(world[ok] - truth[ok], axis=1)
    # the depth PNG holds whole millimetres; half a pixel off would be centimetres here
    assert np.quantile(err, 0.99) < 4e-3, np.quantile(err, [0.5, 0.99, 1.0])


def test_colour_and_labels_are_those_of_the_rays_pixel(datamanager, batch, synth_scene):
    _, data = batch
    frames = datamanager.train_dataparser_outputs.metadata["frame_indices"]
    lut = datamanager.train_dataparser_outputs.metadata["semantic_lut"]
    for r, (i, y, x) in enumerate(data["indices"][:200].tolist()):
        f = frames[i]
        rgb = _png(synth_scene / "rgb" / f"rgb_{f}.png")[y, x] / 255.0
        np.testing.assert_allclose(data["image"][r].numpy(), rgb, atol=1e-6)
        cls = _png(synth_scene / "semantic_class" / f"semantic_class_{f}.png")[y, x]
        assert int(data["semantics_gt"][r]) == int(lut[cls])
        inst = _png(synth_scene / "semantic_instance" / f"semantic_instance_{f}.png")[y, x]
        assert int(data["instance"][r]) == int(inst)


def _bilinear_loop(grid: torch.Tensor, image_hw: tuple[int, int], y: int, x: int) -> torch.Tensor:
    """The teacher feature of pixel (y, x) by the convention of teachers/base.py, written out by hand."""
    gh, gw, _ = grid.shape
    height, width = image_hw
    uy = min(max((y + 0.5) * gh / height - 0.5, 0.0), gh - 1)
    ux = min(max((x + 0.5) * gw / width - 0.5, 0.0), gw - 1)
    y0, x0 = int(np.floor(uy)), int(np.floor(ux))
    y1, x1 = min(y0 + 1, gh - 1), min(x0 + 1, gw - 1)
    wy, wx = uy - y0, ux - x0
    g = grid.double()
    v = (1 - wy) * ((1 - wx) * g[y0, x0] + wx * g[y0, x1]) + wy * ((1 - wx) * g[y1, x0] + wx * g[y1, x1])
    return v / v.norm()


def test_teacher_feature_is_the_one_at_the_rays_pixel(datamanager, batch, synth_scene):
    _, data = batch
    outputs = datamanager.train_dataparser_outputs
    frames = outputs.metadata["frame_indices"]
    lut = outputs.metadata["semantic_lut"]
    images = [torch.from_numpy(_png(synth_scene / "rgb" / f"rgb_{f}.png").copy()) for f in frames]
    semantics = [
        torch.from_numpy(lut[_png(synth_scene / "semantic_class" / f"semantic_class_{f}.png")]) for f in frames
    ]
    instances = [
        torch.from_numpy(_png(synth_scene / "semantic_instance" / f"semantic_instance_{f}.png").astype(np.int64))
        for f in frames
    ]
    expected = compute_teacher_features(
        datamanager.config.teacher, TeacherInputs(images=images, semantics=semantics, instances=instances)
    )
    assert torch.allclose(expected.features.float(), datamanager.teacher_features.features.float(), atol=1e-3)
    height, width = images[0].shape[:2]
    for r, (i, y, x) in enumerate(data["indices"][:300].tolist()):
        ref = _bilinear_loop(expected.features[i], (height, width), y, x)
        assert torch.allclose(data["teacher_features"][r].double(), ref, atol=2e-3), (r, i, y, x)
