"""`python -m analysis`: the final VERDICT line, one-line errors with exit 2, --cfg, and config checks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from analysis.config import register, validate
from analysis.synthetic import go_spec, write_sweep
from common.config import ConfigError, compose

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_prints_reasons_then_the_verdict_line(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec(scale="smoke"))
    proc = run_cli(str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    report = sweep_dir / "report" / "report.html"
    assert lines[-1] == f"VERDICT: INCONCLUSIVE (smoke scale) — report: {report}"
    assert any("smoke scale" in line for line in lines[:-1])
    assert report.exists()
    assert json.loads((sweep_dir / "report" / "verdict.json").read_text())["verdict"] == "INCONCLUSIVE"
    assert "torch" not in proc.stderr  # nothing dragged in torch (it would log nothing, but be safe)


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "nope"
    if setup == "empty":
        (target / "runs" / "abc").mkdir(parents=True)
    proc = run_cli(str(target))
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert str(target) in proc.stderr
    assert not (target / "report").exists()


def test_bad_override_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec(seeds=(0,)))
    proc = run_cli(str(sweep_dir), "alpha=2")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "alpha" in proc.stderr and "(0, 1)" in proc.stderr
    assert not (sweep_dir / "report").exists()


def test_cfg_prints_the_resolved_config() -> None:
    proc = run_cli("--cfg", "treatment_arm=flashoptim_gr")
    assert proc.returncode == 0
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.treatment_arm == "flashoptim_gr" and len(cfg.criteria.entries) == 13
    assert cfg.criteria.sequential.looks == [3, 10]


def test_unknown_key_is_rejected_before_work() -> None:
    # in-process, with the schema registered as the CLI registers it (Hydra then accepts `+key`)
    register()
    with pytest.raises(ConfigError, match="tresholds"):
        validate(compose("analysis", ["+tresholds=1"]))


def test_criterion_with_unknown_metric_is_rejected(cfg) -> None:
    bad = OmegaConf.to_container(cfg)
    bad["criteria"]["entries"][0]["metric"] = "peak_mem_reduction_typo"
    with pytest.raises(ConfigError, match=re.escape("criteria.entries[0].metric")):
        validate(OmegaConf.create(bad))


def test_every_protocol_criterion_declares_its_fields(cfg) -> None:
    kinds = [c.kind for c in cfg.criteria.entries]
    assert kinds.count("success") == 7 and kinds.count("failure") == 6
    assert [c.id for c in cfg.criteria.entries if c.uses_p_value] == ["S5"]
    assert [c.id for c in cfg.criteria.entries if list(c.designs) == ["full"]] == ["S6"]


# ------------------------------------------------------------- issue 18: nothing the user owns is deleted
def test_output_dir_with_user_files_is_refused_and_kept(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    proc = run_cli(str(sweep_dir), f"output_dir={mine}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "output_dir" in proc.stderr and "thesis.tex" in proc.stderr and "allowed" in proc.stderr
    assert (mine / "thesis.tex").read_text() == "months of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_output_dir_pointing_at_the_sweep_itself_is_refused(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    before = sorted(p.name for p in (sweep_dir / "runs").iterdir())
    proc = run_cli(str(sweep_dir), f"output_dir={sweep_dir}")
    assert proc.returncode == 2 and "runs" in proc.stderr
    assert sorted(p.name for p in (sweep_dir / "runs").iterdir()) == before


def test_output_dir_of_another_sweeps_report_is_refused(tmp_path: Path) -> None:
    a = write_sweep(tmp_path / "a", go_spec(sweep_id="sweep-a"))
    b = write_sweep(tmp_path / "b", go_spec(sweep_id="sweep-b"))
    assert run_cli(str(a)).returncode == 0
    proc = run_cli(str(b), f"output_dir={a / 'report'}")
    assert proc.returncode == 2 and "sweep-a" in proc.stderr
    assert json.loads((a / "report" / "verdict.json").read_text())["sweep_id"] == "sweep-a"


def test_output_dir_empty_or_an_earlier_report_of_the_same_sweep_is_replaced(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(str(sweep_dir), f"output_dir={empty}").returncode == 0
    assert (empty / "verdict.json").exists()
    assert run_cli(str(sweep_dir), f"output_dir={empty}").returncode == 0  # its own earlier report


# ------------------------------------------------------------------- issue 18: a failed re-analysis
def test_failed_reanalysis_leaves_the_old_verdict_marked_not_current(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    assert run_cli(str(sweep_dir)).returncode == 0
    verdict = sweep_dir / "report" / "verdict.json"
    assert json.loads(verdict.read_text())["current"] is True
    victim = next((sweep_dir / "runs").iterdir()) / "summary.json"
    s = json.loads(victim.read_text())
    s["rel_l2_error"] = "abc"
    victim.write_text(json.dumps(s))
    proc = run_cli(str(sweep_dir))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert (
        str(victim) in proc.stderr
        and "rel_l2_error='abc'" in proc.stderr
        and "a number or null" in proc.stderr
    )
    old = json.loads(verdict.read_text())
    assert old["current"] is False and "rel_l2_error" in old["stale_reason"]
    assert (sweep_dir / "report" / "STALE.txt").exists()


def test_bad_status_is_one_line_naming_the_file(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec())
    victim = next((sweep_dir / "runs").iterdir()) / "summary.json"
    s = json.loads(victim.read_text())
    s["status"] = "finished"
    victim.write_text(json.dumps(s))
    proc = run_cli(str(sweep_dir))
    assert proc.returncode == 2 and str(victim) in proc.stderr and "'finished'" in proc.stderr
    assert "completed, oom, diverged, aborted, failed" in proc.stderr


def test_a_reanalysis_names_the_code_version_of_the_checkout_before_it_touched_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marking the old report stale edits its verdict.json; for a committed report (the examples
    under docs/) that edit made a clean checkout read as dirty in the new report's code version."""
    import analysis.build
    import common.provenance
    from analysis.__main__ import main

    sweep_dir = write_sweep(tmp_path / "s", go_spec(scale="smoke"))
    verdict = sweep_dir / "report" / "verdict.json"

    def git_state() -> dict[str, object]:
        # "dirty" exactly when the report on disk has been edited since it was written
        edited = verdict.exists() and json.loads(verdict.read_text()).get("current") is False
        return {"git_sha": "0" * 40, "git_dirty": edited, "git_source": "checkout"}

    monkeypatch.setattr(common.provenance, "git_state", git_state)
    monkeypatch.setattr(analysis.build, "git_state", git_state)
    assert main([str(sweep_dir)]) == 0
    assert main([str(sweep_dir)]) == 0  # the second one marks the first report stale first
    new = json.loads(verdict.read_text())
    assert new["current"] is True
    assert new["code_version"] == "0" * 40
    # the report's provenance block says the same
    report = (sweep_dir / "report" / "report.md").read_text()
    assert '"git_dirty": false' in report and '"git_dirty": true' not in report
