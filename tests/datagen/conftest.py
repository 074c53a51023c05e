"""Shared fixtures: the composed smoke data config (its solver settings drive every test solve)."""

from __future__ import annotations

from typing import Any

import pytest

import datagen.spec  # noqa: F401  (registers the schemas)
from common.config import compose


@pytest.fixture(scope="session")
def smoke_cfg() -> Any:
    return compose("datagen", ["data=smoke"])


@pytest.fixture(scope="session")
def solver_cfg(smoke_cfg: Any) -> Any:
    return smoke_cfg.data.solver


@pytest.fixture(scope="session")
def solver_cfg_o2() -> Any:
    """The smoke solver settings with the forms compiled at gcc -O2 (the production level) instead of
    smoke's -O0: for tests whose forms are small (seconds to compile) but assembled many times
    (Cook's 8 x 8 meshes, Terzaghi's time steps), where -O0 kernels ran 3-10x slower (README)."""
    return compose("datagen", ["data=smoke", "data.solver.jit_opt_level=2"]).data.solver
