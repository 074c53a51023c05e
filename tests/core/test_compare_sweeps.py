"""scripts.compare_sweeps: what counts as the same behaviour for a refactor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.compare_sweeps import compare

REPO = Path(__file__).resolve().parents[2]


def _sweep(root: Path) -> Path:
    sweep = root / "0b82b165e4a9"
    for rid, opt, loss in (("aaaa", "adamw", [2.5, 2.25]), ("bbbb", "flashoptim", [2.5, 2.375])):
        run = sweep / "runs" / rid
        run.mkdir(parents=True)
        summary = {
            "optimizer": opt,
            "seed": 0,
            "status": "completed",
            "final_loss": loss[-1],
            "step_time_s": 0.1,
            "gates": [{"gate": "A", "outcome": "pass", "fired": False}],
        }
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "metrics.jsonl").write_text(
            "".join(json.dumps({"loss": v, "step_time_s": 0.1}) + "\n" for v in loss)
        )
    (sweep / "report").mkdir()
    (sweep / "report" / "verdict.json").write_text(
        json.dumps({"verdict": "INCONCLUSIVE", "criteria": [{"id": "S1", "outcome": "pass"}]})
    )
    return sweep


def test_same_behaviour_is_identical_even_when_timings_differ(tmp_path: Path) -> None:
    a, b = _sweep(tmp_path / "a"), _sweep(tmp_path / "b")
    s = json.loads((b / "runs/aaaa/summary.json").read_text())
    s["step_time_s"] = 9.9  # a measurement, not behaviour
    (b / "runs/aaaa/summary.json").write_text(json.dumps(s))
    assert compare(a, b)[-1] == "IDENTICAL"


def test_a_changed_loss_a_missing_run_and_a_changed_verdict_are_named(tmp_path: Path) -> None:
    a, b = _sweep(tmp_path / "a"), _sweep(tmp_path / "b")
    (b / "runs/bbbb/metrics.jsonl").write_text('{"loss": 2.5}\n{"loss": 2.376}\n')
    last = compare(a, b)[-1]
    assert last.startswith("DIFFERENT") and "run bbbb: metrics.jsonl losses" in last and "aaaa" not in last
    shutil.rmtree(b / "runs/aaaa")
    (b / "report/verdict.json").write_text(
        json.dumps({"verdict": "GO", "criteria": [{"id": "S1", "outcome": "pass"}]})
    )
    last = compare(a, b)[-1]
    assert "only before ['aaaa']" in last and "verdict or criterion outcomes differ" in last


def test_cli_exit_codes(tmp_path: Path) -> None:
    a, b = _sweep(tmp_path / "a"), _sweep(tmp_path / "b")
    run = [sys.executable, "-m", "scripts.compare_sweeps"]
    assert subprocess.run([*run, str(a), str(b)], cwd=REPO, capture_output=True).returncode == 0
    (b / "runs/aaaa/summary.json").write_text(json.dumps({"status": "failed"}))
    assert subprocess.run([*run, str(a), str(b)], cwd=REPO, capture_output=True).returncode == 1
    bad = subprocess.run([*run, str(a), str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a sweep directory" in bad.stderr
