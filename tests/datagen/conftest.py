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
