"""Small fixes that make nerfstudio 1.1.5 work offline on current torch.

Each fix is idempotent, cheap (no heavy imports) and applied when :mod:`jacobinerf_ns` is imported:

* Uncaught input errors of this package print as one line (:mod:`jacobinerf_ns.errors`).
* ``torch.load`` on torch >= 2.6 defaults to ``weights_only=True``; nerfstudio's checkpoints hold numpy scalars
  (from the schedulers and the grad scaler), so ``ns-eval`` / ``ns-render`` / ``ns-viewer`` / ``--load-dir`` failed
  with ``UnpicklingError``. We allow exactly the numpy types that such checkpoints contain.
* Known, harmless deprecation / usage warnings of nerfstudio, torch and torchmetrics (not ours) are silenced so that
  ``jn-propagate``, ``ns-eval`` and our scripts do not print a wall of them (:data:`THIRD_PARTY_NOISE`).
* ``ns-render`` needs ``ffmpeg`` on PATH (it checks with ``shutil.which`` and mediapy calls it by name); when there is
  none we link the binary that the ``imageio-ffmpeg`` wheel ships into a cache folder and put that folder on PATH.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from jacobinerf_ns.errors import install_excepthook

_APPLIED = False

THIRD_PARTY_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    (r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated", FutureWarning),
    (r"`torch\.jit\.script` is deprecated", FutureWarning),
    (r"Importing `.*` from `torchmetrics\.functional` was deprecated", FutureWarning),
    (r"Converting a tensor with requires_grad=True to a scalar", UserWarning),
    (r"To copy construct from a tensor, it is recommended", UserWarning),
    (r"Using a non-tuple sequence for multidimensional indexing", UserWarning),
    (r"The given NumPy array is not writable", UserWarning),
    (r"torch\.meshgrid: in an upcoming release", UserWarning),
)
"""(message regex, category) of third-party warnings that carry no information for a user of this plugin."""


def quiet_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_NOISE` (our own warnings, e.g. "LPIPS skipped", stay)."""
    for message, category in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def _numpy_checkpoint_globals() -> list:
    """The numpy objects that appear inside nerfstudio checkpoints (scalars and their dtypes)."""
    import numpy as np

    out: list = [np.dtype]
    for mod_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(mod_name, fromlist=["scalar"])
        except ImportError:
            continue
        scalar = getattr(module, "scalar", None)
        if scalar is not None:
            out.append(scalar)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and name.endswith("DType"):
                out.append(obj)
    return out


def register_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read nerfstudio checkpoints (numpy scalars inside)."""
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(_numpy_checkpoint_globals())


def ensure_ffmpeg_on_path() -> None:
    """Put an ``ffmpeg`` on PATH when there is none: a link to the binary the ``imageio-ffmpeg`` wheel ships, in a
    per-user cache folder. ``ns-render`` checks ``shutil.which("ffmpeg")`` and mediapy runs ``ffmpeg`` by name."""
    if shutil.which("ffmpeg") is not None:
        return
    try:
        import imageio_ffmpeg

        exe = Path(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return
    bindir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jacobinerf_ns" / "bin"
    link = bindir / "ffmpeg"
    try:
        bindir.mkdir(parents=True, exist_ok=True)
        if not link.exists() or link.resolve() != exe.resolve():
            tmp = bindir / f".ffmpeg-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(exe)
            os.replace(tmp, link)
    except OSError:
        return
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"


def apply_compat_fixes() -> None:
    """Apply every fix once."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    install_excepthook()
    quiet_third_party_warnings()
    register_checkpoint_globals()
    try:
        ensure_ffmpeg_on_path()
    except Exception as exc:  # pragma: no cover - a broken optional tool must never break import
        warnings.warn(f"jacobinerf_ns: could not configure ffmpeg for ns-render ({exc})", stacklevel=2)
