"""``jn-synth``: a procedural furnished room with exact ground truth, written in Semantic-NeRF's Replica layout.

Use :func:`generate_scene` with a :class:`SynthConfig` (or the ``jn-synth`` command). The generator does not import
nerfstudio; it needs numpy, trimesh, embreex and Pillow.
"""

from __future__ import annotations

from jacobinerf_ns.data.synth.config import SynthConfig
from jacobinerf_ns.data.synth.writer import OutputExistsError, generate_scene

__all__ = ["OutputExistsError", "SynthConfig", "generate_scene"]
