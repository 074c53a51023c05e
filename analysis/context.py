"""Everything one report shows, gathered once so that the HTML, Markdown and W&B outputs agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.accounting import Accounting
from analysis.controls import Controls
from analysis.criteria import CriterionResult
from analysis.figures import Figure
from analysis.load import Sweep


@dataclass
class ArmVerdict:
    arm: str
    verdict: str
    reasons: list[str]
    criteria: list[CriterionResult]


@dataclass
class ReportContext:
    sweep: Sweep
    cfg: Any
    design: str
    primary: ArmVerdict
    secondary: list[ArmVerdict]
    runs: pd.DataFrame
    cells: pd.DataFrame
    gates: pd.DataFrame
    figures: list[Figure]
    header: dict[str, str]  # scale, hardware, dataset, model init, date, code version (display strings)
    provenance: dict[str, Any] = field(default_factory=dict)
    accounting: Accounting = field(default_factory=Accounting)
    assay: tuple[bool | None, str] = (None, "")
    look: tuple[int, float, int] = (1, 0.975, 0)  # sequential look, its one-sided confidence, seeds/cell
    controls: Controls = field(default_factory=Controls)  # the accuracy endpoint's controls
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)  # arms vs baselines (long, controls.py)
    nll: pd.DataFrame = field(default_factory=pd.DataFrame)  # teacher-forced target NLL per arm and split

    @property
    def scale(self) -> str:
        return self.sweep.scale

    @property
    def is_smoke(self) -> bool:
        return self.scale in self.cfg.inconclusive_scales
