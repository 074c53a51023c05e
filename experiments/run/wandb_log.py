"""W&B logging (offline by default) and a reader for the offline transaction log.

``metrics.jsonl`` stays the source of truth; W&B mirrors it. The W&B directory is inside the run
directory (``<run_dir>/wandb``), so a run directory copied off a cluster can be uploaded later with
``wandb sync <run_dir>/wandb/offline-run-*``. The API key is read by wandb from the environment
only; nothing here writes it (the config we hand to wandb is the resolved run config, which has no
key field).

The offline file ``run-<id>.wandb`` is a LevelDB-style log (the format wandb documents in its
source): a 7-byte file header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of records,
each ``crc32c:uint32 | length:uint16 | type:uint8 | data``, type FULL=1, FIRST=2, MIDDLE=3, LAST=4;
the data of a FULL (or FIRST..LAST) sequence is one serialised ``wandb_internal_pb2.Record``.
:func:`read_offline_run` decodes it, so tests can check what was logged without any server.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import struct
import threading
from pathlib import Path
from typing import Any

from common.imports import looks_absent

log = logging.getLogger(__name__)

_BLOCK = 32768
_HEADER = 7


class WandbLogger:
    """Rows go through a queue to a worker thread: ``run.log`` costs a few ms (a round trip to the
    wandb-core service), which the training loop must not wait for."""

    def __init__(self, cfg: Any, run_dir: Path, run_id: str, config: dict[str, Any]) -> None:
        self.run = None
        self.error: BaseException | None = None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        # WANDB_MODE=disabled in the environment wins, as it does for wandb itself (GPU boxes
        # without wandb installed set it; see scripts/gpu_env.sh).
        self.mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else cfg.wandb.mode
        if self.mode == "disabled":
            return
        # optional and slow to import: not loaded when W&B is disabled. With pandas installed, wandb
        # imports it (seconds) to ask of every non-scalar value it logs whether it is a DataFrame;
        # none of ours is, and without pandas it asks the type's name instead.
        # tests/experiments/test_run_imports.py checks a run loads no pandas.
        with looks_absent("pandas"):
            import wandb  # (optional and slow, as above)

        os.environ["WANDB_DIR"] = str(run_dir)
        name = f"{cfg.optimizer.name}-{cfg.model.name}-s{cfg.seed}"
        self.run = wandb.init(
            mode=self.mode,
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            dir=str(run_dir),
            name=name,
            group=cfg.sweep_id,
            tags=[cfg.optimizer.name, cfg.model.name, cfg.scale],
            config=config,
            id=f"{run_id}-{os.getpid()}",
            reinit="create_new",
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        self._worker = threading.Thread(target=self._drain, name="wandb-log", daemon=True)
        self._worker.start()

    def _drain(self) -> None:
        while (row := self._queue.get()) is not None:
            try:
                self.run.log(
                    {k: v for k, v in row.items() if k != "step" and v is not None},  # type: ignore[union-attr]
                    step=row["step"],
                )
            except Exception as exc:  # keep the first error; metrics.jsonl has the rows anyway
                self.error = self.error or exc

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            self._queue.put(dict(row))

    def _drain_pending(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=120)
            self._worker = None
        if self.error is not None:
            log.error("W&B logging failed (metrics.jsonl is complete): %s", self.error)

    def summary(self, summary: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._drain_pending()
        for k, v in summary.items():
            if isinstance(v, int | float | str | bool):
                self.run.summary[k] = v
            elif isinstance(v, dict | list):
                self.run.summary[k] = json.loads(json.dumps(v, default=str))

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self._drain_pending()
            try:
                self.run.finish(exit_code=exit_code)
            finally:
                self.run = None


def _records(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = _HEADER  # file header: ident, magic, version
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (header is not ':W&B')")
    pending = b""
    while pos + _HEADER <= len(data):
        block_left = _BLOCK - (pos % _BLOCK)
        if block_left < _HEADER:  # block trailer: zero padding
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
            pending = b""
    return out


def read_offline_run(wandb_dir: Path) -> dict[str, Any]:
    """History rows, summary, config, name, group and tags from ``<wandb_dir>/offline-run-*/run-*.wandb``."""
    from wandb.proto import wandb_internal_pb2  # optional: only to read offline W&B files

    files = sorted(Path(wandb_dir).glob("offline-run-*/run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run under {wandb_dir}")
    result: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "files": [str(f) for f in files]}
    for f in files:
        for raw in _records(f.read_bytes()):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {}
                for item in rec.history.item:
                    key = item.key or "/".join(item.nested_key)
                    row[key] = json.loads(item.value_json)
                result["history"].append(row)
            elif kind == "summary":
                for item in rec.summary.update:
                    result["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "run":
                result.update(name=rec.run.display_name, group=rec.run.run_group, tags=list(rec.run.tags))
                for item in rec.run.config.update:
                    result["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return result
