"""Every gate (A-F) firing and not firing on synthetic run directories, and the not_evaluable paths.

Run directories are written per the run contract (summary.json written last, metrics.jsonl rows)
with planted numbers; the gates read them exactly as they read a real reference run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from common.atomic import append_jsonl, write_json
from common.config import CONF_DIR, ConfigError
from experiments import gates as G


@pytest.fixture(scope="module")
def gates_cfg() -> Any:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=["+gates=protocol"])
    return cfg.gates


def write_run(
    run_dir: Path,
    *,
    arm: str,
    status: str = "completed",
    rows: list[dict[str, Any]] | None = None,
    **summary: Any,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    for row in rows or []:
        append_jsonl(run_dir / "metrics.jsonl", row)
    write_json(
        run_dir / "summary.json",
        {
            "run_id": run_dir.name,
            "optimizer": arm,
            "status": status,
            "status_reason": None if status == "completed" else "planted",
            **summary,
        },
    )
    return run_dir


def row(step: int, loss: float = 2.0, mem: float | None = 1e9, tps: float = 1000.0) -> dict[str, Any]:
    return {
        "step": step,
        "loss": loss,
        "lr": 1e-4,
        "step_time_s": 0.1,
        "tokens_per_s": tps,
        "mem_allocated_bytes": mem,
        "mem_reserved_bytes": mem,
    }


def reference(
    tmp_path: Path,
    *,
    loss: float = 2.0,
    mem: float | None = 1e9,
    tps: float = 1000.0,
    status: str = "completed",
    val: float = 0.1,
    steps: int = 120,
) -> Path:
    return write_run(
        tmp_path / "ref",
        arm="adamw",
        status=status,
        rows=[row(s, loss, mem, tps) for s in range(1, steps + 1)],
        val_rel_l2_error=val,
        tokens_per_s=tps,
        peak_mem_allocated_bytes=mem,
    )


def feed(g: G.InRunGates, steps: range, **kw: Any) -> list[G.GateDecision]:
    return [d for s in steps if (d := g.on_step(s, row(s, **kw))) is not None]


# ------------------------------------------------------------------------------------------- A
@pytest.mark.parametrize(("loss", "fires"), [(6.1, True), (5.9, False)])
def test_gate_a_compares_loss_with_reference_at_step_50(
    tmp_path: Path, gates_cfg: Any, loss: float, fires: bool
) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, loss=2.0))
    ds = [d for d in feed(g, range(1, 60), loss=loss) if d.gate == "A"]
    assert len(ds) == 1
    d = ds[0]
    assert d.step == 50 and d.fired is fires and d.outcome == ("fired" if fires else "pass")
    assert d.values["loss_ratio"] == pytest.approx(loss / 2.0)
    assert d.values["reference_loss"] == 2.0


def test_gate_a_nan_loss_fires(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path))
    d = next(d for d in feed(g, range(1, 51), loss=float("nan")) if d.gate == "A")
    assert d.fired


def test_gates_do_not_apply_to_baselines(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(gates_cfg, arm="adam8bit", reference_run_dir=reference(tmp_path))
    assert feed(g, range(1, 120), loss=100.0) == []
    assert g.after_validation(10.0) is None and g.at_end({"tokens_per_s": 1.0}) == []


# ------------------------------------------------------------------------------------------- B
@pytest.mark.parametrize(("mem", "fires"), [(0.97e9, True), (0.90e9, False)])
def test_gate_b_memory_within_5_percent_fires(
    tmp_path: Path, gates_cfg: Any, mem: float, fires: bool
) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, mem=1e9))
    g.note_state_dtypes(["uint8", "float32"])
    d = next(d for d in feed(g, range(1, 101), mem=mem) if d.gate == "B")
    assert d.step == 100 and d.fired is fires
    assert d.values["reduction"] == pytest.approx(1 - mem / 1e9)
    assert d.values["optimizer_state_dtypes"] == ["uint8", "float32"] and d.values["states_quantized"]
    assert "uint8" in d.reason


def test_gate_b_not_evaluable_on_cpu(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, mem=None))
    d = next(d for d in feed(g, range(1, 101), mem=None) if d.gate == "B")
    assert d.outcome == "not_evaluable" and not d.fired and "not measurable" in d.reason


# ------------------------------------------------------------------------------------------- D
@pytest.mark.parametrize(("err", "fires"), [(0.116, True), (0.114, False)])
def test_gate_d_accuracy(tmp_path: Path, gates_cfg: Any, err: float, fires: bool) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, val=0.1))
    d = g.after_validation(err)
    assert d is not None and d.gate == "D" and d.fired is fires
    assert d.values["rel_worsening"] == pytest.approx(err / 0.1 - 1)
    assert g.after_validation(err) is None, "a gate is decided once"


# ------------------------------------------------------------------------------------------- E
@pytest.mark.parametrize(("tps", "fires"), [(490.0, True), (510.0, False)])
def test_gate_e_throughput_in_run(tmp_path: Path, gates_cfg: Any, tps: float, fires: bool) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, tps=1000.0))
    returned = feed(g, range(1, 101), mem=0.5e9, tps=tps)
    d = next(d for d in g.decisions() if d["gate"] == "E")
    assert d["step"] == gates_cfg.B.step == 100 and d["fired"] is fires, "E is decided at B's step"
    assert d["values"]["throughput_ratio"] == pytest.approx(tps / 1000.0)
    assert d["values"]["reference_tokens_per_s"] == 1000.0 and d["values"]["window_steps"] == 90
    # B and E fall on step 100: on_step hands back the one that fired (the run engine acts on it).
    assert any(r.gate == "E" for r in returned) is fires


def test_gate_e_uses_the_median_after_warm_up_against_the_reference_summary(
    tmp_path: Path, gates_cfg: Any
) -> None:
    # Reference: its metrics rows say 5000 tokens/s but its summary (the median) says 1000: the summary wins.
    ref = write_run(
        tmp_path / "ref", arm="adamw", rows=[row(s, tps=5000.0) for s in range(1, 121)], tokens_per_s=1000.0
    )
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=ref)
    # Steps 1-10 (warm-up, excluded) are very slow; then 450 for 60 steps and 900 for 30: median 450.
    for s in range(1, 101):
        tps = 1.0 if s <= 10 else (450.0 if s <= 70 else 900.0)
        g.on_step(s, row(s, tps=tps))
    d = next(d for d in g.decisions() if d["gate"] == "E")
    assert d["values"]["tokens_per_s"] == 450.0 and d["values"]["window"] == [10, 100]
    assert d["fired"] and d["values"]["throughput_ratio"] == pytest.approx(0.45)


def test_gate_e_in_a_short_run_is_decided_at_its_last_step_and_returned(
    tmp_path: Path, gates_cfg: Any
) -> None:
    g = G.InRunGates(
        gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, tps=1000.0), total_steps=20
    )
    returned = {d.gate: d for d in feed(g, range(1, 21), mem=0.5e9, tps=300.0)}
    e = returned["E"]  # returned by on_step at step 20, so the engine stops the run before evaluation
    assert e.step == 20 and e.fired and e.values["evaluated_at_last_step"] and e.values["gate_step"] == 20
    assert e.values["throughput_ratio"] == pytest.approx(0.3) and e.values["window_steps"] == 10
    assert g.at_end({"tokens_per_s": 300.0}) == [], "nothing is left to decide at the end"


@pytest.mark.parametrize("case", ["reference without tokens_per_s", "no step after warm-up"])
def test_gate_e_not_evaluable(tmp_path: Path, gates_cfg: Any, case: str) -> None:
    if case == "reference without tokens_per_s":
        ref = write_run(
            tmp_path / "ref", arm="adamw", rows=[row(s) for s in range(1, 121)], tokens_per_s=None
        )
        total, why = None, "no tokens_per_s"
    else:
        ref, total, why = reference(tmp_path), 8, "no tokens_per_s in steps (10, 8]"
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=ref, total_steps=total)
    feed(g, range(1, (total or 100) + 1), tps=1.0)
    d = next(d for d in g.decisions() if d["gate"] == "E")
    assert d["outcome"] == "not_evaluable" and not d["fired"] and why in d["reason"], d


# ------------------------------------------------------------------------------ short runs, refs
def test_short_run_decides_step_gates_at_its_last_step(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(
        gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path, steps=30), total_steps=30
    )
    ds = {d.gate: d for d in feed(g, range(1, 31), loss=7.0)}
    assert ds["A"].step == 30 and ds["A"].fired and ds["A"].values["evaluated_at_last_step"]


def test_at_end_decides_pending_gates_when_run_stops_early(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path))
    feed(g, range(1, 11), loss=2.0)  # no total_steps given; the run stops at step 10
    ends = {d.gate: d for d in g.at_end({"tokens_per_s": 1000.0})}
    assert ends["A"].outcome == "pass" and ends["A"].values["evaluated_at_last_step"]
    assert "before the gate step 50" in ends["A"].reason


@pytest.mark.parametrize("case", ["missing", "oom", "unfinished"])
def test_reference_missing_or_oom_is_not_evaluable(tmp_path: Path, gates_cfg: Any, case: str) -> None:
    if case == "missing":
        ref = tmp_path / "nope"
    elif case == "oom":
        ref = reference(tmp_path, status="oom")
    else:
        ref = tmp_path / "ref"
        ref.mkdir()
        append_jsonl(ref / "metrics.jsonl", row(1))
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=ref)
    feed(g, range(1, 101), loss=100.0, mem=1e9, tps=1.0)
    g.after_validation(5.0)
    g.at_end({"tokens_per_s": 1.0})
    decided = g.decisions()
    assert [d["gate"] for d in decided] == ["A", "B", "D", "E"]
    for d in decided:
        assert d["outcome"] == "not_evaluable" and not d["fired"], d
        assert {"missing": "does not exist", "oom": "ended oom", "unfinished": "has not finished"}[case] in d[
            "reason"
        ]


# ------------------------------------------------------------------------------------------- C
def pair(
    seed: int,
    ref_mem: float | None,
    treat_mem: float | None,
    ref_status: str = "completed",
    measurable: bool = True,
) -> list[dict[str, Any]]:
    grid = {"model": "llama-1b", "seq_len": 2048}
    return [
        {
            "run_id": f"r{seed}",
            "optimizer": "adamw",
            "seed": seed,
            "grid": grid,
            "status": ref_status,
            "peak_mem_allocated_bytes": ref_mem,
            "mem_measurable": measurable,
        },
        {
            "run_id": f"t{seed}",
            "optimizer": "flashoptim",
            "seed": seed,
            "grid": grid,
            "status": "completed",
            "peak_mem_allocated_bytes": treat_mem,
            "mem_measurable": measurable,
        },
    ]


@pytest.mark.parametrize(("treat", "fires"), [(0.93e9, True), (0.91e9, False)])
def test_gate_c_one_b_reduction(gates_cfg: Any, treat: float, fires: bool) -> None:
    summaries = [s for seed in range(3) for s in pair(seed, 1e9, treat)]
    d = G.gate_c(gates_cfg, summaries)
    assert d.fired is fires and d.values["mean_reduction"] == pytest.approx(1 - treat / 1e9)
    assert len(d.values["reductions"]) == 3


def test_gate_c_not_evaluable_cases(gates_cfg: Any) -> None:
    assert G.gate_c(gates_cfg, []).outcome == "not_evaluable"
    cpu = G.gate_c(gates_cfg, pair(0, None, None, measurable=False))
    assert cpu.outcome == "not_evaluable" and "not measurable" in cpu.reason
    oom = G.gate_c(gates_cfg, pair(0, 8e10, 5e8, ref_status="oom") + pair(1, 8e10, 5e8, ref_status="oom"))
    assert oom.outcome == "not_evaluable" and "reference oom" in oom.reason


# ------------------------------------------------------------------------------------------- F
def test_gate_f_fires_when_the_seed_adding_rule_adds_seeds() -> None:
    adds = G.gate_f("llama-1b", {"look": 1, "seeds": 3, "add": 7, "reason": "add 7 seeds per cell"})
    assert adds.fired and adds.values["model"] == "llama-1b" and "add 7" in adds.reason
    stops = G.gate_f("llama-1b", {"look": 2, "seeds": 10, "add": 0, "reason": "stop: last look"})
    assert not stops.fired and stops.outcome == "pass"


def test_decision_dict_has_the_recorded_fields(tmp_path: Path, gates_cfg: Any) -> None:
    g = G.InRunGates(gates_cfg, arm="flashoptim", reference_run_dir=reference(tmp_path))
    feed(g, range(1, 60))
    d = g.decisions()[0]
    assert set(d) == {"gate", "step", "fired", "outcome", "values", "reason"}


def test_validate_rejects_bad_thresholds(gates_cfg: Any) -> None:
    G.validate(gates_cfg)
    with pytest.raises(ConfigError, match=r"gates\.E\.min_ratio"):
        G.validate(OmegaConf.merge(gates_cfg, {"E": {"min_ratio": 0.0}}))
    with pytest.raises(ConfigError, match="treatment_arms"):
        G.validate(OmegaConf.merge(gates_cfg, {"treatment_arms": ["adamw"]}))
