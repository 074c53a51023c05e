"""Bad configuration stops before any solve with one line naming the key (exit 2, no directory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, compose
from datagen.spec import validate_datagen

LIB = "data.tissue_library"
BAD = [
    (f"{LIB}.liver.hyperelastic.neo_hookean.mu.low=-1.0", "neo_hookean.mu", "strictly positive"),
    (f"{LIB}.liver.hyperelastic.neo_hookean.nu.high=0.5", "neo_hookean.nu", "Poisson"),
    ("data.tissues=[liver,kidney]", "data.tissues", "kidney"),
    (f"{LIB}.brain_grey.prony.tau1.low=9.0", "prony.tau1", "low <= high"),
    ("data.behaviours=[plastic]", "data.behaviours", "hyperelastic"),
    ("data.splits.train=-3", "data.splits.train", ">= 0"),
    ("data.mesh.cells_per_axis=0", "data.mesh.cells_per_axis", ">= 1"),
    (f"{LIB}.brain_grey.hyperelastic.ogden.alpha.choices=[-19.0]", "ogden.alpha", "even"),
]


@pytest.mark.parametrize(("override", "key", "allowed"), BAD)
def test_semantic_errors_name_key(override: str, key: str, allowed: str) -> None:
    cfg = compose("datagen", ["data=smoke", override])
    with pytest.raises(ConfigError) as e:
        validate_datagen(cfg)
    msg = str(e.value)
    assert key in msg and allowed in msg and "\n" not in msg


def test_unknown_key_and_option_rejected_at_compose() -> None:
    with pytest.raises(ConfigError, match=r"data\.mesh\.resolution"):
        compose("datagen", ["data=smoke", "data.mesh.resolution=3"])
    with pytest.raises(ConfigError, match=r"one of .*pilot.*protocol.*smoke"):
        compose("datagen", ["data=huge"])


def test_every_data_option_validates() -> None:
    for name in ("smoke", "pilot", "protocol"):
        validate_datagen(compose("datagen", [f"data={name}"]))


def test_cli_exits_2_with_one_line_before_work(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "datagen",
            "data=smoke",
            f"results_root={tmp_path}",
            f"{LIB}.liver.hyperelastic.neo_hookean.nu.high=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "neo_hookean.nu" in lines[0], r.stderr
    assert not any(tmp_path.iterdir()), "a directory was created before the config error"
