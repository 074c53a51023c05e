"""Checkpoints: model, optimizer state (in the arm's own compact dtypes), RNG, data position.

One file, ``checkpoint.pt``, written to a temporary name and renamed, so a kill mid-write leaves
the previous checkpoint intact. Resuming restores every RNG stream and the number of micro-batches
consumed; the data stream is a pure function of that number (textdata.PackedStream), so a resumed
run follows the same trajectory (bit-identical on CPU).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def _save_atomic(payload: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same directory, then rename: never a torn checkpoint."""
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _save_atomic(payload, path)
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


# -- sharded (FSDP2) checkpoints ---------------------------------------------------------------
SHARDS_DIR = "checkpoint_shards"


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def save_sharded(
    run_dir: Path,
    *,
    model: Any,
    optimizer: Any,
    step: int,
    micro_batches: int,
    progress: dict[str, Any],
    dist_ctx: Any,
) -> int:
    """Every rank writes its shards with torch.distributed.checkpoint; rank 0 then writes
    ``checkpoint.pt`` (step, data position, each rank's RNG and progress, the shard directory's name).

    Atomicity: shards go to ``checkpoint_shards/step-<k>/``; ``checkpoint.pt`` is replaced (temp +
    rename) only after every rank has finished, and older step directories are removed after that,
    so a kill at any point leaves a ``checkpoint.pt`` whose shards are complete. Returns the bytes
    on disk (checkpoint.pt + that step's shards); the same figure on every rank.
    """
    # torch.distributed.checkpoint imports DTensor (seconds): only sharded runs load it
    import torch.distributed.checkpoint as dcp

    name = f"{SHARDS_DIR}/step-{step:06d}"
    target = run_dir / name
    if dist_ctx.is_main and target.exists():
        shutil.rmtree(target)  # a half-written attempt at this step (killed before checkpoint.pt)
    dist_ctx.barrier()
    dcp.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint_id=str(target))
    per_rank = dist_ctx.gather({"rng": rng_state(), "progress": progress})
    size = 0
    if dist_ctx.is_main:
        payload = {
            "step": step,
            "micro_batches": micro_batches,
            "shards": name,
            "world_size": dist_ctx.world_size,
            "per_rank": per_rank,
            "progress": progress,
        }
        path = run_dir / CHECKPOINT_NAME
        _save_atomic(payload, path)
        for old in (run_dir / SHARDS_DIR).iterdir():
            if old.name != target.name:
                shutil.rmtree(old, ignore_errors=True)
        size = path.stat().st_size + _tree_bytes(target)
    return int(dist_ctx.broadcast(size))


def load_sharded(run_dir: Path, *, model: Any, optimizer: Any, dist_ctx: Any) -> dict[str, Any] | None:
    """Restore a :func:`save_sharded` checkpoint on every rank (same world size for per-rank state)."""
    # torch.distributed.checkpoint imports DTensor (seconds): only sharded runs load it
    import torch.distributed.checkpoint as dcp

    # flashoptim imports triton and its kernels: only the sharded path needs this helper
    from flashoptim.distributed import materialise_state

    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("world_size") != dist_ctx.world_size:
        raise RuntimeError(
            f"checkpoint written by {payload.get('world_size')} ranks, resuming with {dist_ctx.world_size}: "
            "resume with the same dist.nproc"
        )
    materialise_state(optimizer, model.parameters())  # DCP loads into existing state (a template)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    dcp.load(state, checkpoint_id=str(run_dir / payload["shards"]))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    mine = payload["per_rank"][dist_ctx.rank]
    set_rng_state(mine["rng"])
    size = path.stat().st_size + _tree_bytes(run_dir / payload["shards"])
    return {
        "step": payload["step"],
        "micro_batches": payload["micro_batches"],
        "progress": mine["progress"],
        "checkpoint_bytes": size,
    }


def remove(run_dir: Path) -> None:
    """Delete the checkpoint (one-process file and sharded directories)."""
    (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    shutil.rmtree(run_dir / SHARDS_DIR, ignore_errors=True)
