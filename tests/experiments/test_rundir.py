"""The run-directory contract (experiments/rundir.py): one home for statuses, the summary, the lock."""

from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path

import pytest

from experiments import rundir

REPO = Path(__file__).resolve().parents[2]


def _write(run_dir: Path, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / rundir.SUMMARY).write_text(text)


@pytest.mark.parametrize("status", rundir.TERMINAL)
def test_a_terminal_summary_is_finished(tmp_path: Path, status: str) -> None:
    rundir.write_summary(tmp_path, {"status": status, "final_loss": 1.5})
    assert rundir.read_summary(tmp_path) == {"status": status, "final_loss": 1.5}
    assert rundir.is_finished(tmp_path)
    assert rundir.is_done(tmp_path) is (status == "completed")


@pytest.mark.parametrize(
    "text",
    ['{"status": "running"}', '{"status": "completed", "final_lo', "[1, 2]", ""],
    ids=["not-terminal", "torn", "not-an-object", "empty"],
)
def test_a_torn_or_live_summary_is_not_finished(tmp_path: Path, text: str) -> None:
    _write(tmp_path, text)
    assert rundir.read_summary(tmp_path) is None
    assert not rundir.is_finished(tmp_path)
    assert not rundir.is_done(tmp_path)


def test_no_summary_is_not_finished(tmp_path: Path) -> None:
    assert rundir.read_summary(tmp_path / "missing") is None
    assert rundir.read_summary(None) is None
    assert rundir.existing_status(tmp_path / "missing") is None
    assert not rundir.is_done(tmp_path / "missing")


def test_write_summary_leaves_no_temporary_file(tmp_path: Path) -> None:
    rundir.write_summary(tmp_path, {"status": "oom"})
    assert [p.name for p in tmp_path.iterdir()] == [rundir.SUMMARY]
    assert json.loads((tmp_path / rundir.SUMMARY).read_text())["status"] == "oom"


def test_stop_carries_status_and_reason() -> None:
    stop = rundir.Stop("diverged", "loss is nan at step 3")
    assert (stop.status, stop.reason, str(stop)) == (
        "diverged",
        "loss is nan at step 3",
        "loss is nan at step 3",
    )


def test_the_run_lock_makes_a_second_launcher_wait(tmp_path: Path) -> None:
    """While one holder has the run's lock, a non-blocking attempt fails and a blocking one waits."""
    order: list[str] = []
    with rundir.run_lock(tmp_path, "abc"):
        with rundir.flock(rundir.run_lock_path(tmp_path, "abc"), blocking=False) as got:
            assert got is False

        def second() -> None:
            with rundir.run_lock(tmp_path, "abc"):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first releases")
    t.join(timeout=10)
    assert order == ["first releases", "second"]


def test_statuses_are_written_once_in_experiments() -> None:
    """No module of experiments/ but rundir.py spells the terminal statuses out as a tuple or list."""
    terminal = set(rundir.TERMINAL)
    offenders = []
    for path in sorted((REPO / "experiments").rglob("*.py")):
        if path.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if terminal <= values:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
