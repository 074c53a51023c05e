"""Checkpoints: model, optimizer state (in the arm's own compact dtypes), RNG, data position.

One file, ``checkpoint.pt``, written to a temporary name and renamed, so a kill mid-write leaves
the previous checkpoint intact. Resuming restores every RNG stream and the number of micro-batches
consumed; the data stream is a pure function of that number (textdata.PackedStream), so a resumed
run follows the same trajectory (bit-identical on CPU).

Loading never runs code from the file: ``torch.load(weights_only=True)`` accepts only tensors and
plain containers (dict, list, tuple, str, numbers, None), so everything saved is one of those (RNG
states as tensors and tuples, no numpy arrays or objects). A checkpoint the safe loader refuses ends
the run as ``failed`` with one line naming the file; it is never unpickled. Sharded checkpoints:
DCP loads tensors with ``weights_only=True`` too, but reads its ``.metadata`` with plain
``pickle.load``; :class:`_SafeReader` reads it with an unpickler that admits only DCP's metadata
classes.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.rundir import Stop

CHECKPOINT_NAME = "checkpoint.pt"


def _refused(path: Path, exc: BaseException) -> Stop:
    # torch's message spans lines (terminal escapes, advice to allow the global): keep the culprit
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"GLOBAL (\S+)", text) or re.search(r"\b([\w.]+) is not allowed", text)
    what = f"it holds {found.group(1)}" if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return Stop(
        "failed",
        f"checkpoint {path} refused: only tensors and plain containers are loaded, {what[:150]} "
        "(not executed); delete it to start the run afresh",
    )


def _safe_load(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)``; a file it refuses becomes a :class:`Stop` naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise _refused(path, exc) from exc


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
    """Every RNG stream as tensors and plain tuples (what the safe loader accepts)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": (version, torch.tensor(words, dtype=torch.int64), gauss),
        "numpy": (
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(int(w) for w in words.cpu().tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
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
    payload = _safe_load(path, device)
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
    payload = _safe_load(path, "cpu")
    if payload.get("world_size") != dist_ctx.world_size:
        raise RuntimeError(
            f"checkpoint written by {payload.get('world_size')} ranks, resuming with {dist_ctx.world_size}: "
            "resume with the same dist.nproc"
        )
    materialise_state(optimizer, model.parameters())  # DCP loads into existing state (a template)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    shards = run_dir / payload["shards"]
    dcp.load(state, storage_reader=_open_shards(dcp, shards))
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


class _MetadataUnpickler(pickle.Unpickler):
    """Admits only the classes a DCP ``.metadata`` file is made of; anything else is refused."""

    _MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner")
    _ALSO = frozenset(
        {
            ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
            ("torch", "Size"),
            ("torch", "device"),
            ("torch.serialization", "_get_layout"),  # a layout by its name
            ("pathlib", "PosixPath"),  # the checkpoint id DCP records
            ("pathlib", "Path"),
            ("collections", "OrderedDict"),
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "slice"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        obj = getattr(sys.modules.get(module), name, None) if "." not in name else None
        own_class = module in self._MODULES and isinstance(obj, type) and obj.__module__ == module
        torch_enum = module == "torch" and isinstance(obj, (torch.dtype, torch.layout, torch.memory_format))
        if own_class or torch_enum or (module, name) in self._ALSO:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in checkpoint metadata")


def _safe_reader(dcp: Any, path: Path) -> Any:
    """A DCP FileSystemReader whose ``.metadata`` is read by :class:`_MetadataUnpickler` (the base
    class reads it with plain ``pickle.load``); the rest of reading is DCP's own."""
    # sharded runs only (see load_sharded): the metadata classes come with DCP
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeReader(dcp.FileSystemReader):  # type: ignore[misc,name-defined]
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            rank = kwargs.get("rank")
            name = ".metadata" if rank is None else f"__{rank}.metadata"
            with open(Path(str(self.path)) / name, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(path))


def _open_shards(dcp: Any, shards: Path) -> Any:
    """The safe reader for ``shards``, its metadata read once here: DCP's loader swallows a reader's
    exception (and fails later without the cause), so a refusal is raised here as a Stop naming it."""
    reader = _safe_reader(dcp, shards)
    try:
        reader.read_metadata()
    except pickle.UnpicklingError as exc:
        raise _refused(shards / ".metadata", exc) from exc
    return reader


def remove(run_dir: Path) -> None:
    """Delete the checkpoint (one-process file and sharded directories)."""
    (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    shutil.rmtree(run_dir / SHARDS_DIR, ignore_errors=True)
