"""Repository-wide pytest set-up: one test convention (tests/<area>/test_*.py), markers in pyproject."""

from __future__ import annotations

import os

# Tests never talk to W&B's servers, whatever the developer's environment says.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Keep BLAS from oversubscribing the 2-core CI machine when FEniCSx and torch share it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests write under pytest's tmp dirs, outside the working tree: the results_root switch's default
# (conf/run.yaml, conf/sweep.yaml) reads this; tests of the refusal unset it.
os.environ.setdefault("HARNESS_ALLOW_OUTSIDE_RESULTS_ROOT", "true")
