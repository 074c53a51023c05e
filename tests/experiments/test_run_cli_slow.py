"""The real command line, end to end, in its own process: SIGTERM mid-run leaves a resumable
`aborted` run; `resume=true` finishes it on the trajectory of an uninterrupted run (slow: three
interpreter start-ups with torch and transformers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import FAST, compose_run, fixture_results_root, read_metrics, read_summary

from experiments import identity

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _cmd(root: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "experiments.run", f"results_root={root}", *overrides]


@pytest.mark.slow
def test_sigterm_then_resume_matches_an_uninterrupted_run(results_root: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [*FAST, "train.max_steps=60", "harness.checkpoint_every_steps=10"]
    ref = subprocess.run(
        _cmd(results_root, [*base, "sweep_id=cli-ref"]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_dir = identity.run_dir(compose_run(results_root, [*base, "sweep_id=cli-ref"]))
    reference = [r["loss"] for r in read_metrics(ref_dir)]

    ov = [*base, "sweep_id=cli-kill"]
    run_dir = identity.run_dir(compose_run(results_root, ov))
    proc = subprocess.Popen(
        _cmd(results_root, ov),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        m = run_dir / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    s = read_summary(run_dir)
    assert s["status"] == "aborted" and "SIGTERM" in s["status_reason"] and s["resumable"] is True

    res = subprocess.run(
        _cmd(results_root, [*ov, "resume=true"]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_summary(run_dir)["status"] == "completed"
    assert [r["loss"] for r in read_metrics(run_dir)] == reference
