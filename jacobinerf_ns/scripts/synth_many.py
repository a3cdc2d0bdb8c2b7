"""``jn-synth-many``: a train / test set of procedural rooms for the generalizable family (``jacobinerf-gen``).

Example::

    jn-synth-many --output-dir data/gen-scenes --scenes 8 --test-scenes 2

writes ``DIR/train/seed_NNNNN/`` (seeds ``seed``, ``seed + 1``, ...) and ``DIR/test/seed_NNNNN/`` (seeds from
``test_seed``; the two ranges never overlap), each a ``jn-synth`` scene in the Replica layout, plus ``train.txt``,
``test.txt`` (scene lists) and ``scenes.json``. Besides the seed (room size, furniture layout, materials, camera
loop), every scene draws its own generator settings from its seed: room-size ranges, camera pitch and swing, clutter,
lighting — so the unseen scenes differ from the training ones in more than the random layout. A scene whose camera
loop cannot be planned with its drawn settings is generated with the defaults; if that fails too, the next free
seed is used (``scenes.json`` records the seeds used). Existing scenes with the same settings are kept, so a rerun
only generates what is missing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tyro

from jacobinerf_ns.data.synth import SynthConfig, generate_scene
from jacobinerf_ns.data.synth.trajectory import PathError
from jacobinerf_ns.errors import ConfigError, JacobiNeRFError

DESCRIPTION = "Generate a train / test set of procedural rooms (jn-synth scenes) for jacobinerf-gen."


@dataclass
class SynthManyConfig:
    """A set of jn-synth scenes split into training and unseen (test) scenes."""

    output_dir: Path = Path("data/gen-scenes")
    """Root folder; scenes go to train/ and test/ under it."""
    scenes: int = 8
    """Number of training scenes."""
    test_scenes: int = 2
    """Number of unseen (test) scenes."""
    seed: int = 100
    """Seed of the first training scene (the others follow)."""
    test_seed: int = 10000
    """Seed of the first test scene (must not fall among the training seeds)."""
    num_views: int = 60
    """Frames per scene (the dataparser of jacobinerf-gen takes every 3rd as source view / training target and the
    ones after them as test views)."""
    width: int = 64
    """Image width."""
    height: int = 48
    """Image height."""
    supersample: int = 2
    """Colour anti-aliasing (rays per pixel per axis)."""
    vary_settings: bool = True
    """Draw room-size ranges, camera pitch / swing, clutter and lighting per scene from its seed."""
    overwrite: bool = False
    """Regenerate scenes that exist already."""
    quiet: bool = False
    """Do not print progress."""


def scene_settings(cfg: SynthManyConfig, seed: int, out: Path, vary: bool) -> SynthConfig:
    """The jn-synth configuration of one scene."""
    base = SynthConfig(
        output_dir=out, seed=seed, num_views=cfg.num_views, width=cfg.width, height=cfg.height,
        supersample=cfg.supersample, export_mesh=False, quiet=True, overwrite=True,
    )  # fmt: skip
    if not vary:
        return base
    rng = np.random.default_rng(np.random.SeedSequence([seed, 77]))
    length = float(rng.uniform(5.2, 8.0))
    width = float(rng.uniform(4.4, min(length, 6.6)))
    height = float(rng.uniform(2.5, 3.1))
    return replace(
        base,
        room_length_range=(length, length + 0.4),
        room_width_range=(width, width + 0.3),
        room_height_range=(height, height + 0.1),
        pitch_deg=float(rng.uniform(-20.0, -8.0)),
        look_swing_deg=float(rng.uniform(25.0, 45.0)),
        num_clutter=int(rng.integers(3, 10)),
        ambient=float(rng.uniform(0.16, 0.3)),
        light_intensity=float(rng.uniform(4.5, 7.5)),
    )


def _settings_key(cfg: SynthConfig) -> dict:
    meta = {k: getattr(cfg, k) for k in ("seed", "num_views", "width", "height", "supersample")}
    meta.update({k: list(getattr(cfg, k)) for k in ("room_length_range", "room_width_range", "room_height_range")})
    meta.update({k: getattr(cfg, k) for k in ("pitch_deg", "look_swing_deg", "num_clutter", "ambient")})
    return meta


def _existing_matches(path: Path, cfg: SynthConfig) -> bool:
    meta_path = path / "scene_meta.json"
    if not meta_path.is_file() or not (path / "traj_w_c.txt").is_file():
        return False
    try:
        settings = json.loads(meta_path.read_text()).get("settings", {})
    except json.JSONDecodeError:
        return False
    want = _settings_key(cfg)
    return all(settings.get(k) == v for k, v in want.items() if k in settings) and settings.get("seed") == cfg.seed


def _generate(cfg: SynthManyConfig, seed: int, out: Path) -> SynthConfig | None:
    """Generate (or keep) one scene; None when no camera loop can be planned for this seed."""
    for vary in (cfg.vary_settings, False) if cfg.vary_settings else (False,):
        settings = scene_settings(cfg, seed, out, vary)
        if not cfg.overwrite and _existing_matches(out, settings):
            return settings
        try:
            generate_scene(settings)
            return settings
        except PathError:
            continue
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, path)


def generate_many(cfg: SynthManyConfig) -> dict:
    """Generate the set; returns what ``scenes.json`` holds."""
    if cfg.scenes < 1 or cfg.test_scenes < 0:
        raise ConfigError(
            f"need at least one training scene and no negative count (got {cfg.scenes}, {cfg.test_scenes})"
        )
    if cfg.seed <= cfg.test_seed < cfg.seed + 4 * cfg.scenes or cfg.test_seed <= cfg.seed < cfg.test_seed + 4 * max(
        cfg.test_scenes, 1
    ):
        raise ConfigError(f"test seeds from {cfg.test_seed} would overlap the training seeds from {cfg.seed}")
    root = Path(cfg.output_dir)
    summary: dict = {"train": [], "test": []}
    for split, count, first in (("train", cfg.scenes, cfg.seed), ("test", cfg.test_scenes, cfg.test_seed)):
        (root / split).mkdir(parents=True, exist_ok=True)
        seed = first
        while len(summary[split]) < count:
            if seed >= first + 4 * max(count, 1):
                raise ConfigError(f"could not plan camera loops for {count} {split} scenes from seed {first}")
            out = root / split / f"seed_{seed:05d}"
            t0 = time.perf_counter()
            settings = _generate(cfg, seed, out)
            if settings is not None:
                summary[split].append({"seed": seed, "path": f"{split}/{out.name}", **_settings_key(settings)})
                if not cfg.quiet:
                    print(f"jn-synth-many: {split} {out} ({time.perf_counter() - t0:.1f} s)", flush=True)
            seed += 1
        _write_atomic(root / f"{split}.txt", "".join(f"{split}/seed_{s['seed']:05d}\n" for s in summary[split]))
    _write_atomic(root / "scenes.json", json.dumps(summary, indent=1) + "\n")
    return summary


def main(cfg: SynthManyConfig) -> int:
    t0 = time.perf_counter()
    try:
        summary = generate_many(cfg)
    except JacobiNeRFError as exc:
        print(f"jn-synth-many: error: {exc}", file=sys.stderr)
        return 2
    if not cfg.quiet:
        n = len(summary["train"]) + len(summary["test"])
        print(f"jn-synth-many: {n} scenes in {cfg.output_dir} ({time.perf_counter() - t0:.1f} s)")
    return 0


def entrypoint() -> None:
    """Console-script entry point (``jn-synth-many``)."""
    code = main(tyro.cli(SynthManyConfig, description=DESCRIPTION))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    entrypoint()
