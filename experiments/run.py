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

from common.config import exit_on_config_error, load_validated
from common.logs import setup_logging
from experiments import config as run_config
from experiments import identity

log = logging.getLogger("experiments.run")


def execute(cfg: Any) -> int:
    """Run one configured training run; returns the process exit code."""
    from experiments.session import RunSession, existing_status, prepare_data
    from experiments.trainer import StopFlag, Trainer

    run_id, run_dir = identity.run_id(cfg), identity.run_dir(cfg)
    if existing_status(run_dir) == "completed":
        log.info("run %s already completed (%s): nothing to do", run_id, run_dir)
        return 0
    with exit_on_config_error():
        data = prepare_data(cfg, run_dir)
    session = RunSession(cfg, run_dir, run_id)
    stop = StopFlag()
    stop.install()
    trainer = None
    try:
        session.open(data)
        trainer = Trainer(cfg, run_dir, data, session.wandb, stop)
        trainer.train(trainer.setup())
        trainer.evaluate()
        trainer.finish()
        session.status = "completed"
    except BaseException as exc:  # every ending becomes a recorded status (KeyboardInterrupt included)
        session.record(exc)
    finally:
        stop.restore()
        if trainer is not None:
            trainer.release()
        ok = session.close(trainer, data) if trainer is not None else session.close(_Empty(cfg), data)
    return 0 if ok else 1


class _Empty:
    """Stands in for a trainer that could not even be constructed (the summary is still written)."""

    def __init__(self, cfg: Any) -> None:
        from experiments.trainer import RunState

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
    return execute(cfg)


if __name__ == "__main__":
    sys.exit(main())
