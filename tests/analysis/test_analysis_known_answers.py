"""Known-answer tests: synthetic sweeps with planted effects give the planted verdict and reasons."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from analysis.synthetic import DEFAULT_EFFECTS, GIB, full_spec, go_spec

FAILURES = {"F1", "F2", "F3", "F4", "F5", "F6"}


def effects(**arms):
    out = dict(DEFAULT_EFFECTS)
    for arm, changes in arms.items():
        out[arm] = replace(out[arm], **changes)
    return out


def failing(results) -> set[str]:
    return {k for k, r in results.items() if r.kind == "failure" and r.outcome == "fail"}


def test_clear_go(judge) -> None:
    v, reasons, res = judge(go_spec())
    assert v == "GO", reasons
    assert res["S6"].outcome == "not_applicable"  # single-size MVT: does not block GO
    assert all(r.outcome == "pass" for k, r in res.items() if k != "S6")
    assert res["S1"].value == pytest.approx(0.40, abs=0.01)  # planted: FlashOptim uses 0.60 x AdamW
    assert res["S2"].value == pytest.approx(0.25, abs=0.01)  # 0.60 / 0.80
    assert res["S1"].ci[0] <= res["S1"].value <= res["S1"].ci[1]
    assert res["S5"].attainable_min_p == pytest.approx(0.25) and res["S5"].n_pairs == 3
    assert res["S5"].p_values["t_test"] < 0.05 and res["S5"].p_values["wilcoxon_exact"] == pytest.approx(0.25)


def _diverge_two_seeds(summary, metrics) -> None:
    if summary["optimizer"] == "flashoptim" and summary["seed"] in (0, 1):
        summary.update(status="diverged", status_reason="loss NaN at step 120", final_loss=None)
        metrics[3]["loss"] = None  # NaN is written as null in JSON


def _state_not_materialised(summary, metrics) -> None:
    if summary["optimizer"] == "flashoptim":
        summary["state_materialised"] = False


def _fp32_states(summary, metrics) -> None:
    if summary["optimizer"] == "flashoptim":
        summary["optimizer_state_dtypes"] = ["torch.float32"]


NO_GO = {
    # reduction vs AdamW 7% (< 10%) while still 6% below 8-bit Adam (so F4 does not also hold)
    "F1": go_spec(effects=effects(flashoptim={"mem_factor": 0.93}, adam8bit={"mem_factor": 0.99})),
    "F2": go_spec(effects=effects(flashoptim={"rel_l2_factor": 1.15})),
    "F3": go_spec(effects=effects(flashoptim={"tokens_factor": 0.50})),
    # 22% below AdamW but only 2.5% below 8-bit Adam
    "F4": go_spec(effects=effects(flashoptim={"mem_factor": 0.78})),
    "F5": go_spec(mutate=_diverge_two_seeds),
    "F6": go_spec(mutate=_state_not_materialised),
}


@pytest.mark.parametrize("planted", sorted(NO_GO))
def test_clear_no_go_for_each_failure_criterion(judge, planted: str) -> None:
    v, reasons, res = judge(NO_GO[planted])
    assert v == "NO-GO", reasons
    assert failing(res) == {planted}, {k: res[k].why for k in failing(res)}
    assert any(r.startswith(planted) for r in reasons)


def test_wrong_state_dtype_is_a_measurement_artifact(judge) -> None:
    v, _, res = judge(go_spec(mutate=_fp32_states))
    assert v == "NO-GO" and failing(res) == {"F6"}
    assert "float32" in res["F6"].why


def test_divergence_by_loss_blowup_after_step_200(judge) -> None:
    def blow_up(summary, metrics):
        if summary["optimizer"] == "flashoptim" and summary["seed"] in (1, 2):
            for row in metrics:
                if row["step"] >= 400:
                    row["loss"] = 7.5  # > 2 x initial 3.0

    v, _, res = judge(go_spec(mutate=blow_up))
    assert res["F5"].outcome == "fail" and res["F5"].value == 2
    assert "step 400" in res["F5"].why and v == "NO-GO"


def test_one_diverged_seed_is_not_a_failure(judge) -> None:
    def one(summary, metrics):
        if summary["optimizer"] == "flashoptim" and summary["seed"] == 0:
            metrics[5]["loss"] = None

    _, _, res = judge(go_spec(mutate=one))
    assert res["F5"].outcome == "pass" and res["F5"].value == 1


def test_zero_variance_memory_is_exact_across_seeds(judge) -> None:
    v, reasons, res = judge(go_spec(mem_jitter=0.0))
    assert v == "GO", reasons
    s5 = res["S5"]
    assert s5.outcome == "pass" and "deterministic across 3 seeds" in s5.why
    assert s5.p_values["t_test"] is None  # undefined, not inf or nan
    assert s5.value is None
    assert res["S1"].ci == [pytest.approx(res["S1"].value)] * 2
    assert "deterministic across 3 seeds" in res["S1"].why


def _adamw_oom(flash_gib: float):
    def mutate(summary, metrics):
        if summary["optimizer"] == "adamw":
            summary.update(
                status="oom",
                status_reason="CUDA out of memory at step 1",
                peak_mem_allocated_bytes=None,
                tokens_per_s=None,
                final_loss=None,
                rel_l2_error=None,
            )
        if summary["optimizer"] == "flashoptim":
            summary["peak_mem_allocated_bytes"] = flash_gib * GIB

    return mutate


def test_oom_baseline_reduction_is_a_bound_that_decides(judge) -> None:
    v, reasons, res = judge(go_spec(mutate=_adamw_oom(45.0)))
    s1 = res["S1"]
    assert s1.outcome == "pass" and s1.bound == "lower"
    assert s1.value == pytest.approx(1 - 45 / 80)
    assert "AdamW did not fit in 80.0 GiB" in s1.value_text and "at least 43.7%" in s1.value_text
    assert res["F1"].outcome == "pass"  # the bound rules out "< 10%"
    assert res["S3"].outcome == "not_evaluable" and "oom" in res["S3"].why
    assert res["S5"].outcome == "undecided" and "no paired difference" in res["S5"].why
    assert v == "INCONCLUSIVE" and not any(r.startswith("S1") for r in reasons)


def test_oom_baseline_bound_that_cannot_decide_is_undecided(judge) -> None:
    _, _, res = judge(go_spec(mutate=_adamw_oom(75.0)))
    # the reduction is at least 1 - 75/80 = 6.2%: that neither reaches 20% nor rules it out
    assert res["S1"].outcome == "undecided" and "at least 6.2%" in res["S1"].why
    assert res["F1"].outcome == "undecided"


def test_missing_reference_runs_are_not_evaluable(judge) -> None:
    v, reasons, res = judge(go_spec(skip=lambda s: s["optimizer"] == "adamw"))
    assert v == "INCONCLUSIVE"
    for k in ("S1", "S3", "S4", "S5", "S7", "F1", "F2", "F3"):
        assert res[k].outcome == "not_evaluable", (k, res[k].why)
        assert "no adamw run" in res[k].why
    assert res["S2"].outcome == "pass"  # vs 8-bit Adam still measurable
    assert any("no adamw run" in r for r in reasons)


def test_one_missing_seed_leaves_too_few_pairs(judge) -> None:
    v, _, res = judge(go_spec(skip=lambda s: s["optimizer"] == "adamw" and s["seed"] == 2))
    assert res["S1"].outcome == "undecided" and "only 2 pair(s)" in res["S1"].why
    assert res["S2"].outcome == "pass"
    assert v == "INCONCLUSIVE"


def test_smoke_scale_is_inconclusive_by_rule(judge) -> None:
    v, reasons, res = judge(go_spec(scale="smoke"))
    assert v == "INCONCLUSIVE"
    assert "smoke scale" in reasons[0] and "no evidence" in reasons[0]
    assert res["S1"].outcome == "pass"  # still evaluated and shown


def test_smoke_scale_with_a_failure_is_still_inconclusive(judge) -> None:
    v, reasons, _ = judge(replace(NO_GO["F3"], scale="smoke"))
    assert v == "INCONCLUSIVE" and any(r.startswith("F3") for r in reasons)


def test_memory_on_cpu_is_not_evaluable_with_the_reason(judge) -> None:
    v, _, res = judge(go_spec(mem_measurable=False))
    for k in ("S1", "S2", "S5", "F1", "F4"):
        assert res[k].outcome == "not_evaluable" and "not measurable" in res[k].why, (k, res[k].why)
    assert res["S3"].outcome == "pass"
    assert v == "INCONCLUSIVE"


def small_full(**kw):
    return full_spec(seq_lens=(512, 8192), batches=(8,), **kw)


def test_full_grid_go_with_consistency_across_model_sizes(judge) -> None:
    v, reasons, res = judge(small_full())
    assert res["S6"].outcome == "pass" and res["S6"].value == 3
    assert len(res["S1"].cells) == 3 * 2 * 1  # models x seq_lens x batches, decided cell by cell
    assert all(c["n_pairs"] == 3 and c["state"] == "holds" for c in res["S1"].cells)  # pairs by seed
    assert v == "GO", reasons


def test_full_grid_failure_at_one_model_size(judge) -> None:
    def weak_at_13b(summary, metrics):
        if summary["optimizer"] == "flashoptim" and summary["model"] == "13b":
            summary["peak_mem_allocated_bytes"] *= 0.95 / 0.60  # 5% below AdamW instead of 40%

    v, _, res = judge(small_full(mutate=weak_at_13b))
    assert res["F1"].outcome == "fail" and "13b" in res["F1"].why
    assert v == "NO-GO"
    assert res["S6"].value == 2  # 1b and 7b still reach 20%


def test_secondary_arm_is_evaluated_on_its_own(judge) -> None:
    eff = effects()
    eff["flashoptim_gr"] = replace(DEFAULT_EFFECTS["flashoptim"], mem_factor=0.95)
    v, _, res = judge(go_spec(effects=eff), arm="flashoptim_gr")
    assert v == "NO-GO" and "F1" in failing(res)
    assert all(r.arm == "flashoptim_gr" for r in res.values())
    assert math.isfinite(res["S1"].value)


def test_no_treatment_runs_is_inconclusive(judge) -> None:
    v, reasons, res = judge(go_spec(skip=lambda s: s["optimizer"] == "flashoptim"))
    assert v == "INCONCLUSIVE" and "no runs of the treatment arm 'flashoptim'" in reasons[0]
    assert res["S1"].outcome == "not_evaluable" and "no flashoptim run" in res["S1"].why


def test_treatment_oom_where_the_baseline_fit_is_an_upper_bound_that_fails(judge) -> None:
    def flash_oom(summary, metrics):
        if summary["optimizer"] == "flashoptim":
            summary.update(status="oom", status_reason="CUDA out of memory", peak_mem_allocated_bytes=None)

    v, _, res = judge(go_spec(mutate=flash_oom))
    s1 = res["S1"]
    assert s1.bound == "upper" and s1.outcome == "fail" and "at most" in s1.value_text
    assert res["F1"].outcome == "fail"  # FlashOptim needed more than the 80 GiB AdamW fit in
    assert v == "NO-GO"
