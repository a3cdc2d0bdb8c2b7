"""Print the outcome of ``make demo``: held-out metrics, wall time and where every output is."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

PERCENT = ("miou", "accuracy", "class_accuracy")
"""Scores shown in percent (the README's unit); ns-eval's JSON keeps nerfstudio's fractions."""


@dataclass
class DemoSummary:
    """Summarise a demo run."""

    eval_json: Path
    """The ``ns-eval`` output."""
    start_time: float
    """Unix time at which the demo started."""
    propagation_json: Path | None = None
    """The ``jn-propagate`` output, if any."""
    paths: list[str] = field(default_factory=list)
    """``name=path`` pairs to list."""

    def main(self) -> None:
        results = json.loads(self.eval_json.read_text())["results"]
        elapsed = time.time() - self.start_time
        print("\n=== jacobinerf_ns demo ===")
        for key in ("psnr", "ssim", "lpips", "miou", "accuracy", "class_accuracy"):
            if key in results:
                value = results[key]
                shown = (
                    f"{100 * value:.1f} %"
                    if key in PERCENT
                    else (f"{value:.2f} dB" if key == "psnr" else f"{value:.4f}")
                )
                print(f"  test {key:<15} {shown}")
        if "lpips" not in results:
            print("  test lpips           (skipped: AlexNet weights not on disk)")
        if self.propagation_json is not None and self.propagation_json.is_file():
            prop = json.loads(self.propagation_json.read_text())
            print(
                f"  propagation          {prop['method']} {prop['setting']} {prop['target']} from "
                f"{prop['clicks']} clicks: mIoU {100 * prop['miou']:.1f} %, accuracy {100 * prop['accuracy']:.1f} % "
                f"({prop['views']} test views; teacher: {prop['teacher']})"
            )
        print(f"  wall time            {elapsed / 60:.1f} min (scene + train + eval + render + propagation)")
        for pair in self.paths:
            name, _, path = pair.partition("=")
            print(f"  {name:<20} {path}")


def entrypoint() -> None:
    tyro.cli(DemoSummary).main()


if __name__ == "__main__":
    entrypoint()
