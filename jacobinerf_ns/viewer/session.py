"""What the viewer panel does, without any GUI: select, label and edit on a loaded pipeline from click rays.

:class:`ClickSession` is driven by the panel (:mod:`jacobinerf_ns.viewer.panel`) and called directly by the tests and
``benchmarks/selection.py``. It never takes a lock (the panel does) and never changes the model; everything it shows
goes into :meth:`ClickSession.options`, which the panel puts on ``model.viewer_options`` (read only by the viewer's
render thread).

* **Select**: the click ray is rendered as a 1×1 camera (:func:`~jacobinerf_ns.viewer.geometry.ray_camera`): its
  accumulation says whether it hit anything (< :data:`MIN_ACCUMULATION`: :class:`NothingHit`), its depth gives the
  clicked point, and :func:`jacobinerf_ns.query.query_from_click` on that camera gives the query — the clicked ray's
  Jacobian direction G (JacobiNeRF resonance) or its rendered feature (feature fields). Two one-ray renders, whatever
  the viewer's resolution; the selection itself is then computed by the viewer's own render
  (``selection_score`` / ``selection`` / ``selection_overlay``).
* **Label**: the clicked point is projected into the labelled training view (``label_view``) and kept when that view
  sees it (rendered depth there agrees); the clicks form the :class:`~jacobinerf_ns.annotations.Annotation` that
  ``jn-propagate --annotations`` reads. Live labels use the run's best single-render method: JacobiNeRF runs score each
  ray's Jacobian against the label directions by |cos| (``jn-propagate --method 2d-cos``, the default; directions
  from :class:`~jacobinerf_ns.propagator.JacobiLabeller` itself), feature fields the nearest annotated rendered feature
  (``feature-field-nn``).
* **Edit**: :func:`jacobinerf_ns.query.make_edit` on the selection's query (JacobiNeRF: the paper's recolour
  ``W += diag(c)·G·t``; feature fields: recolour blend or delete, σ = 0 where matched), shown as ``rgb_edited``;
  :meth:`ClickSession.save_edit` writes the ``edit.json`` + ``config_edit.yml`` pair that ``jn-query`` writes, which
  ``ns-render --load-config config_edit.yml --rendered-output-names rgb_edited`` replays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns import query as q
from jacobinerf_ns.annotations import Annotation
from jacobinerf_ns.errors import ConfigError, DataError
from jacobinerf_ns.render_options import Edit, RenderOptions
from jacobinerf_ns.viewer.geometry import project_to_pixel, ray_camera
from jacobinerf_ns.viewer.labels import LABEL_FEATURES, LABEL_INDEX

MIN_ACCUMULATION = 0.05
"""A click ray whose rendered accumulation is below this hits nothing: a ray that leaves the scene box renders
exactly 0. (Short CPU runs have many real surfaces at 0.2–0.6 with the ``last_sample`` background, so the bound is
low; the expected depth is normalised by the accumulation, so it still lies on the surface.)"""
DEFAULT_THRESHOLD = {"jacobian": 0.9, "feature": 0.9}
"""Starting selection thresholds (score in [0, 1]); with :data:`DEFAULT_MODE` the best single thresholds on the test
runs' training views (``benchmarks/selection.py`` calibrates them on training views and scores test views)."""
DEFAULT_MODE = "cosine"
"""JacobiNeRF score: ``cosine`` |cos(J̃_q, G)| (scale-free) or ``response`` (the first-order response relative to
the clicked pixel's own; pixels with larger Jacobians saturate at 1, so it over-selects on our runs)."""
EditKind = Literal["recolor", "delete"]


class NothingHit(ConfigError):
    """The click ray hits nothing (zero accumulation: it leaves the scene)."""


@dataclass(frozen=True)
class Hit:
    """What a click ray hit: the scene point (expected depth along the unit ray), that depth and the accumulation."""

    point: Tensor
    depth: float
    accumulation: float


@dataclass(frozen=True)
class LabelClick:
    """One label click, as a pixel of the labelled training view."""

    name: str
    label_id: int
    pixel: tuple[int, int]
    """(y, x) in the labelled view."""
    point: Tensor
    """The clicked scene point."""


def describe_kinds(model) -> str:
    """One line saying which click selections a run offers."""
    kinds = q.query_kinds(model)
    name = type(model).__name__
    if not kinds:
        return (
            f"This {name} run offers no click selection: it has neither colour Jacobians nor a feature head "
            "(train jacobinerf for resonance or jacobinerf-features for feature similarity)."
        )
    what = {"jacobian": "JacobiNeRF resonance (colour Jacobians)", "feature": "feature similarity (feature head)"}
    return f"This {name} run selects by {' and '.join(what[k] for k in kinds)}."


class ClickSession:
    """Selection, labels and edit state of one viewer (module docstring)."""

    def __init__(self, pipeline, config_path: Path | None = None) -> None:
        self.pipeline = pipeline
        self.model = pipeline.model
        self.config_path = config_path
        self.kinds = q.query_kinds(self.model)
        self.kind = self.kinds[0] if self.kinds else None
        self.threshold = DEFAULT_THRESHOLD.get(self.kind or "feature", 0.5)
        self.mode: Literal["cosine", "response"] = DEFAULT_MODE
        self.query: q.Query | None = None
        self.hit: Hit | None = None
        self.label_view = 0
        self.clicks: list[LabelClick] = []
        self.new_classes: list[str] = []
        self.edit_kind: EditKind | None = None
        self.color: tuple[float, float, float] = (1.0, 0.0, 0.0)
        self.strength = 1.0
        self._label_options: dict = {}

    # ------------------------------------------------------------------------------------------------ state
    @property
    def offers(self) -> str:
        return describe_kinds(self.model)

    @property
    def train_cameras(self):
        return self.pipeline.datamanager.train_dataset.cameras

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)

    @property
    def edit(self) -> Edit | None:
        if self.edit_kind is None or self.query is None:
            return None
        return q.make_edit(self.query, self.edit_kind, self.threshold, self.color, self.strength)

    def options(self) -> RenderOptions | None:
        """The render options of the current selection, labels and edit (None: nothing to show)."""
        selection = None if self.query is None else q.selection_for(self.query, self.threshold, self.mode)
        edit = self.edit
        if selection is None and edit is None and not self._label_options:
            return None
        return RenderOptions(selection=selection, edit=edit, **self._label_options)

    def _require_kind(self) -> str:
        if self.kind is None:
            raise ConfigError(self.offers)
        return self.kind

    # ----------------------------------------------------------------------------------------------- clicks
    @torch.no_grad()
    def pick(self, origin, direction) -> Hit:
        """Render the click ray; :class:`NothingHit` when its accumulation is below :data:`MIN_ACCUMULATION`."""
        origin = torch.as_tensor(origin, dtype=torch.float32).reshape(3)
        direction = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=torch.float32).reshape(3), dim=0)
        if not bool(torch.isfinite(origin).all() and torch.isfinite(direction).all()):
            raise NothingHit("the click ray is not finite")
        out = q.render(self.model, ray_camera(origin, direction))
        acc, depth = float(out["accumulation"].flatten()[0]), float(out["depth"].flatten()[0])
        if not (acc >= MIN_ACCUMULATION and np.isfinite(depth)):
            raise NothingHit(
                f"the click hits nothing (accumulation {acc:.2f} < {MIN_ACCUMULATION}): click on the scene itself"
            )
        return Hit(point=origin + direction * depth, depth=depth, accumulation=acc)

    def select(self, origin, direction) -> Hit:
        """Select by the run's mechanism from the clicked ray (module docstring)."""
        kind = self._require_kind()
        hit = self.pick(origin, direction)
        self.query = q.query_from_click(self.model, ray_camera(origin, direction), 0, 0, kind)  # type: ignore[arg-type]
        self.hit = hit
        return hit

    def clear_selection(self) -> None:
        self.query, self.hit, self.edit_kind = None, None, None

    # ----------------------------------------------------------------------------------------------- labels
    def label_id(self, name: str) -> int:
        """Class id of ``name``: its index in the dataset's class table, else a new id after the table."""
        name = name.strip()
        if not name:
            raise ConfigError("a label needs a class name: pick one or type a new one")
        if name in self.class_names:
            return self.class_names.index(name)
        if name not in self.new_classes:
            self.new_classes.append(name)
        return len(self.class_names) + self.new_classes.index(name)

    def set_label_view(self, view: int) -> None:
        n = len(self.train_cameras)
        if not 0 <= int(view) < n:
            raise ConfigError(f"label view {view} is not a training view (0..{n - 1})")
        if self.clicks and int(view) != self.label_view:
            raise ConfigError(
                f"the {len(self.clicks)} label clicks are in training view {self.label_view}: undo them before "
                "labelling another view (an annotation file holds one view)"
            )
        self.label_view = int(view)

    @torch.no_grad()
    def label(self, origin, direction, name: str) -> LabelClick:
        """Add a label click: the clicked point as a pixel of the labelled view, then re-propagate."""
        self._require_kind()
        label_id = self.label_id(name)
        hit = self.pick(origin, direction)
        view = self.label_view
        camera = self.train_cameras[view : view + 1]
        pixel = project_to_pixel(camera, hit.point)
        if pixel is None:
            raise ConfigError(
                f"the clicked point is outside training view {view}: press 'Go to label view' and click there"
            )
        from jacobinerf_ns.evaluation import render_pixels

        idx = torch.tensor([[view, pixel[0], pixel[1]]])
        seen = float(render_pixels(self.model, self.train_cameras, idx, ["depth"])["depth"].flatten()[0])
        centre = camera.camera_to_worlds.reshape(3, 4)[:, 3].cpu()
        distance = float((hit.point - centre).norm())
        if abs(seen - distance) > 0.05 + 0.1 * distance:
            raise ConfigError(
                f"training view {view} does not see the clicked point (it is hidden there): press "
                "'Go to label view' and click there"
            )
        click = LabelClick(name=name.strip(), label_id=label_id, pixel=pixel, point=hit.point)
        self.clicks.append(click)
        try:
            self._propagate()
        except Exception:
            self.clicks.pop()
            raise
        return click

    def undo_label(self) -> LabelClick | None:
        if not self.clicks:
            return None
        click = self.clicks.pop()
        self._propagate()
        return click

    def annotation(self) -> Annotation:
        """The clicks as the annotation JSON of ``jn-propagate --annotations`` (semantic target, sparse)."""
        if not self.clicks:
            raise ConfigError("no label clicks yet")
        ids = sorted({c.label_id for c in self.clicks})
        names = {c.label_id: c.name for c in self.clicks}
        frames = self.pipeline.datamanager.train_dataparser_outputs.metadata.get("frame_indices")
        return Annotation(
            target="semantic",
            setting="sparse",
            view=self.label_view,
            label_ids=ids,
            label_names=[names[i] for i in ids],
            pixels=torch.tensor([list(c.pixel) for c in self.clicks], dtype=torch.long),
            labels=torch.tensor([ids.index(c.label_id) for c in self.clicks], dtype=torch.long),
            frame=None if frames is None else int(frames[self.label_view]),
        )

    def label_colors(self, ids: list[int]) -> Tensor:
        """Display colours: the dataset's class colours, a fixed palette for new classes."""
        from jacobinerf_ns.data.class_table import palette

        table = self.model.class_colors.float().cpu()
        extra = torch.from_numpy(palette(len(table) + len(self.new_classes) + 1, seed=1)).float() / 255.0
        return torch.stack([table[i] if i < len(table) else extra[i] for i in ids])

    @torch.no_grad()
    def _propagate(self) -> None:
        if not self.clicks:
            self._label_options = {}
            return
        ann = self.annotation()
        colors = self.label_colors(ann.label_ids)
        if self.kind == "jacobian":
            from jacobinerf_ns.propagator import JacobiLabeller

            labeller = JacobiLabeller(self.model, ann, self.train_cameras, "2d-cos", None)  # type: ignore[arg-type]
            self._label_options = {"directions": labeller.directions, "label_colors": colors, "label_readout": "2d-cos"}
            return
        from jacobinerf_ns.evaluation import render_pixels

        idx = torch.cat([torch.full((len(ann.pixels), 1), ann.view), ann.pixels], dim=1)
        keys = render_pixels(self.model, self.train_cameras, idx, ["features"])["features"]
        self._label_options = {"label_colors": colors, "extra": {LABEL_FEATURES: keys, LABEL_INDEX: ann.labels}}

    def save_annotations(self, path: Path) -> Path:
        """Write the annotation JSON atomically (temporary file + rename)."""
        data = self.annotation().to_json()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------------------------------------- edit
    def set_edit(self, kind: EditKind | None) -> None:
        if kind is not None:
            if self.query is None:
                raise ConfigError("select something first (press Select, then click the scene)")
            q.make_edit(self.query, kind, self.threshold, self.color, self.strength)  # checks the kind
        self.edit_kind = kind

    def save_edit(self, folder: Path) -> tuple[Path, Path]:
        """Write ``edit.json`` and ``config_edit.yml`` (the run's config with the edit) into ``folder``."""
        edit = self.edit
        if edit is None:
            raise ConfigError("no edit to render: select, then press Recolour or Delete")
        if self.config_path is None or not Path(self.config_path).is_file():
            raise DataError(f"the run's config.yml is not found ({self.config_path}): cannot write config_edit.yml")
        import yaml

        from jacobinerf_ns.query import write_edit_config

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        edit_path, config_out = folder / "edit.json", folder / "config_edit.yml"
        edit.save(edit_path)
        config = yaml.load(Path(self.config_path).read_text(), Loader=yaml.Loader)
        write_edit_config(config, edit_path, config_out)
        return edit_path, config_out
