"""The run-directory contract: its file names, the terminal statuses, how a run ends (:class:`Stop`),
reading and writing ``summary.json``, the per-run lock, and "is this run done".

A run directory is ``<results_root>/sweeps/<sweep_id>/runs/<run_id>/`` (:mod:`experiments.identity`).
``summary.json`` is written last and atomically; a run is *finished* when it holds one of
:data:`TERMINAL` and *done* (never redone) when that status is ``completed``. Every program that
reads or writes a run directory (the run, the torchrun launcher, the sweep, its progress table, the
gates, the dry run) goes through this module. File formats: docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.atomic import read_json, write_json

# -- files ---------------------------------------------------------------------------------------
SUMMARY = "summary.json"  # written last, atomically: a terminal status means the run is finished
MANIFEST = "manifest.json"  # provenance, start/end times
CONFIG = "config.yaml"  # the resolved run config
METRICS = "metrics.jsonl"  # one JSON object per step
RUN_LOG = "run.log"
TOKENIZER = "tokenizer.json"  # the BPE tokenizer trained for a random-init model
TRACEBACK = "traceback.txt"  # a failed run's traceback
WANDB_DIR = "wandb"  # W&B's offline files (a mirror; metrics.jsonl is the record)

# -- statuses ------------------------------------------------------------------------------------
TERMINAL = ("completed", "oom", "diverged", "aborted", "failed")
"""The statuses a run's ``summary.json`` may hold: each one ends the run for good (``aborted`` with a
checkpoint may be resumed with ``resume=true``)."""


class Stop(Exception):
    """End the run with a terminal status (raised inside the run, recorded by its wrapper)."""

    def __init__(self, status: str, reason: str, resumable: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.resumable = resumable  # a stop request (signal, operator), not a result: resume continues it


# -- the summary ---------------------------------------------------------------------------------
def existing_status(run_dir: Path | str) -> str | None:
    """The status in ``summary.json`` as written (None without a readable summary)."""
    try:
        return str(read_json(Path(run_dir) / SUMMARY).get("status"))
    except (OSError, ValueError, AttributeError):
        return None


def read_summary(run_dir: Path | str | None) -> dict[str, Any] | None:
    """``summary.json`` of a finished run (terminal status), else None. A torn or partial file is not
    finished."""
    if run_dir is None:
        return None
    try:
        summary = read_json(Path(run_dir) / SUMMARY)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in TERMINAL:
        return None
    return summary


def write_summary(run_dir: Path | str, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` atomically (temp file, then rename)."""
    write_json(Path(run_dir) / SUMMARY, summary)


def is_done(run_dir: Path | str) -> bool:
    """A run whose summary says ``completed`` is never run again."""
    return existing_status(run_dir) == "completed"


def is_finished(run_dir: Path | str) -> bool:
    """The run left a terminal status (any of :data:`TERMINAL`)."""
    return existing_status(run_dir) in TERMINAL


# -- the lock ------------------------------------------------------------------------------------
@contextlib.contextmanager
def flock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path``; yields False when ``blocking`` is off and it is held.
    Closing the descriptor releases it, so a killed holder releases it too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def run_lock_path(sweep_dir: Path | str, run_id: str) -> Path:
    return Path(sweep_dir) / "locks" / f"{run_id}.lock"


@contextlib.contextmanager
def run_lock(sweep_dir: Path | str, run_id: str) -> Iterator[None]:
    """Held by the launcher while a run's process lives: a second launcher of the same run (a stray
    SLURM job, an orphan) waits for it and then finds its summary."""
    with flock(run_lock_path(sweep_dir, run_id)):
        yield


__all__ = [
    "TERMINAL",
    "Stop",
    "existing_status",
    "flock",
    "is_done",
    "is_finished",
    "read_summary",
    "run_lock",
    "write_summary",
]
