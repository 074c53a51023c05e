"""A checkpoint never runs code: ``checkpoint.pt`` is read with ``torch.load(weights_only=True)``
and a sharded checkpoint's DCP ``.metadata`` with an unpickler that admits only DCP's classes. A
planted pickle is refused with one line naming the file, and what it would have done never happens."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from run_helpers import FAST, compose_run, fixture_results_root, read_summary, run_in_process

from experiments import identity
from experiments.run import checkpoint
from experiments.rundir import Stop


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


class _Planted:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_planted_checkpoint_is_refused_on_resume_and_never_executed(
    results_root: Path, tmp_path: Path
) -> None:
    ov = [*FAST, "sweep_id=planted"]
    run_dir = identity.run_dir(compose_run(results_root, ov))
    run_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"model": _Planted(marker), "step": 1}, run_dir / "checkpoint.pt")
    assert not marker.exists()  # saving does not run it; only an unsafe load would

    code, _ = run_in_process(results_root, [*ov, "resume=true"])
    assert not marker.exists(), "the planted pickle was executed"
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "failed" and s["resumable"] is False
    reason = s["status_reason"]
    assert "\n" not in reason and str(run_dir / "checkpoint.pt") in reason and "refused" in reason


def test_rng_state_survives_the_safe_loader_exactly(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    np.random.standard_normal()  # a cached Gaussian in numpy's state too
    torch.save({"rng": checkpoint.rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected


def test_dcp_metadata_is_read_safely(tmp_path: Path) -> None:
    shards = tmp_path / "step-000002"
    state = {"w": torch.arange(6.0).reshape(2, 3), "extra": {"lr": 0.1}}
    dcp.save(state, checkpoint_id=str(shards))
    target = {"w": torch.zeros(2, 3), "extra": {"lr": 0.0}}
    dcp.load(target, storage_reader=checkpoint._safe_reader(dcp, shards))
    assert torch.equal(target["w"], state["w"]) and target["extra"]["lr"] == 0.1

    marker = tmp_path / "pwned"
    (shards / ".metadata").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(pickle.UnpicklingError, match=r"_io\.open|builtins\.open"):
        checkpoint._safe_reader(dcp, shards).read_metadata()
    assert not marker.exists()


def test_sharded_load_refuses_planted_metadata_with_one_line(tmp_path: Path) -> None:
    shards = tmp_path / "step-000001"
    dcp.save({"w": torch.ones(2)}, checkpoint_id=str(shards))
    marker = tmp_path / "pwned"
    (shards / ".metadata").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(Stop) as info:
        checkpoint._open_shards(dcp, shards)
    stop = info.value
    assert stop.status == "failed" and "\n" not in stop.reason and "open" in stop.reason
    assert str(shards / ".metadata") in stop.reason and not marker.exists()
