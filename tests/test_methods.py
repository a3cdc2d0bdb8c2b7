"""Every method trains a few iterations through nerfstudio's Trainer; ns-eval / ns-render / resume on a tiny run.

All in one process (nerfstudio's import costs ~8 s per process); one subprocess checks the real ``ns-train`` CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import RUN_STEPS
from run_utils import method_config, train

METHODS = [
    "jacobinerf",
    "jacobinerf-tiny",
    "jacobinerf-features",
    "jacobinerf-features-tiny",
    "semantic-nerf",
    "semantic-nerf-tiny",
]


def test_entry_points_registered():
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    methods, _ = discover_methods()
    for name in METHODS:
        assert name in methods, name
        assert methods[name].method_name == name
    parsers, _ = discover_dataparsers()
    assert "replica-semantic" in parsers


def test_ns_train_cli_lists_methods():
    exe = Path(sys.executable).parent / "ns-train"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in METHODS:
        assert name in out.stdout


@pytest.mark.parametrize("name", METHODS)
def test_train_loop_each_method(name, synth_scene, tmp_path):
    cfg = method_config(name, synth_scene, tmp_path, steps=3)
    config_path = train(cfg)
    ckpts = list((config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert [p.name for p in ckpts] == ["step-000000002.ckpt"]
    state = torch.load(ckpts[0], map_location="cpu")  # weights_only load works (compat fix)
    assert state["step"] == 2
    assert any(k.endswith("field.color_out.weight") for k in state["pipeline"])


def test_ns_eval_json_keys(semantic_run, tmp_path):
    from nerfstudio.scripts.eval import ComputePSNR

    from jacobinerf_ns.metrics import alexnet_weights_path

    out = tmp_path / "eval.json"
    ComputePSNR(load_config=semantic_run.config_path, output_path=out).main()
    results = json.loads(out.read_text())["results"]
    for key in ("psnr", "ssim", "miou", "accuracy", "class_accuracy"):
        assert key in results and results[key] == results[key], key  # present and not NaN
    assert 0.0 <= results["miou"] <= 1.0 and 0.0 <= results["accuracy"] <= 1.0
    assert ("lpips" in results) == alexnet_weights_path().is_file()


def test_ns_render_dataset_outputs(semantic_run, tmp_path):
    from nerfstudio.scripts.render import DatasetRender

    DatasetRender(
        load_config=semantic_run.config_path,
        output_path=tmp_path / "renders",
        split="test",
        rendered_output_names=["rgb", "depth", "semantics_colormap"],
        image_format="png",
    ).main()
    for name in ("rgb", "depth", "semantics_colormap"):
        files = sorted((tmp_path / "renders" / "test" / name).rglob("*.png"))
        assert len(files) == 8, name  # the 8 test views of room48


def test_ns_render_interpolate_video(semantic_run, tmp_path):
    from nerfstudio.scripts.render import RenderInterpolated

    out = tmp_path / "video.mp4"
    RenderInterpolated(
        load_config=semantic_run.config_path,
        output_path=out,
        interpolation_steps=1,
        frame_rate=4,
        rendered_output_names=["rgb", "semantics_colormap"],
        output_format="video",
    ).main()
    assert out.is_file() and out.stat().st_size > 0


def test_resume_with_load_dir(semantic_run, tmp_path):
    """``--load-dir`` resumes: the step continues and the weights are the saved ones."""
    import yaml

    run = semantic_run.config_path
    cfg = yaml.load(run.read_text(), Loader=yaml.Loader)
    cfg.load_dir = run.parent / "nerfstudio_models"
    cfg.output_dir = tmp_path
    cfg.timestamp = "resumed"
    cfg.max_num_iterations = 3  # nerfstudio counts these after the loaded step
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer._start_step == RUN_STEPS
    saved = torch.load(next(cfg.load_dir.glob("*.ckpt")), map_location="cpu")["pipeline"]
    key = "_model.field.color_out.weight"
    assert torch.equal(trainer.pipeline.state_dict()[key], saved[key])
    trainer.train()
    assert [p.name for p in (cfg.get_base_dir() / "nerfstudio_models").glob("*.ckpt")] == [
        f"step-{RUN_STEPS + 2:09d}.ckpt"
    ]


def test_interrupted_checkpoint_save_leaves_nothing(tmp_path, monkeypatch):
    from jacobinerf_ns.trainer import atomic_torch_save

    path = tmp_path / "nerfstudio_models" / "step-000000001.ckpt"
    path.parent.mkdir()
    atomic_torch_save({"step": 0}, path)

    def interrupted(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 1}, path)
    assert torch.load(path)["step"] == 0  # the previous file is intact
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["nerfstudio_models", "step-000000001.ckpt"]


def test_ns_viewer_loads_a_run_and_serves(semantic_run, tmp_path):
    """``ns-viewer --load-config`` loads the checkpoint (weights_only fix) and serves its web client on localhost."""
    from run_utils import serve_viewer

    with serve_viewer(semantic_run.config_path, tmp_path / "ns-viewer.log") as url:
        assert url.startswith("http://127.0.0.1:")
