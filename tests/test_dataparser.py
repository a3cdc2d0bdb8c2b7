"""The replica-semantic dataparser and dataset: conventions, split, remapping and every bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
from jacobinerf_ns.data.replica_dataset import ReplicaSemanticDataset
from jacobinerf_ns.errors import DataError


def parse(root: Path, split: str = "train", **kwargs):
    parser = ReplicaSemanticDataParserConfig(data=root, **kwargs).setup()
    return parser, parser.get_dataparser_outputs(split=split)


def test_split_intrinsics_and_box(tiny_replica):
    parser, train = parse(tiny_replica)
    _, test = parse(tiny_replica, "test")
    assert train.metadata["frame_indices"] == [0, 5]
    assert test.metadata["frame_indices"] == [2, 7]
    cams = train.cameras
    assert float(cams.fx[0]) == pytest.approx(8 / 2 / math.tan(math.radians(45)))
    assert float(cams.cx[0]) == pytest.approx((8 - 1) / 2 + 0.5)  # nerfstudio puts pixel centres at +0.5
    assert float(cams.cy[0]) == pytest.approx((6 - 1) / 2 + 0.5)
    centres = cams.camera_to_worlds[:, :3, 3]
    assert centres.abs().max() < 1.0
    assert train.scene_box.aabb.tolist() == [[-1, -1, -1], [1, 1, 1]]


def test_opencv_to_nerfstudio_rays_hit_depth(tiny_replica):
    """The centre pixel's ray, scaled by the depth PNG, must reach the back-projected OpenCV point."""
    parser, out = parse(tiny_replica, orientation_method="none")
    ds = ReplicaSemanticDataset(out)
    item = ds[0]
    rays = out.cameras.generate_rays(camera_indices=0, keep_shape=True)
    y, x = 4, 5  # a bottom-half pixel: depth 2 m
    z = float(item["depth"][y, x, 0])
    # nerfstudio directions are unit vectors; z-depth along the optical axis is t * cos(angle)
    forward = -out.cameras.camera_to_worlds[0, :3, 2]
    d = rays.directions[y, x]
    t = z / float(d @ forward)
    point = rays.origins[y, x] + t * d
    transform, scale = parser._normalisation
    fx, fy, cx, cy = parser._intrinsics()
    cam = np.array([(x - cx) / fx * 2.0, (y - cy) / fy * 2.0, 2.0])
    world = cam + np.array([0.0, 0, 0])  # frame 0 has the identity pose
    expected = scale * (transform[:, :3] @ world + transform[:, 3])
    assert np.allclose(point.numpy(), expected, atol=1e-4)


def test_class_remap_and_dataset_tensors(tiny_replica):
    parser, out = parse(tiny_replica)
    assert out.metadata["semantics"].classes == ["wall", "chair", "table"]
    assert out.metadata["class_raw_ids"] == [3, 7, 12]
    item = ReplicaSemanticDataset(out)[1]
    sem = item["semantics"][..., 0]
    assert sem.dtype == torch.int64 and sem.shape == (6, 8)
    assert int(sem[0, 0]) == IGNORE_LABEL
    assert int(sem[0, 1]) == 0 and int(sem[5, 0]) == 1 and int(sem[5, 7]) == 2
    assert int(item["instance"][5, 7, 0]) == 121
    assert float(item["depth"][5, 0, 0]) == pytest.approx(2.0 * out.dataparser_scale, rel=1e-5)


def test_numeric_names_without_class_table(tmp_path):
    from conftest import write_tiny_replica

    root = write_tiny_replica(tmp_path / "s", with_info=False)
    _, out = parse(root)
    assert out.metadata["semantics"].classes == ["class_3", "class_7", "class_12"]


def _expect(root: Path, pattern: str, **kwargs):
    with pytest.raises(DataError, match=pattern) as info:
        parse(root, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_folder(tiny_replica):
    import shutil

    shutil.rmtree(tiny_replica / "semantic_class")
    _expect(tiny_replica, r"missing folder: .*semantic_class")


def test_missing_scene_and_trajectory(tmp_path, tiny_replica):
    _expect(tmp_path / "nope", "scene directory not found")
    (tiny_replica / "traj_w_c.txt").unlink()
    _expect(tiny_replica, "missing trajectory file")


def test_count_mismatch_names_the_missing_file(tiny_replica):
    (tiny_replica / "rgb" / "rgb_3.png").unlink()
    _expect(tiny_replica, r"frame count mismatch: .*rgb.*rgb_3\.png")


def test_unreadable_image_names_the_file(tiny_replica):
    (tiny_replica / "semantic_class" / "semantic_class_4.png").write_bytes(b"not a png at all")
    _expect(tiny_replica, r"unreadable image file: .*semantic_class_4\.png")


def test_truncated_image_fails_cleanly_at_load(tiny_replica):
    path = tiny_replica / "rgb" / "rgb_5.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _, out = parse(tiny_replica)
    ds = ReplicaSemanticDataset(out)
    with pytest.raises(DataError, match=r"rgb_5\.png"):
        ds[1]


def test_size_mismatch_names_the_file(tiny_replica):
    Image.fromarray(np.zeros((6, 9), dtype=np.uint16)).save(tiny_replica / "depth" / "depth_6.png")
    _expect(tiny_replica, r"image size mismatch: .*depth_6\.png is 9x6")


def test_class_id_outside_table(tiny_replica):
    info = json.loads((tiny_replica / "info_semantic.json").read_text())
    info["classes"] = [c for c in info["classes"] if c["id"] != 12]
    (tiny_replica / "info_semantic.json").write_text(json.dumps(info))
    _expect(tiny_replica, r"class id 12 in .*semantic_class_\d+\.png is not in the class table")


def test_empty_scene(tiny_replica):
    (tiny_replica / "traj_w_c.txt").write_text("")
    _expect(tiny_replica, "empty scene")


def test_bad_pose_line(tiny_replica):
    (tiny_replica / "traj_w_c.txt").write_text("1 0 0\n")
    _expect(tiny_replica, r"traj_w_c\.txt:1: expected 16 numbers")


def test_all_void_labels_is_an_empty_scene(tiny_replica):
    for p in (tiny_replica / "semantic_class").iterdir():
        Image.fromarray(np.zeros((6, 8), dtype=np.uint8)).save(p)
    _expect(tiny_replica, "empty scene: no labelled pixels")


def test_bad_split(tiny_replica):
    _expect(tiny_replica, "bad split", train_every=5, test_offset=7)


def test_error_prints_one_line(capsys):
    """Uncaught package errors print as one line; others keep Python's traceback hook."""
    import sys

    from jacobinerf_ns.errors import install_excepthook

    install_excepthook()
    sys.excepthook(DataError, DataError("missing image file: x.png"), None)
    err = capsys.readouterr().err
    assert err == "error: missing image file: x.png\n"
