"""Data generation as a SLURM job array: ``python -m datagen.cluster --multirun shard_groups=3
'shard_group=range(0,3)' hydra/launcher=slurm_cpu``. Each array task solves its third of the shards
(with real FEniCSx solves), the last one to finish writes manifest.json, and rerunning the same
command changes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.slurm.conftest import Cluster, Datagen

# A real SLURM cluster (root, apt): minutes; CI runs these in their own step (.ci/run).
pytestmark = pytest.mark.slow


def task_logs(launcher_dir: Path, array_id: str) -> dict[str, str]:
    """Array task id -> its submitit stderr (where the datagen log goes)."""
    return {
        p.name.split("_log")[0].rsplit("_", 1)[0]: p.read_text(errors="replace")
        for p in launcher_dir.glob(f".submitit/{array_id}_*/*_0_log.err")
    }


def test_array_splits_shards_writes_manifest_once_and_is_idempotent(
    slurm_cluster: Cluster, slurm_dataset: Datagen
) -> None:
    first, again = slurm_dataset.first, slurm_dataset.again
    assert first.returncode == 0 and again.returncode == 0
    # One array of three tasks per command, each COMPLETED (from the job-completion log).
    states = slurm_cluster.sacct_states()
    arrays = sorted(
        {j.split("_")[0] for j in states if "_" in j and j.split("_")[0] in slurm_dataset.array_ids}
    )
    assert arrays == sorted(slurm_dataset.array_ids) and len(arrays) == 2, (states, slurm_dataset.array_ids)
    for a in arrays:
        assert {j: s for j, s in states.items() if j.startswith(f"{a}_")} == {
            f"{a}_{k}": "COMPLETED" for k in range(3)
        }
    # First command: the tasks solved disjoint thirds of the plan, together every shard.
    logs = task_logs(slurm_dataset.launcher_dirs[0], slurm_dataset.array_ids[0])
    assert len(logs) == 3, sorted(logs)
    planned = solved = 0
    for text in logs.values():
        m = re.search(r"(\d+) shards planned, (\d+) verified present, (\d+) to solve", text)
        assert m, text[-2000:]
        planned = int(m.group(1))
        solved += int(m.group(3))
    manifest_path = slurm_dataset.dir / "manifest.json"
    manifest = json.loads(slurm_dataset.manifest_bytes)
    shards = sorted(p.name for p in (slurm_dataset.dir / "shards").glob("*.npz"))  # not the .sha256 sidecars
    assert solved == planned == len(shards) >= 3
    assert sorted(manifest["shard_hashes"]) == shards
    assert sum(1 for t in logs.values() if "wrote" in t and "manifest.json" in t) >= 1
    # Second command: nothing solved, nothing rewritten.
    for text in task_logs(slurm_dataset.launcher_dirs[1], slurm_dataset.array_ids[1]).values():
        assert "nothing to do" in text, text[-2000:]
    assert manifest_path.read_bytes() == slurm_dataset.manifest_bytes
    assert {
        p.name: p.stat().st_mtime_ns for p in (slurm_dataset.dir / "shards").iterdir()
    } == slurm_dataset.shard_mtimes
