"""Viewer interaction (click-to-select, label, edit) for our models in ``ns-viewer`` and ``ns-train --vis viewer``."""

from __future__ import annotations


def attach(model) -> None:
    """Give ``model`` its viewer panel (called at the end of ``FieldModel.populate_modules``)."""
