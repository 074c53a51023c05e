"""W&B: with wandb.mode=offline the criteria table and figures go to one summary run in the sweep's group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.build import build_context, write_report
from analysis.config import register
from analysis.load import load_sweep
from analysis.synthetic import go_spec, write_sweep
from analysis.wandb_log import log_summary_run
from common.config import compose


@pytest.mark.slow  # starts the W&B service process (several seconds)
def test_offline_summary_run_holds_criteria_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    register()
    cfg = compose("analysis", ["wandb.mode=offline"])
    sweep = load_sweep(write_sweep(tmp_path / "s", go_spec(sweep_id="wb-group-test")))
    ctx = build_context(sweep, cfg)
    out = write_report(ctx, sweep.sweep_dir / "report")
    run_dir = Path(log_summary_run(ctx, out))
    assert run_dir.is_dir() and run_dir.parent == sweep.sweep_dir / "wandb"
    files = run_dir / "files"
    images = list((files / "media" / "images").rglob("*.png"))
    assert len(images) == len(ctx.figures)
    tables = list((files / "media" / "table").glob("criteria*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    ids = [row[table["columns"].index("id")] for row in table["data"]]
    assert ids == [c.id for c in ctx.primary.criteria]
    # Offline runs keep the group and the summary in the binary .wandb record until synced.
    record = next(run_dir.glob("*.wandb")).read_bytes()
    assert b"wb-group-test" in record and b"criteria/S1" in record and b"verdict" in record


def test_disabled_mode_logs_nothing(tmp_path: Path, cfg) -> None:
    assert cfg.wandb.mode == "disabled"
    sweep = load_sweep(write_sweep(tmp_path / "s", go_spec(seeds=(0,))))
    ctx = build_context(sweep, cfg)
    assert log_summary_run(ctx, tmp_path) is None
    assert not (sweep.sweep_dir / "wandb").exists()
