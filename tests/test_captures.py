"""Any capture: a nerfstudio-data capture (what ns-process-data writes; here jn-synth's transforms.json, no labels)
trains jacobinerf-tiny and jacobinerf-features-tiny offline with the pixel-only teacher and opens in ns-viewer; a
ScanNet export trains; methods that need labels say so in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from geometry_scenes import make_box_scene, write_scannet
from run_utils import load_pipeline, method_config, train

from jacobinerf_ns.errors import DataError
from jacobinerf_ns.teachers import AutoTeacherConfig


def _nerfstudio_data(cfg, scene: Path):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    cfg.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=scene)
    if hasattr(cfg.pipeline.datamanager, "teacher"):
        cfg.pipeline.datamanager.teacher = AutoTeacherConfig(show_progress=False)  # the presets' default
    return cfg


@pytest.fixture(scope="module")
def capture_runs(synth_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("capture")
    runs = {}
    for name in ("jacobinerf-tiny", "jacobinerf-features-tiny"):
        cfg = _nerfstudio_data(method_config(name, synth_scene, out, steps=30, rays=512), synth_scene)
        if name == "jacobinerf-tiny":
            cfg.pipeline.model.shaping_start_step = 10
        runs[name] = train(cfg)
    return runs


@pytest.mark.parametrize("name", ["jacobinerf-tiny", "jacobinerf-features-tiny"])
def test_a_nerfstudio_capture_trains_with_the_appearance_teacher(name, capture_runs):
    pipeline = load_pipeline(capture_runs[name])
    meta = pipeline.datamanager.train_dataset.metadata
    assert meta["teacher_name"] == "appearance" and not meta["teacher_is_synthetic"]
    assert "semantics" not in pipeline.datamanager.train_dataset.metadata or not meta["semantics"].filenames
    assert pipeline.model.contracted  # a capture's box holds its cameras, not its walls: unbounded
    metrics = pipeline.get_average_eval_image_metrics()
    assert metrics["psnr"] > 10.0 and "miou" not in metrics


def test_the_capture_run_opens_in_ns_viewer(capture_runs, tmp_path):
    from run_utils import serve_viewer

    with serve_viewer(capture_runs["jacobinerf-tiny"], tmp_path / "ns-viewer.log") as url:
        assert url.startswith("http://127.0.0.1:")


def test_semantic_nerf_on_a_capture_without_labels_is_one_clear_line(synth_scene, tmp_path):
    cfg = _nerfstudio_data(method_config("semantic-nerf-tiny", synth_scene, tmp_path, steps=1), synth_scene)
    with pytest.raises(DataError, match=r"semantic-nerf needs semantic labels, but .* \(nerfstudio-data\) has none"):
        train(cfg)


@pytest.fixture(scope="module")
def scannet_scene(tmp_path_factory) -> Path:
    box = make_box_scene(num_frames=20, width=32, height=24, seed=3)
    return write_scannet(box, tmp_path_factory.mktemp("scannet") / "scene0000_00")


@pytest.mark.parametrize("name", ["semantic-nerf-tiny", "jacobinerf-tiny"])
def test_a_scannet_export_trains_and_evaluates(name, scannet_scene, tmp_path):
    from jacobinerf_ns.data.scannet_dataparser import ScanNetSemanticDataParserConfig

    cfg = method_config(name, scannet_scene, tmp_path, steps=20, rays=256)
    cfg.pipeline.datamanager.dataparser = ScanNetSemanticDataParserConfig(data=scannet_scene)  # NYU40 classes
    with pytest.warns(UserWarning, match="invalid"):
        config_path = train(cfg)
    pipeline = load_pipeline(config_path)
    classes = list(pipeline.datamanager.train_dataset.metadata["semantics"].classes)
    # raw ids mapped through the label table to NYU40 (1 wall, 2 floor, 22 ceiling), in NYU40 order
    raw_seen = set(np.unique(make_box_scene(num_frames=20, width=32, height=24, seed=3).class_ids).tolist())
    nyu = {3: "wall", 4: "wall", 7: "wall", 9: "wall", 12: "floor", 15: "ceiling"}
    assert classes == [n for n in ("wall", "floor", "ceiling") if n in {nyu[i] for i in raw_seen}]
    metrics = pipeline.get_average_eval_image_metrics()
    assert metrics["psnr"] > 5.0
    if name == "semantic-nerf-tiny":
        assert 0.0 <= metrics["miou"] <= 1.0
