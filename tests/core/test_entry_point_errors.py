"""Every entry point rejects a bad configuration in one line, exit status 2, before any work.

These run the real commands a user types (`python -m ...`) in a subprocess, with the results root
pointed at an empty temporary directory so that "no run directory left behind" can be checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=env
    )


@pytest.mark.parametrize(
    ("args", "must_name"),
    [
        (["experiments.run", "optimizer=nope"], ["optimizer", "nope", "adamw", "flashoptim"]),
        (["experiments.run", "train.lrr=0.1"], ["lrr"]),
        (["experiments.run", "train.lr=-0.001"], ["train.lr", "-0.001"]),
        (["experiments.run", "train.steps=many"], ["train.steps", "many"]),
        (["experiments.sweep", "sweep=nope"], ["sweep", "nope", "mvt"]),
        (["datagen", "data=nope"], ["data", "nope", "smoke"]),
    ],
)
def test_bad_config_fails_in_one_line_with_exit_2(
    tmp_path: Path, args: list[str], must_name: list[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    proc = _run([*args, f"results_root={results}"], REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    for word in must_name:
        assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert list(results.iterdir()) == [], "a rejected configuration must leave no directory behind"


def test_missing_dataset_is_a_config_error(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    proc = _run(["experiments.run", "optimizer=adamw", f"results_root={results}"], REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "data" in lines[0] and "datagen" in lines[0], lines
    assert list(results.iterdir()) == []


def test_analysis_of_a_missing_directory_fails_in_one_line(tmp_path: Path) -> None:
    proc = _run(["analysis", str(tmp_path / "no-such-sweep")], REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no-such-sweep" in lines[0], proc.stderr
