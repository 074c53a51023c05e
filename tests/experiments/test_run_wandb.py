"""W&B offline: the run file inside the run directory holds the logged metrics and the summary,
read back from the binary transaction log; the API key appears in no file the run writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process

from experiments.run.wandb_log import read_offline_run

FAKE_KEY = "local-0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_offline_run_reads_back_and_never_holds_the_api_key(
    results_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fast = [o for o in FAST if not o.startswith("wandb=")]
    code, run_dir = run_in_process(results_root, [*fast, "wandb=offline", "sweep_id=wb", "seed=5"])
    assert code == 0
    s = read_summary(run_dir)
    assert s["status"] == "completed"
    logged = read_offline_run(run_dir / "wandb")
    assert logged["name"] == "adamw-tiny-s5" and logged["group"] == "wb"
    assert set(logged["tags"]) == {"adamw", "tiny", "smoke"}
    rows = read_metrics(run_dir)
    history = [h for h in logged["history"] if "loss" in h]
    assert [h["_step"] for h in history] == [r["step"] for r in rows]
    assert [h["loss"] for h in history] == pytest.approx([r["loss"] for r in rows], rel=1e-12)
    assert logged["summary"]["status"] == "completed"
    assert logged["summary"]["final_loss"] == pytest.approx(s["final_loss"])
    assert logged["config"]["optimizer"]["name"] == "adamw"
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert FAKE_KEY.encode() not in f.read_bytes(), f
