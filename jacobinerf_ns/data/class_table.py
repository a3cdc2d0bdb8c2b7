"""Semantic class tables: raw dataset ids → contiguous training ids, names and display colours.

Replica's label images hold raw class ids (0 = void) from the mesh's ``habitat/info_semantic.json``. As in
Semantic-NeRF, we keep the classes that occur in the sequence, number them 0..C-1 in the order of their raw id, and
map void (and nothing else) to the ignore label -1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Int, UInt8

from jacobinerf_ns.errors import DataError

IGNORE_LABEL = -1
"""Training id of void / unlabelled pixels (cross-entropy ``ignore_index``)."""


@dataclass(frozen=True)
class ClassInfo:
    """The class names (and optional colours) of a dataset, keyed by raw id."""

    names: dict[int, str]
    colors: dict[int, tuple[int, int, int]]
    source: Path | None


def load_class_info(path: Path | None) -> ClassInfo | None:
    """Read an ``info_semantic.json``-style file (``classes``: list of ``{id, name[, color]}``); None if no path."""
    if path is None:
        return None
    if not path.is_file():
        raise DataError(f"class table not found: {path}")
    try:
        info = json.loads(path.read_text())
        classes = info["classes"]
        names = {int(c["id"]): str(c["name"]) for c in classes}
        colors = {int(c["id"]): tuple(int(v) for v in c["color"][:3]) for c in classes if "color" in c}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"unreadable class table: {path} ({exc.__class__.__name__}: {exc})") from None
    return ClassInfo(names=names, colors=colors, source=path)  # type: ignore[arg-type]


def palette(n: int, seed: int = 0) -> UInt8[np.ndarray, "n 3"]:
    """Distinct, deterministic display colours (golden-ratio hues, varied value)."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.uniform()) % 1.0
    sat = 0.55 + 0.35 * ((np.arange(n) * 7) % 3) / 2
    val = 0.95 - 0.3 * ((np.arange(n) * 5) % 2)
    h6 = hues * 6
    c = val * sat
    x = c * (1 - np.abs(h6 % 2 - 1))
    zeros = np.zeros(n)
    sector = h6.astype(int) % 6
    rgb = np.select(
        [sector[:, None] == k for k in range(6)],
        [
            np.stack(v, axis=1)
            for v in ((c, x, zeros), (x, c, zeros), (zeros, c, x), (zeros, x, c), (x, zeros, c), (c, zeros, x))
        ],
    )
    rgb = rgb + (val - c)[:, None]
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ClassTable:
    """The contiguous classes of one scene."""

    raw_ids: tuple[int, ...]
    """Raw id of contiguous class k (sorted ascending; void excluded)."""
    names: tuple[str, ...]
    """Name of contiguous class k."""
    colors: UInt8[np.ndarray, "c 3"]
    """Display colour of contiguous class k."""

    @property
    def num_classes(self) -> int:
        return len(self.raw_ids)

    def lut(self, max_raw: int = 65535) -> Int[np.ndarray, " r"]:
        """Lookup table raw id → contiguous id (``IGNORE_LABEL`` for void and absent ids)."""
        table = np.full(max_raw + 1, IGNORE_LABEL, dtype=np.int64)
        table[list(self.raw_ids)] = np.arange(len(self.raw_ids))
        return table

    @staticmethod
    def from_present_ids(present: set[int], info: ClassInfo | None, void_id: int = 0) -> ClassTable:
        raw = sorted(i for i in present if i != void_id)
        if info is not None:
            names = tuple(info.names[i] for i in raw)
        else:
            names = tuple(f"class_{i}" for i in raw)
        colors = palette(len(raw))
        if info is not None:
            for k, i in enumerate(raw):
                if i in info.colors:
                    colors[k] = info.colors[i]
        return ClassTable(raw_ids=tuple(raw), names=names, colors=colors)


def check_ids_in_table(ids: np.ndarray, info: ClassInfo | None, path: Path, void_id: int = 0) -> None:
    """Raise a :class:`DataError` naming ``path`` if a label id is not in the class table."""
    if info is None:
        return
    unknown = [int(i) for i in ids if int(i) != void_id and int(i) not in info.names]
    if unknown:
        raise DataError(
            f"class id {unknown[0]} in {path} is not in the class table {info.source}"
            + (f" (also {unknown[1:6]})" if len(unknown) > 1 else "")
        )
