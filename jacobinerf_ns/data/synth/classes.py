"""The class table of the synthetic scenes.

Names follow Replica's ``info_semantic.json`` vocabulary. The raw ids are sparse on purpose (like Replica's, they have
gaps and do not start at 1), so that a reader must remap them to contiguous training ids. They are *not* the ids of
any particular Replica scene. Id 0 is void: small clutter objects carry it, as unlabelled things do in real scans.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthClass:
    """One semantic class."""

    id: int
    """Raw class id written into ``semantic_class_*.png`` (uint8)."""
    name: str
    """Replica-style class name."""
    color: tuple[int, int, int]
    """Display colour for label maps (0-255)."""


VOID_ID = 0
"""Raw id of void / unlabelled pixels."""

CLASSES: tuple[SynthClass, ...] = (
    SynthClass(0, "void", (0, 0, 0)),
    SynthClass(11, "bin", (255, 127, 14)),
    SynthClass(14, "book", (214, 39, 40)),
    SynthClass(19, "cabinet", (148, 103, 189)),
    SynthClass(21, "chair", (44, 160, 44)),
    SynthClass(32, "ceiling", (220, 220, 170)),
    SynthClass(38, "door", (140, 86, 75)),
    SynthClass(41, "floor", (152, 223, 138)),
    SynthClass(45, "indoor-plant", (0, 100, 0)),
    SynthClass(48, "lamp", (255, 215, 0)),
    SynthClass(60, "picture", (227, 119, 194)),
    SynthClass(62, "pillow", (255, 152, 150)),
    SynthClass(72, "shelf", (188, 189, 34)),
    SynthClass(77, "sofa", (31, 119, 180)),
    SynthClass(81, "table", (174, 199, 232)),
    SynthClass(88, "tv-screen", (23, 190, 207)),
    SynthClass(92, "vase", (197, 176, 213)),
    SynthClass(94, "wall", (199, 199, 199)),
    SynthClass(98, "window", (158, 218, 229)),
    SynthClass(99, "rug", (196, 156, 148)),
)
"""Every class the generator can emit (void first)."""

_BY_NAME = {c.name: c for c in CLASSES}


def class_id(name: str) -> int:
    """Raw id of a class name (``KeyError`` for an unknown name)."""
    return _BY_NAME[name].id


def class_by_id(cid: int) -> SynthClass:
    """The class with raw id ``cid``."""
    for c in CLASSES:
        if c.id == cid:
            return c
    raise KeyError(cid)
