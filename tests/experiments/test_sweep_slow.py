"""The sweep end to end with the real stages: datagen, experiments.run, analysis (slow: minutes on CPU).

`make mvt SCALE=smoke` in miniature (one seed): the dataset is generated first, three real runs
are trained on CPU, the sweep is SIGKILLed twice (once mid-run, once at a random moment of a
rerun), and rerunning the same command finishes it: no run that had finished is redone (its
summary is byte-identical), no partial run is counted (every run ends with one terminal status and
a metrics.jsonl of each step exactly once), and the analysis prints its verdict.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _finished_summaries(root: Path) -> dict[Path, bytes]:
    """summary.json bytes of every run that had finished (a terminal status) when called."""
    out = {}
    for path in (root / "sweeps").glob("*/runs/*/summary.json"):
        data = path.read_bytes()
        if json.loads(data).get("status") in ("completed", "oom", "diverged", "aborted", "failed"):
            out[path] = data
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_smoke_mvt_with_real_runs_survives_sigkill_and_reports(tmp_path: Path) -> None:
    root = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep",
        "sweep=mvt",
        "scale=smoke",
        f"results_root={root}",
        "sweep.grid.seed=[0]",
        "sweep.progress_interval_s=1",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    # Kill 1: once the second run has logged a few steps (the first one has finished by then).
    sweep = start()
    deadline = time.time() + 1800  # datagen alone can take minutes on a busy 2-core machine
    try:
        while time.time() < deadline:
            dirs = sorted((root / "sweeps").glob("*/runs/*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
            if len(dirs) >= 2 and len(read_jsonl(dirs[-1])) >= 3:
                break
            if sweep.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            time.sleep(0.5)
        else:
            pytest.fail("no second run within 30 minutes")
    finally:
        _kill(sweep)
    finished = _finished_summaries(root)
    assert finished, "the first run had finished before the kill"

    # Kill 2: a rerun, killed at a random moment (start-up, planning, a run's step or its summary).
    delay = random.Random(time.time_ns()).uniform(1.0, 25.0)
    sweep = start()
    try:
        sweep.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _kill(sweep)
    for path, data in _finished_summaries(root).items():
        finished.setdefault(path, data)

    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=2400, env=env)
    assert proc.returncode == 0, (
        f"second kill after {delay:.1f} s\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    )
    (sweep_json,) = list((root / "sweeps").glob("*/sweep.json"))
    doc = json.loads(sweep_json.read_text())
    assert doc["status"] == "completed" and [r["arm"] for r in doc["runs"]] == [
        "adamw",
        "adam8bit",
        "flashoptim",
    ]
    assert all(r["status"] in ("completed", "diverged", "aborted") for r in doc["runs"]), doc["runs"]
    for path, data in finished.items():  # nothing that had finished was redone
        assert path.read_bytes() == data, f"{path.parent.name} was redone (second kill after {delay:.1f} s)"
    for r in doc["runs"]:  # nothing partial counted: one terminal summary, each step logged once
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert summary["run_id"] == r["run_id"] and summary["status"] == r["status"]
        steps = [row["step"] for row in read_jsonl(Path(r["run_dir"]) / "metrics.jsonl")]
        assert steps == list(range(1, summary["steps_completed"] + 1)), (r["arm"], steps)
    flash = json.loads((Path(doc["runs"][2]["run_dir"]) / "summary.json").read_text())
    gates = {g["gate"]: g for g in flash["gates"]}
    assert gates["B"]["outcome"] == "not_evaluable", "memory is not measurable on CPU"
    assert {"A", "B", "E"} <= set(gates)
    assert (sweep_json.parent / "report" / "verdict.json").exists()
    assert "verdict" in proc.stdout.lower()
