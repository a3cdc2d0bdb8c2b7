"""Feature-field smoothing through nerfstudio's trainer: patches mixed into the batch, each regulariser's loss in the
real loop, masks computed and cached; the view-independent feature head; ns-eval's feature_cos_sim."""

from __future__ import annotations

import copy

import pytest
import torch
from run_utils import method_config, train

from jacobinerf_ns.teachers import SyntheticTeacherConfig


def _features_datamanager(scene, **options):
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods["jacobinerf-features-tiny"].pipeline.datamanager)
    cfg.data = scene
    cfg.train_num_rays_per_batch = 1024
    cfg.teacher = SyntheticTeacherConfig(show_progress=False)
    for key, value in options.items():
        setattr(cfg, key, value)
    return cfg.setup(device="cpu", test_mode="val")


def test_patches_follow_all_the_random_rays(synth_scene):
    dm = _features_datamanager(synth_scene, patches_per_batch=3, patch_size=8)
    _, batch = dm.next_train(0)
    idx = batch["indices"]
    assert len(idx) == 1024 + 3 * 64 and int(batch["patch_count"]) == 3 and int(batch["patch_size"]) == 8
    assert len(batch["image"]) == len(idx) and len(batch["teacher_features"]) == len(idx)
    patches = idx[-3 * 64 :].view(3, 8, 8, 3)
    for p in patches:
        assert (p[..., 0] == p[0, 0, 0]).all()  # one view per patch
        ys, xs = p[..., 1], p[..., 2]
        assert torch.equal(ys - ys[0, 0], torch.arange(8)[:, None].expand(8, 8))  # rows, then columns
        assert torch.equal(xs - xs[0, 0], torch.arange(8)[None, :].expand(8, 8))
    # the teacher feature and colour of a patch ray are those of its pixel, as for every ray
    c, y, x = idx[-1].tolist()
    assert torch.allclose(batch["image"][-1], dm.train_scene.images[c, y, x].float() / 255)


@pytest.mark.parametrize("smoothing", ["tv", "bilateral", "masks"])
def test_each_regulariser_runs_in_the_trainer(smoothing, synth_scene, tmp_path):
    cfg = method_config("jacobinerf-features-tiny", synth_scene, tmp_path, steps=4, rays=512)
    cfg.pipeline.model.smoothing = smoothing
    cfg.pipeline.datamanager.patch_size = 8
    run = train(cfg, record=True)
    assert all("smoothing_loss" in names and "feature_loss" in names for names in run.loss_names.values())
    if smoothing == "masks":  # felzenszwalb masks (no weights), cached beside the teacher's features
        assert list((synth_scene / ".teacher_cache").glob("masks-felzenszwalb-*.pt"))


def test_feature_head_is_view_independent(features_run):
    """The same 3D points seen along different directions get the same distilled feature (3D queries score points)."""
    from nerfstudio.cameras.rays import Frustums, RaySamples
    from run_utils import load_pipeline

    field = load_pipeline(features_run.config_path).model.field
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(64, 1, 3, generator=g) * 1.2 - 0.6
    outs = []
    for _ in range(2):
        dirs = torch.nn.functional.normalize(torch.randn(64, 1, 3, generator=g), dim=-1)
        frustums = Frustums(
            origins=pos,
            directions=dirs,
            starts=torch.zeros(64, 1, 1),
            ends=torch.zeros(64, 1, 1),
            pixel_area=torch.ones(64, 1, 1),
        )
        with torch.no_grad():
            outs.append(field(RaySamples(frustums=frustums))["features"])
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    with torch.no_grad():
        _, direct = field.features_at(pos)
    assert torch.allclose(direct, outs[0], atol=1e-6)


def test_ns_eval_reports_feature_cosine_to_the_teacher(features_run):
    from run_utils import load_pipeline

    metrics = load_pipeline(features_run.config_path).get_average_eval_image_metrics()
    before = features_run.initial_metrics["feature_cos_sim"]
    assert metrics["feature_cos_sim"] > before + 0.2 and metrics["feature_cos_sim"] > 0.5, (before, metrics)
