"""Where a result came from: code version, packages, interpreter, hardware, command line."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_VERSION_FILE = "common/code_version.txt"  # "$Format:%H$" in git; the commit in a git archive

# Packages whose versions change numbers in this study.
TRACKED_PACKAGES = (
    "torch",
    "triton",
    "transformers",
    "tokenizers",
    "bitsandbytes",
    "hydra-core",
    "omegaconf",
    "numpy",
    "scipy",
    "pandas",
    "wandb",
    "dolfinx-solver-real",
    "fenics-basix",
    "fenics-ffcx",
    "fenics-ufl",
    "mpi4py",
    "petsc4py",
)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit SHA and whether the work tree differs from it.

    From git when ``root`` is the top of its own checkout. A tree exported with ``git archive``
    (how code is shipped to a lent GPU box) has no ``.git`` of its own, and may sit inside another
    checkout whose HEAD says nothing about it: its version is then the commit that ``git archive``
    wrote into ``common/code_version.txt`` (``export-subst``), with ``git_dirty`` unknown (None)
    and ``git_source: "git archive"``. Both None when neither is available."""

    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = _git("rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == root.resolve():
        sha = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "--untracked-files=no")
        return {
            "git_sha": sha,
            "git_dirty": None if status is None else bool(status),
            "git_source": "checkout",
        }
    try:
        stamped = (root / CODE_VERSION_FILE).read_text().strip()
    except OSError:
        stamped = ""
    if len(stamped) == 40 and all(c in "0123456789abcdef" for c in stamped):
        return {"git_sha": stamped, "git_dirty": None, "git_source": "git archive"}
    return {"git_sha": None, "git_dirty": None, "git_source": None}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    """CPU and, where CUDA is present, GPU name, memory and driver. Imports torch only if loaded."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
        "driver": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "total_memory_bytes": int(p.total_memory)})
        try:
            import pynvml  # optional: NVIDIA's library, present only where there is a driver

            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # NVML missing in some containers: the driver is then unknown, not fatal
            info["driver"] = None
    return info


def device_label() -> str:
    hw = hardware()
    if hw["gpus"]:
        return str(hw["gpus"][0]["name"])
    return f"cpu ({hw['cpu_count']} cores)"


def provenance(git: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where this process's code and machine stand; ``git``: a :func:`git_state` already taken
    (read again when not given)."""
    return {
        **(git_state() if git is None else git),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else None,
        "cwd": os.getcwd(),
    }
