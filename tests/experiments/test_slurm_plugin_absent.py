"""Without Hydra's submitit launcher (the GPU image) our SLURM launcher plugin defines nothing, so
Hydra's plugin scan stays quiet; it printed "Error importing 'hydra_plugins.harness_slurm_launcher'
... Plugin is incompatible with this Hydra version or buggy" at every sweep on the H200."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCAN = """
import sys, warnings
if sys.argv[1] == "absent":
    sys.modules["hydra_plugins.hydra_submitit_launcher"] = None  # as if the package were not installed
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = [c.__name__ + "@" + c.__module__ for c in Plugins.instance().discover(Launcher)]
print("WARN" if any("harness_slurm_launcher" in str(w.message) for w in caught) else "QUIET")
print("OURS" if any(n.endswith("harness_slurm_launcher") for n in names) else "NONE")
"""


def _scan(mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCAN, mode], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


def test_plugin_is_quiet_and_absent_without_submitit() -> None:
    assert _scan("absent") == ["QUIET", "NONE"]


def test_plugin_is_registered_with_submitit() -> None:
    assert _scan("present") == ["QUIET", "OURS"]
