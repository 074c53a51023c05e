"""The local cluster itself: the node is up with this machine's CPUs, a batch job runs on it and is
visible in squeue while it runs and in `sacct --completion` after, and scancel ends a job."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster

# A real SLURM cluster (root, apt): minutes; CI runs these in their own step (.ci/run).
pytestmark = pytest.mark.slow


def test_node_is_idle_and_sized_from_this_machine(slurm_cluster: Cluster) -> None:
    assert slurm_cluster.node_state() == "idle"
    cpus = slurm_cluster.cmd("sinfo", "-h", "-n", slurm_cluster.node, "-o", "%c").strip()
    assert int(cpus) == os.cpu_count()


def test_batch_job_runs_and_is_accounted(slurm_cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job = slurm_cluster.cmd(
        "sbatch", "--parsable", f"--output={out}", "--wrap", "echo ran on $SLURMD_NODENAME; sleep 3"
    ).strip()
    seen_running = False
    deadline = time.time() + 120
    while time.time() < deadline:
        queued = slurm_cluster.cmd("squeue", "-h", "-j", job, "-o", "%i %T")
        seen_running |= f"{job} RUNNING" in queued
        if not queued.strip():
            break
        time.sleep(0.3)
    assert seen_running, "the job was never RUNNING in squeue"
    assert slurm_cluster.wait_job_end(job) == "COMPLETED"
    assert out.read_text().strip() == f"ran on {slurm_cluster.node}"
    assert slurm_cluster.sacct_states()[job] == "COMPLETED"


def test_scancel_ends_a_running_job_as_cancelled(slurm_cluster: Cluster, tmp_path: Path) -> None:
    job = slurm_cluster.cmd(
        "sbatch", "--parsable", f"--output={tmp_path / 'o'}", "--wrap", "sleep 600"
    ).strip()
    deadline = time.time() + 60
    while slurm_cluster.job_state(job) != "RUNNING":
        assert time.time() < deadline, f"job {job} never started"
        time.sleep(0.3)
    slurm_cluster.cmd("scancel", job)
    assert slurm_cluster.wait_job_end(job, timeout=slurm_cluster.kill_wait_s + 60) == "CANCELLED"
    assert slurm_cluster.sacct_states()[job] == "CANCELLED"
