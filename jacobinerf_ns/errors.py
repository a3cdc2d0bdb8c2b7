"""Error types for bad input, and their one-line presentation on the command line.

Library code raises these with a message that says what is wrong and where (a file, an image index, an option).
When one reaches the top of a command-line program (``ns-train``, ``jn-synth``, ...), :func:`install_excepthook`
prints it as a single ``error: ...`` line and exits with status 1 instead of a traceback from deep inside torch.
Every other exception keeps Python's normal traceback.
"""

from __future__ import annotations

import sys
from types import TracebackType


class JacobiNeRFError(Exception):
    """Base class of the errors this package raises for bad input or state (never for its own bugs)."""


class DataError(JacobiNeRFError, ValueError):
    """A dataset on disk is missing, unreadable or inconsistent."""


class ConfigError(JacobiNeRFError, ValueError):
    """An option has a value that cannot work (e.g. a label id outside the class table)."""


class CacheError(JacobiNeRFError, RuntimeError):
    """A cache file is unusable and cannot be rebuilt automatically."""


_PREVIOUS_HOOK = None


def _hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, JacobiNeRFError):
        print(f"error: {exc}", file=sys.stderr)
        sys.stderr.flush()
        return
    assert _PREVIOUS_HOOK is not None
    _PREVIOUS_HOOK(exc_type, exc, tb)


def install_excepthook() -> None:
    """Print uncaught :class:`JacobiNeRFError` as one line (exit status stays 1); leave other errors alone."""
    global _PREVIOUS_HOOK
    if _PREVIOUS_HOOK is not None:
        return
    _PREVIOUS_HOOK = sys.excepthook
    sys.excepthook = _hook
