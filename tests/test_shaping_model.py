"""Teacher datamanager batches, the model's closed-form Jacobians against autograd, and shaping on a real field."""

from __future__ import annotations

import copy

import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.jacobian import diagonal_rows, jacobian_autograd_reference
from jacobinerf_ns.teachers import SyntheticTeacherConfig


def _pipeline(name: str, scene, rays: int = 512, shaping_rays: int = 256, **model_overrides):
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[name].pipeline)
    cfg.datamanager.data = scene
    cfg.datamanager.train_num_rays_per_batch = rays
    cfg.datamanager.teacher = SyntheticTeacherConfig(show_progress=False)
    cfg.datamanager.shaping_rays_per_batch = shaping_rays
    for key, value in model_overrides.items():
        setattr(cfg.model, key, value)
    torch.manual_seed(0)
    return cfg.setup(device="cpu", test_mode="val")


@pytest.fixture(scope="module")
def jnerf(synth_scene):
    return _pipeline("jacobinerf-tiny", synth_scene)


def test_batches_carry_teacher_features_and_cross_view_positives(jnerf):
    dm = jnerf.datamanager
    _, batch = dm.next_train(0)
    feats, pos = batch["teacher_features"], batch["positives"]
    assert feats.shape == (512, 64)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(512), atol=1e-3)
    assert pos.shape == (256, 256) and pos.dtype == torch.bool and not pos.diagonal().any()
    views = batch["indices"][:256, 0]
    assert 1 < len(views.unique()) <= dm.config.shaping_views_per_batch
    cross = pos & (views[:, None] != views[None, :])
    assert cross.any()  # positives pair rays of different views
    # positives really are the pairs the teacher finds similar
    sim = feats[:256].float() @ feats[:256].float().T
    assert torch.equal(pos, (sim > float(batch["tau_pos"])) & ~torch.eye(256, dtype=torch.bool))


def test_tau_pos_follows_the_official_schedule_both_ways(jnerf):
    """All teacher features equal: every pair is positive (fraction 1 > 15 %), so τ_pos rises by one step per batch
    up to its bound; mutually near-orthogonal features: no pair is, so it falls to the lower bound."""
    import dataclasses

    dm = jnerf.datamanager
    cfg = dm.config
    saved = dm.teacher_features
    feats = saved.features
    d = feats.shape[-1]
    same = torch.full_like(feats, 1.0 / d**0.5)
    noise = torch.nn.functional.normalize(torch.randn(feats.shape, generator=torch.Generator().manual_seed(0)), dim=-1)
    lo, hi = cfg.tau_pos_bounds
    try:
        for features, start, direction, bound in ((same, hi - 0.02, +1, hi), (noise, lo + 0.02, -1, lo)):
            dm.teacher_features = dataclasses.replace(saved, features=features.to(feats.dtype))
            dm.tau_pos = start
            taus, fracs = [], []
            for step in range(40):
                _, batch = dm.next_train(step)
                taus.append(float(batch["tau_pos"]))
                fracs.append(float(batch["positive_fraction"]))
            expected = [start + direction * min(k * cfg.tau_pos_step, abs(bound - start)) for k in range(40)]
            assert taus == pytest.approx(expected, abs=1e-6)  # logged as float32
            lo_frac, hi_frac = cfg.positive_fraction_target
            assert min(fracs) > hi_frac if direction > 0 else max(fracs) < lo_frac
    finally:
        dm.teacher_features = saved
        dm.tau_pos = cfg.tau_pos_init


def test_model_jacobians_match_autograd_through_the_real_renderer(jnerf):
    model = jnerf.model
    model.eval()  # deterministic samples
    ray_bundle, _ = jnerf.datamanager.next_train(1)
    rays = ray_bundle[:12]
    from jacobinerf_ns.render_options import RenderOptions

    with model.rendering(RenderOptions(jacobians=True)):
        closed = model(rays)["jacobian"].detach()
    name = "field.color_out.weight"
    W = dict(model.named_parameters())[name].detach().clone().requires_grad_(True)

    def colors(weight):
        return torch.func.functional_call(model, {name: weight}, (rays,), strict=False)["rgb"]

    ref = diagonal_rows(jacobian_autograd_reference(colors, W))
    model.train()
    rel = (closed - ref).abs().max() / ref.abs().max()
    assert rel < 1e-4  # float32 through the whole field (float64 exactness is in test_jacobian.py)


def test_shaping_opens_the_gap_on_a_fixed_batch(synth_scene):
    pipe = _pipeline(
        "jacobinerf-tiny",
        synth_scene,
        rays=256,
        shaping_rays=256,
        nce_loss_weight=1.0,
        shaping_start_step=0,
        norm_loss_weight=0.0,
    )
    model = pipe.model
    ray_bundle, batch = pipe.datamanager.next_train(0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gaps, losses = [], []
    for _ in range(25):
        outputs = model(copy.deepcopy(ray_bundle))
        metrics = model.get_metrics_dict(outputs, batch)
        loss_dict = model.get_loss_dict(outputs, batch, metrics)
        gaps.append(float(metrics["shaping/cos_positive"] - metrics["shaping/cos_negative"]))
        losses.append(float(loss_dict["jacobian_nce_loss"]))
        opt.zero_grad()
        loss_dict["jacobian_nce_loss"].backward()
        opt.step()
    assert losses[-1] < losses[0]
    assert gaps[-1] > gaps[0] + 0.05


def test_shaping_off_means_no_jacobian_work(synth_scene):
    pipe = _pipeline(
        "jacobinerf-tiny", synth_scene, rays=128, shaping_rays=64, nce_loss_weight=0.0, norm_loss_weight=0.0
    )
    ray_bundle, batch = pipe.datamanager.next_train(0)
    outputs = pipe.model(ray_bundle)
    assert "jacobian" not in outputs
    assert not any(
        k.startswith("jacobian")
        for k in pipe.model.get_loss_dict(outputs, batch, pipe.model.get_metrics_dict(outputs, batch))
    )


def test_feature_head_of_the_wrong_dimension_is_a_clear_error(synth_scene):
    with pytest.raises(ConfigError, match="gives 64-dim features but the model's feature head has 32"):
        _pipeline("jacobinerf-features-tiny", synth_scene, shaping_rays=0, feature_dim=32)


def test_feature_field_renders_features_and_pca_colours(synth_scene):
    pipe = _pipeline("jacobinerf-features-tiny", synth_scene, rays=128, shaping_rays=0)
    ray_bundle, batch = pipe.datamanager.next_train(0)
    outputs = pipe.model(ray_bundle)
    assert outputs["features"].shape == (128, 64)
    loss = pipe.model.get_loss_dict(outputs, batch, pipe.model.get_metrics_dict(outputs, batch))
    assert float(loss["feature_loss"]) > 0
    pipe.model.eval()
    with torch.no_grad():
        out = pipe.model(ray_bundle)
    assert out["features_pca"].shape == (128, 3)
    # the display PCA is the teacher's (fitted at construction), not the identity it starts from
    from jacobinerf_ns.teachers import fit_pca

    sample = pipe.datamanager.train_dataset.metadata["teacher_feature_sample"]
    basis = fit_pca(sample.float(), 3)
    assert torch.allclose(pipe.model.pca_components, basis.components, atol=1e-4)
    assert not torch.allclose(pipe.model.pca_components, torch.eye(64, 3))
    rgb = pipe.model.features_to_rgb(sample.float())
    # the 1 % / 99 % quantiles map to 0 / 1: ~98 % of the teacher's values strictly inside, each channel spread
    assert ((rgb > 0) & (rgb < 1)).float().mean() > 0.9
    assert float((rgb.quantile(0.95, dim=0) - rgb.quantile(0.05, dim=0)).min()) > 0.5
