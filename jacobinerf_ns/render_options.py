"""What a render computes besides colour and depth, passed explicitly per render — never stored on the model.

The viewer's render thread, ``ns-render``, ``jn-propagate``, ``jn-query`` and training all share one model. Extra
outputs (Jacobians, propagation responses, a selection, an edit) used to be switched on by setting model attributes,
which a training step running at the same time would also see. Now:

* ``with model.rendering(RenderOptions(...)):`` sets options for the renders of *this thread* only (a thread-local
  stack), restored on exit;
* the viewer panel keeps its options on the model (:attr:`FieldModel.viewer_options`), read only by nerfstudio's
  viewer render thread;
* a run's saved edit (``edit_file``) applies to renders outside training;
* everything else — in particular every training step — renders with :data:`DEFAULT`.

All tensors here are per-render inputs (directions, query vectors); they are moved to the ray batch's device.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError, DataError


@dataclass(frozen=True)
class Selection:
    """Pixels selected by a click: by JacobiNeRF resonance (Jacobians) or by feature similarity (feature fields).

    ``score`` per ray is in [0, 1]; ``selection`` = score ≥ ``threshold``.
    * ``kind="jacobian"``: ``vector`` is the clicked pixel's direction G (3, K). ``mode="cosine"``: |cos(J̃_q, G)| over
      the 3K values; ``mode="response"``: the first-order response mean_c |J̃_q[c]·G[c]| divided by ``reference``
      (the clicked pixel's own response), clipped to 1.
    * ``kind="feature"``: ``vector`` is a query feature (D,), score = max(0, cos(F̂_q, vector)).
    """

    kind: Literal["jacobian", "feature"]
    vector: Tensor
    threshold: float = 0.5
    mode: Literal["cosine", "response"] = "cosine"
    reference: float = 1.0
    color: tuple[float, float, float] = (1.0, 0.2, 0.1)
    """Highlight colour of ``selection_overlay``."""


@dataclass(frozen=True)
class Edit:
    """An appearance or geometry edit of what a query matches, rendered as ``rgb_edited`` (plus
    ``accumulation_edited`` / ``depth_edited``).

    * ``kind="recolor"`` on a JacobiNeRF run: the paper's edit ``W += diag(color) · G · strength`` on θᴰ, applied in
      the render only (``vector`` = G, (3, K)); locality comes from shaping alone.
    * on a feature-field run (``vector`` = query feature (D,), per-sample score max(0, cos(f(x), q)), matched where the
      score ≥ ``threshold``): ``recolor`` blends the colour towards ``color`` (DFF: c(1−s) + color·s, s = the matched
      score), ``permute`` permutes the colour channels where matched, ``delete`` sets σ = 0 where matched (what is
      behind appears), ``extract`` keeps σ only where matched.
    """

    kind: Literal["recolor", "permute", "delete", "extract"]
    vector: Tensor
    threshold: float = 0.5
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    strength: float = 0.1
    permutation: tuple[int, int, int] = (2, 0, 1)
    target: Literal["jacobian", "feature"] = "feature"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "target": self.target,
            "threshold": self.threshold,
            "color": list(self.color),
            "strength": self.strength,
            "permutation": list(self.permutation),
            "vector": self.vector.detach().cpu().double().tolist(),
            "vector_shape": list(self.vector.shape),
        }

    @staticmethod
    def from_json(data: dict, where: str = "edit") -> Edit:
        try:
            vector = torch.tensor(data["vector"], dtype=torch.float32).reshape(data["vector_shape"])
            return Edit(
                kind=data["kind"],
                vector=vector,
                threshold=float(data.get("threshold", 0.5)),
                color=tuple(float(c) for c in data.get("color", (1.0, 0.0, 0.0))),  # type: ignore[arg-type]
                strength=float(data.get("strength", 0.1)),
                permutation=tuple(int(c) for c in data.get("permutation", (2, 0, 1))),  # type: ignore[arg-type]
                target=data.get("target", "feature"),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"unreadable {where} ({exc.__class__.__name__}: {exc})") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)


def load_edit(path: Path) -> Edit:
    """An edit saved by ``jn-query --save-edit`` or the viewer's "render edit"."""
    if not Path(path).is_file():
        raise DataError(f"edit file not found: {path}")
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable edit file {path} ({exc})") from None
    return Edit.from_json(data, where=f"edit file {path}")


@dataclass(frozen=True)
class RenderOptions:
    """Per-render extras (module docstring)."""

    jacobians: bool = False
    """Output ``jacobian``: each ray's per-channel Jacobian J̃ (3K values) w.r.t. θᴰ."""
    directions: Tensor | None = None
    """(n, 3, K) label directions G: output ``response_3d`` (``label_readout`` 3d) or ``response_cos``
    (``label_readout`` 2d-cos), n values per ray, and, with ``label_colors``, ``labels`` (the colour of the strongest
    label)."""
    label_readout: Literal["3d", "2d-cos"] = "3d"
    """How ``directions`` are read: ``3d`` volume-renders Σ w_i |ḡ·h_i| (official), ``2d-cos`` scores each ray's
    Jacobian by |cos(J̃, G)| (``jn-propagate``'s default)."""
    label_colors: Tensor | None = None
    """(n, 3) colours of the labels of ``directions``."""
    weight_delta: Tensor | None = None
    """(3, K) ΔW added to θᴰ for this render only: output ``rgb_perturbed`` (JacobiNeRF's 2D perturbation)."""
    selection: Selection | None = None
    edit: Edit | None = None
    extra: dict = field(default_factory=dict)
    """Free-form extras for model-specific outputs."""

    def with_(self, **changes) -> RenderOptions:
        return replace(self, **changes)


DEFAULT = RenderOptions()

_LOCAL = threading.local()


def _stack() -> list[tuple[int, RenderOptions]]:
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


@contextmanager
def rendering(model, options: RenderOptions) -> Iterator[None]:
    """Renders of ``model`` in this thread use ``options`` inside the block."""
    stack = _stack()
    stack.append((id(model), options))
    try:
        yield
    finally:
        stack.pop()


def thread_options(model) -> RenderOptions | None:
    """The options set for ``model`` by an enclosing :func:`rendering` in this thread (innermost), if any."""
    for owner, options in reversed(_stack()):
        if owner == id(model):
            return options
    return None


def in_viewer_render_thread() -> bool:
    """True inside nerfstudio's viewer render thread (``RenderStateMachine``)."""
    return type(threading.current_thread()).__name__ == "RenderStateMachine"


def check_vector(vector: Tensor, shape: tuple[int, ...], what: str) -> Float[Tensor, "..."]:
    if tuple(vector.shape) != tuple(shape):
        raise ConfigError(f"{what} has shape {tuple(vector.shape)}, this run needs {tuple(shape)}")
    if not bool(torch.isfinite(vector).all()):
        raise ConfigError(f"{what} contains NaN or inf")
    return vector
