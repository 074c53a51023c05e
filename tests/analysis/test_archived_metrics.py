"""Committed evidence keeps each run's per-step metrics compressed (scripts/archive_runs.py): the
analysis must read ``metrics.jsonl.gz`` as it reads ``metrics.jsonl``, and archiving must lose nothing."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from analysis.load import load_sweep
from analysis.synthetic import go_spec, write_sweep
from scripts import archive_runs


def test_an_archived_sweep_loads_the_same_metrics(tmp_path: Path) -> None:
    plain = write_sweep(tmp_path / "plain", go_spec())
    packed = Path(shutil.copytree(plain, tmp_path / "packed"))
    files = sorted(packed.rglob("metrics.jsonl"))
    assert files
    assert archive_runs.main([str(packed)]) == 0
    assert not list(packed.rglob("metrics.jsonl")) and len(list(packed.rglob("metrics.jsonl.gz"))) == len(
        files
    )
    a, b = load_sweep(plain), load_sweep(packed)
    assert [r.metrics for r in a.runs] == [r.metrics for r in b.runs]
    assert all(r.metrics for r in b.runs)  # the rows are there, not an empty list for a missing file
    # the same file archives to the same bytes (fixed gzip timestamp): re-committing changes nothing
    one = files[0].with_name("metrics.jsonl.gz").read_bytes()
    again = tmp_path / "again" / "metrics.jsonl"
    again.parent.mkdir()
    again.write_bytes(gzip.decompress(one))
    archive_runs.archive(again)
    assert again.with_name("metrics.jsonl.gz").read_bytes() == one


def test_an_archive_holding_other_metrics_is_never_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (run / "metrics.jsonl.gz").write_bytes(gzip.compress(b'{"step": 1, "loss": 3.0}\n'))
    with pytest.raises(SystemExit, match="holds other metrics"):
        archive_runs.archive(run / "metrics.jsonl")
    assert (run / "metrics.jsonl").exists()  # the user's file is kept
    assert archive_runs.main([str(tmp_path / "absent")]) == 2
