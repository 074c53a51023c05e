"""Issue 14 in the analysis: the assay-sensitivity rule makes the accuracy criteria not_evaluable
(saying by how much the reference missed), the controls decide whether the endpoint can be trusted,
and the report puts every arm beside the baselines per split and stratum.

Synthetic sweeps (analysis.synthetic): rel-L2 = 0.10 x the arm's factor x a per-seed jitter shared
by every arm, so a control's planted factor is its exact ratio to AdamW in every seed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from analysis.build import build_context, judge, write_report
from analysis.controls import DETECTED, FLAGGED, MISSED, NON_INFERIOR, NOT_RUN, evaluate_controls
from analysis.load import load_sweep
from analysis.synthetic import DEFAULT_EFFECTS, ArmEffect, go_spec, write_sweep

POSITIVE = ("adamw_bf16", "adam8bit_bf16")


def with_controls(bf16: float = 1.5, eightbit_bf16: float = 1.3, replicate: float = 1.0, **kw: Any) -> Any:
    effects = dict(DEFAULT_EFFECTS)
    effects["adamw_bf16"] = ArmEffect(0.5, rel_l2_factor=bf16, state_dtypes=("torch.bfloat16",))
    effects["adam8bit_bf16"] = ArmEffect(0.4, rel_l2_factor=eightbit_bf16, state_dtypes=("torch.uint8",))
    effects["adamw_replicate"] = ArmEffect(1.0, rel_l2_factor=replicate)
    return go_spec(effects=effects, **kw)


def conf(cfg: Any, **kw: Any) -> Any:
    c = OmegaConf.to_container(cfg)
    for k, v in kw.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return OmegaConf.create(c)


def test_well_behaved_controls_leave_go(tmp_path: Path, cfg: Any) -> None:
    sweep = load_sweep(write_sweep(tmp_path / "s", with_controls()))
    states = {c.arm: c.state for c in evaluate_controls(sweep, cfg).rows}
    assert states == {"adamw_bf16": DETECTED, "adam8bit_bf16": DETECTED, "adamw_replicate": NON_INFERIOR}
    av = judge(sweep, cfg, "flashoptim")
    assert av.verdict == "GO", av.reasons


@pytest.mark.parametrize("arm", POSITIVE)
def test_a_positive_control_the_endpoint_does_not_flag_makes_it_inconclusive(
    tmp_path: Path, cfg: Any, arm: str
) -> None:
    # The control is planted 2% BETTER than AdamW: its upper bound is below 0, so it is "missed".
    spec = with_controls(**{"bf16" if arm == "adamw_bf16" else "eightbit_bf16": 0.98})
    sweep = load_sweep(write_sweep(tmp_path / "s", spec))
    row = next(c for c in evaluate_controls(sweep, cfg).rows if c.arm == arm)
    assert row.state == MISSED and row.behaves is False
    av = judge(sweep, cfg, "flashoptim")
    assert av.verdict == "INCONCLUSIVE"
    assert any(f"positive control {arm} misbehaves" in r for r in av.reasons)
    s3 = next(r for r in av.criteria if r.id == "S3")
    assert s3.outcome == "not_evaluable" and arm in s3.why and "without this rule: pass" in s3.why


def test_a_flagged_replicate_makes_it_inconclusive_even_where_f2_would_say_no_go(
    tmp_path: Path, cfg: Any
) -> None:
    # The replicate is planted 20% worse than AdamW (an endpoint that sees degradations that are not
    # there), and FlashOptim 20% worse: F2 alone would give NO-GO; the controls say it cannot be trusted.
    effects = dict(with_controls(replicate=1.2).effects)
    effects["flashoptim"] = replace(DEFAULT_EFFECTS["flashoptim"], rel_l2_factor=1.2)
    sweep = load_sweep(write_sweep(tmp_path / "s", go_spec(effects=effects)))
    row = next(c for c in evaluate_controls(sweep, cfg).rows if c.arm == "adamw_replicate")
    assert row.state == FLAGGED
    av = judge(sweep, cfg, "flashoptim")
    by_id = {r.id: r for r in av.criteria}
    assert by_id["F2"].outcome == "not_evaluable" and "without this rule: fail" in by_id["F2"].why
    assert av.verdict == "INCONCLUSIVE"
    assert any("negative control adamw_replicate misbehaves" in r for r in av.reasons)


def test_missing_controls_block_go_only_when_required(tmp_path: Path, cfg: Any) -> None:
    sweep = load_sweep(write_sweep(tmp_path / "s", go_spec()))  # no control arms
    assert {c.state for c in evaluate_controls(sweep, cfg).rows} == {NOT_RUN}
    assert judge(sweep, conf(cfg, **{"controls.required": False}), "flashoptim").verdict == "GO"
    av = judge(sweep, conf(cfg, **{"controls.required": True}), "flashoptim")
    assert av.verdict == "INCONCLUSIVE" and any("adamw_replicate not run" in r for r in av.reasons)


def test_assay_miss_makes_accuracy_not_evaluable_and_says_by_how_much(tmp_path: Path, cfg: Any) -> None:
    # AdamW's rel-L2 is 0.10 x (1 +- 1%); a best baseline of 0.15 puts the worst AdamW run at
    # 0.101 / 0.15 = 0.673x, where the rule (factor 2) needs 0.5x, i.e. <= 0.075.
    sweep = load_sweep(write_sweep(tmp_path / "s", with_controls(best_baseline_rel_l2_error=0.15)))
    av = judge(sweep, cfg, "flashoptim")
    by_id = {r.id: r for r in av.criteria}
    for cid in ("S3", "F2"):
        assert by_id[cid].outcome == "not_evaluable"
        assert "0.673x" in by_id[cid].why and "<= 0.5x (<= 0.075)" in by_id[cid].why
        assert "missed by 0.026" in by_id[cid].why
    assert by_id["S1"].outcome == "pass"  # memory is not the accuracy endpoint's business
    assert av.verdict == "INCONCLUSIVE"
    # At 0.25 the worst run is at 0.404x: shown, and the criteria are decided again.
    sweep = load_sweep(write_sweep(tmp_path / "t", with_controls(best_baseline_rel_l2_error=0.25)))
    assert judge(sweep, cfg, "flashoptim").verdict == "GO"


def _with_baselines(summary: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    """Plant the run-side accuracy record (as experiments.run.session writes it)."""
    err = summary["rel_l2_error"]
    summary["rel_l2_metric"] = "floored_mean"
    summary["eval_samples"] = 4
    summary["accuracy_strata"] = {"test": {"tissue": {"liver": {"n": 3, "floored_mean": err / 2}}}}
    summary["target_nll"] = 0.5 if summary["optimizer"] == "adamw" else 0.6
    summary["baselines"] = {
        "primary": "floored_mean",
        "n_samples": {"test": 4},
        "splits": {
            "test": {
                "best_non_learned": {"baseline": "group_mean", "value": 0.35},
                "scores": {
                    "group_mean": {
                        "learned": False,
                        "metrics": {"floored_mean": 0.35},
                        "strata": {"tissue": {"liver": {"n": 3, "value": 0.4}}},
                    },
                    "knn": {
                        "learned": True,
                        "metrics": {"floored_mean": 0.2},
                        "strata": {"tissue": {"liver": {"n": 3, "value": 0.25}}},
                    },
                },
            }
        },
    }


def test_report_has_controls_baselines_and_nll(tmp_path: Path, cfg: Any) -> None:
    sweep = load_sweep(write_sweep(tmp_path / "s", with_controls(mutate=_with_baselines)))
    ctx = build_context(sweep, cfg)
    df = ctx.baselines
    test = df[df["split"] == "test"]
    row = test[(test["predictor"] == "adamw") & (test["stratum"] == "all")].iloc[0]
    # mean over the three seeds of 0.10 x (0.99, 1.00, 1.01) in some order
    assert row["value"] == pytest.approx(0.10) and row["seeds"] == 3 and row["kind"] == "arm"
    liver = test[(test["predictor"] == "adamw") & (test["stratum"] == "tissue=liver")].iloc[0]
    assert liver["value"] == pytest.approx(0.05)
    knn = test[(test["predictor"] == "knn") & (test["stratum"] == "tissue=liver")].iloc[0]
    assert knn["kind"] == "learned" and knn["value"] == pytest.approx(0.25)
    nll = ctx.nll.set_index(["arm", "split"])
    assert nll.loc[("adamw", "test"), "target_nll"] == pytest.approx(0.5)
    assert nll.loc[("flashoptim", "test"), "target_nll"] == pytest.approx(0.6)
    out = write_report(ctx, tmp_path / "report")
    md = (out / "report.md").read_text()
    for heading in (
        "## Accuracy endpoint: controls",
        "## Accuracy vs baselines: test",
        "## Accuracy co-endpoint: teacher-forced NLL",
    ):
        assert heading in md
    assert "tissue=liver" in md and "No control misbehaves" in md
    for name in ("controls.csv", "accuracy_vs_baselines.csv", "target_nll.csv"):
        assert (out / "tables" / name).is_file()
