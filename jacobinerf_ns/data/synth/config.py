"""Configuration of the procedural indoor-scene generator (``jn-synth``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GENERATOR_NAME = "jn-synth"
GENERATOR_VERSION = "1.0"


@dataclass
class SynthConfig:
    """A procedurally furnished room rendered along a Replica-like camera path, written in Semantic-NeRF's layout."""

    output_dir: Path = Path("data/synth-room")
    """Directory to write the scene into (must not exist or be empty, unless --overwrite)."""
    seed: int = 0
    """Random seed: the same seed gives byte-identical files; another seed gives another room and path."""
    num_views: int = 150
    """Number of frames along the camera path (the path itself does not depend on this)."""
    width: int = 160
    """Image width in pixels (horizontal field of view is always 90 degrees, as in Replica renders)."""
    height: int = 120
    """Image height in pixels."""
    supersample: int = 2
    """Colour anti-aliasing: supersample x supersample rays per pixel, averaged (labels/depth use the centre ray)."""
    overwrite: bool = False
    """Replace an existing non-empty output directory."""
    room_length_range: tuple[float, float] = (6.0, 7.5)
    """Range of the room's longer side (metres)."""
    room_width_range: tuple[float, float] = (5.0, 6.0)
    """Range of the room's shorter side (metres)."""
    room_height_range: tuple[float, float] = (2.6, 3.0)
    """Range of the ceiling height (metres)."""
    camera_height_range: tuple[float, float] = (1.1, 1.7)
    """Range of camera heights above the floor (metres)."""
    min_clearance: float = 0.4
    """Minimum distance from every camera centre to any object's bounding box or the room's surfaces (metres)."""
    look_swing_deg: float = 35.0
    """Amplitude of the left-right swing of the look direction around 'looking across the room' (degrees)."""
    pitch_deg: float = -14.0
    """Mean camera pitch (negative looks down), degrees."""
    num_clutter: int = 6
    """Number of small unlabelled (void) clutter objects."""
    lamp_light: bool = True
    """Add a second point light in a lamp (warm) besides the ceiling light."""
    ambient: float = 0.22
    """Ambient light level (linear)."""
    light_intensity: float = 6.0
    """Intensity of the ceiling light (linear units times metres squared)."""
    exposure: float = 1.0
    """Multiplier on linear radiance before tone mapping to sRGB."""
    batch_views: int = 10
    """Views rendered per vectorised batch (memory/speed trade-off only; does not change the output)."""
    export_mesh: bool = True
    """Also write the scene mesh with per-face class and instance ids to ``mesh/scene.ply``."""
    quiet: bool = False
    """Do not print progress."""
