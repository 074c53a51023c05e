"""A real one-node SLURM cluster (scripts/slurm_local.sh) for the tests in this folder.

The cluster is started once per test session in a private directory on free ports, ``SLURM_CONF``
is exported so every SLURM client (sbatch, squeue, submitit) talks to it, and the finalizer takes it
down whatever the tests did, then checks that none of its daemons is left running or listening.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_local.sh"


@dataclass
class Cluster:
    dir: Path
    conf: Path
    node: str
    ctld_port: int
    slurmd_port: int
    kill_wait_s: int

    def cmd(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """A SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "SLURM_CONF": str(self.conf)},
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def node_state(self) -> str:
        return self.cmd("sinfo", "-h", "-n", self.node, "-o", "%T").strip()

    def job_state(self, job_id: str) -> str:
        """JobState from slurmctld (kept MinJobAge seconds after the end), else from the jobcomp file."""
        out = self.cmd("scontrol", "show", "job", "-o", job_id, check=False)
        for item in out.split():
            if item.startswith("JobState="):
                return item.split("=", 1)[1]
        return self.sacct_states().get(job_id, "UNKNOWN")

    def sacct_states(self) -> dict[str, str]:
        """Job id -> final state, as `sacct --completion` reads them from the job-completion log.

        sacct 22.05 does not parse the log's array fields (it prints "Unknown type ArrayJobId"), so an
        array task is listed under its own job id; the log's ArrayJobId/ArrayTaskId give its
        ``<array>_<task>`` name, added as a second key for the same state."""
        out = self.cmd("sacct", "--completion", "--parsable2", "--noheader", "-o", "JobID,State")
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        for line in (self.dir / "jobcomp.txt").read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("ArrayJobId") and fields["JobId"] in states:
                states[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = states[fields["JobId"]]
        return states

    def wait_job_end(self, job_id: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.job_state(job_id)
            if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "UNKNOWN"):
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {self.job_state(job_id)} after {timeout}s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _leftovers(cluster: Cluster) -> list[str]:
    """Daemons of this cluster still alive or its ports still listened on."""
    found = []
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    for line in ps.splitlines():
        pid, _, args = line.strip().partition(" ")
        try:  # a job's slurmstepd runs in its cluster's log directory
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if str(cluster.dir) in args or (args.startswith("slurmstepd") and cwd.startswith(str(cluster.dir))):
            found.append(f"process: {line.strip()}")
    ss = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=False).stdout
    for line in ss.splitlines():
        if any(f":{p} " in line for p in (cluster.ctld_port, cluster.slurmd_port)):
            found.append(f"listening: {line.strip()}")
    return found


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            "the SLURM tests need root on a Debian machine (slurmd runs the jobs; apt installs SLURM)"
        )
    base = tmp_path_factory.mktemp("slurm")
    kill_wait = 60  # SIGTERM -> SIGKILL: a loaded 2-core CI machine needs time for the checkpoint
    cluster = Cluster(
        dir=base / "cluster",
        conf=base / "cluster" / "slurm.conf",
        node=socket.gethostname().split(".")[0],
        ctld_port=_free_port(),
        slurmd_port=_free_port(),
        kill_wait_s=kill_wait,
    )
    env = {
        **os.environ,
        "SLURM_LOCAL_DIR": str(cluster.dir),
        "SLURM_LOCAL_CTLD_PORT": str(cluster.ctld_port),
        "SLURM_LOCAL_SLURMD_PORT": str(cluster.slurmd_port),
        "SLURM_LOCAL_KILL_WAIT": str(kill_wait),
        "SLURM_LOCAL_KEEP": "0",
    }
    previous = os.environ.get("SLURM_CONF")
    try:
        up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, f"slurm_local.sh up failed:\n{up.stderr[-4000:]}"
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=300)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        left = _leftovers(cluster)
        assert down.returncode == 0 and not left, f"teardown: {down.stderr[-2000:]}\nleft: {left}"


# A smaller smoke dataset (5 shards of 20) so that its real solves, and the runs on it, take minutes.
DATA = [
    "data=smoke",
    "data.splits.train=60",
    "data.splits.val=20",
    "data.splits.test=20",
    "data.shard_size=20",
]


@dataclass
class Datagen:
    """The datagen array, run twice with the same command (the second must change nothing)."""

    results_root: Path
    dir: Path  # the dataset directory
    launcher_dirs: tuple[Path, Path]
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    manifest_bytes: bytes
    shard_mtimes: dict[str, int]
    array_ids: list[str] = field(default_factory=list)


def datagen_array_cmd(results_root: Path, launcher_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "datagen.cluster",
        "--multirun",
        *DATA,
        "workers=1",
        "shard_groups=3",
        "shard_group=range(0,3)",
        "hydra/launcher=slurm_cpu",
        f"results_root={results_root}",
        f"hydra.sweep.dir={launcher_dir}",
    ]


@pytest.fixture(scope="session")
def slurm_dataset(slurm_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Datagen:
    """The smoke dataset, generated as a SLURM job array (tests/slurm/test_datagen_array.py checks it);
    the SLURM sweeps train on it."""
    base = tmp_path_factory.mktemp("slurm-data")
    root = base / "results"
    dirs = (base / "datagen-1", base / "datagen-2")
    env = {**os.environ, "SLURM_CONF": str(slurm_cluster.conf)}
    first = subprocess.run(
        datagen_array_cmd(root, dirs[0]), cwd=REPO, capture_output=True, text=True, timeout=1800, env=env
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    (ds,) = [p.parent for p in (root / "datasets").glob("*/manifest.json")]
    manifest = (ds / "manifest.json").read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (ds / "shards").iterdir()}
    again = subprocess.run(
        datagen_array_cmd(root, dirs[1]), cwd=REPO, capture_output=True, text=True, timeout=900, env=env
    )
    # submitit's folder per array task is <array>_<task>
    arrays = [
        sorted(
            {p.name.split("_")[0] for p in (d / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
        )[0]
        for d in dirs
    ]
    return Datagen(root, ds, dirs, first, again, manifest, mtimes, arrays)
