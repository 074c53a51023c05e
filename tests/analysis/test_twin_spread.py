"""scripts/probes/twin_spread.py: the same-seed null of the accuracy endpoint (issue 14)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from scripts.probes import twin_spread


def _run(sweep: Path, arm: str, seed: int, err: float, nll: float, status: str = "completed") -> None:
    d = sweep / "runs" / f"{arm}-{seed}"
    d.mkdir(parents=True)
    summary = {
        "optimizer": arm,
        "seed": seed,
        "status": status,
        "rel_l2_error": err,
        "best_baseline_rel_l2_error": 1.0,
        "target_nll": nll,
    }
    (d / "summary.json").write_text(json.dumps(summary))


def test_pairs_by_seed_across_sweeps_and_reports_the_log_ratio_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "pilot", tmp_path / "twins"
    errs = {0: (0.30, 0.36), 1: (0.32, 0.28), 2: (0.31, 0.33)}
    for s, (ref, twin) in errs.items():
        sweep = a if s < 2 else b
        _run(sweep, "adamw", s, ref, 0.25)
        _run(sweep, "adamw_foreach", s, twin, 0.25 * (1.01 if s else 0.99))
    _run(a, "flashoptim", 0, 9.0, 9.0)  # a treatment arm is never read
    _run(b, "adamw_foreach", 7, 0.5, 0.5)  # no reference of seed 7: no pair
    _run(b, "adamw", 8, 0.5, 0.5, status="failed")
    _run(b, "adamw_foreach", 8, 0.5, 0.5)  # the reference did not finish: no pair
    assert twin_spread.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "3 same-seed pairs" in out and "seeds [0, 1, 2]" in out
    row = next(line for line in out.splitlines() if line.startswith("| test rel-L2, per-sample median"))
    logs = [math.log(t / r) for r, t in errs.values()]
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == ", ".join(f"{v:+.3f}" for v in logs)
    assert float(cells[5]) == pytest.approx(statistics.stdev(logs), abs=5e-4)
    # more spread needs more pairs for the same 5% margin
    nll = next(line for line in out.splitlines() if line.startswith("| test target NLL"))
    assert int(nll.split("|")[6]) < int(cells[6])
    assert "min 0.300, median 0.310, max 0.320" in out
    # the margin table: its 5% column is the first table's look-2 column; wider margins need fewer
    rows = [line for line in out.splitlines() if line.startswith("| test rel-L2, per-sample median")]
    by_margin = [int(c) for c in rows[1].split("|")[3:-1]]
    assert by_margin[0] == int(cells[7])
    assert by_margin == sorted(by_margin, reverse=True) and by_margin[-1] < by_margin[0]


def test_refuses_a_seed_given_twice_and_too_few_pairs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, "adamw", 0, 0.3, 0.2)
    _run(a, "adamw_foreach", 0, 0.3, 0.2)
    with pytest.raises(SystemExit, match="1 seed\\(s\\) with both adamw and adamw_foreach finished"):
        twin_spread.main([str(a)])
    _run(b, "adamw", 0, 0.3, 0.2)
    with pytest.raises(SystemExit, match="also in another sweep"):
        twin_spread.main([str(a), str(b)])
    with pytest.raises(SystemExit, match="not a directory"):
        twin_spread.main([str(tmp_path / "missing")])
