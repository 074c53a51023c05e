"""The override that tells a launched job which run it is must survive Hydra's grammar as a string."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.sweep import launch

# run ids are 12 hex digits: some read as numbers unless quoted (39932545e435 is a float that overflows
# to inf; an all-digit id is an int and loses its leading zeros)
RUN_IDS = ["39932545e435", "012345678901", "1e5", "9cd22076eda3"]


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_launch_run_override_parses_back_to_the_run_id(run_id: str, tmp_path: Path) -> None:
    (job,) = launch.job_overrides(["sweep=mvt"], tmp_path, [run_id])
    (override,) = [o for o in job if o.startswith("sweep.launch_run=")]
    (parsed,) = OverridesParser.create().parse_overrides([override])
    assert parsed.value() == run_id and isinstance(parsed.value(), str)
