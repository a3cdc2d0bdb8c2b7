"""Multi-scene data of the generalizable family: scene sets, the shared class table, metric poses and depth, source-view
selection rules, jn-synth-many, and bad input (too few source views, mismatched intrinsics, no depth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.errors import ConfigError, DataError
from jacobinerf_ns.gen.bank import load_bank
from jacobinerf_ns.gen.dataparser import EVAL_DATA_ENV, GenDataParserConfig, resolve_scenes
from jacobinerf_ns.gen.views import camera_distances, select_eval_sources, select_train_sources


def make_scene(
    root: Path,
    classes: dict[int, str],
    num_frames: int = 12,
    width: int = 16,
    height: int = 12,
    depth: bool = True,
    meta: dict | None = None,
    seed: int = 0,
) -> Path:
    """A Replica-layout scene: a camera on a circle looking at the origin; label image = stripes of the raw ids."""
    rng = np.random.default_rng(seed)
    for sub in ("rgb", "depth", "semantic_class"):
        if sub != "depth" or depth:
            (root / sub).mkdir(parents=True, exist_ok=True)
    ids = sorted(classes)
    lines = []
    for i in range(num_frames):
        a = 0.3 * i
        centre = np.array([2.0 * np.sin(a), 0.1 * i, -2.0 * np.cos(a)])
        fwd = -centre / np.linalg.norm(centre)
        right = np.cross([0.0, 1.0, 0.0], fwd)
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, down, fwd], axis=1)
        pose[:3, 3] = centre
        lines.append(" ".join(f"{v:.9f}" for v in pose.reshape(-1)))
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "rgb" / f"rgb_{i}.png")
        if depth:
            d = np.full((height, width), 2000 + 10 * i, dtype=np.uint16)
            Image.fromarray(d).save(root / "depth" / f"depth_{i}.png")
        cls = np.zeros((height, width), dtype=np.uint8)
        for k, raw in enumerate(ids):
            cls[:, k * width // len(ids) : (k + 1) * width // len(ids)] = raw
        cls[0, 0] = 0
        Image.fromarray(cls).save(root / "semantic_class" / f"semantic_class_{i}.png")
    (root / "traj_w_c.txt").write_text("\n".join(lines) + "\n")
    (root / "info_semantic.json").write_text(
        json.dumps({"classes": [{"id": i, "name": n} for i, n in classes.items()]})
    )
    if meta is not None:
        (root / "scene_meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def scene_set(tmp_path: Path) -> Path:
    """train/: two scenes with the same names under different raw ids; test/: one scene with a subset."""
    root = tmp_path / "set"
    make_scene(root / "train" / "a", {3: "wall", 7: "chair"}, seed=1)
    make_scene(root / "train" / "b", {40: "wall", 5: "chair", 9: "table"}, seed=2)
    make_scene(root / "test" / "c", {11: "table", 12: "wall"}, seed=3)
    return root


def parser(data: Path, **kw):
    return GenDataParserConfig(data=data, **kw).setup()


# ------------------------------------------------------------------------------------------------- scene sets
def test_resolve_scene_sets(scene_set: Path, tmp_path: Path):
    train = resolve_scenes(scene_set)
    assert [p.name for p in train] == ["a", "b"]
    assert [p.name for p in resolve_scenes(scene_set / "test")] == ["c"]
    assert resolve_scenes(scene_set / "train" / "a") == [scene_set / "train" / "a"]
    listing = scene_set / "list.txt"
    listing.write_text("# unseen\ntest/c\n\ntrain/a  # a comment\n")
    assert [p.name for p in resolve_scenes(listing)] == ["c", "a"]
    listing.write_text("train/nothing\n")
    with pytest.raises(DataError, match="list.txt:1"):
        resolve_scenes(listing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Replica-layout scene"):
        resolve_scenes(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        resolve_scenes(tmp_path / "missing")


def test_shared_class_table_by_name_and_unknown_classes(scene_set: Path, monkeypatch):
    p = parser(scene_set)
    names, _ = p.class_table
    assert names == ["chair", "table", "wall"]
    assert [s.name for s in p.train_scenes] == ["a", "b"] and [s.name for s in p.eval_scenes] == ["c"]
    banks = {r.path.name: load_bank(r.bank) for r in p.records}
    # column stripes: scene a = (chair 7? no: sorted raw ids) 3 wall | 7 chair; b = 5 chair | 9 table | 40 wall
    a, b, c = banks["a"].semantics[0], banks["b"].semantics[0], banks["c"].semantics[0]
    wall, chair, table = 2, 0, 1
    assert int(a[1, 0]) == wall and int(a[1, -1]) == chair
    assert int(b[1, 0]) == chair and int(b[1, 8]) == table and int(b[1, -1]) == wall
    assert int(c[1, 0]) == table and int(c[1, -1]) == wall
    assert int(a[0, 0]) == -1  # void stays ignored
    # an unseen scene with a class no training scene has
    make_scene(scene_set / "test" / "d", {12: "wall", 30: "sofa"}, seed=4)
    with pytest.raises(DataError, match="'sofa'.*unknown-classes void"):
        _ = parser(scene_set).records
    rec = {r.path.name: r for r in parser(scene_set, unknown_classes="void").records}["d"]
    sem = load_bank(rec.bank).semantics[0]
    assert int(sem[1, 0]) == wall and int(sem[1, -1]) == -1
    # the environment variable points a run at other unseen scenes
    monkeypatch.setenv(EVAL_DATA_ENV, str(scene_set / "train" / "b"))
    assert [s.name for s in parser(scene_set).eval_scenes] == ["b"]


def test_poses_and_depth_are_metric(scene_set: Path):
    p = parser(scene_set)
    rec = p.records[0]
    traj = np.loadtxt(scene_set / "train" / "a" / "traj_w_c.txt").reshape(-1, 4, 4)[::3]  # train_every = 3
    d_raw = np.linalg.norm(traj[:, None, :3, 3] - traj[None, :, :3, 3], axis=-1)
    d_ours = np.linalg.norm(rec.bank.c2w[:, None, :3, 3] - rec.bank.c2w[None, :, :3, 3], axis=-1)
    assert np.allclose(d_raw, d_ours, atol=1e-5)  # the dataparser's scale is undone: metres
    bank = load_bank(rec.bank)
    assert torch.allclose(bank.depth[1], torch.tensor(2.03))  # frame 3: 2030 mm
    # the OpenCV forward axis of a frame still points at the origin (rotation is a rigid re-orientation)
    origin = rec.bank.c2w[0, :3, 3] + rec.bank.c2w[0, :3, 2] * np.linalg.norm(traj[0, :3, 3])
    origin2 = rec.bank.c2w[1, :3, 3] + rec.bank.c2w[1, :3, 2] * np.linalg.norm(traj[1, :3, 3])
    assert np.allclose(origin, origin2, atol=1e-5)
    out = p.get_dataparser_outputs("test")
    assert out.cameras.metadata["gen_scene"][:, 0].tolist() == [p.scene_index(scene_set / "test" / "c")] * 4
    assert out.cameras.metadata["gen_index"][:, 0].tolist() == [-1] * 4


# ---------------------------------------------------------------------------------------------- view selection
def test_eval_sources_are_the_k_nearest_without_the_target():
    c2w = torch.eye(4).repeat(6, 1, 1)
    c2w[:, 0, 3] = torch.tensor([0.0, 3.0, 1.0, 0.5, 2.0, 5.0])
    tgt = torch.eye(4)
    tgt[0, 3] = 0.9
    dist = camera_distances(tgt, c2w)
    assert select_eval_sources(dist, 3).tolist() == [2, 3, 0]
    assert select_eval_sources(dist, 3, exclude=2).tolist() == [3, 0, 4]
    with pytest.raises(DataError, match="fewer than the 6"):
        select_eval_sources(dist, 6, exclude=2, where="scene X")


def test_train_sources_come_from_the_nearest_pool():
    g = torch.Generator().manual_seed(0)
    dist = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0])  # view 0 is the target
    seen: set[int] = set()
    for _ in range(200):
        pick = select_train_sources(dist, 3, 5, target=0, include_target_prob=0.0, generator=g)
        assert len(set(pick.tolist())) == 3 and 0 not in pick.tolist()
        assert bool((dist[pick].diff() >= 0).all())  # nearest first
        seen.update(pick.tolist())
    assert seen == {2, 4, 5, 3, 1}  # exactly the 5 nearest non-target views, each drawn at some point
    with_target = [select_train_sources(dist, 3, 5, 0, 1.0, g).tolist() for _ in range(20)]
    assert all(p[0] == 0 for p in with_target)  # the target (distance 0) comes first when kept
    a = select_train_sources(dist, 3, 5, 0, 0.0, torch.Generator().manual_seed(7))
    b = select_train_sources(dist, 3, 5, 0, 0.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------- bad input
def test_mismatched_intrinsics_are_a_data_error(tmp_path: Path):
    meta = {"fx": 8.0, "fy": 8.0, "cx": 160.0, "cy": 120.0, "width": 16, "height": 12}  # a 320x240 camera's centre
    root = tmp_path / "set"
    make_scene(root / "a", {3: "wall", 7: "chair"}, meta=meta)
    with pytest.raises(DataError, match="intrinsics of view 0 of .*a do not match its 16x12 images"):
        load_bank(parser(root).records[0].bank)


def test_bank_with_fewer_views_than_k(tmp_path: Path):
    root = tmp_path / "set"
    make_scene(root / "a", {3: "wall", 7: "chair"}, num_frames=9)  # 3 bank views
    bank = load_bank(parser(root).records[0].bank)
    dist = camera_distances(torch.eye(4), bank.c2w)
    with pytest.raises(DataError, match="has 2 usable views, fewer than the 3"):
        select_eval_sources(dist, 3, exclude=0, where=bank.name)


# -------------------------------------------------------------------------------------------------- jn-synth-many
def test_synth_many_writes_disjoint_train_and_test_scenes(tmp_path: Path):
    from jacobinerf_ns.scripts.synth_many import SynthManyConfig, generate_many

    cfg = SynthManyConfig(output_dir=tmp_path / "many", scenes=2, test_scenes=1, num_views=6, width=16, height=12,
                          supersample=1, quiet=True)  # fmt: skip
    summary = generate_many(cfg)
    train = resolve_scenes(tmp_path / "many")
    test = resolve_scenes(tmp_path / "many" / "test")
    assert [p.name for p in train] == ["seed_00100", "seed_00101"] and [p.name for p in test] == ["seed_10000"]
    assert (tmp_path / "many" / "train.txt").read_text().split() == ["train/seed_00100", "train/seed_00101"]
    assert [p.name for p in resolve_scenes(tmp_path / "many" / "test.txt")] == ["seed_10000"]
    rooms = [json.loads((p / "scene_meta.json").read_text())["room_size"] for p in train + test]
    assert len({tuple(r) for r in rooms}) == 3  # three different rooms
    assert summary["train"][0]["room_length_range"] != summary["train"][1]["room_length_range"]
    img = [np.asarray(Image.open(p / "rgb" / "rgb_0.png")) for p in train + test]
    assert not np.array_equal(img[0], img[2])
    stamp = (train[0] / "rgb" / "rgb_0.png").stat().st_mtime_ns
    generate_many(cfg)  # a rerun keeps what exists
    assert (train[0] / "rgb" / "rgb_0.png").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="overlap"):
        generate_many(SynthManyConfig(output_dir=tmp_path / "x", scenes=3, seed=100, test_seed=101, quiet=True))
