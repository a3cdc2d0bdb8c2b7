"""The generalizable model end to end on a tiny generated multi-scene set: conventions (rays, reprojected ground-truth
depth), learning on one view, nerfstudio's train loop, ns-eval / ns-render on the unseen scene, fine-tuning with
--load-dir, read-outs, depth-supervision checks, the timm backbone from a local checkpoint, the schedule."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from jacobinerf_ns.errors import ConfigError, DataError

STEPS = 4


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory) -> Path:
    """Three training rooms and one unseen room (32x24, 24 views: 8 source-bank views, 8 test views each)."""
    from jacobinerf_ns.scripts.synth_many import SynthManyConfig, generate_many

    root = tmp_path_factory.mktemp("gen") / "scenes"
    generate_many(SynthManyConfig(output_dir=root, scenes=3, test_scenes=1, num_views=24, width=32, height=24,
                                  supersample=1, quiet=True))  # fmt: skip
    return root


def gen_config(data: Path, out: Path, steps: int = STEPS, name: str = "run", **model):
    from jacobinerf_ns.configs import jacobinerf_gen_tiny

    cfg = copy.deepcopy(jacobinerf_gen_tiny.config)
    cfg.data = data
    cfg.pipeline.datamanager.data = data
    cfg.output_dir = out
    cfg.experiment_name = "gen"
    cfg.timestamp = name
    cfg.max_num_iterations = steps
    cfg.steps_per_save = steps
    cfg.steps_per_eval_batch = steps
    cfg.steps_per_eval_image = 10**9
    cfg.vis = "tensorboard"
    cfg.machine.device_type = "cpu"
    cfg.pipeline.datamanager.train_num_rays_per_batch = 128
    cfg.pipeline.datamanager.eval_num_rays_per_batch = 128
    for key, value in model.items():
        setattr(cfg.pipeline.model, key, value)
    return cfg


def train(cfg) -> Path:
    from nerfstudio.scripts.train import train_loop

    cfg.set_timestamp()
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)
    return cfg.get_base_dir() / "config.yml"


@pytest.fixture(scope="module")
def run(scene_set, tmp_path_factory) -> Path:
    return train(gen_config(scene_set, tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="module")
def pipeline(scene_set):
    cfg = gen_config(scene_set, Path("unused"))
    return cfg.pipeline.setup(device="cpu", test_mode="val")


# ------------------------------------------------------------------------------------------------- conventions
def test_batch_rays_match_the_packed_target_camera(pipeline):
    """nerfstudio's ray directions (OpenGL cameras) and ours (OpenCV, from gen_camera + gen_uv) are the same rays."""
    from jacobinerf_ns.gen.datamanager import unpack_camera
    from jacobinerf_ns.gen.geometry import camera_rays

    bundle, batch = pipeline.datamanager.next_train(0)
    k, c2w, h, w = unpack_camera(bundle.metadata["gen_camera"][0])
    origins, dirs = camera_rays(bundle.metadata["gen_uv"], k, c2w)
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    assert torch.allclose(unit, bundle.directions, atol=1e-5)
    assert torch.allclose(origins, bundle.origins, atol=1e-5)
    scene = int(bundle.metadata["gen_scene"][0])
    bank = pipeline.datamanager.source_bank(scene)
    view = int(bundle.metadata["gen_index"][0])
    assert torch.allclose(bank.c2w[view], c2w, atol=1e-5)
    ys, xs = (bundle.metadata["gen_uv"] - 0.5).long().unbind(-1)[::-1]
    assert torch.equal(batch["image"], bank.images[view, ys, xs])


def test_reprojected_ground_truth_depth_matches_the_test_view(pipeline):
    """Reprojecting the K nearest source views' ground-truth depths into an unseen test view gives that view's depth:
    poses, intrinsics, metric depth and the kernel agree."""
    model = pipeline.model
    model.config.target_depth_from = "gt"
    try:
        cam, batch = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
        out = model.get_outputs_for_camera(cam)
    finally:
        model.config.target_depth_from = "estimated"
    gt = batch["depth"][..., 0]
    rel = (out["target_depth"][..., 0] - gt).abs() / gt
    assert float(rel.median()) < 0.02
    assert float((rel < 0.1).float().mean()) > 0.8


def test_one_view_is_learned(scene_set):
    """A fixed target and sources: 30 Adam steps must cut the colour and semantic losses (every part gets gradients)."""
    torch.manual_seed(0)
    pipeline = gen_config(scene_set, Path("unused"), include_target_prob=0.0).pipeline.setup(device="cpu")
    model = pipeline.model
    bundle, batch = pipeline.datamanager.next_train(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    first = last = None
    for step in range(30):
        model._generator.manual_seed(0)  # the same sources and samples every step
        outputs = model(bundle)
        losses = model.get_loss_dict(outputs, batch)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        if step == 0:
            first = {k: float(v) for k, v in losses.items()}
            for name, part in (("encoder", model.encoder), ("mvs", model.mvs), ("renderer", model.renderer)):
                grads = [p.grad for p in part.parameters() if p.grad is not None]
                assert grads and any(float(g.abs().max()) > 0 for g in grads), name
        opt.step()
    last = {k: float(v) for k, v in losses.items()}
    # measured: rgb 0.0155 -> 0.0118, semantic 1.46 -> 0.67, source semantic 1.46 -> 0.79, cascade depth 2.66 -> 0.17
    for key, factor in (
        ("rgb_loss", 0.85),
        ("semantic_loss", 0.7),
        ("source_semantic_loss", 0.7),
        ("mvs_depth_loss", 0.5),
    ):
        assert last[key] < factor * first[key], (key, first[key], last[key])


# ------------------------------------------------------------------------------------------------- nerfstudio
def test_train_loop_saves_a_checkpoint(run):
    ckpts = sorted((run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert [p.name for p in ckpts] == [f"step-{STEPS - 1:09d}.ckpt"]
    state = torch.load(ckpts[0], map_location="cpu")
    assert any(k.startswith("_model.mvs.") for k in state["pipeline"])
    assert "_model.class_table_hash" in state["pipeline"]


def test_ns_eval_json_keys_on_the_unseen_scene(run, tmp_path):
    from nerfstudio.scripts.eval import ComputePSNR

    out = tmp_path / "eval.json"
    ComputePSNR(load_config=run, output_path=out).main()
    results = json.loads(out.read_text())["results"]
    for key in ("psnr", "ssim", "miou", "accuracy", "class_accuracy", "fps", "target_depth_abs_rel"):
        assert key in results and results[key] == results[key], key
    assert 0.0 <= results["miou"] <= 1.0 and 0.0 <= results["accuracy"] <= 1.0


def test_ns_eval_on_another_scene_by_environment(run, scene_set, tmp_path, monkeypatch):
    from nerfstudio.scripts.eval import ComputePSNR

    from jacobinerf_ns.gen.dataparser import EVAL_DATA_ENV

    monkeypatch.setenv(EVAL_DATA_ENV, str(scene_set / "train" / "seed_00101"))
    out = tmp_path / "eval.json"
    ComputePSNR(load_config=run, output_path=out).main()
    assert "miou" in json.loads(out.read_text())["results"]


def test_ns_render_dataset_outputs(run, tmp_path):
    from nerfstudio.scripts.render import DatasetRender

    DatasetRender(
        load_config=run,
        output_path=tmp_path / "renders",
        split="test",
        rendered_output_names=["rgb", "depth", "target_depth", "semantics_colormap"],
        image_format="png",
    ).main()
    for name in ("rgb", "depth", "target_depth", "semantics_colormap"):
        assert len(sorted((tmp_path / "renders" / "test" / name).rglob("*.png"))) == 8, name


def test_finetune_on_the_unseen_scene_with_load_dir(run, scene_set, tmp_path):
    cfg = gen_config(scene_set, tmp_path, steps=2, name="ft")
    cfg.pipeline.datamanager.dataparser.finetune_scene = scene_set / "test" / "seed_10000"
    cfg.load_dir = run.parent / "nerfstudio_models"
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer._start_step == STEPS
    dm = trainer.pipeline.datamanager
    assert [p.name for p in dm.dataparser.train_scenes] == ["seed_10000"] == [p.name for p in dm.dataparser.eval_scenes]
    lr = trainer.optimizers.optimizers["gen"].param_groups[0]["lr"]
    trainer.train()
    assert [p.name for p in (cfg.get_base_dir() / "nerfstudio_models").glob("*.ckpt")] == [f"step-{STEPS + 1:09d}.ckpt"]
    assert lr > 0
    # a run whose class table differs cannot load the checkpoint: one clear error (same or another class count)
    import shutil

    for tag, rename in (("renamed", {"wall": "partition"}), ("merged", {"vase": "wall"})):
        other = tmp_path / tag
        shutil.copytree(scene_set / "test" / "seed_10000", other)
        info = json.loads((other / "info_semantic.json").read_text())
        for c in info["classes"]:
            c["name"] = rename.get(c["name"], c["name"])
        (other / "info_semantic.json").write_text(json.dumps(info))
        bad = gen_config(other, tmp_path, steps=1, name=tag)
        bad.load_dir = run.parent / "nerfstudio_models"
        trainer = bad.setup(local_rank=0, world_size=1)
        with pytest.raises(ConfigError, match="another class table"):
            trainer.setup()


# --------------------------------------------------------------------------------------------------- read-outs
def test_2d_source_readout_and_sampling_counts(pipeline):
    model = pipeline.model
    cam, batch = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    model.config.semantic_readout = "2d-source"
    model.config.eval_num_uniform_samples, model.config.eval_num_guided_samples = 0, 4
    try:
        out = model.get_outputs_for_camera(cam)
        assert torch.equal(out["semantics"], out["semantics_2d"])
        model.config.semantic_readout = "attention"
        model.config.eval_num_uniform_samples, model.config.eval_num_guided_samples = 128, 0
        out128 = model.get_outputs_for_camera(cam)
    finally:
        model.config.semantic_readout = "attention"
        model.config.eval_num_uniform_samples = model.config.eval_num_guided_samples = None
    assert torch.equal(out128["semantics"], out128["semantics_gen"])
    # semantics are read at the reprojected depth, whatever the samples: identical logits
    assert torch.allclose(out128["semantics_gen"], out["semantics_gen"])
    assert torch.equal(out128["target_depth"], out["target_depth"])
    assert not torch.allclose(out128["rgb"], out["rgb"])


def test_viewer_camera_without_metadata_renders_the_default_scene(pipeline):
    cam, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    plain = copy.deepcopy(cam)
    plain.metadata = None
    a = pipeline.model.get_outputs_for_camera(cam)
    b = pipeline.model.get_outputs_for_camera(plain)
    assert torch.allclose(a["rgb"], b["rgb"])


def test_plain_ray_bundle_is_a_clear_error(pipeline):
    bundle, _ = pipeline.datamanager.next_train(0)
    bundle.metadata = {}
    with pytest.raises(ConfigError, match="datamanager"):
        pipeline.model(bundle)


# --------------------------------------------------------------------------------------------------- bad input
def test_depth_supervision_needs_depth(scene_set, tmp_path):
    import shutil

    root = tmp_path / "nodepth"
    for split in ("train", "test"):
        shutil.copytree(scene_set / split, root / split)
    shutil.rmtree(root / "train" / "seed_00101" / "depth")
    with pytest.raises(DataError, match="seed_00101 has no depth/.*depth-supervision self"):
        gen_config(root, tmp_path).pipeline.setup(device="cpu", test_mode="val")
    pipe = gen_config(root, tmp_path, depth_supervision="self").pipeline.setup(device="cpu", test_mode="val")
    for step in range(4):  # the scene without depth is drawn at some step
        _, losses, _ = pipe.get_train_loss_dict(step)
        assert "photometric_depth_loss" in losses and math.isfinite(float(sum(losses.values())))


def test_more_source_views_than_the_bank_has(scene_set, tmp_path):
    pipe = gen_config(scene_set, tmp_path, num_source_views=9).pipeline.setup(device="cpu", test_mode="val")
    with pytest.raises(DataError, match="has 8 views, fewer than the 9 source views"):
        pipe.get_train_loss_dict(0)


# ----------------------------------------------------------------------------------------------------- pieces
def test_timm_backbone_from_a_local_checkpoint(tmp_path):
    import timm

    from jacobinerf_ns.gen.encoder import Encoder, EncoderConfig

    ref = timm.create_model("mobilenetv3_small_100", features_only=True, pretrained=False)
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    cfg = EncoderConfig(channels=(8, 16, 24, 32), fpn_channels=(16, 8, 8), backbone="mobilenetv3_small_100",
                        backbone_checkpoint=path)  # fmt: skip
    enc = Encoder(cfg, num_classes=5)
    key = next(k for k in ref.state_dict() if k.endswith("weight"))
    assert torch.equal(enc.backbone.net.state_dict()[key], ref.state_dict()[key])
    feats, logits = enc(torch.rand(2, 3, 24, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 6, 8), (2, 8, 12, 16), (2, 8, 24, 32)]
    assert tuple(logits.shape) == (2, 5, 24, 32)
    with pytest.raises(ConfigError, match="not found"):
        Encoder(EncoderConfig(backbone="mobilenetv3_small_100", backbone_checkpoint=tmp_path / "none.pth"), 5)
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="no tensor matching"):
        Encoder(EncoderConfig(backbone="mobilenetv3_small_100", backbone_checkpoint=tmp_path / "other.pth"), 5)


def test_learning_rate_schedule():
    from jacobinerf_ns.gen.schedule import lr_factor

    f = [lr_factor(s, 10, 100, 0.05, 0.2) for s in range(0, 130)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(f[10:101], f[11:101], strict=False))  # decays
    assert f[100] == pytest.approx(0.05) and f[101] == f[129] == 0.2  # fine-tuning past the schedule
