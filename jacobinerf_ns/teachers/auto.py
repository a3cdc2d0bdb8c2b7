"""The ``auto`` teacher of the CPU presets: the synthetic teacher where the data has ground-truth semantics (the
controlled studies on generated scenes), the weight-free ``appearance`` teacher everywhere else (a user's capture).

It is resolved once, when the datamanager knows whether its training split has semantic labels; the teacher that
ran is recorded in the run's metadata and results (``teacher_name``; a synthetic one always says "synthetic").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.appearance import AppearanceTeacherConfig
from jacobinerf_ns.teachers.base import Teacher, TeacherConfig
from jacobinerf_ns.teachers.synthetic import SyntheticTeacherConfig


@dataclass
class AutoTeacherConfig(TeacherConfig):
    """``synthetic`` when the data has ground-truth semantics, else ``appearance`` (no weights, no ground truth)."""

    _target: type = field(default_factory=lambda: Teacher)
    name: str = "auto"
    """Label of this choice (the resolved teacher's own name is what results report)."""
    synthetic: SyntheticTeacherConfig = field(default_factory=SyntheticTeacherConfig)
    """The teacher used when ground-truth semantics exist."""
    appearance: AppearanceTeacherConfig = field(default_factory=AppearanceTeacherConfig)
    """The teacher used otherwise."""
    prefer: Literal["synthetic", "appearance"] = "synthetic"
    """``synthetic`` (use it whenever ground truth exists) or ``appearance`` (always the pixel-only teacher)."""

    def resolve(self, has_ground_truth: bool) -> TeacherConfig:
        """The concrete teacher config for data with or without ground-truth semantics."""
        chosen = self.synthetic if has_ground_truth and self.prefer == "synthetic" else self.appearance
        chosen.show_progress = self.show_progress
        return chosen

    def raw_dim(self) -> int:
        return self.synthetic.output_dim()

    def output_dim(self) -> int:
        dims = {self.synthetic.output_dim(), self.appearance.output_dim()}
        if len(dims) != 1:
            raise ConfigError(f"auto teacher: synthetic and appearance give different dims {sorted(dims)}")
        return dims.pop()

    def feature_identity(self) -> dict[str, Any]:  # pragma: no cover - never keys a cache (resolved first)
        raise TypeError("resolve the auto teacher before computing features")
