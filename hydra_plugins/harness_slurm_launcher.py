"""Hydra only instantiates launchers defined under the ``hydra_plugins`` namespace package; this is
the sweep's SLURM launcher (experiments/sweep/slurm.py) registered there. ``conf/hydra/launcher/slurm.yaml``
names it. Found through the repository root on ``sys.path`` (every command runs from there)."""

from __future__ import annotations

from experiments.sweep import slurm


class SlurmLauncher(slurm.SlurmLauncher):
    """See :mod:`experiments.sweep.slurm`."""
