"""The sweep on a real SLURM cluster (``hydra/launcher=slurm_cpu``), with the real runs (smoke scale,
CPU) on the dataset the datagen array made:

- the smoke MVT: every run is a SLURM job (seen RUNNING in squeue, COMPLETED in ``sacct
  --completion``), the sweep waits for them, applies the sweep-level gates and prints the verdict;
- faults: ``scancel`` of a running job, and ``scontrol update state=down`` of the node under a
  running job, each end as a recorded status that names the SLURM state (never a completed run);
  rerunning the same command resubmits only those two runs, which resume from their checkpoints;
- the time limit: a run longer than its job's limit is stopped by SLURM's SIGTERM, checkpoints and
  records ``aborted``; the rerun resumes it from the checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from common.atomic import read_jsonl
from tests.slurm.conftest import DATA, REPO, Cluster, Datagen

# A real SLURM cluster (root, apt): minutes; CI runs these in their own step (.ci/run).
pytestmark = pytest.mark.slow

# Smoke runs cut shorter still (the machine is 2 shared cores): 16 steps, a checkpoint every 4.
SHORT = [
    "train.max_steps=16",
    "harness.checkpoint_every_steps=4",
    "train.eval.val_samples=4",
    "train.eval.test_samples=4",
]
CKPT_EVERY = 4


def run_overrides(*extra: str) -> str:
    """``sweep.run_overrides=[...]``: the datagen array's dataset, short runs, then ``extra``."""
    return "sweep.run_overrides=[" + ",".join(f"'{o}'" for o in [*DATA[1:], *SHORT, *extra]) + "]"


RUN_DATA = run_overrides()


def sweep_cmd(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.sweep",
        "sweep=mvt",
        "scale=smoke",
        "sweep.grid.seed=[0]",
        "sweep.progress_interval_s=1",
        f"results_root={root}",
        "hydra/launcher=slurm_cpu",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _no_sweep_left() -> Iterator[None]:
    """A test that fails leaves no sweep process behind: SIGINT (it cancels its jobs), then SIGKILL."""
    yield
    for sweep in Sweep.started:
        if sweep.proc.poll() is None:
            sweep.proc.send_signal(signal.SIGINT)
            try:
                sweep.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                sweep.proc.kill()
                sweep.proc.wait()
    Sweep.started.clear()


class Sweep:
    """One sweep command in its own process; ``watch`` polls squeue and the run dirs until it exits."""

    started: ClassVar[list[Sweep]] = []

    def __init__(self, cluster: Cluster, cmd: list[str], log: Path) -> None:
        self.cluster = cluster
        self.log = log
        self.seen: dict[str, set[str]] = {}  # job id -> states squeue showed
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=open(log, "w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            env={**os.environ, "SLURM_CONF": str(cluster.conf), "PYTHONWARNINGS": "ignore"},
        )
        Sweep.started.append(self)

    def poll_queue(self) -> None:
        out = self.cluster.cmd("squeue", "-h", "-r", "-o", "%i %T", check=False)
        for line in out.splitlines():
            jid, _, state = line.strip().partition(" ")
            self.seen.setdefault(jid, set()).add(state)

    def watch(self, until: Callable[[], bool] | None = None, timeout: float = 1500) -> bool:
        """Poll until ``until()`` is true (returns True) or the sweep exits (returns False)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll_queue()
            if until is not None and until():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.5)
        self.proc.kill()
        raise AssertionError(f"sweep still running after {timeout}s:\n{self.output()[-3000:]}")

    def finish(self, timeout: float = 1500) -> str:
        self.watch(timeout=timeout)
        out = self.output()
        assert self.proc.returncode == 0, out[-4000:]
        return out

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def sweep_dir(root: Path, marker: str) -> Path:
    """The one sweep dir under ``root`` whose sweep.json contains ``marker`` (its config)."""
    found = [p.parent for p in (root / "sweeps").glob("*/sweep.json") if marker in p.read_text()]
    assert len(found) == 1, found
    return found[0]


def runs_by_arm(sdir: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((sdir / "sweep.json").read_text())
    return {r["arm"]: r for r in doc["runs"]}


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [int(r["step"]) for r in read_jsonl(path) if "loss" in r and "step" in r]


def launched_run(pkl: Path) -> str:
    """The run a submitted job launches: ``sweep.launch_run=`` in the job's pickled Hydra overrides."""
    with open(pkl, "rb") as f:
        delayed = pickle.load(f)
    (run,) = [o.split("=", 1)[1].strip("'") for o in delayed.args[0] if o.startswith("sweep.launch_run=")]
    return run


def jobs_by_run(sdir: Path) -> dict[str, list[str]]:
    """run_id -> the SLURM job ids (array tasks) that launched it, oldest first."""
    out: dict[str, list[str]] = {}
    for pkl in (sdir / "launcher" / ".submitit").glob("*/*_submitted.pkl"):
        out.setdefault(launched_run(pkl), []).append(pkl.parent.name)
    return {k: sorted(v, key=lambda j: [int(x) for x in j.split("_")]) for k, v in out.items()}


def job_of(sdir: Path, run_id: str) -> str:
    """The SLURM job id that launched ``run_id`` last."""
    return jobs_by_run(sdir)[run_id][-1]


def test_smoke_mvt_every_run_a_slurm_job(
    slurm_cluster: Cluster, slurm_dataset: Datagen, tmp_path: Path
) -> None:
    root = slurm_dataset.results_root
    t0 = time.time()
    sweep = Sweep(slurm_cluster, sweep_cmd(root, RUN_DATA, "sweep.id=slurm-mvt"), tmp_path / "sweep.log")
    out = sweep.finish()
    elapsed = time.time() - t0
    sdir = root / "sweeps" / "slurm-mvt"
    doc = json.loads((sdir / "sweep.json").read_text())
    assert doc["launcher"].endswith("harness_slurm_launcher.SlurmLauncher")
    assert doc["status"] == "completed"
    assert "stage: dataset" not in out  # the array's dataset was found, not regenerated locally
    # Every run: a job of its own, seen RUNNING in squeue, COMPLETED in the job-completion log.
    jobs = {r["run_id"]: job_of(sdir, r["run_id"]) for r in doc["runs"]}
    assert len(set(jobs.values())) == len(doc["runs"]) == 3
    accounted = slurm_cluster.sacct_states()
    for job in jobs.values():
        assert "RUNNING" in sweep.seen.get(job, set()), (job, sweep.seen)
        assert accounted[job] == "COMPLETED", (job, accounted)
    # Each run's status is the one its run dir recorded.
    for r in doc["runs"]:
        summary = json.loads(
            (root / r["run_dir"] if not Path(r["run_dir"]).is_absolute() else Path(r["run_dir"]))
            .joinpath("summary.json")
            .read_text()
        )
        assert r["status"] == summary["status"] and r["status"] in ("completed", "diverged", "aborted")
    # Sweep-level gates decided, the verdict printed is the analysis' verdict.json.
    assert {g["gate"] for g in doc["gates"]} >= {"C", "F"}
    verdict = json.loads((sdir / "report" / "verdict.json").read_text())["verdict"]
    assert re.search(rf"^VERDICT: {verdict} \(smoke scale\)", out, flags=re.M), out[-2000:]
    print(f"SLURM smoke MVT: {elapsed:.0f} s; jobs {jobs}")


def test_scancel_and_node_down_are_recorded_and_a_rerun_resumes_only_those(
    slurm_cluster: Cluster, slurm_dataset: Datagen, tmp_path: Path
) -> None:
    root = slurm_dataset.results_root
    cmd = sweep_cmd(root, RUN_DATA, "sweep.id=slurm-faults")
    sdir = root / "sweeps" / "slurm-faults"
    ckpt = CKPT_EVERY

    def past_checkpoint(arm: str) -> Callable[[], bool]:
        def check() -> bool:
            if not (sdir / "sweep.json").exists():
                return False
            r = runs_by_arm(sdir).get(arm)
            return r is not None and max(steps_logged(Path(r["run_dir"])), default=0) > ckpt + 1

        return check

    sweep = Sweep(slurm_cluster, cmd, tmp_path / "sweep1.log")
    # adam8bit runs in the first wave with adamw: cancel its job once it has a checkpoint.
    assert sweep.watch(past_checkpoint("adam8bit")), sweep.output()[-3000:]
    cancelled = job_of(sdir, runs_by_arm(sdir)["adam8bit"]["run_id"])
    slurm_cluster.cmd("scancel", cancelled)
    # flashoptim runs alone in the second wave: take the node down under it.
    assert sweep.watch(past_checkpoint("flashoptim")), sweep.output()[-3000:]
    down = job_of(sdir, runs_by_arm(sdir)["flashoptim"]["run_id"])
    slurm_cluster.cmd(
        "scontrol", "update", f"nodename={slurm_cluster.node}", "state=down", "reason=test-node-failure"
    )
    try:
        out = sweep.finish()
    finally:  # (ReturnToService=2 may have returned it already: then `resume` is refused, harmlessly)
        slurm_cluster.cmd("scontrol", "update", f"nodename={slurm_cluster.node}", "state=resume", check=False)
    runs = runs_by_arm(sdir)
    assert slurm_cluster.job_state(cancelled) == "CANCELLED"
    assert slurm_cluster.job_state(down) == "NODE_FAIL"
    assert runs["adamw"]["status"] == "completed"
    for arm, state in (("adam8bit", "CANCELLED"), ("flashoptim", "NODE_FAIL")):
        r = runs[arm]
        assert r["status"] in ("aborted", "failed") and f"ended {state}" in r["status_reason"], r
        summary_path = Path(r["run_dir"]) / "summary.json"
        if summary_path.exists():  # stopped by SIGTERM: checkpointed and said so
            s = json.loads(summary_path.read_text())
            assert s["status"] == "aborted" and s["resumable"] is True, s
        assert f"{r['run_id']}" in out and state in out  # the sweep's own log line says so
    finished = (Path(runs["adamw"]["run_dir"]) / "summary.json").read_bytes()
    deadline = time.time() + 120
    while slurm_cluster.node_state() != "idle":
        assert time.time() < deadline, slurm_cluster.node_state()
        time.sleep(1)

    # The same command again: only the two unfinished runs are submitted, each resumes.
    before = {p.name for p in (sdir / "launcher" / ".submitit").iterdir()}
    sweep = Sweep(slurm_cluster, cmd, tmp_path / "sweep2.log")
    sweep.finish()
    new_jobs = {p.name for p in (sdir / "launcher" / ".submitit").iterdir()} - before
    resubmitted = {run for run, jobs in jobs_by_run(sdir).items() if set(jobs) & new_jobs}
    assert resubmitted == {runs["adam8bit"]["run_id"], runs["flashoptim"]["run_id"]}
    assert (Path(runs["adamw"]["run_dir"]) / "summary.json").read_bytes() == finished
    after = runs_by_arm(sdir)
    for arm in ("adam8bit", "flashoptim"):
        rd = Path(after[arm]["run_dir"])
        assert after[arm]["status"] == "completed", after[arm]
        assert json.loads((rd / "manifest.json").read_text())["resumed"] is True
        steps = steps_logged(rd)
        assert steps == list(range(1, 17))  # each step exactly once across the two jobs


def test_time_limit_is_recorded_and_the_rerun_resumes(
    slurm_cluster: Cluster, slurm_dataset: Datagen, tmp_path: Path
) -> None:
    root = slurm_dataset.results_root
    # Longer than its job's limit (4 min: a run needs up to 2 min to start training on a loaded
    # 2-core machine); no early signal: SIGTERM comes with the limit itself. One run: no analysis.
    long_run = run_overrides("train.max_steps=100000", "harness.checkpoint_every_steps=0")
    limit = [
        "hydra.launcher.timeout_min=4",
        "hydra.launcher.signal_delay_s=0",
        "sweep.grid.optimizer=[adamw]",
    ]
    cmd = sweep_cmd(root, long_run, *limit, "sweep.analyse=false", "sweep.id=slurm-timeout")
    sdir = root / "sweeps" / "slurm-timeout"
    out = Sweep(slurm_cluster, cmd, tmp_path / "sweep1.log").finish(timeout=900)
    (r,) = runs_by_arm(sdir).values()
    job = job_of(sdir, r["run_id"])
    assert slurm_cluster.job_state(job) == "TIMEOUT"
    s = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
    assert s["status"] == "aborted" and s["resumable"] is True and "SIGTERM" in s["status_reason"], s
    assert r["status"] == "aborted" and "ended TIMEOUT" in r["status_reason"], r
    assert "TIMEOUT" in out
    first = steps_logged(Path(r["run_dir"]))
    assert first and first == list(range(1, len(first) + 1))
    # Rerun: resumes from the step it stopped at (and is stopped by the limit again).
    Sweep(slurm_cluster, cmd, tmp_path / "sweep2.log").finish(timeout=900)
    (r2,) = runs_by_arm(sdir).values()
    steps = steps_logged(Path(r2["run_dir"]))
    assert json.loads((Path(r2["run_dir"]) / "manifest.json").read_text())["resumed"] is True
    assert f"resumed from step {first[-1]} " in (Path(r2["run_dir"]) / "run.log").read_text()
    assert steps[: len(first)] == first and steps == list(range(1, len(steps) + 1))
    assert slurm_cluster.job_state(job_of(sdir, r2["run_id"])) == "TIMEOUT"
