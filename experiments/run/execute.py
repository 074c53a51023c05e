"""Execute one validated run config (every rank under torchrun): prepare the data, open the run
directory, train, evaluate, and leave exactly one terminal status in ``summary.json``.

Entry point and config handling: :mod:`experiments.run.main`.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import open_dict

from common.config import ConfigError, die
from experiments import identity, rundir
from experiments.run.dist import DistContext, amend_summary
from experiments.run.session import NoTrainer, NoWandb, RunSession, prepare_data
from experiments.run.trainer import StopFlag, Trainer
from experiments.rundir import Stop

log = logging.getLogger("experiments.run")


def execute(cfg: Any) -> int:
    """Run one configured training run; returns the process exit code. Under torchrun
    (``dist.strategy=fsdp2``) every rank calls this; only rank 0 owns the run directory."""
    ctx = DistContext.start(cfg)
    try:
        return _execute(cfg, ctx)
    finally:
        ctx.close()


def _execute(cfg: Any, ctx: Any) -> int:
    run_id, run_dir = identity.run_id(cfg), identity.run_dir(cfg)
    if rundir.is_done(run_dir):
        log.info("run %s already completed (%s): nothing to do", run_id, run_dir)
        return 0
    session: Any = None
    data: Any = None
    opened: str | None = None
    if ctx.is_main:
        try:
            data = prepare_data(cfg, run_dir)
        except ConfigError as exc:
            opened = str(exc)
        else:
            session = RunSession(cfg, run_dir, run_id)
    if ctx.active:  # rank 0 opens the run dir (tokenizer saved there) before the others read it
        open_error = _open_for_ranks(session, data, ctx) if session is not None else None
        opened, open_error = ctx.broadcast((opened, open_error))
        if opened is not None:
            return die(opened) if ctx.is_main else 2
        if open_error is not None and not ctx.is_main:
            return 0  # rank 0 records the failure
        if not ctx.is_main:
            data = prepare_data(_tokenizer_from_run_dir(cfg), run_dir)
    elif opened is not None:
        die(opened)
    stop = StopFlag()
    stop.install()
    trainer = None
    agreed = True  # the ending is one every rank reached together (completed or a Stop)
    try:
        if session is not None and not ctx.active:
            session.open(data)
        if session is not None and session.status is not None:
            raise RuntimeError(session.status_reason or "run directory could not be opened")
        wandb = session.wandb if session is not None else NoWandb()
        trainer = Trainer(cfg, run_dir, data, wandb, stop, ctx)
        trainer.train(trainer.setup())
        trainer.evaluate()
        trainer.finish()
        if session is not None:
            session.status = "completed"
    except BaseException as exc:  # every ending becomes a recorded status (KeyboardInterrupt included)
        agreed = isinstance(exc, Stop)
        if session is not None:
            if session.status is None:
                session.record(exc)
        else:
            log.error("rank %d ended: %s: %s", ctx.rank, type(exc).__name__, exc)
    finally:
        stop.restore()
        if trainer is not None:
            trainer.release()
            if ctx.active:
                _agree_peaks(trainer, ctx, agreed)
        ok = True
        if session is not None:
            ok = session.close(trainer, data) if trainer is not None else session.close(NoTrainer(), data)
            if ok and ctx.active:
                amend_summary(run_dir, ctx, ctx.peaks_per_rank or [NoTrainer().state.peaks])
    return 0 if ok else 1


def _open_for_ranks(session: Any, data: Any, ctx: Any) -> str | None:
    """Rank 0 opens the run dir; a failure becomes the session's status (recorded at close)."""
    try:
        session.open(data)
        session.manifest["dist"] = ctx.describe()
    except Exception as exc:
        session.record(exc)
        return str(exc)
    return None


def _tokenizer_from_run_dir(cfg: Any) -> Any:
    """The other ranks load rank 0's tokenizer (tokenizer.json in the run dir) instead of training one."""
    copy = cfg.copy()
    with open_dict(copy):
        copy.resume = True  # prepare_data's rule: resume + tokenizer.json present -> load it
    return copy


def _agree_peaks(trainer: Any, ctx: Any, agreed: bool) -> None:
    """Every rank's peaks and optimizer-state bytes; the summary's peak fields become the largest
    rank's (the per-GPU figure). Only when every rank ended together: a collective after a one-rank
    failure would hang."""
    audit = trainer.state.audit
    mine = (trainer.state.peaks, audit.state_bytes if audit else None)
    ctx.peaks_per_rank, ctx.state_bytes_per_rank = [mine[0]], [mine[1]]
    if not agreed:
        return
    try:
        gathered = ctx.gather(mine)
    except Exception as exc:  # a rank that failed alone: keep this rank's figures, say so
        log.error("per-rank figures not gathered: %s", exc)
        return
    ctx.peaks_per_rank = [g[0] for g in gathered]
    ctx.state_bytes_per_rank = [g[1] for g in gathered]
    trainer.state.peaks = tuple(
        max(col) if all(v is not None for v in col) else None for col in zip(*ctx.peaks_per_rank)
    )


__all__ = ["execute"]
