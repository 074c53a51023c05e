"""The run engine calls the in-run gates (experiments.gates.InRunGates) against the reference arm's
run of the same settings, and a fired abort gate ends the treatment run as aborted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root, read_summary, run_in_process


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_treatment_run_is_gated_against_its_reference(results_root: Path) -> None:
    common = [*FAST, "sweep_id=gated", "gates.A.step=2", "gates.B.step=3"]
    _, ref_dir = run_in_process(results_root, common)
    ref = read_summary(ref_dir)
    assert ref["status"] == "completed" and ref["gates"] == []  # gates apply to treatment arms only
    phases = ref["phase_times_s"]  # where a run's wall time goes, also in run.log
    assert set(phases) == {"data_prep", "model_build", "training", "validation_generation", "test_generation"}
    assert all(v > 0 for v in phases.values()), phases
    assert "phase times (s)" in (ref_dir / "run.log").read_text()
    _, run_dir = run_in_process(results_root, [*common, "optimizer=flashoptim"])
    s = read_summary(run_dir)
    by_gate = {g["gate"]: g for g in s["gates"]}
    assert by_gate["A"]["step"] == 2 and by_gate["A"]["outcome"] in ("pass", "fired")
    assert by_gate["B"]["outcome"] == "not_evaluable"  # CPU: memory is not measurable, never a silent pass
    assert "D" in by_gate and "E" in by_gate
    assert s["status"] == ("aborted" if any(g["fired"] for g in s["gates"]) else "completed")


def test_a_fired_loss_gate_aborts_the_treatment_run(results_root: Path) -> None:
    common = [*FAST, "sweep_id=gate-fires", "gates.A.step=2", "gates.A.max_loss_ratio=0.001"]
    run_in_process(results_root, common)
    code, run_dir = run_in_process(results_root, [*common, "optimizer=flashoptim"])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "aborted" and s["status_reason"].startswith("gate A")
    assert s["steps_completed"] == 2 and s["rel_l2_error"] is None
    assert [g["gate"] for g in s["gates"] if g["fired"]] == ["A"]


def test_a_fired_throughput_gate_aborts_the_treatment_run_before_evaluation(results_root: Path) -> None:
    # E follows B's step (20 at smoke), past this 4-step run: decided at its last step, in the run.
    # No arm is 1000x faster than AdamW, so min_ratio=1000 must fire.
    common = [*FAST, "sweep_id=gate-e-fires", "gates.A.enabled=false", "gates.E.min_ratio=1000"]
    _, ref_dir = run_in_process(results_root, common)
    ref_tps = read_summary(ref_dir)["tokens_per_cpu_s"]  # smoke scale: gate E's clock is process CPU time
    code, run_dir = run_in_process(results_root, [*common, "optimizer=flashoptim"])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "aborted" and s["status_reason"].startswith("gate E"), s[
        "status_reason"
    ]
    assert s["steps_completed"] == 4 and s["rel_l2_error"] is None and s["val_rel_l2_error"] is None
    (e,) = [g for g in s["gates"] if g["fired"]]
    assert e["gate"] == "E" and e["step"] == 4 and e["values"]["evaluated_at_last_step"]
    assert e["values"]["clock"] == "process_cpu" and e["values"]["reference_tokens_per_cpu_s"] == ref_tps
    assert e["values"]["throughput_ratio"] == e["values"]["tokens_per_cpu_s"] / ref_tps < 1000


def test_a_fired_accuracy_gate_aborts_the_run_but_reports_its_test_set(results_root: Path) -> None:
    # Gate D reads the reference summary's val_rel_l2_error: planting a near-zero one there makes any
    # real treatment worse by far more than D.max_rel_worsening.
    common = [*FAST, "sweep_id=gate-d-fires", "gates.A.enabled=false", "gates.E.enabled=false"]
    _, ref_dir = run_in_process(results_root, common)
    ref = json.loads((ref_dir / "summary.json").read_text())
    ref["val_rel_l2_error"] = 1e-9
    (ref_dir / "summary.json").write_text(json.dumps(ref))
    code, run_dir = run_in_process(results_root, [*common, "optimizer=flashoptim"])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "aborted" and s["status_reason"].startswith("gate D"), s[
        "status_reason"
    ]
    (d,) = [g for g in s["gates"] if g["fired"]]
    assert d["gate"] == "D" and d["values"]["rel_worsening"] > 0.15
    # the endpoint the gate failed is still measured: the analysis scores the run with its number
    assert isinstance(s["rel_l2_error"], float) and s["rel_l2_error"] > 0
    assert isinstance(s["val_rel_l2_error"], float)
