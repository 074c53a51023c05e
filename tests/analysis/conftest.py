"""Shared fixtures: the composed analysis config and a helper that analyses a synthetic sweep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analysis.build import judge as judge_sweep
from analysis.config import register, validate
from analysis.criteria import CriterionResult
from analysis.load import load_sweep
from analysis.synthetic import SweepSpec, write_sweep
from common.config import compose


@pytest.fixture(scope="session")
def cfg() -> Any:
    register()
    c = compose("analysis", [])
    validate(c)
    return c


@pytest.fixture
def judge(tmp_path: Path, cfg: Any) -> Callable[..., tuple[str, list[str], dict[str, CriterionResult]]]:
    """Write ``spec`` as a sweep and judge the arm as the entry point does: (verdict, reasons, {id: result})."""

    def _judge(spec: SweepSpec, arm: str = "flashoptim", name: str = "sweep", config: Any = None):
        sweep = load_sweep(write_sweep(tmp_path / name, spec))
        av = judge_sweep(sweep, config if config is not None else cfg, arm)
        return av.verdict, av.reasons, {r.id: r for r in av.criteria}

    return _judge
