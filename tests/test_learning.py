"""The methods learn, and shaping really runs inside nerfstudio's training loop.

Uses the session's trained runs (conftest: 300 steps of nerfstudio's Trainer on a 48x36 room, 8 training views); the
numbers are ns-eval's (test views). Floors were set from measured values with a wide margin (see each test).
"""

from __future__ import annotations

import pytest
import torch
from conftest import RUN_STEPS, SHAPING_START
from run_utils import load_pipeline, setup_trainer

RUNS = ["jnerf_run", "plain_run", "features_run", "semantic_run"]


@pytest.fixture(scope="module")
def final_metrics(request):
    cache = {}

    def get(name: str) -> dict:
        if name not in cache:
            run = request.getfixturevalue(name)
            cache[name] = load_pipeline(run.config_path).get_average_eval_image_metrics()
        return cache[name]

    return get


@pytest.mark.parametrize("name", RUNS)
def test_each_method_learns_far_above_its_initial_psnr(name, request, final_metrics):
    run = request.getfixturevalue(name)
    before, after = run.initial_metrics["psnr"], final_metrics(name)["psnr"]
    # measured: ~9-11 dB untrained, 18.5-20 dB after 300 steps on the test views
    assert before < 13.0, before
    assert after > 16.0 and after > before + 5.0, (before, after)


def test_semantic_nerf_reaches_an_miou_floor_with_all_labels(semantic_run, final_metrics):
    metrics = final_metrics("semantic_run")
    assert semantic_run.initial_metrics["miou"] < 0.1  # untrained: near chance over ~18 classes
    assert metrics["miou"] > 0.25 and metrics["accuracy"] > 0.7, metrics  # measured: 0.37 / 0.83


def test_step_callback_reaches_the_model_in_the_trainer(jnerf_run):
    steps = sorted(jnerf_run.loss_names)
    assert steps == list(range(RUN_STEPS))  # one recorded training step per trainer step, eval batches excluded
    assert all(jnerf_run.model_steps[s] == s for s in steps)


def test_shaping_losses_appear_from_the_start_step_and_not_before(jnerf_run, plain_run):
    shaping = {"jacobian_nce_loss", "jacobian_norm_loss"}
    for step, names in jnerf_run.loss_names.items():
        assert (shaping <= names) == (step >= SHAPING_START), (step, names)
        assert "rgb_loss" in names
    assert not any(shaping & names for names in plain_run.loss_names.values())


def _positive_gap(config_path) -> float:
    """|cos| over teacher-positive minus teacher-negative pairs of 1500 training pixels, on the trained run."""
    from jacobinerf_ns.evaluation import render_pixels, sample_labelled_pixels
    from jacobinerf_ns.jacobian import mean_rgb_jacobian
    from jacobinerf_ns.shaping import positive_mask_threshold, shaping_stats

    pipeline = load_pipeline(config_path)
    dm = pipeline.datamanager
    pixels = sample_labelled_pixels(dm.train_scene.semantics, 1500, seed=0)
    feats = dm.teacher_features.lookup(pixels[:, 0], pixels[:, 1], pixels[:, 2])
    positives = positive_mask_threshold(feats.float(), 0.8)
    jac = render_pixels(pipeline.model, dm.train_dataset.cameras, pixels, ["jacobian"], jacobians=True)["jacobian"]
    stats = shaping_stats(mean_rgb_jacobian(jac), positives)
    return stats.cos_positive - stats.cos_negative


def test_shaping_in_the_trainer_opens_the_positive_negative_gap(jnerf_run, plain_run):
    shaped, unshaped = _positive_gap(jnerf_run.config_path), _positive_gap(plain_run.config_path)
    assert shaped > unshaped + 0.05, (shaped, unshaped)


def test_tau_pos_is_saved_and_survives_a_resume(jnerf_run, tmp_path):
    ckpt = next((jnerf_run.run_dir / "nerfstudio_models").glob("*.ckpt"))
    saved = float(torch.load(ckpt, map_location="cpu")["pipeline"]["datamanager.tau_pos_state"])
    assert saved == pytest.approx(jnerf_run.final_tau_pos)
    import yaml

    cfg = yaml.load(jnerf_run.config_path.read_text(), Loader=yaml.Loader)
    cfg.load_dir = ckpt.parent
    cfg.output_dir = tmp_path
    cfg.timestamp = "resumed"
    cfg.pipeline.datamanager.tau_pos_init = 0.85  # a resumed run must not restart from its initial value
    trainer = setup_trainer(cfg)
    assert trainer._start_step == RUN_STEPS
    assert trainer.pipeline.datamanager.tau_pos == pytest.approx(saved)
    assert saved != pytest.approx(0.85)
