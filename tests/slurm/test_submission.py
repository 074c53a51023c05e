"""The batch script of a sharded run (``dist=fsdp2 dist.nproc=N``) as the SLURM launcher would
submit it, checked by the local slurmctld with ``sbatch --test-only`` (the node declares 8 fake GPUs:
nothing runs, SLURM only decides whether and when it could)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run import torchrun
from tests.slurm.conftest import REPO, Cluster


def scripts(tmp_path: Path, nproc: int, *extra: str) -> dict[str, str]:
    """run_id -> batch script, from ``python -m experiments.sweep.slurm`` (prints them, submits nothing)."""
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep.slurm",
        "sweep=mvt",
        "scale=smoke",
        "sweep.grid.seed=[0]",
        f"results_root={tmp_path}",
        "hydra/launcher=slurm",
        # the global micro-batch must split evenly across the ranks (the sweep checks every run's config)
        f"sweep.run_overrides=['dist=fsdp2','dist.nproc={nproc}','train.micro_batch_size={nproc}']",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = re.split(r"^# ---- run (\w+)\n", proc.stdout, flags=re.M)[1:]
    return dict(zip(parts[::2], parts[1::2]))


def sbatch_test_only(cluster: Cluster, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.sh"
    path.write_text(script)
    return subprocess.run(
        ["sbatch", "--test-only", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SLURM_CONF": str(cluster.conf)},
        check=False,
    )


def test_fsdp2_job_asks_one_task_with_n_gpus(tmp_path: Path) -> None:
    out = scripts(tmp_path, 4)
    assert len(out) == 3  # the MVT's three arms, one job each
    for text in out.values():
        flags = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", text, flags=re.M))
        assert flags["gpus-per-node"] == "4"  # conf: one GPU per process
        assert flags["cpus-per-task"] == "32"  # conf: 8 per process, one task running torchrun
        assert flags["ntasks-per-node"] == "1" and flags["nodes"] == "1"
        assert flags["signal"] == "TERM@120" and "no-requeue" in flags
        assert re.search(r"^srun .* -m submitit\.core\._submit ", text, flags=re.M)
    # On the node, the job's task runs `python -m experiments.run ... dist.nproc=4`, which relaunches
    # itself under torchrun with one process per GPU SLURM gave it:
    cmd = torchrun.torchrun_command(4, ["dist=fsdp2", "dist.nproc=4"])
    assert cmd[2] == "torch.distributed.run" and "--nproc_per_node=4" in cmd


@pytest.mark.slow  # a real SLURM cluster (root, apt); CI runs it in its own step (.ci/run)
def test_sbatch_test_only_accepts_what_fits_and_rejects_what_does_not(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    # Sized for this node: 2 CPUs, no memory request; 8 fake GPUs.
    fits = [
        "hydra.launcher.cpus_per_task=null",
        "hydra.launcher.mem_gb=null",
        "hydra.launcher.partition=local",
    ]
    for nproc, accepted in ((4, True), (8, True), (16, False)):
        (script,) = list(
            scripts(tmp_path / str(nproc), nproc, "sweep.grid.optimizer=[adamw]", *fits).values()
        )
        assert f"--gpus-per-node={nproc}" in script
        proc = sbatch_test_only(slurm_cluster, script, tmp_path)
        said = (proc.stdout + proc.stderr).strip()
        if accepted:
            assert proc.returncode == 0 and "to start at" in said, said
        else:
            assert proc.returncode != 0 and "Requested node configuration is not available" in said, said
    assert slurm_cluster.cmd("squeue", "-h").strip() == ""  # --test-only submitted nothing
