"""Hydra only instantiates launchers defined under the ``hydra_plugins`` namespace package; this is
the sweep's SLURM launcher (experiments/sweep/slurm.py) registered there. ``conf/hydra/launcher/slurm.yaml``
names it. Found through the repository root on ``sys.path`` (every command runs from there).

It subclasses Hydra's submitit launcher. Where that package is absent (the GPU image, which gets only
the wheels ``scripts/fetch_wheels.sh`` carries) this module defines no launcher, so that Hydra's plugin
scan does not print an "incompatible or buggy plugin" warning at every command; ``hydra/launcher=slurm``
is then refused by the sweep's config check."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from experiments.sweep import slurm

    class SlurmLauncher(slurm.SlurmLauncher):
        """See :mod:`experiments.sweep.slurm`."""
