"""Tests of the procedural scene generator ``jn-synth`` (small scenes; the whole file runs in well under a minute)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from jacobinerf_ns.data.synth import OutputExistsError, SynthConfig, generate_scene
from jacobinerf_ns.data.synth import writer as synth_writer
from jacobinerf_ns.data.synth.classes import CLASSES
from jacobinerf_ns.data.synth.scene import Scene, build_scene
from jacobinerf_ns.data.synth.trajectory import camera_poses

SMALL = {"width": 48, "height": 36, "num_views": 12, "quiet": True}
N = SMALL["num_views"]


def _gen(root: Path, **kw) -> Path:
    return generate_scene(SynthConfig(output_dir=root, **{**SMALL, **kw}))


@pytest.fixture(scope="module")
def scene0(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("synth") / "seed0")


@pytest.fixture(scope="module")
def scene0_again(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("synth") / "seed0_copy")


@pytest.fixture(scope="module")
def scene1(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("synth") / "seed1", seed=1)


@pytest.fixture(scope="module")
def geometry0() -> Scene:
    return build_scene(SynthConfig(seed=0, **SMALL))


def _img(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _labels(root: Path, kind: str) -> np.ndarray:
    return np.stack([_img(root / kind / f"{kind}_{i}.png") for i in range(N)])


def _poses(root: Path) -> np.ndarray:
    return np.loadtxt(root / "traj_w_c.txt").reshape(-1, 4, 4)


# ------------------------------------------------------------------------------------------------- layout
def test_layout_names_and_dtypes(scene0: Path) -> None:
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        names = sorted(p.name for p in (scene0 / sub).iterdir())
        assert names == sorted(f"{sub}_{i}.png" for i in range(N))
    with Image.open(scene0 / "rgb" / "rgb_3.png") as im:
        assert im.mode == "RGB" and im.size == (48, 36)
    with Image.open(scene0 / "depth" / "depth_3.png") as im:
        assert im.mode == "I;16" and im.size == (48, 36)
    with Image.open(scene0 / "semantic_class" / "semantic_class_3.png") as im:
        assert im.mode == "L"
    with Image.open(scene0 / "semantic_instance" / "semantic_instance_3.png") as im:
        assert im.mode == "I;16"
    assert _img(scene0 / "rgb" / "rgb_3.png").dtype == np.uint8
    assert _img(scene0 / "depth" / "depth_3.png").dtype == np.uint16
    assert _img(scene0 / "semantic_instance" / "semantic_instance_3.png").dtype == np.uint16
    lines = (scene0 / "traj_w_c.txt").read_text().splitlines()
    assert len(lines) == N and all(len(line.split()) == 16 for line in lines)
    assert (scene0 / "mesh" / "mesh_semantic.ply").is_file()
    assert not list(scene0.parent.glob(".*partial*"))


def test_meta_and_intrinsics(scene0: Path) -> None:
    meta = json.loads((scene0 / "scene_meta.json").read_text())
    assert meta["fx"] == meta["fy"] == 24.0  # W/2 / tan(45 deg)
    assert meta["cx"] == 23.5 and meta["cy"] == 17.5
    assert (meta["width"], meta["height"], meta["num_views"], meta["seed"]) == (48, 36, N, 0)
    assert meta["depth_scale"] == 1000.0 and meta["world_up"] == "+z"
    assert len(meta["lights"]) == 2 and len(meta["room_size"]) == 3
    info = json.loads((scene0 / "info_semantic.json").read_text())
    assert {c["id"] for c in info["classes"]} == {c.id for c in CLASSES if c.id != 0}
    assert all(len(c["color"]) == 3 for c in info["classes"])
    for obj in info["objects"]:
        assert info["id_to_label"][obj["id"]] == obj["class_id"]
    assert info["id_to_label"][0] == 0


def test_depth_values(scene0: Path) -> None:
    depth = _labels(scene0, "depth")
    assert depth.min() >= 100 and depth.max() <= 10000  # closed room: every pixel hits a surface
    assert np.unique(depth).size > 200


def test_mesh_file_matches_scene(scene0: Path, geometry0: Scene) -> None:
    mesh = trimesh.load(scene0 / "mesh" / "mesh_semantic.ply", process=False)
    assert len(mesh.faces) == len(geometry0.faces)
    np.testing.assert_allclose(mesh.vertices, geometry0.vertices, atol=1e-5)


# -------------------------------------------------------------------------------------------- determinism
def test_same_seed_identical_bytes(scene0: Path, scene0_again: Path) -> None:
    files = sorted(p.relative_to(scene0) for p in scene0.rglob("*") if p.is_file())
    assert len(files) == 4 * N + 5  # + traj_w_c.txt, info_semantic.json, scene_meta.json, transforms.json, mesh
    for rel in files:
        assert (scene0 / rel).read_bytes() == (scene0_again / rel).read_bytes(), rel


def test_other_seed_other_room(scene0: Path, scene1: Path) -> None:
    m0 = json.loads((scene0 / "scene_meta.json").read_text())
    m1 = json.loads((scene1 / "scene_meta.json").read_text())
    assert m0["room_size"] != m1["room_size"]
    assert not np.allclose(_poses(scene0), _poses(scene1))
    assert (scene0 / "rgb" / "rgb_0.png").read_bytes() != (scene1 / "rgb" / "rgb_0.png").read_bytes()
    assert [o["class_name"] for o in m0["objects"]] != [o["class_name"] for o in m1["objects"]]


def test_supersampling_changes_colour_only(scene0: Path, tmp_path: Path) -> None:
    plain = _gen(tmp_path / "ss1", supersample=1)
    for kind in ("depth", "semantic_class", "semantic_instance"):
        np.testing.assert_array_equal(_labels(plain, kind), _labels(scene0, kind))
    rgb1, rgb2 = _labels(plain, "rgb").astype(int), _labels(scene0, "rgb").astype(int)
    assert (rgb1 != rgb2).any()  # anti-aliasing changes colours at edges and in fine texture ...
    np.testing.assert_allclose(rgb1.mean((1, 2)), rgb2.mean((1, 2)), atol=4)  # ... but not the overall look


def test_batching_does_not_change_output(scene0: Path, tmp_path: Path) -> None:
    other = _gen(tmp_path / "batch1", batch_views=1, num_views=3)
    # the path does not depend on num_views (only its sampling does): frame 0 is the same pose in both scenes
    np.testing.assert_allclose(_poses(other)[0], _poses(scene0)[0])
    for kind in ("rgb", "depth", "semantic_class", "semantic_instance"):
        assert (other / kind / f"{kind}_0.png").read_bytes() == (scene0 / kind / f"{kind}_0.png").read_bytes()


# ------------------------------------------------------------------------------------------------ content
def test_classes_instances_and_void(scene0: Path, scene1: Path) -> None:
    for root in (scene0, scene1):
        cls, inst = _labels(root, "semantic_class"), _labels(root, "semantic_instance")
        info = json.loads((root / "info_semantic.json").read_text())
        present = set(np.unique(cls).tolist()) - {0}
        assert len(present) >= 12, sorted(present)
        ids = sorted(present)
        assert ids != list(range(ids[0], ids[0] + len(ids)))  # raw ids have gaps: readers must remap
        id_to_label = np.asarray(info["id_to_label"])
        np.testing.assert_array_equal(id_to_label[inst], cls)
        per_class: dict[int, set[int]] = {}
        for c, i in set(zip(cls.ravel().tolist(), inst.ravel().tolist(), strict=True)):
            per_class.setdefault(c, set()).add(i)
        multi = [c for c, s in per_class.items() if c != 0 and len(s) >= 2]
        assert len(multi) >= 8, per_class
        void = (cls == 0).mean()
        assert 0 < void < 0.05
        assert ((inst == 0) == (cls == 0)).all()


def test_colours_shared_across_classes(geometry0: Scene) -> None:
    classes_of: dict[tuple, set[str]] = {}
    for obj in geometry0.objects:
        for part in obj.parts:
            key = (part.material.kind, part.material.colors)
            classes_of.setdefault(key, set()).add(obj.class_name)
    shared = [c for c in classes_of.values() if len(c) >= 2 and "void" not in c]
    assert len(shared) >= 3, shared
    paint = {o.class_name for o in geometry0.objects for p in o.parts if p.material.name == "wall-paint"}
    assert "wall" in paint and len(paint) >= 2, paint  # e.g. a sideboard painted like the walls
    assert any({"chair", "table"} <= c for c in classes_of.values())


def test_several_appearances_per_class(geometry0: Scene) -> None:
    for name in ("table", "cabinet", "lamp", "sofa", "book", "picture", "vase"):
        looks = {
            tuple(sorted({(p.material.kind, p.material.colors) for p in o.parts}))
            for o in geometry0.objects
            if o.class_name == name
        }
        assert len(looks) >= 2, name


# ----------------------------------------------------------------------------------------------- geometry
def _unproject(depth_mm: np.ndarray, pose: np.ndarray, meta: dict) -> np.ndarray:
    v, u = np.nonzero(depth_mm > 0)
    z = depth_mm[v, u] / 1000.0
    cam = np.stack([(u - meta["cx"]) / meta["fx"] * z, (v - meta["cy"]) / meta["fy"] * z, z], 1)
    return cam @ pose[:3, :3].T + pose[:3, 3], v, u


def test_labels_and_depth_lie_on_the_labelled_surface(scene0: Path, geometry0: Scene) -> None:
    meta = json.loads((scene0 / "scene_meta.json").read_text())
    poses = _poses(scene0)
    rng = np.random.default_rng(0)
    checked = 0
    for i in (0, 4, 9):
        depth = _img(scene0 / "depth" / f"depth_{i}.png")
        inst = _img(scene0 / "semantic_instance" / f"semantic_instance_{i}.png")
        pts, v, u = _unproject(depth, poses[i], meta)
        keep = rng.choice(len(pts), size=min(400, len(pts)), replace=False)
        for iid in np.unique(inst[v[keep], u[keep]]):
            sel = keep[inst[v[keep], u[keep]] == iid]
            _, dist, _ = trimesh.proximity.closest_point(geometry0.instance_mesh(int(iid)), pts[sel])
            assert dist.max() < 0.003, (i, iid, dist.max())
            checked += len(sel)
    assert checked >= 1000


def test_depth_is_z_depth_against_trimesh_ray_casting(scene0: Path, geometry0: Scene) -> None:
    meta = json.loads((scene0 / "scene_meta.json").read_text())
    pose = _poses(scene0)[5]
    depth = _img(scene0 / "depth" / "depth_5.png").astype(float) / 1000.0
    inst = _img(scene0 / "semantic_instance" / "semantic_instance_5.png")
    v, u = np.mgrid[0:36:5, 0:48:5]
    v, u = v.ravel(), u.ravel()
    d_cam = np.stack([(u - meta["cx"]) / meta["fx"], (v - meta["cy"]) / meta["fy"], np.ones(len(u))], 1)
    dirs = d_cam @ pose[:3, :3].T
    mesh = geometry0.mesh()
    locs, ray_idx, tri = mesh.ray.intersects_location(
        np.repeat(pose[None, :3, 3], len(u), 0), dirs, multiple_hits=False
    )
    z = (locs - pose[:3, 3]) @ pose[:3, 2]
    assert len(ray_idx) == len(u)
    np.testing.assert_allclose(z, depth[v[ray_idx], u[ray_idx]], atol=0.0015)
    agree = geometry0.face_instance[tri] == inst[v[ray_idx], u[ray_idx]]
    assert agree.mean() > 0.97  # a ray grazing an edge may pick the neighbouring triangle


# --------------------------------------------------------------------------------------------- trajectory
def test_written_poses_are_rigid_opencv_and_at_human_height(scene0: Path) -> None:
    poses = _poses(scene0)
    r = poses[:, :3, :3]
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    np.testing.assert_array_equal(poses[:, 3], np.broadcast_to([0, 0, 0, 1.0], (N, 4)))
    assert (r[:, 2, 1] < -0.9).all()  # camera y (down) points down in the z-up world: small roll
    assert r[:, 2, 2].mean() < 0  # looking slightly down on average
    assert (poses[:, 2, 3] >= 1.0).all() and (poses[:, 2, 3] <= 1.8).all()
    np.testing.assert_allclose(poses, camera_poses(build_scene(SynthConfig(seed=0)), SynthConfig(**SMALL)))


def test_default_path_is_smooth_and_closely_spaced() -> None:
    cfg = SynthConfig(seed=0)
    poses = camera_poses(build_scene(cfg), cfg)
    assert poses.shape == (150, 4, 4)
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert step.max() < 0.12 and step.min() > 0.01
    r = poses[:, :3, :3]
    cos = (np.einsum("nij,nij->n", r[1:], r[:-1]) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 10.0
    xy = poses[:, :2, 3]  # the loop goes around the room: wide spread of positions
    assert np.ptp(xy[:, 0]) > 1.0 and np.ptp(xy[:, 1]) > 1.0


def test_cameras_are_in_free_space(scene0: Path, geometry0: Scene) -> None:
    poses = _poses(scene0)
    dirs = np.random.default_rng(1).normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    mesh = geometry0.mesh()
    for pose in poses:
        origins = np.repeat(pose[None, :3, 3], len(dirs), 0)
        locs, ray_idx, tri = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
        assert len(ray_idx) == len(dirs)  # inside the closed room, every ray hits
        assert np.linalg.norm(locs - pose[:3, 3], axis=1).min() > 0.3
        assert ((dirs[ray_idx] * geometry0.face_normals[tri]).sum(1) < 0).all()  # only front faces: not inside


# ------------------------------------------------------------------------------------------- output dirs
def test_refuses_non_empty_dir_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        _gen(out, num_views=2)
    assert (out / "keep.txt").read_text() == "mine"
    _gen(out, num_views=2, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "rgb" / "rgb_1.png").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    _gen(empty, num_views=1)
    assert (empty / "traj_w_c.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_write(root: Path, index: int, view) -> None:
        calls.append(index)
        if index == 3:
            raise RuntimeError("disk full")
        original(root, index, view)

    original = synth_writer.write_view
    monkeypatch.setattr(synth_writer, "write_view", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        _gen(tmp_path / "scene", num_views=6)
    assert calls and not any(tmp_path.iterdir())


def test_cli_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from jacobinerf_ns.scripts.synth import entrypoint

    out = tmp_path / "cli"
    argv = ["jn-synth", "--output-dir", str(out), "--seed", "3", "--num-views", "2", "--width", "20", "--height", "16"]
    monkeypatch.setattr(sys, "argv", [*argv, "--quiet"])
    entrypoint()
    meta = json.loads((out / "scene_meta.json").read_text())
    assert (meta["seed"], meta["num_views"], meta["width"], meta["height"]) == (3, 2, 20, 16)
    assert _img(out / "rgb" / "rgb_1.png").shape == (16, 20, 3)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        entrypoint()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jn-synth: error: output directory is not empty")
