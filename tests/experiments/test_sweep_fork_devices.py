"""The sequential sweep forks runs from a preloading server only when they all compute on the CPU: a
forked child cannot use CUDA once the server's imports initialised it (every run of the issue-14
pilot's 1B memory sweep failed on an H200 with "Cannot re-initialize CUDA in forked subprocess")."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import run_helpers  # noqa: F401  (puts the repo's packages ahead of tests/ namespace shadows)
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.sweep import launch as L


def test_hidden_gpus_are_not_present(monkeypatch: pytest.MonkeyPatch) -> None:
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert L.cuda_present() is False


def test_forking_only_for_runs_that_compute_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert L.forking_allowed(["cpu", "cpu"]) is True
    assert L.forking_allowed(["cuda"]) is False
    assert L.forking_allowed(["cpu", "cuda"]) is False
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert L.forking_allowed(["auto"]) is True  # auto resolves to the CPU when no GPU is visible
    monkeypatch.setattr(L, "cuda_present", lambda: True)
    assert L.forking_allowed(["auto"]) is False  # ... and to a GPU where one is


def test_the_pilot_scripts_run_overrides_parse() -> None:
    """gpu_pilot's sweep commands must be valid Hydra overrides: an unquoted list element holding '='
    (sweep.run_overrides=[train.max_steps=30,...]) is refused by Hydra's grammar."""
    from scripts.gpu_pilot import accuracy_cmd, memory_cmd, parse

    parser = OverridesParser.create()
    for argv in (
        ["accuracy"],
        ["accuracy", "--steps", "900", "--first-look-only"],
        ["memory", "--memory-steps", "12"],
    ):
        a = parse(argv)
        for cmd in (accuracy_cmd(a), memory_cmd(a)):
            overrides = [c for c in cmd[3:] if "=" in c]
            parsed = {o.key_or_group: o for o in parser.parse_overrides(overrides)}
            value = parsed["sweep.run_overrides"].value()
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            answers = parsed["sweep.analysis_overrides"].value()
            assert isinstance(answers, list) and any(v.startswith("answers=[") for v in answers)
    first = accuracy_cmd(parse(["accuracy", "--first-look-only"]))
    over = parser.parse_overrides([next(c for c in first if c.startswith("sweep.run_overrides="))])[0]
    assert over.value() == ["gates.F.enabled=false"]
    mem = memory_cmd(parse(["memory", "--memory-steps", "12"]))
    steps = parser.parse_overrides([next(c for c in mem if c.startswith("sweep.run_overrides="))])[0]
    assert "train.max_steps=12" in steps.value() and "baselines.learned=[]" in steps.value()


def test_the_twins_probe_runs_adamw_and_its_twin_on_seeds_the_pilot_does_not_use() -> None:
    """The noise probe must not touch the pilot: its own sweep id, only AdamW and its same-seed twin
    (no treatment arm is looked at), seeds after the first look's, no seed rule, no analysis."""
    from scripts.gpu_pilot import accuracy_cmd, parse

    parser = OverridesParser.create()
    pilot = accuracy_cmd(parse(["accuracy", "--seeds", "3"]))
    twins = accuracy_cmd(parse(["twins", "--seeds", "4", "--first-seed", "3"]), twins=True)

    def value(cmd: list[str], key: str) -> object:
        return parser.parse_overrides([next(c for c in cmd if c.startswith(key + "="))])[0].value()

    assert value(twins, "sweep.id") == "pilot-twins" != value(pilot, "sweep.id")
    assert value(twins, "sweep.grid.optimizer") == ["adamw", "adamw_foreach"]
    assert value(twins, "sweep.grid.seed") == [3, 4, 5, 6]
    assert not set(value(twins, "sweep.grid.seed")) & set(value(pilot, "sweep.grid.seed"))
    assert value(twins, "sweep.run_overrides") == ["gates.F.enabled=false"]
    assert "sweep.analyse=false" in twins and "sweep.analyse=false" not in pilot
    # by default past every seed the pilot's rule can use (its last look has 10 seeds: 0-9)
    default = accuracy_cmd(parse(["twins", "--seeds", "2"]), twins=True)
    assert value(default, "sweep.grid.seed") == [10, 11]


def test_the_twins_probe_is_timed_apart_from_the_pilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pilot's total wall time (its 25-minute budget) must not grow when the noise probe runs in
    the same results folder."""
    from scripts import gpu_pilot

    calls: list[bool] = []

    def phase(a: object, timing: gpu_pilot.Timing, twins: bool = False) -> int:
        calls.append(twins)
        timing.add("twins" if twins else "accuracy", {"rc": 0, "wall_s": 1.0})
        return 0

    monkeypatch.setattr(gpu_pilot, "accuracy_phase", phase)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # main() sets it when unset: undone after the test
    before = signal.getsignal(signal.SIGTERM)
    (tmp_path / "pilot_timing.json").write_text('{"phases": {}, "total_wall_s": 856.8}')
    assert gpu_pilot.main(["twins", "--results-root", str(tmp_path)]) == 0
    assert calls == [True]
    assert json.loads((tmp_path / "pilot_timing.json").read_text())["total_wall_s"] == 856.8
    assert "_total" in json.loads((tmp_path / "twins_timing.json").read_text())["phases"]
    assert signal.getsignal(signal.SIGTERM) is before  # main() handed the SIGTERM handler back


def test_the_pilot_accuracy_sweep_runs_every_arm_at_once_with_its_gates_off() -> None:
    """The accuracy pilot starts all arms together (sweep.waves=together): its scale must have the
    in-run gates off, or the sweep refuses (a treatment would have no finished reference)."""
    from common.config import compose
    from experiments.config import register
    from experiments.sweep.main import require_gates_for_waves
    from scripts.gpu_pilot import accuracy_cmd, parse

    cmd = accuracy_cmd(parse(["accuracy"]))
    assert "sweep.waves=together" in cmd
    register()
    gates = compose("run", ["scale=pilot_accuracy"]).gates
    require_gates_for_waves("together", gates)  # raises ConfigError if any of A/B/D/E is on
    assert not any(gates[g].enabled for g in "ABDE")


def test_mps_is_skipped_with_a_reason_where_its_control_daemon_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from scripts import gpu_pilot

    monkeypatch.setenv("PATH", "/nonexistent")
    mps = gpu_pilot.Mps()
    state = mps.start()
    assert state == {"used": False, "why": "nvidia-cuda-mps-control is not on PATH"}
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    mps.stop()  # nothing started: nothing to stop, no error
    assert gpu_pilot.parse(["accuracy", "--mps", "off"]).mps == "off"


def test_the_pilot_split_over_calls_keeps_every_invocations_wall_time(tmp_path: Path) -> None:
    """A pilot run over several device calls: each call's accuracy sweep and the script's total are
    kept, and the phase's wall time is their sum (not the latest call's)."""
    from scripts.gpu_pilot import Timing

    t = Timing(tmp_path)
    t.add("accuracy", {"rc": 0, "wall_s": 400.0})
    t = Timing(tmp_path)  # the next call reads the file the last one wrote
    t.add("accuracy", {"rc": 1, "wall_s": 250.5})
    acc = json.loads((tmp_path / "pilot_timing.json").read_text())["phases"]["accuracy"]
    assert [c["wall_s"] for c in acc["invocations"]] == [400.0, 250.5]
    assert acc["wall_s"] == 650.5 and acc["rc"] == 1
    # a phase recorded by an older script (one entry, no invocations) becomes the first invocation
    t.record("memory", {"rc": 0, "wall_s": 289.0, "command": "x"})
    t.add("memory", {"rc": 0, "wall_s": 11.0})
    mem = t.data["phases"]["memory"]
    assert [c["wall_s"] for c in mem["invocations"]] == [289.0, 11.0] and mem["wall_s"] == 300.0


def test_the_pilot_launch_deadline_reaches_the_sweep_in_launches_of_jobs() -> None:
    from scripts.gpu_pilot import accuracy_cmd, parse

    cmd = accuracy_cmd(parse(["accuracy", "--jobs", "21", "--launch-deadline-s", "500"]))
    assert "sweep.launch_deadline_s=500" in cmd and "sweep.jobs_per_launch=21" in cmd
    assert not any(c.startswith("sweep.launch_deadline_s") for c in accuracy_cmd(parse(["accuracy"])))
    with pytest.raises(SystemExit) as exc:
        parse(["accuracy", "--launch-deadline-s", "0"])
    assert exc.value.code == 2


def test_a_failed_compile_warm_up_starts_no_sweep_and_is_recorded(tmp_path: Path) -> None:
    """The warm-up's runs fail (no pilot dataset under this results root): the phase stops before the
    sweep spends a GPU, exits 1, and its invocation is in pilot_timing.json with the warm-up's codes."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    # runs write inside the working tree only: an ignored scratch folder there, removed afterwards
    root = repo / "results" / "test-artifacts" / f"gpu-pilot-{tmp_path.name}"
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "scripts.gpu_pilot",
                "accuracy",
                "--results-root",
                str(root),
                "--mps",
                "off",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "the accuracy sweep was not started" in proc.stdout
        assert not (root / "sweeps" / "pilot-accuracy").exists()
        # both warm-up runs got as far as looking for the pilot dataset (their overrides are valid)
        log = (root / "sweeps" / "pilot-compile-warmup" / "warmup.log").read_text()
        assert log.count("a generated dataset: none at") == 2, log
        timing = json.loads((root / "pilot_timing.json").read_text())
        (call,) = timing["phases"]["accuracy"]["invocations"]
        assert call["rc"] == 1 and call["compile_warmup"]["return_codes"] == [2, 2] and call["wall_s"] > 0
        # the script's total is written after a failed phase too, and covers the phase
        assert timing["total_wall_s"] >= call["wall_s"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_terminated_accuracy_phase_still_records_its_wall_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device call's time limit ends the script with SIGTERM (SystemExit from its handler): the
    phase's invocation is written, marked terminated, so the pilot's total still counts it."""
    from scripts import gpu_pilot

    def slow_then_terminated(_a: object) -> None:
        raise SystemExit(143)

    monkeypatch.setattr(gpu_pilot, "warm_compile", slow_then_terminated)
    timing = gpu_pilot.Timing(tmp_path)
    with pytest.raises(SystemExit):
        gpu_pilot.accuracy_phase(gpu_pilot.parse(["accuracy"]), timing)
    (call,) = json.loads((tmp_path / "pilot_timing.json").read_text())["phases"]["accuracy"]["invocations"]
    assert call["rc"] == "terminated" and call["wall_s"] >= 0 and "command" in call
