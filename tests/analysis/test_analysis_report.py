"""The written report: files, verdict.json schema, self-contained HTML, CPU panels, atomic rewrite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.build import build_context, write_report
from analysis.load import load_sweep
from analysis.synthetic import full_spec, go_spec, write_sweep

CRITERION_KEYS = {
    "id",
    "text",
    "metric",
    "threshold",
    "value",
    "ci",
    "p_values",
    "attainable_min_p",
    "n_pairs",
    "outcome",
    "why",
}


def _report(tmp_path: Path, cfg, spec, name: str = "sweep") -> Path:
    sweep = load_sweep(write_sweep(tmp_path / name, spec))
    return write_report(build_context(sweep, cfg), sweep.sweep_dir / "report")


@pytest.fixture(scope="module")
def go_report(tmp_path_factory: pytest.TempPathFactory, cfg) -> Path:
    return _report(tmp_path_factory.mktemp("go"), cfg, go_spec())


def test_report_files_and_verdict_schema(go_report: Path, cfg) -> None:
    out = go_report
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["verdict"] == "GO" and verdict["scale"] == "protocol"
    ids = [c["id"] for c in verdict["criteria"]]
    assert ids == [c.id for c in cfg.criteria.entries]
    for c in verdict["criteria"]:
        assert set(c) >= CRITERION_KEYS, CRITERION_KEYS - set(c)
        assert c["outcome"] in ("pass", "fail", "not_applicable", "not_evaluable")
    expected_figs = {
        "loss_curves",
        "peak_memory",
        "tokens_per_s",
        "rel_l2_error",
        "pareto",
        "memory_over_steps",
        "checkpoint_size",
    }
    assert {p.stem for p in (out / "figures").glob("*.png")} == expected_figs
    for p in (out / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == 9 and set(runs["arm"]) == {"adamw", "adam8bit", "flashoptim"}
    crit = pd.read_csv(out / "tables" / "criteria.csv")
    assert list(crit["id"]) == ids
    md = (out / "report.md").read_text()
    assert "**VERDICT: GO**" in md and "figures/peak_memory.png" in md


def test_html_is_self_contained(go_report: Path) -> None:
    html = (go_report / "report.html").read_text()
    srcs = re.findall(r"""src=['"]([^'"]+)['"]""", html)
    assert len(srcs) == 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "VERDICT: GO" in html and "NVIDIA H100" in html and "pretrained" in html


def test_smoke_report_carries_the_banner(tmp_path: Path, cfg) -> None:
    out = _report(tmp_path, cfg, go_spec(scale="smoke"))
    html = (out / "report.html").read_text()
    assert "SMOKE SCALE" in html and "is no evidence about the hypothesis" in html
    assert json.loads((out / "verdict.json").read_text())["verdict"] == "INCONCLUSIVE"


def test_cpu_sweep_shows_not_measurable_panels(tmp_path: Path, cfg) -> None:
    sweep = load_sweep(write_sweep(tmp_path / "cpu", go_spec(mem_measurable=False)))
    figs = {f.name: f for f in build_context(sweep, cfg).figures}
    for name in ("peak_memory", "pareto", "memory_over_steps"):
        assert figs[name].placeholder and "not measurable on CPU" in figs[name].placeholder
        assert figs[name].png[:8] == b"\x89PNG\r\n\x1a\n" and len(figs[name].png) > 1000
    for name in ("loss_curves", "tokens_per_s", "rel_l2_error"):
        assert figs[name].placeholder is None  # these do not need GPU memory


def test_full_grid_adds_reduction_by_axis_figures(tmp_path: Path, cfg) -> None:
    spec = full_spec(activation_dilution=True, seq_lens=(512, 8192), batches=(8, 32))
    sweep = load_sweep(write_sweep(tmp_path / "full", spec))
    ctx = build_context(sweep, cfg)
    names = {f.name for f in ctx.figures}
    assert {"reduction_by_seq_len", "reduction_by_global_batch"} <= names
    by_seq = ctx.cells[(ctx.cells["arm"] == "flashoptim") & (ctx.cells["reference_arm"] == "adamw")]
    by_seq = by_seq.assign(seq_len=by_seq["seq_len"].astype(int)).groupby("seq_len")["reduction"].mean()
    assert by_seq[512] > by_seq[8192]  # planted: activations dilute the savings at long sequences
    assert ctx.cells["t_p_holm"].dropna().ge(ctx.cells["t_p"].dropna()).all()


def test_rewrite_replaces_the_report_whole(tmp_path: Path, cfg) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    ctx = build_context(load_sweep(sweep_dir), cfg)
    out = write_report(ctx, sweep_dir / "report")
    (out / "stale.txt").write_text("from an older analysis")
    write_report(ctx, sweep_dir / "report")
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["report", "runs", "sweep.json"]


def test_failed_build_leaves_the_old_report(tmp_path: Path, cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    sweep = load_sweep(sweep_dir)
    ctx = build_context(sweep, cfg)
    out = write_report(ctx, sweep_dir / "report")
    before = (out / "verdict.json").read_text()

    def boom(_ctx):
        raise RuntimeError("disk full")

    monkeypatch.setattr("analysis.build.render_html", boom)
    with pytest.raises(RuntimeError):
        write_report(ctx, sweep_dir / "report")
    assert (out / "verdict.json").read_text() == before
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["report", "runs", "sweep.json"]


def test_unfinished_run_dirs_are_listed_not_dropped(tmp_path: Path, cfg) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    (sweep_dir / "runs" / "deadbeef0000").mkdir()
    (sweep_dir / "runs" / "deadbeef0000" / "metrics.jsonl").write_text('{"step": 0, "loss": 3.0}\n{"ste')
    sweep = load_sweep(sweep_dir)
    assert [p.name for p in sweep.unfinished] == ["deadbeef0000"]
    out = write_report(build_context(sweep, cfg), sweep_dir / "report")
    assert "deadbeef0000" in (out / "report.html").read_text()
    assert json.loads((out / "verdict.json").read_text())["n_unfinished_run_dirs"] == 1


def test_works_without_sweep_json_and_manifests(tmp_path: Path, cfg) -> None:
    sweep_dir = write_sweep(tmp_path / "bare", go_spec(write_sweep_json=False))
    for m in sweep_dir.glob("runs/*/manifest.json"):
        m.unlink()
    for c in sweep_dir.glob("runs/*/config.yaml"):
        c.unlink()
    sweep = load_sweep(sweep_dir)
    ctx = build_context(sweep, cfg)
    # every criterion still decides, but without the plan missing runs cannot be excluded (issue 18)
    assert all(c.outcome in ("pass", "not_applicable") for c in ctx.primary.criteria)
    assert ctx.primary.verdict == "INCONCLUSIVE" and ctx.design == "mvt"
    assert any("no sweep.json" in r for r in ctx.primary.reasons)
    assert "unknown" in ctx.header["code version (runs)"]
