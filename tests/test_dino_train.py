"""The DINO teacher, really run: a randomly initialised timm ViT-S/8 saved in the official release's layout (a plain
state dict, what ``dino_deitsmall8_pretrain.pth`` holds) is passed by path to the real ``ns-train`` CLI — the code path
of a user who downloaded the weights elsewhere. Random weights: no quality figure, only the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from run_utils import load_pipeline


def test_ns_train_with_a_dino_checkpoint_file(synth_scene, tmp_path):
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch8_224_dino", pretrained=False, num_classes=0)
    checkpoint = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(vit.state_dict(), checkpoint)
    exe = Path(sys.executable).parent / "ns-train"
    cmd = [
        str(exe), "jacobinerf-features-tiny", "--data", str(synth_scene), "--output-dir", str(tmp_path / "out"),
        "--experiment-name", "dino", "--timestamp", "t", "--max-num-iterations", "3", "--steps-per-save", "3",
        "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--vis", "tensorboard",
        "--machine.device-type", "cpu", "--pipeline.datamanager.train-num-rays-per-batch", "256",
        # tyro: a subcommand's flags come after it (README)
        "pipeline.datamanager.teacher:dino", "--pipeline.datamanager.teacher.checkpoint", str(checkpoint),
        "--pipeline.datamanager.teacher.load-size", "64",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    config = tmp_path / "out" / "dino" / "jacobinerf-features-tiny" / "t" / "config.yml"
    pipeline = load_pipeline(config)
    meta = pipeline.datamanager.train_dataset.metadata
    assert meta["teacher_name"] == "dino-vit_small_patch8_224_dino" and not meta["teacher_is_synthetic"]
    feats = pipeline.datamanager.teacher_features
    assert feats.feature_dim == 64 and feats.pca is not None  # PCA to 64 dims of the 384-dim tokens
    assert feats.grid_hw == (8, 11)  # shorter side 64 px = 8 patches of 8 px (40x30 image: aspect kept)
    cached = list((synth_scene / ".teacher_cache").glob("dino-vit_small_patch8_224_dino-*.pt"))
    assert cached, "the DINO features were not cached"
