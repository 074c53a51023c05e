"""``experiments.run dist=fsdp2 dist.nproc=2`` on CPU (gloo, 2 processes under torchrun), every arm.

Slow: each 2-process run starts torchrun and two Python processes that import torch and
transformers (about 30-45 s wall on a 2-core machine). What is checked:

* the loss trajectory equals the one-process run of the same config (same global micro-batch of 2
  sequences, here 1 per rank) within a per-arm tolerance; the worst relative differences seen over
  4 steps are noted next to each tolerance. adamw computes in fp32 on CPU (no autocast), so only
  summation order differs; the bf16 arms also round the reduce-scattered bf16 gradient once more;
  bitsandbytes keeps fp32 states for tensors under 4096 values, which a 2-way shard can cross;
* only rank 0 writes the run directory, which records world size and sharding; memory stays null
  with mem_measurable=false on CPU;
* a run stopped at step 2 (sharded DCP checkpoint) and resumed follows the uninterrupted trajectory
  exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import FAST, compose_run, fixture_results_root, read_metrics, read_summary, run_in_process

from experiments import identity

pytestmark = pytest.mark.slow

# arm -> relative tolerance on each step's loss (worst seen, 4 steps, tiny model, this machine)
TOLERANCE = {
    "adamw": 1e-5,  # 7e-8
    "adam8bit": 1e-4,  # 1.0e-5
    "flashoptim": 1e-3,  # 1.4e-4
    "flashoptim_gr": 1e-3,  # 1.4e-4
}
RUN_DIR_FILES = {"config.yaml", "manifest.json", "metrics.jsonl", "run.log", "summary.json", "tokenizer.json"}


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def run_two_ranks(results_root: Path, overrides: list[str]) -> tuple[int, Path, str]:
    args = [f"results_root={results_root}", *overrides, "dist=fsdp2", "dist.nproc=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    run_dir = identity.run_dir(compose_run(results_root, [*overrides, "dist=fsdp2", "dist.nproc=2"]))
    return proc.returncode, run_dir, proc.stderr[-4000:]


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir)]


@pytest.mark.parametrize("arm", list(TOLERANCE))
def test_two_ranks_follow_the_one_process_trajectory(results_root: Path, arm: str) -> None:
    base = [f"optimizer={arm}", *FAST]
    code, one_dir = run_in_process(results_root, [*base, f"sweep_id=one-{arm}"])
    assert code == 0 and read_summary(one_dir)["status"] == "completed"
    code, two_dir, err = run_two_ranks(results_root, [*base, f"sweep_id=two-{arm}"])
    s = read_summary(two_dir)
    assert code == 0 and s["status"] == "completed", (s.get("status_reason"), err)
    assert losses(two_dir) == pytest.approx(losses(one_dir), rel=TOLERANCE[arm])
    assert s["world_size"] == 2 and s["dist"]["strategy"] == "fsdp2" and s["dist"]["world_size"] == 2
    assert s["state_materialised"] is True and s["n_params"] == read_summary(one_dir)["n_params"]
    assert s["mem_measurable"] is False and s["peak_mem_allocated_bytes"] is None
    assert s["dist"]["peak_mem_allocated_bytes_per_rank"] is None
    state = s["dist"]["optimizer_state_bytes_per_rank"]  # the optimizer state really is sharded
    one_state = read_summary(one_dir)["optimizer_state_bytes"]
    assert len(state) == 2 and s["dist"]["optimizer_state_bytes_sum"] == sum(state)
    if arm != "adam8bit":  # bitsandbytes keeps fp32 states for shards under 4096 values: more in all
        assert sum(state) == pytest.approx(one_state, rel=0.01) and max(state) < 0.6 * one_state
    manifest = (two_dir / "manifest.json").read_text()
    assert '"world_size": 2' in manifest
    assert {p.name for p in two_dir.iterdir()} - {"wandb"} == RUN_DIR_FILES  # rank 0 only, no per-rank files


@pytest.mark.parametrize("arm", ["adamw", "adam8bit", "flashoptim_gr"])
def test_sharded_checkpoint_resume_follows_the_uninterrupted_trajectory(results_root: Path, arm: str) -> None:
    base = [f"optimizer={arm}", *FAST]
    # the uninterrupted run: the trajectory test's (found completed by run id), else run here
    code, full_dir, err = run_two_ranks(results_root, [*base, f"sweep_id=two-{arm}"])
    assert code == 0 and read_summary(full_dir)["status"] == "completed", err
    stopped = [*base, f"sweep_id=stop-{arm}"]
    code, run_dir, err = run_two_ranks(results_root, [*stopped, "harness.stop_after_steps=2"])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "aborted" and s["resumable"] is True, (s.get("status_reason"), err)
    shards = list((run_dir / "checkpoint_shards").iterdir())
    assert [p.name for p in shards] == ["step-000002"] and len(list(shards[0].glob("*.distcp"))) == 2
    assert s["checkpoint_bytes"] and s["checkpoint_bytes"] > 0
    code, run_dir, err = run_two_ranks(results_root, [*stopped, "resume=true"])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "completed", (s.get("status_reason"), err)
    assert losses(run_dir) == losses(full_dir)  # bit-identical on CPU


def test_gradient_release_under_fsdp2_follows_the_same_sharded_trajectory(results_root: Path) -> None:
    """Stepping each shard from FSDP2's post-reduce hook changes when, not what (completed runs of
    the trajectory test are found by run id and not redone)."""
    seen = {}
    for arm in ("flashoptim", "flashoptim_gr"):
        code, run_dir, err = run_two_ranks(results_root, [f"optimizer={arm}", *FAST, f"sweep_id=two-{arm}"])
        assert code == 0 and read_summary(run_dir)["status"] == "completed", err
        seen[arm] = losses(run_dir)
    assert seen["flashoptim_gr"] == seen["flashoptim"]
