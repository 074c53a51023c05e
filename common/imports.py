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


# Installed packages that ``transformers`` imports only because they are installed, for features no
# training run uses: scikit-learn (generation's assisted-decoding threshold tuning; it drags in
# scipy.stats and pandas) and scipy (the object-detection losses' Hungarian matching, imported by
# ``transformers.loss`` with every model class: about 0.8 s of CPU per run process on the 2-core
# machine, README "Start-up times"). transformers asks for them again at each use,
# so hiding them while it is imported changes nothing else; scikit-learn and scipy stay installed for
# the baselines (experiments/eval/baselines.py), which import them as usual afterwards.
UNUSED_BY_TRANSFORMERS_IN_A_RUN = ("sklearn", "scipy")

__all__ = ["UNUSED_BY_TRANSFORMERS_IN_A_RUN", "looks_absent"]
