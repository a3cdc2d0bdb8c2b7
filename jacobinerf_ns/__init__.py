"""jacobinerf_ns: semantic radiance fields for nerfstudio.

Importing the package applies the small compatibility fixes in :mod:`jacobinerf_ns.compat` (checkpoint loading on
current torch, ffmpeg for ``ns-render``). nerfstudio imports this package whenever it reads one of our run configs,
so ``ns-eval``, ``ns-render`` and ``ns-viewer`` get the fixes too.
"""

from __future__ import annotations

from jacobinerf_ns.compat import apply_compat_fixes

apply_compat_fixes()

__version__ = "0.1.0"
