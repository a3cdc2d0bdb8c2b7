"""``jn-query``: select what a click, a patch or a text matches in a trained run, edit it, and export it.

Example::

    jn-query --load-config RUN/config.yml --click 0 80 60 --edit recolor --color 0 0.6 1 --output-dir query
    jn-query --load-config RUN/config.yml --text "chair" --edit delete --output-dir query_chair   # clip / lseg runs

A click or patch is given on a view of ``--query-split`` (training views by default: ``VIEW X Y``, pixel
coordinates, x to the right). Feature-field runs query by feature similarity (click, patch, text), JacobiNeRF runs by
resonance of θᴰ (click, patch; the recolour edit ``W += diag(c)·G·t``). For every target view (``--split``, default
the test views) it writes ``similarity_NNNN.png`` (score colour map), ``mask_NNNN.png`` (0/255),
``overlay_NNNN.png`` and, with ``--edit``, ``edited_NNNN.png``; then ``selection.ply`` (the selected pixels
back-projected with the rendered depth, coloured, in the capture's world frame — MeshLab, CloudCompare, trimesh and
open3d read it), ``query.json``, and with ``--edit`` the edit (``edit.json``) plus ``config_edit.yml``, a copy of
the run's config that applies it, so ``ns-render ... --load-config DIR/config_edit.yml --rendered-output-names
rgb_edited`` replays it. ``--camera-path`` (a camera path JSON from the viewer) also renders a video.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from jacobinerf_ns.errors import ConfigError, DataError


@dataclass
class QueryCommand:
    """Select, edit and export what a query matches in a jacobinerf / jacobinerf-features run."""

    load_config: Path
    """config.yml of the run."""
    output_dir: Path = Path("query")
    """Where the masks, maps, edited renders, PLY and edit files go."""
    click: tuple[int, int, int] | None = None
    """VIEW X Y: one pixel of a view of --query-split."""
    patch: tuple[int, int, int, int, int] | None = None
    """VIEW X0 Y0 X1 Y1: a box of a view of --query-split (x1, y1 exclusive)."""
    text: str | None = None
    """A text query (feature fields distilled from a clip or lseg teacher)."""
    query_split: Literal["train", "test"] = "train"
    """The split whose views --click / --patch refer to."""
    by: Literal["auto", "feature", "jacobian"] = "auto"
    """Score by feature similarity or by Jacobian resonance (auto: what the run has)."""
    threshold: float = 0.5
    """A pixel / point is selected when its score (cosine, in [0, 1]) is at least this."""
    edit: Literal["none", "recolor", "permute", "delete", "extract"] = "none"
    """Edit what matches (JacobiNeRF runs: recolor only)."""
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """Target colour of --edit recolor (RGB in [0, 1])."""
    strength: float = 1.0
    """JacobiNeRF recolour strength t in W += diag(color)·G·t."""
    split: Literal["train", "test"] = "test"
    """The views to select in and render."""
    max_views: int | None = None
    """Only the first n views of --split."""
    camera_path: Path | None = None
    """A camera path JSON (the viewer's "render" panel) to render a video of the edit (or the overlay)."""
    ply_frame: Literal["world", "scene"] = "world"
    """Coordinates of selection.ply: the capture's own world frame (metres for Replica/ScanNet) or nerfstudio's."""

    def main(self) -> dict:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from jacobinerf_ns import query as q

        given = [v is not None for v in (self.click, self.patch, self.text)]
        if sum(given) != 1:
            raise ConfigError("give exactly one of --click VIEW X Y, --patch VIEW X0 Y0 X1 Y1, --text TEXT")
        if not self.load_config.is_file():
            raise DataError(f"run config not found: {self.load_config}")
        from nerfstudio.utils.eval_utils import eval_setup

        config, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        model, dm = pipeline.model, pipeline.datamanager
        kind = None if self.by == "auto" else self.by
        query_cams = dm.train_dataset.cameras if self.query_split == "train" else dm.eval_dataset.cameras
        if self.text is not None:
            query = q.query_from_text(pipeline, self.text)
        else:
            view = (self.click or self.patch)[0]  # type: ignore[index]
            if not 0 <= view < len(query_cams):
                raise ConfigError(f"view {view} is not a {self.query_split} view (0..{len(query_cams) - 1})")
            camera = query_cams[view : view + 1]
            if self.click is not None:
                query = q.query_from_click(model, camera, self.click[2], self.click[1], kind)
            else:
                _, x0, y0, x1, y1 = self.patch  # type: ignore[misc]
                query = q.query_from_box(model, camera, (x0, y0, x1, y1), kind)
        edit = None
        if self.edit != "none":
            edit = q.make_edit(query, self.edit, self.threshold, self.color, self.strength)
        targets = dm.train_dataset.cameras if self.split == "train" else dm.eval_dataset.cameras
        n = len(targets) if self.max_views is None else min(self.max_views, len(targets))
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        points, colors, selected = [], [], []
        for i in range(n):
            cam = targets[i : i + 1]
            sel = q.select(model, cam, query, self.threshold)
            _write_view(out, i, sel)
            pts, rgb = q.selection_points(cam, sel["depth"], sel["rgb"], sel["selection"])
            points.append(pts)
            colors.append(rgb)
            selected.append(float(sel["selection"].float().mean()))
            if edit is not None:
                _png(out / f"edited_{i:04d}.png", q.render_edit(model, cam, edit)["rgb_edited"].numpy())
        cloud = np.concatenate(points) if points else np.zeros((0, 3))
        if self.ply_frame == "world":
            outputs = dm.train_dataparser_outputs
            cloud = q.scene_to_world(cloud, outputs.dataparser_transform, float(outputs.dataparser_scale))
        _write_ply(out / "selection.ply", cloud, np.concatenate(colors) if colors else np.zeros((0, 3), np.uint8))
        record = {
            "run": str(self.load_config),
            "query": query.source,
            "by": query.kind,
            "threshold": self.threshold,
            "views": n,
            "selected_fraction": selected,
            "points": int(len(cloud)),
            "edit": self.edit,
        }
        if edit is not None:
            edit.save(out / "edit.json")
            q.write_edit_config(config, out / "edit.json", out / "config_edit.yml")
            record["config_edit"] = str(out / "config_edit.yml")
        if self.camera_path is not None:
            record["video"] = str(_render_video(pipeline, self.camera_path, out / "video.mp4", query, edit, self))
        (out / "query.json").write_text(json.dumps(record, indent=2))
        print(
            f"jn-query: {query.source} by {query.kind} similarity >= {self.threshold}: {n} views, "
            f"{100 * float(np.mean(selected)):.1f} % of pixels selected, {len(cloud)} points -> {out}"
        )
        return record


def _png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path)


def _write_view(out: Path, i: int, sel: dict) -> None:
    from nerfstudio.utils import colormaps

    score = sel["selection_score"][..., None]
    _png(out / f"similarity_{i:04d}.png", colormaps.apply_colormap(score).numpy())
    _png(out / f"mask_{i:04d}.png", sel["selection"].numpy().astype(np.uint8) * 255)
    _png(out / f"overlay_{i:04d}.png", sel["selection_overlay"].numpy())


def _write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary little-endian PLY (x, y, z float; red, green, blue uchar), written atomically."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment jn-query selection\n"
        f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = np.empty(len(points), dtype=[("p", "<f4", (3,)), ("c", "u1", (3,))])
    rows["p"], rows["c"] = points, colors
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(rows.tobytes())
    tmp.replace(path)


def _render_video(pipeline, camera_path: Path, out: Path, query, edit, cli: QueryCommand) -> Path:
    """Render a camera path (the viewer's JSON) with the edit (or the selection overlay) into an mp4."""
    import mediapy

    from jacobinerf_ns import query as q

    if not camera_path.is_file():
        raise DataError(f"camera path not found: {camera_path}")
    from nerfstudio.cameras.camera_paths import get_path_from_json

    try:
        cameras = get_path_from_json(json.loads(camera_path.read_text()))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable camera path {camera_path} ({exc.__class__.__name__}: {exc})") from None
    frames = []
    for i in range(len(cameras)):
        cam = cameras[i : i + 1]
        if edit is not None:
            frames.append(q.render_edit(pipeline.model, cam, edit)["rgb_edited"].clamp(0, 1).numpy())
        else:
            frames.append(q.select(pipeline.model, cam, query, cli.threshold)["selection_overlay"].numpy())
    mediapy.write_video(str(out), frames, fps=24)
    return out


def entrypoint() -> None:
    tyro.cli(QueryCommand).main()


if __name__ == "__main__":
    entrypoint()
