"""Cluster entry point: `python -m datagen.cluster --multirun shard_groups=N 'shard_group=range(0,N)'
hydra/launcher=submitit_slurm data=protocol` (Hydra app, so Hydra's launchers can fan shards out).

Each job solves the shards whose ordinal is congruent to `shard_group` mod `shard_groups`, with
its own worker pool (`workers`, one per core of the job). Shard files are written atomically, so
jobs never see each other's partial output; the job that finds every shard present writes the
manifest (re-running `python -m datagen` with the same config also does, skipping all shards).
The code path is the same `datagen.generate.generate` as the local command. Run as a SLURM array
on a local one-node cluster by tests/slurm/test_datagen_array.py (`hydra/launcher=slurm_cpu`).
"""

from __future__ import annotations

from typing import Any

import hydra

import datagen.spec
from common.config import CONF_DIR, exit_on_config_error
from common.logs import setup_logging


@hydra.main(config_path=str(CONF_DIR), config_name="datagen", version_base="1.3")
def app(cfg: Any) -> None:
    with exit_on_config_error():
        datagen.spec.validate_datagen(cfg)
    setup_logging(level=cfg.log_level)
    from datagen.generate import generate

    with exit_on_config_error():  # DatasetError too: one line naming the file, exit 2
        generate(cfg)


if __name__ == "__main__":
    app()
