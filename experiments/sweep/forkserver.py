"""A fork server for the local sequential launcher: imports the run path once, forks one process per run.

A smoke run spends most of its wall time importing torch, transformers, W&B and the optimizers
(README, "Start-up times"); nine runs of ``make mvt`` paid that nine times. The server is one
single-threaded interpreter started by the sweep (``sweep.fork_server``) that imports
``sweep.preload_modules`` and then, for each run, forks a child that behaves as
``python -m <run_module> <argv>`` would: its own process (own pid, own ``run.lock``, own exit
status), ``sys.argv`` as ``-m`` sets it, the environment the launcher gives it, stdout and stderr in
the run's launcher log, and the interpreter's normal shutdown (``atexit`` handlers run). Only the
imports are shared, and they were made before any run started, so every run starts from the same
state. Runs still go one at a time, as the basic launcher runs them.

Hazards handled here:
- The server must not hold threads when it forks (a lock held by another thread stays locked in the
  child): it is its own process, started before the sweep's progress thread could matter, and it
  checks ``threading.active_count()`` after the preload; with other threads it refuses to fork and
  the launcher falls back to a fresh interpreter per run.
- A killed sweep must leave no run writing: the server gets ``PR_SET_PDEATHSIG=SIGKILL`` from the
  sweep, each child from the server.
- A preload module that fails to import (an optional arm's package not installed) is skipped: the
  run imports it itself and reports the failure as it would without the server.

Protocol (one JSON object per line): the server writes ``{"ready": true, ...}`` after its preload;
the launcher writes ``{"module", "argv", "env", "log"}``; the server answers ``{"returncode": n}``
(negative: the signal that ended the run, as :mod:`subprocess` reports it).

    python -m experiments.sweep.forkserver <preload module> ...   (started by experiments.sweep.launch)
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from common.imports import UNUSED_BY_TRANSFORMERS_IN_A_RUN, looks_absent

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when its parent dies (Linux), so no orphan writes on."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Child(Exception):
    """Raised in a forked child to leave the server loop and run the job at the top level."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__()
        self.job = job


def _preload(modules: Sequence[str]) -> list[str]:
    skipped = []
    # as experiments/run/models.py imports transformers: it would otherwise pull in scikit-learn,
    # scipy.stats, pandas and scipy.optimize (common/imports.py)
    with looks_absent(*UNUSED_BY_TRANSFORMERS_IN_A_RUN):
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # an optional arm's package: the run reports it itself
                skipped.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    return skipped


def _serve(inp: IO[str], out: IO[str]) -> None:
    for line in inp:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            raise _Child(job)
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


def _run_child(job: dict[str, Any], server_fds: Sequence[int]) -> int:
    """In the forked child: become ``python -m <module> <argv>`` with the job's environment and log."""
    die_with_parent()
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in {log_fd, null_fd, *server_fds} - {0, 1, 2}:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.environ.clear()
    os.environ.update(job["env"])
    sys.argv = ["-m", *job["argv"]]  # as `python -m` starts; run_module puts the file in argv[0]
    try:
        runpy.run_module(job["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    modules = list(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    skipped = _preload(modules)
    threads = threading.active_count()
    inp = os.fdopen(os.dup(0), "r")
    out = os.fdopen(os.dup(1), "w")
    ready = {
        "ready": threads == 1,
        "threads": threads,
        "skipped": skipped,
        "preload_s": time.perf_counter() - t0,
    }
    out.write(json.dumps(ready) + "\n")
    out.flush()
    if threads != 1:
        return 0
    try:
        _serve(inp, out)
    except _Child as child:
        return _run_child(child.job, (inp.fileno(), out.fileno()))
    return 0


class Client:
    """The launcher's end: starts the server, runs jobs through it, falls back when it is unusable."""

    def __init__(self, preload: Sequence[str], log: Path) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, *preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                preexec_fn=die_with_parent,
            )

    def _ready(self) -> bool:
        if self.error is not None or self.proc is None:
            return False
        if not self.info:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            self.info = json.loads(line) if line else {"ready": False, "why": "the server exited"}
            if not self.info.get("ready"):
                self.error = f"fork server not usable: {self.info}"
        return self.error is None

    def run(self, module: str, argv: Sequence[str], env: dict[str, str], log: Path) -> int | None:
        """The run's exit status, or None when the server cannot run it (the caller starts a process)."""
        if not self._ready():
            return None
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        job = {"module": module, "argv": list(argv), "env": env, "log": str(log)}
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError as exc:
            self.error = f"fork server: {exc}"
            return None
        if not line:
            self.error = f"fork server exited ({self.proc.poll()})"
            return None
        return int(json.loads(line)["returncode"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
