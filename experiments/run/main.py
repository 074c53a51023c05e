"""``python -m experiments.run optimizer=<arm> model=<preset> seed=<n> [key=value ...]``

One training run: compose and validate the config (a mistake exits 2 with one line, before any
directory exists), prepare the data, train, evaluate, and leave
``results/sweeps/<sweep_id>/runs/<run_id>/`` with exactly one terminal status in ``summary.json``.
Every ending that was recorded exits 0 (OOM, divergence and failure are results a sweep goes on
from); a non-zero exit means the summary itself could not be written. ``--cfg`` prints the
resolved config and exits. A run whose summary says ``completed`` is not redone.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from common.config import ConfigError, die, exit_on_config_error, load_validated
from common.logs import setup_logging
from experiments import config as run_config
from experiments import identity

log = logging.getLogger("experiments.run")


def execute(cfg: Any) -> int:
    """Run one configured training run; returns the process exit code. Under torchrun
    (``dist.strategy=fsdp2``) every rank calls this; only rank 0 owns the run directory."""
    from experiments.run.dist import DistContext

    ctx = DistContext.start(cfg)
    try:
        return _execute(cfg, ctx)
    finally:
        ctx.close()


def _execute(cfg: Any, ctx: Any) -> int:
    from experiments.run.session import RunSession, _NoWandb, existing_status, prepare_data
    from experiments.run.trainer import Stop, StopFlag, Trainer

    run_id, run_dir = identity.run_id(cfg), identity.run_dir(cfg)
    if existing_status(run_dir) == "completed":
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
        wandb = session.wandb if session is not None else _NoWandb()
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
            ok = session.close(trainer, data) if trainer is not None else session.close(_Empty(cfg), data)
            if ok and ctx.active:
                from experiments.run.dist import amend_summary

                amend_summary(run_dir, ctx, ctx.peaks_per_rank or [_Empty(cfg).state.peaks])
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
    from omegaconf import open_dict

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


class _Empty:
    """Stands in for a trainer that could not even be constructed (the summary is still written)."""

    def __init__(self, cfg: Any) -> None:
        from experiments.run.trainer import RunState

        self.state = RunState()

    def median_step_time(self) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    run_config.register()
    if "--cfg" in args:  # Hydra style: `--cfg` or `--cfg job` prints the resolved config
        from omegaconf import OmegaConf

        from common.config import compose

        i = args.index("--cfg")
        rest = args[:i] + args[i + 1 + (i + 1 < len(args) and args[i + 1] in ("job", "all")) :]
        with exit_on_config_error():
            print(OmegaConf.to_yaml(compose("run", rest)))
        return 0
    cfg = load_validated("run", args, run_config.validate)
    from experiments.run import dist

    if cfg.dist.strategy != "none" and not dist.under_torchrun():
        return dist.launch(cfg, args)  # one torchrun command; this process waits and checks the summary
    if cfg.dist.strategy == "none" and dist.under_torchrun() and dist.torchrun_world_size() > 1:
        die(ConfigError("dist.strategy", "none", "fsdp2 (torchrun started several processes)"))
    return execute(cfg)
