"""One process owns a run directory (issue 18 item 5): ``run.lock`` inside the run directory, taken by
every ``python -m experiments.run`` (by hand, from the sweep, under SLURM; under torchrun by the
launcher or rank 0). A second identical run is refused in one line, exit 3, and touches nothing.

Real processes, not threads: ``flock`` is per open file, and the failure this guards against (issue
18: one run deleting the other's directory, both "completed" with interleaved metric rows) needs two
interpreters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from run_helpers import FAST, compose_run, fixture_results_root, read_metrics, read_summary

from experiments import identity, rundir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop(rundir.OWNER_ENV, None)
    return env


def _wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_identical_run_is_refused_and_the_first_is_untouched(results_root: Path) -> None:
    overrides = [f"results_root={results_root}", *FAST, "train.max_steps=100000", "sweep_id=lock-two"]
    run_dir = identity.run_dir(compose_run(results_root, overrides[1:]))
    cmd = [sys.executable, "-m", "experiments.run", *overrides]
    first = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        metrics = run_dir / rundir.METRICS
        _wait_for(lambda: metrics.is_file() and len(read_metrics(run_dir)) >= 2, 300, "training", first)
        before = {
            name: (run_dir / name).read_bytes() for name in ("config.yaml", "manifest.json", "tokenizer.json")
        }
        rows_before = (run_dir / rundir.METRICS).read_text()

        second = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)

        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert second.returncode == rundir.EXIT_BUSY == 3, second.stderr[-2000:]
        assert len(lines) == 1, second.stderr[-2000:]
        assert str(run_dir) in lines[0] and "in use" in lines[0] and str(first.pid) in lines[0], lines[0]
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run must still be running"
        for name, data in before.items():
            assert (run_dir / name).read_bytes() == data, f"{name} was changed by the refused run"
        assert (run_dir / rundir.METRICS).read_text().startswith(rows_before)
        assert not (run_dir / rundir.SUMMARY).exists()

        first.send_signal(signal.SIGTERM)  # stop it: aborted with a checkpoint, summary written
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, first.stderr.read().decode()[-2000:] if first.stderr else ""
    summary = read_summary(run_dir)
    assert summary["status"] == "aborted", summary
    steps = [row["step"] for row in read_metrics(run_dir)]
    assert steps == list(range(1, len(steps) + 1)), "metric rows of one run only, in order"
    assert len(steps) == summary["steps_completed"]


_HOLD = textwrap.dedent(
    """
    import sys, time
    from experiments import rundir
    with rundir.own_run_dir(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_the_lock_lives_in_the_run_directory_and_dies_with_its_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert (run_dir / rundir.LOCK).is_file()
        with (
            pytest.raises(rundir.RunDirBusy, match=f"{run_dir}.*process {holder.pid} "),
            rundir.own_run_dir(run_dir),
        ):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    with rundir.own_run_dir(run_dir):  # the dead holder's lock is gone
        (run_dir / "metrics.jsonl").write_text("{}\n")
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([rundir.LOCK, "metrics.jsonl"])


def test_a_run_directory_it_created_and_left_empty_is_removed(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r2"
    with pytest.raises(SystemExit), rundir.own_run_dir(run_dir):
        assert (run_dir / rundir.LOCK).is_file()
        raise SystemExit(2)  # e.g. a config error found while preparing the data
    assert not (tmp_path / "runs").exists(), "a refused run must leave no directory behind"
    run_dir.mkdir(parents=True)  # one that existed before stays
    with rundir.own_run_dir(run_dir):
        pass
    assert run_dir.is_dir()


def test_a_child_of_the_owner_runs_under_its_lock(tmp_path: Path) -> None:
    """The torchrun launcher owns the directory; the ranks it starts inherit that (no self-deadlock)."""
    run_dir = tmp_path / "runs" / "r3"
    code = "import sys; from experiments import rundir\nwith rundir.own_run_dir(sys.argv[1]): print('ran')"
    with rundir.own_run_dir(run_dir):
        env = {**_env(), rundir.OWNER_ENV: os.environ[rundir.OWNER_ENV]}
        child = subprocess.run(
            [sys.executable, "-c", code, str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(run_dir)], cwd=REPO, env=_env(), capture_output=True, text=True
        )
    assert child.returncode == 0 and child.stdout.strip() == "ran", child.stderr
    assert other.returncode != 0 and "RunDirBusy" in other.stderr
    assert rundir.OWNER_ENV not in os.environ
