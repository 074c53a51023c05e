"""The sweep end to end with the real stages: datagen, experiments.run, analysis (slow: minutes on CPU).

`make mvt SCALE=smoke` in miniature (one seed): the dataset is generated first, three real runs
are trained on CPU, a SIGKILL of the sweep mid-run is recovered by rerunning the same command, and
the analysis prints its verdict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


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
    sweep = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 1800  # datagen alone can take minutes on a busy 2-core machine
    try:
        while time.time() < deadline:  # SIGKILL once the second run has logged a few steps
            dirs = sorted((root / "sweeps").glob("*/runs/*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
            if len(dirs) >= 2 and len(read_jsonl(dirs[-1])) >= 3:
                break
            if sweep.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            time.sleep(0.5)
        else:
            pytest.fail("no second run within 30 minutes")
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=2400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_json,) = list((root / "sweeps").glob("*/sweep.json"))
    doc = json.loads(sweep_json.read_text())
    assert doc["status"] == "completed" and [r["arm"] for r in doc["runs"]] == [
        "adamw",
        "adam8bit",
        "flashoptim",
    ]
    assert all(r["status"] in ("completed", "diverged", "aborted") for r in doc["runs"]), doc["runs"]
    for r in doc["runs"]:
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert summary["run_id"] == r["run_id"]
    flash = json.loads((Path(doc["runs"][2]["run_dir"]) / "summary.json").read_text())
    gates = {g["gate"]: g for g in flash["gates"]}
    assert gates["B"]["outcome"] == "not_evaluable", "memory is not measurable on CPU"
    assert {"A", "B", "E"} <= set(gates)
    assert (sweep_json.parent / "report" / "verdict.json").exists()
    assert "verdict" in proc.stdout.lower()
