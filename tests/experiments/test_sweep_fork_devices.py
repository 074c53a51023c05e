"""The sequential sweep forks runs from a preloading server only when they all compute on the CPU: a
forked child cannot use CUDA once the server's imports initialised it (every run of the issue-14
pilot's 1B memory sweep failed on an H200 with "Cannot re-initialize CUDA in forked subprocess")."""

from __future__ import annotations

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
