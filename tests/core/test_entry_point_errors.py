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
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
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


# -- issue 18 item 7: the experiments side, as a user types it ------------------------------------
# Each: the real CLI, exit 2, one stderr line naming the key (as typed) and the bad value and saying
# what is allowed, no traceback, nothing written. Sweeps are dry runs, so that a case the sweep fails
# to refuse lists its runs instead of generating data.
USER_MISTAKES = [
    (["experiments.run", "train.lr=abc"], ["train.lr", "'abc'", "a number"]),
    (["experiments.run", "seed=abc"], ["seed", "'abc'", "an integer"]),
    (["experiments.run", "train.betas=abc"], ["train.betas", "'abc'", "a list"]),
    (["experiments.run", "train.max_steps=0"], ["train.max_steps", "=0", ">= 1"]),
    (["experiments.run", "train.micro_batch_size=-2"], ["train.micro_batch_size", "-2", ">= 1"]),
    (["experiments.run", "model=nope"], ["model", "nope", "tiny"]),
    (["experiments.run", "scale=huge"], ["scale", "huge", "smoke"]),
    (["experiments.run", "+foo=1"], ["foo", "unknown key", "train"]),
    (["experiments.run", "trainlr"], ["trainlr", "key=value"]),
    (
        ["experiments.sweep", "sweep.dry_run=true", "sweep.grid.model=[nope]"],
        ["sweep.grid.model", "nope", "tiny"],
    ),
    (
        ["experiments.sweep", "sweep.dry_run=true", "sweep.grid.seed=[0,-1]"],
        ["sweep.grid.seed", "-1", ">= 0"],
    ),
    (
        ["experiments.sweep", "sweep.dry_run=true", "sweep.grid.seed=[a]"],
        ["sweep.grid.seed", "'a'", "integer"],
    ),
    (
        ["experiments.sweep", "sweep.dry_run=true", "sweep.grid.optimizer=[adamw,nope]"],
        ["sweep.grid.optimizer", "nope", "flashoptim"],
    ),
    (
        ["experiments.sweep", "sweep.dry_run=true", 'sweep.run_overrides=["train.lr=abc"]'],
        ["sweep.run_overrides", "train.lr", "abc", "a number"],
    ),
    (
        ["experiments.sweep", "sweep.dry_run=true", 'sweep.run_overrides=["train.lr=-1"]'],
        ["sweep.run_overrides", "train.lr", "-1", "> 0"],
    ),
    (["datagen", "data.shard_size=abc"], ["data.shard_size", "'abc'", "an integer"]),
]


@pytest.mark.parametrize(
    ("args", "must_name"), USER_MISTAKES, ids=[" ".join(a[1:]) for a, _ in USER_MISTAKES]
)
def test_a_user_mistake_is_one_line_naming_key_value_and_what_is_allowed(
    tmp_path: Path, args: list[str], must_name: list[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    proc = _run([*args, f"results_root={results}"], REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("config error: ") and "allowed: " in lines[0], lines[0]
    for word in must_name:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in proc.stderr
    assert list(results.iterdir()) == [], "a rejected command must leave nothing behind"


def _fixture_dataset(results: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests" / "experiments"))
    from run_helpers import write_fixture_dataset

    from common.config import compose
    from experiments.config import register

    register()
    return write_fixture_dataset(compose("run", [f"results_root={results}"]).data, results)


@pytest.mark.parametrize(
    "damage", ["manifest-not-json", "manifest-not-a-manifest", "shard-truncated", "shard-gone"]
)
def test_a_damaged_dataset_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    results = tmp_path / "results"
    ds = _fixture_dataset(results)
    shard = sorted((ds / "shards").glob("train-*.npz"))[0]
    if damage == "manifest-not-json":
        (ds / "manifest.json").write_text('{"counts": ')
        named = ds / "manifest.json"
    elif damage == "manifest-not-a-manifest":
        (ds / "manifest.json").write_text("{}")
        named = ds / "manifest.json"
    elif damage == "shard-truncated":
        shard.write_bytes(shard.read_bytes()[:100])
        named = shard
    else:
        shard.unlink()
        named = shard
    proc = _run(["experiments.run", "optimizer=adamw", f"results_root={results}"], REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and str(named) in lines[0] and "datagen" in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in results.iterdir()) == ["datasets"], "no run directory is left behind"
