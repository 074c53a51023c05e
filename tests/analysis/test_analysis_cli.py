"""`python -m analysis`: the final VERDICT line, one-line errors with exit 2, --cfg, and config checks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from analysis.config import validate
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


def test_unknown_key_is_rejected_at_compose_time() -> None:
    with pytest.raises(ConfigError, match="tresholds"):
        compose("analysis", ["+tresholds=1"])


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
