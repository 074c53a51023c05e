"""The run-directory contract: its file names, the terminal statuses, how a run ends (:class:`Stop`),
reading and writing ``summary.json``, the locks (the run directory's owner, the sweep's per-run
launcher lock), and "is this run done".

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
import socket
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
LOCK = "run.lock"  # flock-ed by the one process that owns the run directory (:func:`own_run_dir`)

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


# The run directory a launcher holds for the processes it starts (torchrun's ranks): they run under
# its lock and do not take it again.
OWNER_ENV = "HARNESS_RUN_DIR_OWNED"
EXIT_BUSY = 3  # a second process asked for a run directory that another one owns


class RunDirBusy(Exception):
    """Another live process owns this run directory (one line: which directory, which process)."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


@contextlib.contextmanager
def own_run_dir(run_dir: Path | str) -> Iterator[None]:
    """Own ``run_dir`` while the block runs: an exclusive ``flock`` on ``<run_dir>/run.lock``, taken
    by every process that runs a run (``python -m experiments.run``, whoever started it: by hand, the
    sweep, a SLURM job; under torchrun, the launcher or else rank 0). A second process asking for the
    same directory gets :class:`RunDirBusy` at once and touches nothing. The kernel releases the lock
    when its holder dies, however it dies. A directory this call created and that holds nothing but
    the lock when the block ends (the run stopped before writing anything) is removed again, with the
    empty parents it created."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if os.environ.get(OWNER_ENV) == key:  # the launcher that started this process owns it
        yield
        return
    made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # created here, innermost first
    created = bool(made)
    path = run_dir / LOCK
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(
                f"run directory {run_dir} is in use by {_holder(path)}: not starting a second copy of "
                "this run; wait for it to end (then run again to resume or skip it) or stop it"
            ) from None
        try:  # the holder before us may have removed the file (below): lock the one on disk instead
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
    previous = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = previous
        try:
            if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
                path.unlink()
                for d in made:  # the run dir, then the parents this call made (e.g. sweeps/<id>/runs)
                    d.rmdir()
        except OSError:
            pass  # a file appeared meanwhile: the directory stays
        os.close(fd)


__all__ = [
    "EXIT_BUSY",
    "LOCK",
    "OWNER_ENV",
    "TERMINAL",
    "RunDirBusy",
    "Stop",
    "existing_status",
    "flock",
    "is_done",
    "is_finished",
    "own_run_dir",
    "read_summary",
    "run_lock",
    "write_summary",
]
