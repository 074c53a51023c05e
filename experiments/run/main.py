"""``python -m experiments.run optimizer=<arm> model=<preset> seed=<n> [key=value ...]``

One training run: compose and validate the config (a mistake exits 2 with one line, before any
directory exists), prepare the data, train, evaluate, and leave
``results/sweeps/<sweep_id>/runs/<run_id>/`` with exactly one terminal status in ``summary.json``.
Every ending that was recorded exits 0 (OOM, divergence and failure are results a sweep goes on
from); a non-zero exit means the summary itself could not be written. ``--cfg`` prints the
resolved config and exits. A run whose summary says ``completed`` is not redone. One process at a
time owns a run directory (``run.lock`` in it): a second identical run is refused with one line on
stderr and exit status 3 (:data:`experiments.rundir.EXIT_BUSY`), having touched nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from omegaconf import OmegaConf

from common.config import ConfigError, compose, die, exit_on_config_error, load_validated
from common.logs import setup_logging
from experiments import config as run_config
from experiments import identity, rundir


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    run_config.register()
    if "--cfg" in args:  # Hydra style: `--cfg` or `--cfg job` prints the resolved config
        i = args.index("--cfg")
        rest = args[:i] + args[i + 1 + (i + 1 < len(args) and args[i + 1] in ("job", "all")) :]
        with exit_on_config_error():
            print(OmegaConf.to_yaml(compose("run", rest)))
        return 0
    cfg = load_validated("run", args, run_config.validate)
    # One process owns the run directory: this one, unless it is a rank other than 0 under torchrun
    # (rank 0 owns it, or the launcher that started torchrun, whose lock the ranks inherit).
    owner = os.environ.get("RANK", "0") == "0" or "TORCHELASTIC_RUN_ID" not in os.environ
    try:
        with rundir.own_run_dir(identity.run_dir(cfg)) if owner else contextlib.nullcontext():
            return _run(cfg, args)
    except rundir.RunDirBusy as busy:
        print(f"run refused: {busy}", file=sys.stderr)
        return rundir.EXIT_BUSY


def _run(cfg: Any, args: list[str]) -> int:
    # The run machinery imports torch and transformers (seconds): loaded only once the config is
    # valid, so that a config mistake exits 2 at once (tests/core/test_entry_point_errors.py).
    from experiments.run import execute, torchrun

    if cfg.dist.strategy != "none" and not torchrun.under_torchrun():
        return torchrun.launch(cfg, args)  # one torchrun command; this process waits and checks the summary
    if cfg.dist.strategy == "none" and torchrun.under_torchrun() and torchrun.torchrun_world_size() > 1:
        die(ConfigError("dist.strategy", "none", "fsdp2 (torchrun started several processes)"))
    return execute.execute(cfg)
