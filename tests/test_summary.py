"""The last step of ``make demo``: the summary reads ns-eval and jn-propagate outputs (through its CLI parser)."""

from __future__ import annotations

import json
import sys
import time

from jacobinerf_ns.scripts import summary


def test_demo_summary_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "eval.json").write_text(json.dumps({"results": {"psnr": 29.5, "ssim": 0.9, "miou": 0.4567}}))
    prop = {
        "method": "jnerf-3d",
        "setting": "sparse",
        "target": "semantic",
        "clicks": 12,
        "miou": 0.25,
        "accuracy": 0.7,
        "views": 30,
        "teacher": "synthetic (computed from ground truth)",
    }
    (tmp_path / "prop.json").write_text(json.dumps(prop))
    argv = [
        "summary",
        "--eval-json",
        str(tmp_path / "eval.json"),
        "--start-time",
        str(time.time() - 90),
        "--propagation-json",
        str(tmp_path / "prop.json"),
        "--paths",
        "scene=data/x",
        "run=outputs/y",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    summary.entrypoint()
    out = capsys.readouterr().out
    assert "test psnr            29.50 dB" in out and "(skipped: AlexNet weights not on disk)" in out
    assert "test miou            45.7 %" in out  # one unit for mIoU everywhere: percent
    assert "mIoU 25.0 %" in out and "synthetic" in out and "1.5 min" in out
    lines = out.splitlines()
    assert "  scene                data/x" in lines and "  run                  outputs/y" in lines
