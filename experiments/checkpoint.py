"""Checkpoints: model, optimizer state (in the arm's own compact dtypes), RNG, data position.

One file, ``checkpoint.pt``, written to a temporary name and renamed, so a kill mid-write leaves
the previous checkpoint intact. Resuming restores every RNG stream and the number of micro-batches
consumed; the data stream is a pure function of that number (textdata.PackedStream), so a resumed
run follows the same trajectory (bit-identical on CPU).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    # map_location may have moved the state tensors to the GPU; RNG states must be CPU byte tensors.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save(
    run_dir: Path, *, model: Any, optimizer: Any, step: int, micro_batches: int, progress: dict[str, Any]
) -> int:
    """Write the checkpoint atomically; returns its size on disk in bytes."""
    path = run_dir / CHECKPOINT_NAME
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "step": step,
        "micro_batches": micro_batches,
        "progress": progress,
    }
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=run_dir)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def load(run_dir: Path, *, model: Any, optimizer: Any, device: torch.device) -> dict[str, Any] | None:
    """Restore model/optimizer/RNG from ``run_dir``; returns step, micro_batches, progress (or None)."""
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    payload = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return {
        "step": payload["step"],
        "micro_batches": payload["micro_batches"],
        "progress": payload["progress"],
        "checkpoint_bytes": path.stat().st_size,
    }
