"""The FSDP2 launcher: ``python -m experiments.run dist=fsdp2 dist.nproc=N ...`` validates its config,
then relaunches itself as ``python -m torch.distributed.run --standalone --nproc_per_node N -m
experiments.run ...`` (:func:`launch`); a process started by torchrun (``TORCHELASTIC_RUN_ID`` set) runs
the training as one rank (:mod:`experiments.run.dist`). After torchrun returns, the launcher makes sure
the run dir holds a terminal summary (a rank that died unrecorded becomes status ``failed``), so a
sweep sees one command and one status.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from typing import Any

import torch

from common.atomic import read_json
from common.config import ConfigError, exit_on_config_error
from experiments import identity, rundir
from experiments.run.dist import torchrun_world_size, under_torchrun
from experiments.run.session import NoTrainer, RunSession, prepare_data

log = logging.getLogger(__name__)


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "experiments.run",
        *args,
    ]


def launch(cfg: Any, args: list[str]) -> int:
    """Run ``experiments.run`` under torchrun; make sure a terminal summary exists afterwards."""
    n = int(cfg.dist.nproc)
    with exit_on_config_error():
        if cfg.harness.device != "cpu" and torch.cuda.is_available() and n > torch.cuda.device_count():
            raise ConfigError("dist.nproc", n, f"<= {torch.cuda.device_count()} (CUDA devices visible)")
    run_dir = identity.run_dir(cfg)
    if rundir.is_done(run_dir):
        log.info("run %s already completed (%s): nothing to do", run_dir.name, run_dir)
        return 0
    cmd = torchrun_command(n, args)
    log.info("launching %d ranks: %s", n, " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rc = _run_forwarding_signals(cmd, env)
    if rundir.is_finished(run_dir):
        return 0
    return _record_unrecorded_failure(cfg, run_dir, rc)


def _run_forwarding_signals(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun; SIGINT/SIGTERM sent to this launcher go to torchrun, which passes them to every
    rank (each checkpoints and stops at the same step); if this launcher is killed outright, the
    kernel sends torchrun SIGTERM (PR_SET_PDEATHSIG), so no rank trains on unobserved."""

    def die_with_parent() -> None:
        # not Linux: no death signal, the parent's handlers below still forward signals
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
    previous = {}

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they were
            previous[sig] = signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record_unrecorded_failure(cfg: Any, run_dir: Any, rc: int) -> int:
    """torchrun ended without a terminal summary: reproduce a config error (exit 2) or record failed."""
    with exit_on_config_error():  # e.g. train.max_seq_len too short for the data: one line, exit 2
        data = prepare_data(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    session = RunSession(cfg, run_dir, run_dir.name)
    try:
        session.manifest = dict(read_json(run_dir / "manifest.json"))
    except (OSError, ValueError):
        session.manifest = {"run_id": run_dir.name, "sweep_id": cfg.sweep_id, "seed": cfg.seed}
    session.status = "failed"
    session.status_reason = (
        f"torchrun exited with code {rc} before rank 0 recorded a status "
        "(a rank crashed or was killed; its traceback is in the launcher's output)"
    )
    log.error("%s", session.status_reason)
    return 0 if session.close(NoTrainer(), data) else 1


__all__ = ["launch", "torchrun_command", "torchrun_world_size", "under_torchrun"]  # re-exported from dist
