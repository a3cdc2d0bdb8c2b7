"""Viewer interaction (click-to-select, label, edit) for our models in ``ns-viewer`` and ``ns-train --vis viewer``.

* :mod:`~jacobinerf_ns.viewer.panel`: the "Select, label, edit" panel (nerfstudio ``ViewerElement`` s and a
  ``ViewerControl``) and its callbacks;
* :mod:`~jacobinerf_ns.viewer.session`: what the panel does, without a GUI (tests and ``benchmarks/selection.py``);
* :mod:`~jacobinerf_ns.viewer.geometry`: click rays as 1×1 cameras, projection into a view, viewer poses;
* :mod:`~jacobinerf_ns.viewer.labels`: live nearest-feature labels for feature-field runs.
"""

from __future__ import annotations


def attach(model) -> None:
    """Give ``model`` its viewer panel (called at the end of ``FieldModel.populate_modules``).

    The panel lives in the model's ``__dict__`` under :data:`~jacobinerf_ns.viewer.panel.PANEL_ATTRIBUTE`, not as a
    registered submodule, so checkpoints and ``.to()`` do not see it while nerfstudio's viewer finds its elements.
    """
    from jacobinerf_ns.viewer.panel import PANEL_ATTRIBUTE, SelectLabelEditPanel

    model.__dict__[PANEL_ATTRIBUTE] = SelectLabelEditPanel(model)


def panel_of(model):
    """The model's panel (None for a model built without one)."""
    from jacobinerf_ns.viewer.panel import PANEL_ATTRIBUTE

    return model.__dict__.get(PANEL_ATTRIBUTE)
