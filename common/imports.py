"""Keep a stage's start-up to what it uses: a package that a third-party library imports only
because it is installed can be made to look absent while that library is imported."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def looks_absent(*names: str) -> Iterator[None]:
    """While the block runs, each of ``names`` looks uninstalled to availability checks
    (``importlib.util.find_spec`` answers None for a None entry in ``sys.modules``, and an
    ``import`` raises ImportError). Afterwards each imports as usual. A name already imported is
    left alone (there is nothing to save)."""
    hidden = [n for n in names if n not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


__all__ = ["looks_absent"]
