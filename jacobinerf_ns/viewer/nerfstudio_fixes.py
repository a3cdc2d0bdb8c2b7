"""Two fixes to nerfstudio 1.1.5's viewer that the panel's outputs need (applied when a viewer starts; idempotent).

Both bugs kill the viewer's render thread (``RenderStateMachine``) with an exception, after which the browser
never receives another frame:

* a 1-channel **bool** output (``selection``): ``_get_colormap_options`` offers no colormap for it, and setting the
  empty list on the colormap dropdown raises ``IndexError``. Fixed by offering ``"default"`` whenever the list would
  be empty (``apply_colormap`` then uses its boolean map, white = selected).
* a **2-channel** float output (``response_3d`` with two labels): ``apply_colormap`` raises ``NotImplementedError``.
  Fixed by showing the two channels as red and green (a zero blue channel), each divided by the image's maximum.
"""

from __future__ import annotations

import torch


def apply_viewer_fixes() -> None:
    from nerfstudio.utils import colormaps
    from nerfstudio.viewer import control_panel

    options = control_panel._get_colormap_options
    if not getattr(options, "jacobinerf_fixed", False):

        def colormap_options(dimensions: int, dtype: type) -> list:
            return options(dimensions, dtype) or ["default"]

        colormap_options.jacobinerf_fixed = True  # type: ignore[attr-defined]
        control_panel._get_colormap_options = colormap_options

    apply = colormaps.apply_colormap
    if not getattr(apply, "jacobinerf_fixed", False):

        def apply_colormap(image, *args, **kwargs):
            if image.shape[-1] == 2 and torch.is_floating_point(image):
                image = image / image.abs().amax().clamp(min=1e-9)
                image = torch.cat([image.abs(), torch.zeros_like(image[..., :1])], dim=-1)
            return apply(image, *args, **kwargs)

        apply_colormap.jacobinerf_fixed = True  # type: ignore[attr-defined]
        colormaps.apply_colormap = apply_colormap
