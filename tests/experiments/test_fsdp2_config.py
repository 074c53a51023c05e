"""Bad ``dist`` settings fail with one line and exit 2, before any run directory exists (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root

from experiments import identity


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


BAD = [
    (["dist.nproc=2"], "dist.nproc=2", "dist.strategy=none"),  # several processes need a strategy
    (["dist=fsdp2", "dist.nproc=0"], "dist.nproc=0", ">= 1"),
    (["dist=fsdp2", "dist.nproc=2", "train.micro_batch_size=3"], "train.micro_batch_size=3", "multiple of"),
    (["dist=fsdp2", "dist.strategy=ddp"], "dist.strategy='ddp'", "one of"),
    (["dist=fsdp2", "dist.backend=mpi"], "dist.backend='mpi'", "one of"),
    (["dist=zero3"], "dist", "fsdp2"),  # no such group option: Hydra's error, translated
]


@pytest.mark.parametrize(("overrides", "names", "allowed"), BAD)
def test_bad_dist_config_is_one_line_and_exit_2(
    results_root: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], names: str, allowed: str
) -> None:
    from experiments.run.main import main

    args = [f"results_root={results_root}", "sweep_id=dist_cfg", *FAST, *overrides]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and allowed in err[0], err
    assert not (results_root / "sweeps" / "dist_cfg").exists()


def test_dist_settings_change_the_run_id_but_not_for_unsharded_runs(results_root: Path) -> None:
    """The trajectory does not depend on the world size (the slow 2-process tests), but memory is
    measured per GPU at that world size: a sharded run is another result, with another run id;
    an unsharded run's id is the one it had before the dist group existed."""
    from run_helpers import compose_run

    one = compose_run(results_root, [*FAST])
    two = compose_run(results_root, [*FAST, "dist=fsdp2", "dist.nproc=2"])
    also_one = compose_run(results_root, [*FAST, "dist=none"])
    assert two.dist.strategy == "fsdp2" and two.dist.nproc == 2
    assert identity.run_id(one) != identity.run_id(two)
    assert identity.run_id(one) == identity.run_id(also_one)
    assert "dist" not in identity.run_settings(one) and identity.run_settings(two)["dist"] == {
        "strategy": "fsdp2",
        "nproc": 2,
    }


def test_torchrun_command_is_standalone_with_one_process_per_rank() -> None:
    from experiments.run.torchrun import torchrun_command

    cmd = torchrun_command(4, ["optimizer=adamw", "dist=fsdp2", "dist.nproc=4"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in cmd and cmd[-4:] == [
        "experiments.run",
        "optimizer=adamw",
        "dist=fsdp2",
        "dist.nproc=4",
    ]


def test_a_sharded_run_takes_all_its_gpus_at_once_in_a_joblib_sweep(tmp_path: Path) -> None:
    from experiments.sweep.launch import _gpu_slot, _nproc

    assert _nproc(["optimizer=adamw", "dist=fsdp2", "dist.nproc=2"]) == 2 and _nproc(["seed=1"]) == 1
    with _gpu_slot(tmp_path, [0, 1, 2], 2) as two:
        assert two == "0,1"
        with _gpu_slot(tmp_path, [0, 1, 2], 1) as one:
            assert one == "2"  # the free one, while the sharded run holds 0 and 1
    with _gpu_slot(tmp_path, [0, 1, 2], 3) as three:
        assert three == "0,1,2"  # released again
    with pytest.raises(ValueError, match="needs 4 GPUs"), _gpu_slot(tmp_path, [0, 1], 4):
        pass


def test_a_torchrun_that_ended_without_a_status_is_recorded_as_failed(results_root: Path) -> None:
    """If a rank dies before rank 0 records a status, the launcher writes the terminal summary."""
    from run_helpers import compose_run, read_summary

    from experiments.run.torchrun import _record_unrecorded_failure

    cfg = compose_run(results_root, [*FAST, "sweep_id=dist_crash", "dist=fsdp2", "dist.nproc=2"])
    run_dir = identity.run_dir(cfg)
    assert _record_unrecorded_failure(cfg, run_dir, 1) == 0
    s = read_summary(run_dir)
    assert s["status"] == "failed" and "torchrun exited with code 1" in s["status_reason"]
    assert s["run_id"] == run_dir.name and s["steps_completed"] == 0


def test_torchrun_with_several_processes_and_no_strategy_is_a_config_error(
    results_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started by torchrun directly without dist=fsdp2, every rank would write the same run dir."""
    from experiments.run.main import main

    for key, value in {"TORCHELASTIC_RUN_ID": "t", "RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        main([f"results_root={results_root}", "sweep_id=dist_torchrun", *FAST])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dist.strategy='none'" in err[0]
    assert not (results_root / "sweeps" / "dist_torchrun").exists()
